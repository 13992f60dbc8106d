package initgen

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// guestArchive is a guest archive as the build makes it, compressed by the Go encoder at window.
func guestArchive(t *testing.T, window int) []byte {
	t.Helper()
	var raw bytes.Buffer
	if err := WriteGuest(context.Background(), &raw, Blob{Data: []byte("init binary")}, Blob{Data: []byte("#!runc binary")}); err != nil {
		t.Fatal(err)
	}
	var z bytes.Buffer
	zw, err := zstd.NewWriter(&z, zstd.WithWindowSize(window), zstd.WithSingleSegment(false))
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(raw.Bytes())
	zw.Close()
	return z.Bytes()
}

// TestWriteGuest: an initrd made with the guest archive holds the same files as one made from
// the init and runc, whatever the compression, and starts with the archive's bytes under zstd.
func TestWriteGuest(t *testing.T) {
	k := fakeKernel(t)
	guest := guestArchive(t, 8<<20)
	for _, compression := range []string{Zstd, Gzip, None} {
		t.Run(compression, func(t *testing.T) {
			plain := testOptions(t, k)
			plain.Init, plain.Runc = Blob{Data: []byte("init binary")}, Blob{Data: []byte("#!runc binary")}
			plain.Compression = compression
			withGuest := plain
			withGuest.Init, withGuest.Runc, withGuest.Guest = Blob{}, Blob{}, Blob{Data: guest}
			b := write(t, withGuest)
			if compression == Zstd && !bytes.HasPrefix(b, guest) {
				t.Error("the zstd initrd does not start with the guest archive as is")
			}
			want, got := byName(readInitrd(t, write(t, plain), compression)), byName(readInitrd(t, b, compression))
			for name, e := range want {
				if g, ok := got[name]; !ok || g != e {
					t.Errorf("%s: %+v with the guest archive, want %+v", name, g, e)
				}
			}
			if len(got) != len(want) {
				t.Errorf("%d entries with the guest archive, %d without", len(got), len(want))
			}
		})
	}
}

func TestWriteGuestErrors(t *testing.T) {
	k := fakeKernel(t)
	for _, tc := range []struct {
		name string
		mod  func(*Options)
		want string
	}{
		{"and an init", func(o *Options) { o.Runc = Blob{} }, "one or the other"},
		{"not zstd", func(o *Options) { o.Init, o.Runc, o.Guest = Blob{}, Blob{}, Blob{Data: []byte("070701 plain cpio")} }, "not zstd"},
		// A frame header asking for a 32 MiB window (log 25), then an empty last block.
		{"window too large", func(o *Options) {
			o.Init, o.Runc, o.Guest = Blob{}, Blob{}, Blob{Data: []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 15 << 3, 0x01, 0x00, 0x00}}
		}, "window 33554432"},
		// A single-segment frame of 16 MiB content (FCS 4 bytes): the window is the content.
		{"single segment", func(o *Options) {
			o.Init, o.Runc, o.Guest = Blob{}, Blob{}, Blob{Data: []byte{0x28, 0xb5, 0x2f, 0xfd, 0xa0, 0x00, 0x00, 0x00, 0x01, 0x01, 0x00, 0x00}}
		}, "window 16777216"},
		{"not an archive", func(o *Options) {
			var z bytes.Buffer
			zw, _ := zstd.NewWriter(&z, zstd.WithWindowSize(1<<20))
			zw.Write([]byte("not a cpio archive"))
			zw.Close()
			o.Init, o.Runc, o.Guest = Blob{}, Blob{}, Blob{Data: z.Bytes()}
		}, "not a newc cpio archive"},
		{"missing file", func(o *Options) {
			o.Init, o.Runc, o.Guest = Blob{}, Blob{}, Blob{Source: "/nonexistent/guest.cpio.zst"}
		}, "/nonexistent/guest.cpio.zst"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := testOptions(t, k)
			opts.Guest = Blob{Data: guestArchive(t, 1<<20)}
			tc.mod(&opts)
			if err := Write(context.Background(), io.Discard, opts); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}
