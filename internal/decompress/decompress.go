// Package decompress is c2vm's one table of compression formats a reader may meet — gzip, zstd,
// xz, lz4 and bzip2 — with how each is recognised (its magic, its file-name suffix) and opened.
// Kernel packages pick by their members' suffixes, kernel modules by theirs, image layers by their
// media type and kernel images by magic; all of them get their decompressor here.
//
// See docs/architecture.md.
package decompress

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"fmt"
	"io"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz"
)

// Format is a compression format; None is an uncompressed stream.
type Format string

// Formats.
const (
	None  Format = ""
	Gzip  Format = "gzip"
	Zstd  Format = "zstd"
	Xz    Format = "xz"
	Lz4   Format = "lz4"
	Bzip2 Format = "bzip2"
)

// format is one row of the table: how a format is recognised.
type format struct {
	f      Format
	ext    string   // file-name suffix, with its dot
	magics [][]byte // the stream starts with one of these
}

var formats = []format{
	{Gzip, ".gz", [][]byte{{0x1f, 0x8b}}},
	{Zstd, ".zst", [][]byte{{0x28, 0xb5, 0x2f, 0xfd}}},
	{Xz, ".xz", [][]byte{{0xfd, '7', 'z', 'X', 'Z', 0x00}}},
	// The lz4 frame format, and the legacy format Linux compresses kernels with.
	{Lz4, ".lz4", [][]byte{{0x04, 0x22, 0x4d, 0x18}, {0x02, 0x21, 0x4c, 0x18}}},
	{Bzip2, ".bz2", [][]byte{[]byte("BZh")}},
}

// MagicLen is how many leading bytes Detect needs at most.
const MagicLen = 6

// Detect returns the format whose magic head starts with, or None.
func Detect(head []byte) Format {
	for _, f := range formats {
		for _, m := range f.magics {
			if bytes.HasPrefix(head, m) {
				return f.f
			}
		}
	}
	return None
}

// Sniff returns the format of the stream br reads, peeking at its first bytes without consuming
// them. A stream shorter than any magic is None.
func Sniff(br *bufio.Reader) (Format, error) {
	head, err := br.Peek(MagicLen)
	if err != nil && err != io.EOF {
		return None, err
	}
	return Detect(head), nil
}

// ByExt returns the format a file name's suffix (".gz", ".zst", ".xz", ".lz4", ".bz2") says;
// ok is false, and the format None, for any other name.
func ByExt(name string) (f Format, ok bool) {
	for _, row := range formats {
		if strings.HasSuffix(name, row.ext) {
			return row.f, true
		}
	}
	return None, false
}

// Options bound what a decompressor may allocate. The zero value takes the libraries' defaults.
type Options struct {
	// MaxMemory bounds the decoded size of one zstd frame; 0 = the zstd library's default (64 GiB).
	MaxMemory uint64
	// MaxWindow bounds the window a zstd frame may ask for (a frame asking for more fails with
	// zstd.ErrWindowSizeExceeded); 0 = the zstd library's default.
	MaxWindow uint64
}

// NewReader returns a reader of r decompressed as f; None passes r through. Close releases the
// decompressor, not r.
func NewReader(r io.Reader, f Format, opts Options) (io.ReadCloser, error) {
	switch f {
	case None:
		return io.NopCloser(r), nil
	case Gzip:
		return gzip.NewReader(r)
	case Zstd:
		zo := []zstd.DOption{zstd.WithDecoderConcurrency(1)}
		if opts.MaxMemory != 0 {
			zo = append(zo, zstd.WithDecoderMaxMemory(opts.MaxMemory))
		}
		if opts.MaxWindow != 0 {
			zo = append(zo, zstd.WithDecoderMaxWindow(opts.MaxWindow))
		}
		d, err := zstd.NewReader(r, zo...)
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	case Xz:
		xr, err := xz.NewReader(r)
		if err != nil {
			return nil, err
		}
		return io.NopCloser(xr), nil
	case Lz4:
		return io.NopCloser(lz4.NewReader(r)), nil
	case Bzip2:
		return io.NopCloser(bzip2.NewReader(r)), nil
	}
	return nil, fmt.Errorf("unknown compression format %q", string(f))
}
