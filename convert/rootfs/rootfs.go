// Package rootfs writes a flattened image tree (convert/flatten) as the root filesystem image a
// c2vm guest boots from: squashfs (built by `mksquashfs -tar` from squashfs-tools), EROFS (pure Go, via
// github.com/erofs/go-erofs) or an initramfs fragment (a compressed newc cpio that the bundle
// appends to the initrd).
//
// Every writer is deterministic: the same tree and Options give byte-identical output. What each
// format can and cannot carry:
//
//   - squashfs keeps owners, modes (setuid/setgid/sticky), mtimes, devices, fifos, symlinks,
//     hardlinks and xattrs in the user., trusted. and security. namespaces (squashfs stores no
//     others). Timestamps are 32-bit: times outside 1970..2106 are clamped. With sqfstar 4.5.1
//     the root directory is owned by 0:0 whatever the tree says (it ignores -root-uid/-root-gid),
//     and the superblock time and root mtime are max(MkfsTime, newest mtime in the tree).
//     zstd runs at level 3 (mksquashfs -tar; sqfstar 4.5.1 rejects every compressor option).
//   - erofs keeps owners, modes, mtimes (with nanoseconds), devices, fifos, symlinks and xattrs.
//     go-erofs has no hardlink API, so each hardlink is written as a separate inode holding its own
//     copy of the content (same attributes as the target, link count 1).
//   - initrd keeps owners, modes, mtimes (seconds), devices, fifos, symlinks and hardlinks, but a
//     newc cpio cannot carry xattrs: they are dropped (file capabilities are lost).
//
// See docs/bundle-format.md (rootfs formats) and docs/performance.md.
package rootfs

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/c2vm/c2vm/bootcfg"
	"github.com/c2vm/c2vm/convert/flatten"
	"github.com/c2vm/c2vm/initgen"
)

// DefaultPrefix is where the initrd format places the root filesystem inside the cpio.
const DefaultPrefix = "c2vm/rootfs"

// Options tunes Write. The zero value is the default.
type Options struct {
	// Compression: squashfs takes zstd (default, level 3), zstd:LEVEL (1-22), gzip, lz4, xz or
	// none; initrd takes zstd
	// (default), gzip or none. erofs is always uncompressed and rejects anything but "" and none.
	Compression string
	// MkfsTime is the fixed filesystem timestamp (seconds since the epoch); 0 means the
	// SOURCE_DATE_EPOCH environment variable, or 0 when it is unset.
	MkfsTime int64
	// Prefix is the directory the initrd format places the rootfs under (relative to the
	// initramfs root); "" means DefaultPrefix.
	Prefix string
}

// Formats lists the supported formats (bootcfg's names), the default first.
func Formats() []string {
	return []string{bootcfg.FormatSquashfs, bootcfg.FormatErofs, bootcfg.FormatInitrd}
}

// Ext returns the bundle file name for a format's output: "rootfs.squashfs", "rootfs.erofs", or
// "rootfs.cpio" for initrd — a compressed newc cpio (zstd, gzip or uncompressed per Options) that
// the caller appends to initrd.img; the kernel detects the compression by its magic, so the name
// does not change with it. Unknown formats give "".
func Ext(format string) string {
	switch format {
	case bootcfg.FormatSquashfs:
		return "rootfs.squashfs"
	case bootcfg.FormatErofs:
		return "rootfs.erofs"
	case bootcfg.FormatInitrd:
		return "rootfs.cpio"
	}
	return ""
}

// Write writes tree t as a root filesystem image of the given format to the file out (created or
// truncated). On error the partial output is removed.
func Write(ctx context.Context, format string, t *flatten.Tree, out string, opts Options) error {
	if t == nil {
		return errors.New("rootfs: nil tree")
	}
	return write(ctx, format, newImage(t.Root, t.Entries, t), out, opts)
}

func write(ctx context.Context, format string, img *image, out string, opts Options) error {
	mtime, err := mkfsTime(opts.MkfsTime)
	if err != nil {
		return fmt.Errorf("rootfs %s: %w", format, err)
	}
	switch format {
	case bootcfg.FormatSquashfs:
		err = writeSquashfs(ctx, img, out, opts.Compression, mtime)
	case bootcfg.FormatErofs:
		err = writeErofs(ctx, img, out, opts.Compression, mtime)
	case bootcfg.FormatInitrd:
		err = writeInitrd(ctx, img, out, opts, mtime)
	default:
		return fmt.Errorf("rootfs: unknown format %q (want squashfs, erofs or initrd)", format)
	}
	if err != nil {
		_ = os.Remove(out)
		return fmt.Errorf("rootfs %s %s: %w", format, out, err)
	}
	return nil
}

// mkfsTime resolves the filesystem timestamp: the option, else SOURCE_DATE_EPOCH, else 0.
func mkfsTime(opt int64) (int64, error) {
	if opt != 0 {
		if opt < 0 {
			return 0, fmt.Errorf("negative mkfs time %d", opt)
		}
		return opt, nil
	}
	n, _, err := initgen.SourceDateEpoch()
	return n, err
}

// rootEntry returns the tree's root with a directory type; a zero Root means 0755 root:root.
func rootEntry(r flatten.Entry) flatten.Entry {
	if r.Type == 0 && r.Mode == 0 {
		r.Mode = 0o755
	}
	r.Type = tar.TypeDir
	r.Path = ""
	return r
}
