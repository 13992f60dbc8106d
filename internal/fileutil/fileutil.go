// Package fileutil holds the file helpers the host CLI and the guest init share.
//
// See docs/architecture.md.
package fileutil

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// Control runs fn on f's descriptor without f.Fd(), which would switch f to blocking mode and keep
// Close from interrupting a pending Read (the relays of terminals and serial ports rely on that).
func Control(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// CopyFile copies the regular file src to the new file dst (created with perm, never replacing
// one), streaming.
func CopyFile(src, dst string, perm os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// Lxattrs returns the extended attributes of path itself (a symlink's own), by name; a
// filesystem without xattrs gives none.
func Lxattrs(path string) (map[string]string, error) {
	buf := make([]byte, 64*1024)
	n, err := unix.Llistxattr(path, buf)
	if errors.Is(err, unix.ENOTSUP) || n == 0 {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	val := make([]byte, 64*1024)
	for _, name := range strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
		vn, err := unix.Lgetxattr(path, name, val)
		if err != nil {
			return nil, fmt.Errorf("xattr %s: %w", name, err)
		}
		out[name] = string(val[:vn])
	}
	return out, nil
}
