package rootfs

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
	"time"

	"github.com/c2vm/c2vm/convert/flatten"
)

// source is what the writers need from a flatten.Tree beyond its entries.
type source interface {
	Open(e *flatten.Entry) (io.ReadCloser, error)
	WriteTar(ctx context.Context, w io.Writer) error
}

// image is the tree as the writers see it: the root, the entries in canonical order and the
// content source.
type image struct {
	root    flatten.Entry
	entries []*flatten.Entry
	src     source
}

func newImage(root flatten.Entry, entries []*flatten.Entry, src source) *image {
	return &image{root: rootEntry(root), entries: entries, src: src}
}

// index maps paths to entries and checks what the writers rely on: every entry has a parent
// directory earlier in the tree, and every hardlink names an earlier non-directory entry.
func (img *image) index() (map[string]*flatten.Entry, error) {
	byPath := make(map[string]*flatten.Entry, len(img.entries)+1)
	byPath[""] = &img.root
	for _, e := range img.entries {
		if e.Path == "" || e.Path != path.Clean(e.Path) || path.IsAbs(e.Path) || e.Path == ".." || strings.HasPrefix(e.Path, "../") {
			return nil, fmt.Errorf("%q: not a clean relative path", e.Path)
		}
		if _, dup := byPath[e.Path]; dup {
			return nil, fmt.Errorf("%s: duplicate entry", e.Path)
		}
		parent := path.Dir(e.Path)
		if parent == "." {
			parent = ""
		}
		if p, ok := byPath[parent]; !ok || p.Type != tar.TypeDir {
			return nil, fmt.Errorf("%s: parent directory not in tree", e.Path)
		}
		if e.Type == tar.TypeLink {
			if _, err := linkTarget(byPath, e); err != nil {
				return nil, err
			}
		}
		byPath[e.Path] = e
	}
	return byPath, nil
}

// linkTarget returns the entry hardlink e refers to.
func linkTarget(byPath map[string]*flatten.Entry, e *flatten.Entry) (*flatten.Entry, error) {
	t, ok := byPath[e.Linkname]
	if !ok || e.Linkname == "" {
		return nil, fmt.Errorf("%s: hardlink target %q not earlier in tree", e.Path, e.Linkname)
	}
	if t.Type == tar.TypeLink { // a link to a link: earlier links were checked, so this ends
		return linkTarget(byPath, t)
	}
	if t.Type == tar.TypeDir {
		return nil, fmt.Errorf("%s: hardlink target %q is a directory", e.Path, e.Linkname)
	}
	return t, nil
}

// fileMode converts an entry's type and permission bits to an fs.FileMode.
func fileMode(e *flatten.Entry) fs.FileMode {
	m := fs.FileMode(e.Mode & 0o777)
	if e.Mode&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if e.Mode&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if e.Mode&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	switch e.Type {
	case tar.TypeDir:
		m |= fs.ModeDir
	case tar.TypeSymlink:
		m |= fs.ModeSymlink
	case tar.TypeChar:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case tar.TypeBlock:
		m |= fs.ModeDevice
	case tar.TypeFifo:
		m |= fs.ModeNamedPipe
	}
	return m
}

// unixTime returns t in seconds and nanoseconds, clamped at the epoch (the formats store
// unsigned times).
func unixTime(t time.Time) (uint64, uint32) {
	if t.IsZero() || t.Unix() < 0 {
		return 0, 0
	}
	return uint64(t.Unix()), uint32(t.Nanosecond())
}

// lazyReader opens an entry's content on first Read and closes it at EOF or Close, so writers
// that collect readers up front do not hold one descriptor per file.
type lazyReader struct {
	ctx  context.Context
	src  source
	e    *flatten.Entry
	rc   io.ReadCloser
	done bool
}

func (r *lazyReader) Read(p []byte) (int, error) {
	if r.done {
		return 0, io.EOF
	}
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	if r.rc == nil {
		rc, err := r.src.Open(r.e)
		if err != nil {
			return 0, fmt.Errorf("open %s: %w", r.e.Path, err)
		}
		r.rc = rc
	}
	n, err := r.rc.Read(p)
	if err == io.EOF {
		r.done = true
		if cerr := r.Close(); cerr != nil {
			return n, cerr
		}
	}
	return n, err
}

func (r *lazyReader) Close() error {
	if r.rc == nil {
		return nil
	}
	err := r.rc.Close()
	r.rc = nil
	return err
}
