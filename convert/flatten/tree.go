// Package flatten applies an image's layers, in order, into one canonical tree of entries — tar
// headers with their content spooled aside — without extracting anything to the host filesystem and
// without needing root. It handles OCI whiteouts and opaque directories, type replacements,
// hardlinks across layers and hostile paths, and writes the result as a canonical tar stream that
// rootfs writers (sqfstar, erofs, cpio) consume.
//
// See docs/architecture.md.
package flatten

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"time"
)

// Entry is one node of the flattened tree. Paths are clean, relative to the image root, without a
// leading "/" or "./" (e.g. "etc/passwd"); the root itself is Tree.Root with Path "".
type Entry struct {
	Path     string
	Type     byte  // archive/tar typeflag: TypeDir, TypeReg, TypeSymlink, TypeLink, TypeChar, TypeBlock, TypeFifo
	Mode     int64 // permission bits including setuid/setgid/sticky (mask 07777)
	UID, GID int
	Size     int64 // content size for TypeReg
	ModTime  time.Time
	// Linkname is the symlink target (as stored in the layer) or, for TypeLink, the Path of the
	// entry (earlier in canonical order) this one is a hardlink of.
	Linkname           string
	Devmajor, Devminor int64
	Xattrs             map[string]string

	ino *inode // content for Tree.Open; shared by hardlinks
}

// Tree is the flattened image. Entries are in canonical order: sorted by Path (so parents precede
// children), no duplicates, and every hardlink after its target.
type Tree struct {
	Root    Entry
	Entries []*Entry

	root  *node
	spool *spool
}

// Layer is one layer to apply: Open returns its uncompressed tar stream (verified by the caller's
// reader: a digest mismatch surfaces as a read error at the end of the stream).
type Layer struct {
	Digest string // for error messages
	Open   func(ctx context.Context) (io.ReadCloser, error)
}

// Options tunes Flatten. The zero value is the default.
type Options struct {
	// MaxSize bounds the total uncompressed content (spooled to disk); 0 means 64 GiB. The
	// metadata held in memory (512 bytes per entry plus its name, link target and xattrs) has a
	// budget of its own of MaxSize, at least 1 MiB.
	MaxSize int64
	// SpoolDir is where file contents are spooled; "" means os.TempDir().
	SpoolDir string
	// Warn receives non-fatal notes (e.g. skipped sockets); nil means silent.
	Warn func(msg string)
}

// Flatten applies layers in order and returns the canonical tree. The caller must Close it.
//
// Hostile input is handled as docker/containerd extraction does, but without touching the host:
//   - absolute names are relative to the root ("/../x" is "x"); relative names that climb out of
//     the root ("../x") are an error naming the layer and entry;
//   - parent directories are resolved inside the root like a chroot: a write through a symlink
//     such as "evil -> /" or "evil -> ../../.." lands inside the image, never outside;
//   - hardlink targets are resolved inside the root too; a target that is missing (including one
//     that only comes later in the same layer), a directory or the root is an error;
//   - whiteouts naming ".", ".." or used as a directory component are an error; a whiteout of a
//     missing path does nothing; entries naming the root set its attributes (a non-directory
//     there is an error); sockets and unknown entry types are skipped with a Warn;
//   - names over 4096 bytes, link targets over 4095, xattr names over 255 and xattr values over
//     65535 (Linux allows 65536, but erofs stores at most 65535 and would truncate) are an error.
func Flatten(ctx context.Context, layers []Layer, opts Options) (*Tree, error) {
	if opts.MaxSize <= 0 {
		opts.MaxSize = defaultMaxSize
	}
	sp, err := newSpool(opts.SpoolDir)
	if err != nil {
		return nil, err
	}
	b := &builder{root: impliedDir(-1), spool: sp, opts: opts}
	for i, l := range layers {
		if err := b.applyLayer(ctx, i, l); err != nil {
			sp.close()
			return nil, err
		}
	}
	if err := sp.flush(); err != nil {
		sp.close()
		return nil, fmt.Errorf("flatten: spool: %w", err)
	}
	t := &Tree{root: b.root, spool: sp}
	t.Root = *entryOf("", b.root.ino)
	t.Entries = canonical(b.root)
	return t, nil
}

// Open returns the content of a TypeReg entry (or of a TypeLink entry's target).
func (t *Tree) Open(e *Entry) (io.ReadCloser, error) {
	if e.ino == nil || e.ino.typ != tar.TypeReg {
		return nil, fmt.Errorf("flatten: open %s: not a regular file of this tree", show(e.Path))
	}
	if t.spool == nil {
		return nil, fmt.Errorf("flatten: open %s: %w", show(e.Path), fs.ErrClosed)
	}
	return io.NopCloser(t.spool.section(e.ino.off, e.ino.size)), nil
}

// maxReadFile bounds ReadFile, which reads into memory (a hostile /etc/passwd could be huge).
const maxReadFile = 64 << 20

// ReadFile returns the content of the regular file at path p ("/etc/passwd" or "etc/passwd"),
// following symlinks and hardlinks inside the image root only (at most 40 symlinks; absolute
// targets and ".." resolve within the root). fs.ErrNotExist when absent.
func (t *Tree) ReadFile(p string) ([]byte, error) {
	_, _, n, err := resolve(t.root, path.Clean("/"+p), walk{followLast: true})
	if errors.Is(err, errNotDir) || (err == nil && n == nil) {
		err = fs.ErrNotExist
	}
	if err != nil {
		return nil, fmt.Errorf("flatten: read %s: %w", p, err)
	}
	if n.ino.typ != tar.TypeReg {
		return nil, fmt.Errorf("flatten: read %s: not a regular file", p)
	}
	if t.spool == nil {
		return nil, fmt.Errorf("flatten: read %s: %w", p, fs.ErrClosed)
	}
	if n.ino.size > maxReadFile {
		return nil, fmt.Errorf("flatten: read %s: %d bytes is more than %d", p, n.ino.size, maxReadFile)
	}
	buf := make([]byte, n.ino.size)
	if _, err := io.ReadFull(t.spool.section(n.ino.off, n.ino.size), buf); err != nil {
		return nil, fmt.Errorf("flatten: read %s: %w", p, err)
	}
	return buf, nil
}

// Close releases the spooled contents (the spool file itself was unlinked when created).
func (t *Tree) Close() error {
	if t.spool == nil {
		return nil
	}
	err := t.spool.close()
	t.spool = nil
	return err
}
