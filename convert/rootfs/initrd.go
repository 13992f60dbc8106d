package rootfs

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/c2vm/c2vm/bootcfg"
	"github.com/c2vm/c2vm/convert/flatten"
	"github.com/c2vm/c2vm/initgen"
	"github.com/u-root/u-root/pkg/cpio"
)

// writeInitrd writes the tree as a compressed newc cpio with every path under the prefix, ready
// to be appended to an initrd (the kernel unpacks concatenated, separately compressed archives).
// Hardlinks share an inode number and link count, the content travelling with the first name, as
// the kernel's initramfs unpacker expects. newc has no place for xattrs: they travel in one more
// file beside the prefix (prefix + bootcfg.XattrsSuffix), which the guest init applies.
func writeInitrd(ctx context.Context, img *image, out string, opts Options, mtime int64) error {
	prefix, err := cleanPrefix(opts.Prefix)
	if err != nil {
		return err
	}
	byPath, err := img.index()
	if err != nil {
		return err
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	zw, err := initgen.NewCompressor(bw, opts.Compression)
	if err == nil {
		err = writeCpio(ctx, img, byPath, zw, prefix, mtime)
	}
	if err == nil {
		err = zw.Close()
	}
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// cleanPrefix validates Options.Prefix: a relative directory path without "..".
func cleanPrefix(p string) (string, error) {
	if p == "" {
		return DefaultPrefix, nil
	}
	c := strings.Trim(path.Clean("/"+p), "/")
	if c == "" || strings.Contains(p, "..") {
		return "", fmt.Errorf("invalid initrd prefix %q: want a directory such as %q", p, DefaultPrefix)
	}
	return c, nil
}

// writeCpio writes the prefix directories (0755 root:root; the last one carries the tree root's
// attributes), the entries in tree order, and the trailer.
func writeCpio(ctx context.Context, img *image, byPath map[string]*flatten.Entry, w io.Writer, prefix string, mtime int64) error {
	cw := cpio.Newc.Writer(w)
	ino := uint64(0)
	parts := strings.Split(prefix, "/")
	for i := range parts {
		ino++
		info := cpio.Info{Ino: ino, Mode: cpio.S_IFDIR | 0o755, NLink: 2, MTime: uint64(mtime), Name: strings.Join(parts[:i+1], "/")}
		if i == len(parts)-1 {
			info = cpioInfo(&img.root, ino, 2, info.Name)
		}
		if err := cw.WriteRecord(cpio.Record{Info: info}); err != nil {
			return fmt.Errorf("%s: %w", info.Name, err)
		}
	}
	rw := &cpioRecords{ctx: ctx, img: img, byPath: byPath, links: linkCounts(img, byPath), inos: map[*flatten.Entry]uint64{}}
	for _, e := range img.entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		ino++
		rec, err := rw.record(e, prefix+"/"+e.Path, ino)
		if err != nil {
			return fmt.Errorf("%s: %w", e.Path, err)
		}
		if err := cw.WriteRecord(rec); err != nil {
			return fmt.Errorf("%s: %w", e.Path, err)
		}
	}
	if err := writeXattrs(cw, img, prefix, ino+1, mtime); err != nil {
		return err
	}
	return cpio.WriteTrailer(cw)
}

// writeXattrs writes the tree's xattrs, sorted by path and name, as prefix+bootcfg.XattrsSuffix.
func writeXattrs(cw cpio.RecordWriter, img *image, prefix string, ino uint64, mtime int64) error {
	var xs []bootcfg.Xattr
	for _, e := range img.entries {
		names := make([]string, 0, len(e.Xattrs))
		for n := range e.Xattrs {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			xs = append(xs, bootcfg.Xattr{Path: e.Path, Name: n, Value: []byte(e.Xattrs[n])})
		}
	}
	if len(xs) == 0 {
		return nil
	}
	var buf bytes.Buffer
	if err := bootcfg.EncodeXattrs(&buf, xs); err != nil {
		return err
	}
	name := prefix + bootcfg.XattrsSuffix
	info := cpio.Info{Ino: ino, Mode: cpio.S_IFREG | 0o600, NLink: 1, MTime: uint64(mtime), FileSize: uint64(buf.Len()), Name: name}
	if err := cw.WriteRecord(cpio.Record{Info: info, ReaderAt: bytes.NewReader(buf.Bytes())}); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// linkCounts counts the names of each regular file that has hardlinks.
func linkCounts(img *image, byPath map[string]*flatten.Entry) map[*flatten.Entry]uint64 {
	n := make(map[*flatten.Entry]uint64)
	for _, e := range img.entries {
		if e.Type != tar.TypeLink {
			continue
		}
		if t, _ := linkTarget(byPath, e); isReg(t) {
			if n[t] == 0 {
				n[t] = 1
			}
			n[t]++
		}
	}
	return n
}

// cpioRecords makes the records of one archive: the tree, its link counts, and the inode numbers
// given to the first names of hardlinked files.
type cpioRecords struct {
	ctx    context.Context
	img    *image
	byPath map[string]*flatten.Entry
	links  map[*flatten.Entry]uint64 // names of each hardlinked regular file
	inos   map[*flatten.Entry]uint64 // inode of each hardlinked file's first name
}

// record returns the record for entry e written as name with inode ino.
func (w *cpioRecords) record(e *flatten.Entry, name string, ino uint64) (cpio.Record, error) {
	if e.Type == tar.TypeLink {
		t, _ := linkTarget(w.byPath, e) // checked by index
		if !isReg(t) {
			// The kernel only links regular files: other types become a copy of the target.
			return w.record(t, name, ino)
		}
		return cpio.Record{Info: cpioInfo(t, w.inos[t], w.links[t], name)}, nil // content went with the target
	}
	nlink := uint64(1)
	switch {
	case e.Type == tar.TypeDir:
		nlink = 2
	case w.links[e] > 0:
		nlink = w.links[e]
		w.inos[e] = ino
	}
	info := cpioInfo(e, ino, nlink, name)
	rec := cpio.Record{Info: info}
	switch {
	case e.Type == tar.TypeSymlink:
		rec.ReaderAt = strings.NewReader(e.Linkname)
	case isReg(e) && e.Size > 0:
		rec.ReaderAt = &seqReaderAt{r: &lazyReader{ctx: w.ctx, src: w.img.src, e: e}}
	}
	return rec, nil
}

func cpioInfo(e *flatten.Entry, ino, nlink uint64, name string) cpio.Info {
	sec, _ := unixTime(e.ModTime)
	info := cpio.Info{
		Ino:   ino,
		Mode:  cpioType(e.Type) | uint64(e.Mode&0o7777),
		UID:   uint64(e.UID),
		GID:   uint64(e.GID),
		NLink: nlink,
		MTime: sec,
		Name:  name,
	}
	switch e.Type {
	case tar.TypeReg:
		info.FileSize = uint64(e.Size)
	case tar.TypeSymlink:
		info.FileSize = uint64(len(e.Linkname))
	case tar.TypeChar, tar.TypeBlock:
		info.Rmajor, info.Rminor = uint64(e.Devmajor), uint64(e.Devminor)
	}
	return info
}

func cpioType(t byte) uint64 {
	switch t {
	case tar.TypeDir:
		return cpio.S_IFDIR
	case tar.TypeSymlink:
		return cpio.S_IFLNK
	case tar.TypeChar:
		return cpio.S_IFCHR
	case tar.TypeBlock:
		return cpio.S_IFBLK
	case tar.TypeFifo:
		return cpio.S_IFIFO
	}
	return cpio.S_IFREG
}

func isReg(e *flatten.Entry) bool {
	return e != nil && e.Type == tar.TypeReg
}

// seqReaderAt serves the sequential ReadAt calls cpio's writer makes from a plain reader, and
// closes it at EOF or when the writer closes it.
type seqReaderAt struct {
	r   *lazyReader
	off int64
}

func (s *seqReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off != s.off {
		return 0, fmt.Errorf("non-sequential read at %d (expected %d)", off, s.off)
	}
	n, err := s.r.Read(p)
	s.off += int64(n)
	return n, err
}

func (s *seqReaderAt) Close() error { return s.r.Close() }
