package flatten

import (
	"archive/tar"
	"bufio"
	"context"
	"fmt"
	"io"
	"io/fs"
)

// WriteTar writes the canonical tar stream: Root is not written (writers pass its attributes
// separately), entries in order, hardlinks as TypeLink to their target, xattrs as PAX records.
// The bytes depend only on the tree: PAX format, no atime/ctime, empty user and group names.
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
	if len(e.Xattrs) > 0 {
		h.PAXRecords = make(map[string]string, len(e.Xattrs))
		for k, v := range e.Xattrs {
			h.PAXRecords[xattrPrefix+k] = v
		}
	}
	return h
}
