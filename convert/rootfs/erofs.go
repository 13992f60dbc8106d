package rootfs

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/c2vm/c2vm/convert/flatten"
	"github.com/erofs/go-erofs"
)

// writeErofs writes an uncompressed EROFS image with go-erofs. The tree is handed to
// erofs.Writer.CopyFrom as an fs.FS whose files open their content lazily, so content is read
// once, straight into the image, when the writer is closed.
//
// go-erofs has no way to give two directory entries one inode, so a hardlink becomes a separate
// inode with the target's attributes and its own copy of the content (link count 1).
func writeErofs(ctx context.Context, img *image, out, comp string, mtime int64) error {
	if comp != "" && comp != "none" {
		return fmt.Errorf("erofs compression %q not supported (go-erofs writes uncompressed images)", comp)
	}
	fsys, err := newTreeFS(ctx, img)
	if err != nil {
		return err
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	w := erofs.Create(f, erofs.WithBuildTime(uint64(mtime), 0))
	if err := w.CopyFrom(fsys); err != nil {
		_ = f.Close()
		return err
	}
	if err := w.Close(); err != nil {
		_ = f.Close()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	return f.Close()
}

// treeFS presents an image as an fs.FS (with ReadDir, Stat and ReadLink) for erofs.CopyFrom.
type treeFS struct {
	ctx   context.Context
	src   source
	nodes map[string]*node // keyed by fs.FS name: "." for the root, "etc/passwd"
}

// node is one name in the tree; for a hardlink, e is the target entry (attributes and content).
type node struct {
	name     string
	e        *flatten.Entry
	children []*node
	subdirs  int
}

func newTreeFS(ctx context.Context, img *image) (*treeFS, error) {
	byPath, err := img.index()
	if err != nil {
		return nil, err
	}
	root := &node{name: ".", e: &img.root}
	fsys := &treeFS{ctx: ctx, src: img.src, nodes: map[string]*node{".": root}}
	for _, e := range img.entries {
		n := &node{name: path.Base(e.Path), e: e}
		if e.Type == tar.TypeLink {
			n.e, _ = linkTarget(byPath, e) // checked by index
		}
		parent := fsys.nodes[path.Dir(e.Path)]
		parent.children = append(parent.children, n)
		if e.Type == tar.TypeDir {
			parent.subdirs++
		}
		fsys.nodes[e.Path] = n
	}
	return fsys, nil
}

func (fsys *treeFS) lookup(op, name string) (*node, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	n, ok := fsys.nodes[name]
	if !ok {
		return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
	}
	return n, nil
}

// Open implements fs.FS.
func (fsys *treeFS) Open(name string) (fs.File, error) {
	n, err := fsys.lookup("open", name)
	if err != nil {
		return nil, err
	}
	f := &treeFile{info: nodeInfo{n}}
	if n.e.Type == tar.TypeReg {
		f.r = &lazyReader{ctx: fsys.ctx, src: fsys.src, e: n.e}
	}
	return f, nil
}

// Stat implements fs.StatFS.
func (fsys *treeFS) Stat(name string) (fs.FileInfo, error) {
	n, err := fsys.lookup("stat", name)
	if err != nil {
		return nil, err
	}
	return nodeInfo{n}, nil
}

// ReadDir implements fs.ReadDirFS, sorted by name.
func (fsys *treeFS) ReadDir(name string) ([]fs.DirEntry, error) {
	n, err := fsys.lookup("readdir", name)
	if err != nil {
		return nil, err
	}
	if n.e.Type != tar.TypeDir {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: errors.New("not a directory")}
	}
	ents := make([]fs.DirEntry, len(n.children))
	for i, c := range n.children {
		ents[i] = fs.FileInfoToDirEntry(nodeInfo{c})
	}
	slices.SortFunc(ents, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return ents, nil
}

// ReadLink returns a symlink's target (go-erofs looks for this method).
func (fsys *treeFS) ReadLink(name string) (string, error) {
	n, err := fsys.lookup("readlink", name)
	if err != nil {
		return "", err
	}
	if n.e.Type != tar.TypeSymlink {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: fs.ErrInvalid}
	}
	return n.e.Linkname, nil
}

// treeFile is an open node: regular files read their content lazily.
type treeFile struct {
	info nodeInfo
	r    *lazyReader
}

func (f *treeFile) Stat() (fs.FileInfo, error) { return f.info, nil }

func (f *treeFile) Read(p []byte) (int, error) {
	if f.r == nil {
		return 0, io.EOF
	}
	return f.r.Read(p)
}

func (f *treeFile) Close() error {
	if f.r == nil {
		return nil
	}
	return f.r.Close()
}

// nodeInfo is a node's fs.FileInfo; Sys returns the *erofs.Stat go-erofs takes owners, times,
// device numbers, link counts and xattrs from.
type nodeInfo struct{ n *node }

func (i nodeInfo) Name() string       { return i.n.name }
func (i nodeInfo) Size() int64        { return i.size() }
func (i nodeInfo) Mode() fs.FileMode  { return fileMode(i.n.e) }
func (i nodeInfo) ModTime() time.Time { return i.n.e.ModTime }
func (i nodeInfo) IsDir() bool        { return i.n.e.Type == tar.TypeDir }

func (i nodeInfo) size() int64 {
	switch i.n.e.Type {
	case tar.TypeReg:
		return i.n.e.Size
	case tar.TypeSymlink:
		return int64(len(i.n.e.Linkname))
	}
	return 0
}

func (i nodeInfo) Sys() any {
	e := i.n.e
	sec, nsec := unixTime(e.ModTime)
	nlink := 1
	if e.Type == tar.TypeDir {
		nlink = 2 + i.n.subdirs
	}
	st := &erofs.Stat{
		UID:     uint32(e.UID),
		GID:     uint32(e.GID),
		Mtime:   sec,
		MtimeNs: nsec,
		Nlink:   nlink,
		Xattrs:  e.Xattrs,
	}
	if e.Type == tar.TypeChar || e.Type == tar.TypeBlock {
		st.Rdev = encodeDev(e.Devmajor, e.Devminor)
	}
	return st
}

// encodeDev packs a device number the way the kernel's new_encode_dev does (EROFS stores it in
// 32 bits: 12 bits of major, 20 of minor).
func encodeDev(major, minor int64) uint32 {
	ma, mi := uint32(major), uint32(minor)
	return mi&0xff | (ma&0xfff)<<8 | (mi&^0xff)<<12
}
