package guestinit

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestCopyTree fills a directory as docker fills a new volume: every type, mode bit, hardlink,
// symlink target, time and xattr, and the top directory's own mode.
func TestCopyTree(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Chmod(src, 0o750))
	must(os.MkdirAll(filepath.Join(src, "sub/deeper"), 0o755))
	must(os.WriteFile(filepath.Join(src, "sub/file"), []byte("content"), 0o640))
	must(os.WriteFile(filepath.Join(src, "suid"), []byte("#!"), 0o644))
	must(os.Chmod(filepath.Join(src, "suid"), os.ModeSetuid|0o755))
	must(os.Link(filepath.Join(src, "sub/file"), filepath.Join(src, "hard")))
	must(os.Symlink("../abs/Főtanúsítvány", filepath.Join(src, "sub/link")))
	must(unix.Mkfifo(filepath.Join(src, "fifo"), 0o600))
	must(os.Chmod(filepath.Join(src, "fifo"), 0o620))
	xattr := unix.Lsetxattr(filepath.Join(src, "sub/file"), "user.note", []byte("hi"), 0) == nil
	old := time.Unix(1600000000, 0)
	must(os.Chtimes(filepath.Join(src, "sub/file"), old, old))
	must(os.Chtimes(filepath.Join(src, "sub"), old, old))

	must((&Linux{}).CopyTree(src, dst))

	for rel, want := range map[string]os.FileMode{
		".": os.ModeDir | 0o750, "sub": os.ModeDir | 0o755, "sub/deeper": os.ModeDir | 0o755,
		"sub/file": 0o640, "suid": os.ModeSetuid | 0o755, "fifo": os.ModeNamedPipe | 0o620,
	} {
		fi, err := os.Lstat(filepath.Join(dst, rel))
		if err != nil || fi.Mode() != want {
			t.Errorf("%s: %v, %v; want mode %v", rel, fi.Mode(), err, want)
		}
	}
	if l, err := os.Readlink(filepath.Join(dst, "sub/link")); err != nil || l != "../abs/Főtanúsítvány" {
		t.Errorf("symlink -> %q, %v", l, err)
	}
	a, _ := os.Stat(filepath.Join(dst, "sub/file"))
	b, _ := os.Stat(filepath.Join(dst, "hard"))
	if !os.SameFile(a, b) || a.Sys().(*syscall.Stat_t).Nlink != 2 {
		t.Error("hardlinks were not kept")
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "hard")); string(b) != "content" {
		t.Errorf("content %q", b)
	}
	for _, rel := range []string{"sub/file", "sub"} {
		if fi, _ := os.Stat(filepath.Join(dst, rel)); !fi.ModTime().Equal(old) {
			t.Errorf("%s mtime %v, want %v", rel, fi.ModTime(), old)
		}
	}
	if xattr {
		buf := make([]byte, 16)
		n, err := unix.Lgetxattr(filepath.Join(dst, "sub/file"), "user.note", buf)
		if err != nil || string(buf[:n]) != "hi" {
			t.Errorf("xattr %q, %v", buf[:n], err)
		}
	}
}

// TestCopyOwnership gives a volume root the image directory's owner and permission bits, without
// its sticky bit (as docker's os.Chmod of the raw mode), and changes nothing when they agree.
func TestCopyOwnership(t *testing.T) {
	tests := []struct {
		name     string
		src, dst os.FileMode
		want     os.FileMode
	}{
		{"mode", 0o700, 0o755, 0o700},
		{"sticky dropped", os.ModeSticky | 0o777, 0o755, 0o777},
		{"same", 0o750, 0o750, 0o750},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, dst := t.TempDir(), t.TempDir()
			if err := os.Chmod(src, tt.src); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dst, tt.dst); err != nil {
				t.Fatal(err)
			}
			uid, gid := os.Getuid(), os.Getgid()
			if uid == 0 { // root can give the volume another owner, as the init does
				uid, gid = 999, 998
				if err := os.Chown(src, uid, gid); err != nil {
					t.Fatal(err)
				}
			}
			if err := (&Linux{}).CopyOwnership(src, dst); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(dst)
			if err != nil {
				t.Fatal(err)
			}
			st := fi.Sys().(*syscall.Stat_t)
			if fi.Mode() != os.ModeDir|tt.want || int(st.Uid) != uid || int(st.Gid) != gid {
				t.Errorf("volume root %v %d:%d, want %v %d:%d", fi.Mode(), st.Uid, st.Gid, os.ModeDir|tt.want, uid, gid)
			}
		})
	}
}
