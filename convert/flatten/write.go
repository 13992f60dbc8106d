package flatten

import (
	"archive/tar"
	"bufio"
	"context"
	"fmt"
	"io"
	"io/fs"
	"time"
)

// WriteTar writes the canonical tar stream: Root is not written (writers pass its attributes
// separately), entries in order, hardlinks as TypeLink to their target, xattrs as PAX records.
// The bytes depend only on the tree: PAX format (GNU for the symlinks of gnuLink), no atime/ctime,
// empty user and group names.
func (t *Tree) WriteTar(ctx context.Context, w io.Writer) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	tw := tar.NewWriter(bw)
	for _, e := range t.Entries {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("flatten: write tar: %w", err)
		}
		if err := tw.WriteHeader(Header(e)); err != nil {
			return fmt.Errorf("flatten: write tar: %s: %w", show(e.Path), err)
		}
		if e.Type == tar.TypeReg && e.Size > 0 {
			if t.spool == nil || e.ino == nil {
				return fmt.Errorf("flatten: write tar: %s: %w", show(e.Path), fs.ErrClosed)
			}
			if err := t.spool.copyTo(tw, e.ino.off, e.ino.size); err != nil {
				return fmt.Errorf("flatten: write tar: %s: %w", show(e.Path), err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("flatten: write tar: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("flatten: write tar: %w", err)
	}
	return nil
}

// Header is the canonical tar header of e, as WriteTar writes it (directories get a trailing "/").
func Header(e *Entry) *tar.Header {
	h := &tar.Header{
		Typeflag: e.Type,
		Name:     e.Path,
		Linkname: e.Linkname,
		Mode:     e.Mode,
		Uid:      e.UID,
		Gid:      e.GID,
		ModTime:  e.ModTime,
		Format:   tar.FormatPAX,
	}
	switch e.Type {
	case tar.TypeDir:
		h.Name += "/"
	case tar.TypeReg:
		h.Size = e.Size
	case tar.TypeChar, tar.TypeBlock:
		h.Devmajor, h.Devminor = e.Devmajor, e.Devminor
	}
	if GNULink(e) {
		h.Format = tar.FormatGNU
		h.ModTime = e.ModTime.Truncate(time.Second) // GNU headers hold seconds, as squashfs does
	}
	if len(e.Xattrs) > 0 {
		h.PAXRecords = make(map[string]string, len(e.Xattrs))
		for k, v := range e.Xattrs {
			h.PAXRecords[xattrPrefix+k] = v
		}
	}
	return h
}

// GNULink reports whether e is a symlink whose target needs more than the 100 ASCII bytes of the
// ustar field and that can be written in GNU format (no xattrs: only PAX carries those). Such a
// target goes in a GNU long-link record instead of a PAX linkpath record, because mksquashfs 4.5.1
// (the squashfs writer) reads a PAX linkpath as if it were a file name and drops its leading "/",
// "./" and "../", turning /usr/share/ca-certificates/... into usr/share/... (Debian's
// ca-certificates has such links). Its GNU long-link reader keeps the target as it is.
func GNULink(e *Entry) bool {
	return e.Type == tar.TypeSymlink && len(e.Xattrs) == 0 && LongLink(e)
}

// LongLink reports whether e's link target does not fit a ustar header (over 100 bytes, or not ASCII).
func LongLink(e *Entry) bool {
	if len(e.Linkname) > 100 {
		return true
	}
	for i := 0; i < len(e.Linkname); i++ {
		if e.Linkname[i] >= 0x80 || e.Linkname[i] == 0 {
			return true
		}
	}
	return false
}
