package guestinit

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/c2vm/c2vm/internal/fileutil"
)

// CopyTree copies the directory tree at src into the existing directory dst as docker fills a new
// volume from the image: dst takes src's owner and mode, and every entry below keeps its type,
// owner, mode, times, xattrs, hardlinks, symlink targets and device numbers. Symlinks are copied,
// never followed.
func (l *Linux) CopyTree(src, dst string) error {
	links := map[[2]uint64]string{} // (dev, ino) of a multiply-linked file -> its first copy
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		if err := copyEntry(p, target, &st, rel == ".", links); err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Directory times last: filling a directory changes its mtime.
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		return setTimes(filepath.Join(dst, rel), &st)
	})
}

// CopyOwnership gives dst the owner of src, and its permission bits when the modes differ, as
// docker's copyOwnership does to a volume's root on every run: a chown only when the owner
// differs, a chmod to src's permission bits only (docker passes the raw st_mode to os.Chmod, which
// keeps no setuid, setgid or sticky bit from it).
func (l *Linux) CopyOwnership(src, dst string) error {
	var s, d unix.Stat_t
	if err := unix.Stat(src, &s); err != nil {
		return err
	}
	if err := unix.Stat(dst, &d); err != nil {
		return err
	}
	if s.Uid != d.Uid || s.Gid != d.Gid {
		if err := unix.Chown(dst, int(s.Uid), int(s.Gid)); err != nil {
			return err
		}
	}
	if s.Mode != d.Mode {
		return unix.Chmod(dst, s.Mode&0o777)
	}
	return nil
}

func copyEntry(src, dst string, st *unix.Stat_t, top bool, links map[[2]uint64]string) error {
	mode := st.Mode & unix.S_IFMT
	if mode != unix.S_IFDIR && st.Nlink > 1 {
		key := [2]uint64{st.Dev, st.Ino}
		if first, ok := links[key]; ok {
			return os.Link(first, dst)
		}
		links[key] = dst
	}
	var err error
	switch mode {
	case unix.S_IFDIR:
		if !top {
			err = unix.Mkdir(dst, 0o700)
		}
	case unix.S_IFREG:
		err = fileutil.CopyFile(src, dst, 0o600)
	case unix.S_IFLNK:
		var target string
		if target, err = os.Readlink(src); err == nil {
			err = os.Symlink(target, dst)
		}
	default: // devices, fifos, sockets
		err = unix.Mknod(dst, st.Mode, int(st.Rdev))
	}
	if err != nil {
		return err
	}
	if err := unix.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil {
		return err
	}
	if err := copyXattrs(src, dst); err != nil {
		return err
	}
	if mode != unix.S_IFLNK {
		// After chown (which clears setuid bits) and xattrs (security.capability).
		if err := unix.Chmod(dst, st.Mode&0o7777); err != nil {
			return err
		}
	}
	if mode == unix.S_IFDIR {
		return nil
	}
	return setTimes(dst, st)
}

// copyXattrs copies every extended attribute the destination filesystem takes.
func copyXattrs(src, dst string) error {
	xs, err := fileutil.Lxattrs(src)
	if err != nil {
		return err
	}
	for name, val := range xs {
		if err := unix.Lsetxattr(dst, name, []byte(val), 0); err != nil && !errors.Is(err, unix.ENOTSUP) {
			return fmt.Errorf("xattr %s: %w", name, err)
		}
	}
	return nil
}

func setTimes(p string, st *unix.Stat_t) error {
	ts := []unix.Timespec{st.Atim, st.Mtim}
	return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
}
