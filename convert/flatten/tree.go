// Package flatten applies an image's layers, in order, into one canonical tree of entries — tar
// headers with their content spooled aside — without extracting anything to the host filesystem and
// without needing root. It handles OCI whiteouts and opaque directories, type replacements,
// hardlinks across layers and hostile paths, and writes the result as a canonical tar stream that
// rootfs writers (sqfstar, erofs, cpio) consume.
package flatten

import (
	"context"
	"errors"
	"io"
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
}

// Tree is the flattened image. Entries are in canonical order: sorted by Path (so parents precede
// children), no duplicates, and every hardlink after its target.
type Tree struct {
	Root    Entry
	Entries []*Entry
}

// Layer is one layer to apply: Open returns its uncompressed tar stream (verified by the caller's
// reader: a digest mismatch surfaces as a read error at the end of the stream).
type Layer struct {
	Digest string // for error messages
	Open   func(ctx context.Context) (io.ReadCloser, error)
}

// Options tunes Flatten. The zero value is the default.
type Options struct {
	// MaxSize bounds the total uncompressed content; 0 means 64 GiB.
	MaxSize int64
	// SpoolDir is where file contents are spooled; "" means os.TempDir().
	SpoolDir string
	// Warn receives non-fatal notes (e.g. skipped sockets); nil means silent.
	Warn func(msg string)
}

var errTODO = errors.New("flatten: not implemented yet")

// Flatten applies layers in order and returns the canonical tree. The caller must Close it.
func Flatten(ctx context.Context, layers []Layer, opts Options) (*Tree, error) { return nil, errTODO }

// Open returns the content of a TypeReg entry.
func (t *Tree) Open(e *Entry) (io.ReadCloser, error) { return nil, errTODO }

// ReadFile returns the content of the regular file at path p ("/etc/passwd" or "etc/passwd"),
// following symlinks and hardlinks inside the image root only. fs.ErrNotExist when absent.
func (t *Tree) ReadFile(p string) ([]byte, error) { return nil, errTODO }

// WriteTar writes the canonical tar stream: Root is not written (writers pass its attributes
// separately), entries in order, hardlinks as TypeLink to their target, xattrs as PAX records.
func (t *Tree) WriteTar(ctx context.Context, w io.Writer) error { return errTODO }

// Close removes the spooled contents.
func (t *Tree) Close() error { return nil }
