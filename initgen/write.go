package initgen

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/u-root/u-root/pkg/cpio"
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

// SourceDateEpoch reads $SOURCE_DATE_EPOCH, the one parser of it in c2vm: set says whether it is
// set; a value that is not a non-negative number of seconds is an error.
func SourceDateEpoch() (secs int64, set bool, err error) {
	v := os.Getenv(EnvSourceDateEpoch)
	if v == "" {
		return 0, false, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, false, fmt.Errorf("%s=%q: want seconds since 1970", EnvSourceDateEpoch, v)
	}
	return n, true, nil
}

func modTime() (time.Time, error) {
	n, _, err := SourceDateEpoch()
	if err != nil {
		return time.Time{}, fmt.Errorf("initrd: %w", err)
	}
	if n > 0xffffffff {
		return time.Time{}, fmt.Errorf("initrd: %s=%d: the cpio format holds 32-bit times", EnvSourceDateEpoch, n)
	}
	return time.Unix(n, 0), nil
}

func writeCpio(ctx context.Context, w io.Writer, files []File, mtime time.Time) error {
	cw := cpio.Newc.Writer(w)
	for i, f := range files {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := writeEntry(cw, f, uint64(i+1), mtime); err != nil {
			return fmt.Errorf("initrd: %s: %w", f.Path, err)
		}
	}
	if err := cpio.WriteTrailer(cw); err != nil {
		return fmt.Errorf("initrd: cpio trailer: %w", err)
	}
	return nil
}

// writeEntry writes one record owned by 0:0 (newc, as the kernel's initramfs unpacker reads it).
func writeEntry(cw cpio.RecordWriter, f File, ino uint64, mtime time.Time) error {
	info := cpio.Info{Ino: ino, Mode: uint64(f.Mode), NLink: 1, MTime: uint64(mtime.Unix()), Name: f.Path[1:]}
	switch {
	case f.isDir():
		info.NLink = 2
		return cw.WriteRecord(cpio.Record{Info: info})
	case f.isCharDev():
		info.Rmajor, info.Rminor = uint64(f.Major), uint64(f.Minor)
		return cw.WriteRecord(cpio.Record{Info: info})
	case f.isSymlink():
		info.FileSize = uint64(len(f.Data))
		return cw.WriteRecord(cpio.Record{Info: info, ReaderAt: bytes.NewReader(f.Data)})
	}
	if f.Mode&0o7777 == 0 {
		info.Mode |= 0o644
	}
	info.Mode |= modeReg
	if f.Source == "" {
		info.FileSize = uint64(len(f.Data))
		return cw.WriteRecord(cpio.Record{Info: info, ReaderAt: bytes.NewReader(f.Data)})
	}
	return writeSource(cw, info, f.Source)
}

// writeSource streams a host file; it must not change size while it is read.
func writeSource(cw cpio.RecordWriter, info cpio.Info, src string) error {
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
	info.FileSize = uint64(fi.Size())
	if err := cw.WriteRecord(cpio.Record{Info: info, ReaderAt: f}); err != nil { // closes f
		return fmt.Errorf("source %s: %w", src, err)
	}
	if fi2, err := os.Stat(src); err != nil || fi2.Size() != fi.Size() {
		return fmt.Errorf("source %s: changed size while read", src)
	}
	return nil
}
