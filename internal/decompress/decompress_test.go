package decompress

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz"
)

const plain = "c2vm decompress test\n"

// bzip2Plain is plain compressed by bzip2 -9 (Go has no bzip2 writer).
var bzip2Plain = []byte{
	0x42, 0x5a, 0x68, 0x39, 0x31, 0x41, 0x59, 0x26, 0x53, 0x59, 0x49, 0x99,
	0x09, 0xcd, 0x00, 0x00, 0x02, 0x59, 0x80, 0x00, 0x10, 0x40, 0x00, 0x10,
	0x00, 0x0e, 0x02, 0xdd, 0x00, 0x20, 0x00, 0x31, 0x00, 0xd0, 0x01, 0x40,
	0x69, 0xea, 0x7b, 0x4a, 0x1d, 0x2b, 0x6a, 0x90, 0xa0, 0x9c, 0x1d, 0xb0,
	0xe7, 0xc5, 0xdc, 0x91, 0x4e, 0x14, 0x24, 0x12, 0x66, 0x42, 0x73, 0x40,
}

// compressWith returns plain written through the writer mk makes.
func compressWith(t *testing.T, mk func(io.Writer) (io.WriteCloser, error)) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := mk(&b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(w, plain); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestFormats(t *testing.T) {
	tests := []struct {
		name   string
		format Format
		file   string // a name with the format's suffix
		data   func(t *testing.T) []byte
	}{
		{"gzip", Gzip, "m.ko.gz", func(t *testing.T) []byte {
			return compressWith(t, func(w io.Writer) (io.WriteCloser, error) { return gzip.NewWriter(w), nil })
		}},
		{"zstd", Zstd, "data.tar.zst", func(t *testing.T) []byte {
			return compressWith(t, func(w io.Writer) (io.WriteCloser, error) { return zstd.NewWriter(w) })
		}},
		{"xz", Xz, "data.tar.xz", func(t *testing.T) []byte {
			return compressWith(t, func(w io.Writer) (io.WriteCloser, error) { return xz.NewWriter(w) })
		}},
		{"lz4 frame", Lz4, "x.lz4", func(t *testing.T) []byte {
			return compressWith(t, func(w io.Writer) (io.WriteCloser, error) { return lz4.NewWriter(w), nil })
		}},
		{"lz4 legacy (kernel images)", Lz4, "x.lz4", func(t *testing.T) []byte {
			return compressWith(t, func(w io.Writer) (io.WriteCloser, error) {
				lw := lz4.NewWriter(w)
				return lw, lw.Apply(lz4.LegacyOption(true))
			})
		}},
		{"bzip2", Bzip2, "data.tar.bz2", func(*testing.T) []byte { return bzip2Plain }},
		{"uncompressed", None, "", func(*testing.T) []byte { return []byte(plain) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := tt.data(t)
			if got := Detect(data); got != tt.format {
				t.Errorf("Detect = %q, want %q", got, tt.format)
			}
			got, err := Sniff(bufio.NewReader(bytes.NewReader(data)))
			if err != nil || got != tt.format {
				t.Errorf("Sniff = %q, %v; want %q", got, err, tt.format)
			}
			if f, ok := ByExt(tt.file); f != tt.format || ok != (tt.format != None) {
				t.Errorf("ByExt(%q) = %q, %v; want %q", tt.file, f, ok, tt.format)
			}
			r, err := NewReader(bytes.NewReader(data), tt.format, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			out, err := io.ReadAll(r)
			if err != nil || string(out) != plain {
				t.Errorf("decompressed %q, %v; want %q", out, err, plain)
			}
		})
	}
}

func TestDetectShortAndUnknown(t *testing.T) {
	for _, head := range [][]byte{nil, {0x1f}, {0x28, 0xb5, 0x2f}, []byte("\x7fELF")} {
		if f := Detect(head); f != None {
			t.Errorf("Detect(% x) = %q, want none", head, f)
		}
	}
	if f, err := Sniff(bufio.NewReader(bytes.NewReader([]byte{0x1f, 0x8b}))); err != nil || f != Gzip {
		t.Errorf("Sniff of a 2-byte gzip head = %q, %v", f, err)
	}
	if f, ok := ByExt("data.tar.lzma"); ok || f != None {
		t.Errorf("ByExt(.lzma) = %q, %v; want none, false", f, ok)
	}
	if _, err := NewReader(bytes.NewReader(nil), "lzma", Options{}); err == nil {
		t.Error("NewReader(lzma) succeeded")
	}
}

func TestZstdMaxWindow(t *testing.T) {
	var b bytes.Buffer
	w, err := zstd.NewWriter(&b, zstd.WithWindowSize(1<<20), zstd.WithSingleSegment(false))
	if err != nil {
		t.Fatal(err)
	}
	w.Write(bytes.Repeat([]byte(plain), 1<<16))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := NewReader(&b, Zstd, Options{MaxWindow: 64 << 10})
	if err == nil {
		_, err = io.ReadAll(r)
		r.Close()
	}
	if !errors.Is(err, zstd.ErrWindowSizeExceeded) {
		t.Fatalf("err = %v, want zstd.ErrWindowSizeExceeded", err)
	}
}
