package initgen

import (
	"fmt"
	"io"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Compressions for initramfs archives; the Debian kernels decompress zstd and gzip.
const (
	Zstd = "zstd"
	Gzip = "gzip"
	None = "none"
)

// zstdWindow bounds the zstd window so that the kernel's initramfs decompressor, which allocates
// the window up front, needs little memory in small guests.
const zstdWindow = 4 << 20

// NewCompressor wraps w in the deterministic compressor every initramfs archive c2vm writes uses
// (initgen's initrd, convert/rootfs's initrd-format rootfs): a fixed level, one goroutine, a
// bounded window and no single-segment frames for zstd; no name and no mtime in the gzip header;
// None passes w through. "" means zstd.
func NewCompressor(w io.Writer, compression string) (io.WriteCloser, error) {
	switch compression {
	case "", Zstd:
		zw, err := zstd.NewWriter(w,
			zstd.WithEncoderLevel(zstd.SpeedDefault),
			zstd.WithEncoderConcurrency(1),
			zstd.WithWindowSize(zstdWindow),
			zstd.WithSingleSegment(false),
			zstd.WithEncoderCRC(true))
		if err != nil {
			return nil, fmt.Errorf("initrd: zstd: %w", err)
		}
		return zw, nil
	case Gzip:
		gw, err := gzip.NewWriterLevel(w, gzip.DefaultCompression)
		if err != nil {
			return nil, fmt.Errorf("initrd: gzip: %w", err)
		}
		gw.ModTime = time.Unix(0, 0) // the zero time.Time would be written as a bogus date
		return gw, nil
	case None:
		return nopCloser{w}, nil
	}
	return nil, fmt.Errorf("initrd: unknown compression %q (want zstd, gzip or none)", compression)
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }
