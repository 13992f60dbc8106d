package initgen

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"

	"github.com/klauspost/compress/zstd"
)

// GuestArchiveWindow is the largest zstd window a guest archive may use: the kernel's initramfs
// decompressor allocates it up front (measured: 8 MiB leaves the smallest c2vm-kernel guest at
// 52 MiB, as 4 MiB did).
const GuestArchiveWindow = 8 << 20

// maxGuestArchive bounds a decompressed guest archive (init and runc are ~13 MB).
const maxGuestArchive = 256 << 20

// WriteGuest writes the guest archive, uncompressed: /init, /sbin/runc and /dev/null, as every
// initrd starts with them. The build compresses it once with `zstd -19` (a ratio the Go encoder
// does not reach: 3.8 MB against 4.3 at its best level for init and runc), and Options.Guest carries it into every
// initrd as is.
func WriteGuest(ctx context.Context, w io.Writer, init, runc Blob) error {
	files, err := guestFiles(init, runc)
	if err != nil {
		return err
	}
	return WriteFiles(ctx, w, files, None)
}

// writeGuestArchive copies the zstd guest archive to w, recompressed when compression is not
// zstd. The archive must be zstd frames whose window fits GuestArchiveWindow.
func writeGuestArchive(w io.Writer, guest Blob, compression string) error {
	data := guest.Data
	if data == nil {
		var err error
		if data, err = os.ReadFile(guest.Source); err != nil {
			return fmt.Errorf("initrd: guest archive: %w", err)
		}
	}
	d, err := openGuestArchive(data)
	if err != nil {
		return err
	}
	defer d.Close()
	if compression == "" || compression == Zstd {
		_, err := w.Write(data)
		return err
	}
	cw, err := NewCompressor(w, compression)
	if err != nil {
		return err
	}
	if _, err := io.Copy(cw, io.LimitReader(d, maxGuestArchive)); err != nil {
		cw.Close()
		return fmt.Errorf("initrd: guest archive: %w", err)
	}
	return cw.Close()
}

// openGuestArchive checks that the kernel can unpack a guest archive — zstd, with a window of at
// most GuestArchiveWindow (the first frame's: the build writes one), holding a newc cpio archive —
// decoding only its first block, and returns a decoder for the whole of it.
func openGuestArchive(data []byte) (*zstd.Decoder, error) {
	var h zstd.Header
	if err := h.Decode(data); err != nil {
		return nil, fmt.Errorf("initrd: guest archive: not zstd (%w): rebuild it with make build", err)
	}
	window := h.WindowSize
	if h.SingleSegment { // the kernel's window is then the whole content
		window = h.FrameContentSize
	}
	if window > GuestArchiveWindow {
		return nil, fmt.Errorf("initrd: guest archive: zstd window %d bytes, more than the %d small guests can spare: compress it with --zstd=wlog=23 from a pipe", window, GuestArchiveWindow)
	}
	d, err := zstd.NewReader(bytes.NewReader(data), zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxGuestArchive))
	if err != nil {
		return nil, fmt.Errorf("initrd: guest archive: %w", err)
	}
	magic := make([]byte, 6)
	if _, err := io.ReadFull(d, magic); err != nil || !bytes.Equal(magic, []byte("070701")) {
		d.Close()
		return nil, fmt.Errorf("initrd: guest archive: not a newc cpio archive")
	}
	// A fresh decoder for the caller: the magic is part of the archive.
	if err := d.Reset(bytes.NewReader(data)); err != nil {
		d.Close()
		return nil, fmt.Errorf("initrd: guest archive: %w", err)
	}
	return d, nil
}
