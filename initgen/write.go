package initgen

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/cavaliergopher/cpio"
)

// EnvSourceDateEpoch is the reproducible-builds variable; when set, it is every entry's mtime.
const EnvSourceDateEpoch = "SOURCE_DATE_EPOCH"

// WriteFiles writes files (plus their missing parent directories) as a compressed newc cpio
// archive to w: sorted by path, parents first, owned by 0:0, mtime 0 or $SOURCE_DATE_EPOCH.
// It is used for the initrd and for run-time archives appended to it (the kernel unpacks
// concatenated archives in order, later files replacing earlier ones). compression is "zstd"
// (default when empty) or "gzip".
func WriteFiles(ctx context.Context, w io.Writer, files []File, compression string) error {
	mtime, err := modTime()
	if err != nil {
		return err
	}
	planned, err := plan(files)
	if err != nil {
		return err
	}
	cw, err := NewCompressor(w, compression)
	if err != nil {
		return err
	}
	if err := writeCpio(ctx, cw, planned, mtime); err != nil {
		cw.Close()
		return err
	}
	if err := cw.Close(); err != nil {
		return fmt.Errorf("initrd: finish %s stream: %w", compression, err)
	}
	return nil
}

func modTime() (time.Time, error) {
	v := os.Getenv(EnvSourceDateEpoch)
	if v == "" {
		return time.Unix(0, 0), nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > 0xffffffff {
		return time.Time{}, fmt.Errorf("initrd: %s=%q: want seconds since 1970 that fit in 32 bits", EnvSourceDateEpoch, v)
	}
	return time.Unix(n, 0), nil
}

func writeCpio(ctx context.Context, w io.Writer, files []File, mtime time.Time) error {
	cw := cpio.NewWriter(w)
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := writeEntry(cw, f, mtime); err != nil {
			return fmt.Errorf("initrd: %s: %w", f.Path, err)
		}
	}
	if err := cw.Close(); err != nil {
		return fmt.Errorf("initrd: cpio trailer: %w", err)
	}
	return nil
}

func writeEntry(cw *cpio.Writer, f File, mtime time.Time) error {
	h := &cpio.Header{Name: f.Path[1:], Mode: cpio.FileMode(f.Mode), ModTime: mtime, Links: 1}
	switch {
	case f.isDir():
		h.Links = 2
		return cw.WriteHeader(h)
	case f.isSymlink():
		h.Size = int64(len(f.Data))
		return writeData(cw, h, f.Data)
	}
	if f.Mode&0o7777 == 0 {
		h.Mode |= 0o644
	}
	h.Mode |= modeReg
	if f.Source == "" {
		h.Size = int64(len(f.Data))
		return writeData(cw, h, f.Data)
	}
	return writeSource(cw, h, f.Source)
}

func writeData(cw *cpio.Writer, h *cpio.Header, data []byte) error {
	if err := cw.WriteHeader(h); err != nil {
		return err
	}
	_, err := cw.Write(data)
	return err
}

// writeSource streams a host file; it must not change size while it is read.
func writeSource(cw *cpio.Writer, h *cpio.Header, src string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("source %s: not a regular file", src)
	}
	h.Size = fi.Size()
	if err := cw.WriteHeader(h); err != nil {
		return err
	}
	n, err := io.Copy(cw, f)
	if err != nil {
		return fmt.Errorf("source %s: %w", src, err)
	}
	if n != h.Size {
		return fmt.Errorf("source %s: changed size while read (%d of %d bytes)", src, n, h.Size)
	}
	return nil
}
