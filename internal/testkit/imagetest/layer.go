// Package imagetest builds synthetic container images for tests: tar layers (this file) and image
// layouts and archives (image.go), all in memory, so tests never need docker or network access.
//
// See docs/testing.md.
package imagetest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"path"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

// Epoch is the modification time the Tar* constructors give entries.
var Epoch = time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)

// TarEntry is one entry of a synthetic layer: a header and, for regular files, its body. TarLayer
// fills Hdr.Size from Body for regular files whose Size is 0, and Hdr.ModTime with Epoch when zero.
type TarEntry struct {
	Hdr  tar.Header
	Body string
}

// TarLayer writes entries, in order and unchanged otherwise, as an uncompressed tar stream.
func TarLayer(t testing.TB, entries ...TarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.Hdr
		if h.Typeflag == tar.TypeReg && h.Size == 0 {
			h.Size = int64(len(e.Body))
		}
		if h.ModTime.IsZero() {
			h.ModTime = Epoch
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("imagetest: tar header %q: %v", h.Name, err)
		}
		if e.Body != "" {
			if _, err := tw.Write([]byte(e.Body)); err != nil {
				t.Fatalf("imagetest: tar body %q: %v", h.Name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatalf("imagetest: tar close: %v", err)
	}
	return buf.Bytes()
}

// TarDir is a directory entry, mode 0755, owned by root.
func TarDir(name string) TarEntry {
	return TarEntry{Hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755}}
}

// TarFile is a regular file entry, mode 0644, owned by root.
func TarFile(name, body string) TarEntry {
	return TarEntry{Hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644}, Body: body}
}

// TarSymlink is a symbolic link entry pointing at target.
func TarSymlink(name, target string) TarEntry {
	return TarEntry{Hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}}
}

// TarHardlink is a hard link entry naming target.
func TarHardlink(name, target string) TarEntry {
	return TarEntry{Hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, Mode: 0o644}}
}

// TarWhiteout is the OCI whiteout entry that deletes p (e.g. "etc/motd" → "etc/.wh.motd").
func TarWhiteout(p string) TarEntry {
	dir, base := path.Split(p)
	return TarEntry{Hdr: tar.Header{Typeflag: tar.TypeReg, Name: dir + ".wh." + base, Mode: 0o644}}
}

// TarOpaque is the OCI opaque whiteout entry for directory dir ("" for the root).
func TarOpaque(dir string) TarEntry {
	return TarEntry{Hdr: tar.Header{Typeflag: tar.TypeReg, Name: path.Join(dir, ".wh..wh..opq"), Mode: 0o644}}
}

// Gzip compresses b with gzip.
func Gzip(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatalf("imagetest: gzip: %v", err)
	}
	if err := zw.Close(); err != nil {
		t.Fatalf("imagetest: gzip: %v", err)
	}
	return buf.Bytes()
}

// Zstd compresses b with zstd.
func Zstd(t testing.TB, b []byte) []byte {
	t.Helper()
	zw, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatalf("imagetest: zstd: %v", err)
	}
	defer zw.Close()
	return zw.EncodeAll(b, nil)
}

// SparseFragment is one data region of a sparse file.
type SparseFragment struct {
	Offset int64
	Data   string
}

// GNUSparseLayer is a layer holding one old-GNU-format sparse file (typeflag 'S', at most 4
// fragments) of realSize bytes, mode 0644: archive/tar cannot write sparse files, so the header is
// built by hand.
func GNUSparseLayer(t testing.TB, name string, realSize int64, frags ...SparseFragment) []byte {
	t.Helper()
	if len(frags) > 4 || len(name) > 99 {
		t.Fatalf("imagetest: GNUSparseLayer supports at most 4 fragments and names under 100 bytes")
	}
	var data []byte
	for _, f := range frags {
		data = append(data, f.Data...)
	}
	hdr := make([]byte, 512)
	octal := func(field []byte, v int64) {
		copy(field, fmt.Sprintf("%0*o", len(field)-1, v))
	}
	copy(hdr[0:100], name)
	octal(hdr[100:108], 0o644)
	octal(hdr[108:116], 0)
	octal(hdr[116:124], 0)
	octal(hdr[124:136], int64(len(data)))
	octal(hdr[136:148], Epoch.Unix())
	hdr[156] = 'S'
	copy(hdr[257:265], "ustar  \x00")
	for i, f := range frags {
		at := 386 + 24*i
		octal(hdr[at:at+12], f.Offset)
		octal(hdr[at+12:at+24], int64(len(f.Data)))
	}
	octal(hdr[483:495], realSize)
	copy(hdr[148:156], "        ")
	sum := 0
	for _, c := range hdr {
		sum += int(c)
	}
	copy(hdr[148:156], fmt.Sprintf("%06o\x00 ", sum))
	out := append(hdr, data...)
	if pad := len(data) % 512; pad != 0 {
		out = append(out, make([]byte, 512-pad)...)
	}
	return append(out, make([]byte, 1024)...)
}
