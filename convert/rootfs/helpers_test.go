package rootfs

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/c2vm/c2vm/convert/flatten"
	"github.com/c2vm/c2vm/internal/testkit/imagetest"
	"golang.org/x/sys/unix"
)

// capXattr is a security.capability value (v2, cap_net_raw permitted+effective).
const capXattr = "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"

// fixtureLayers are two layers covering every entry type and attribute the writers must keep.
func fixtureLayers(t testing.TB) [][]byte {
	t.Helper()
	at := func(e imagetest.TarEntry, uid, gid int, mode int64, sec int64) imagetest.TarEntry {
		e.Hdr.Uid, e.Hdr.Gid, e.Hdr.Mode = uid, gid, mode
		e.Hdr.ModTime = time.Unix(sec, 0)
		return e
	}
	ping := at(imagetest.TarFile("bin/ping", "ping binary\n"), 0, 0, 0o4755, 1600000001)
	ping.Hdr.PAXRecords = map[string]string{"SCHILY.xattr.security.capability": capXattr, "SCHILY.xattr.user.note": "hello"}
	fifo := imagetest.TarEntry{Hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "run/fifo", Mode: 0o620, Uid: 1000, Gid: 1000}}
	null := imagetest.TarEntry{Hdr: tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3}}
	vda := imagetest.TarEntry{Hdr: tar.Header{Typeflag: tar.TypeBlock, Name: "dev/vda", Mode: 0o660, Gid: 6, Devmajor: 254, Devminor: 16}}
	l1 := imagetest.TarLayer(t,
		at(imagetest.TarDir("bin"), 0, 0, 0o755, 1600000000),
		ping,
		imagetest.TarSymlink("bin/sh", "busybox"),
		at(imagetest.TarFile("bin/busybox", "busybox\x00binary"), 0, 0, 0o755, 1600000002),
		imagetest.TarDir("dev"), null, vda,
		imagetest.TarDir("etc"),
		imagetest.TarFile("etc/passwd", "root:x:0:0::/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n"),
		imagetest.TarSymlink("etc/mtab", "/proc/self/mounts"),
		at(imagetest.TarDir("home/user"), 1000, 1000, 0o700, 1600000003),
		at(imagetest.TarFile("home/user/secret", "s3cret"), 1000, 1000, 0o600, 1600000004),
		at(imagetest.TarFile("home/user/empty", ""), 1000, 100, 0o640, 1600000005),
		imagetest.TarDir("run"), fifo,
		at(imagetest.TarDir("tmp"), 0, 0, 0o1777, 1600000006),
		at(imagetest.TarFile("usr/bin/sudo", "sudo"), 0, 0, 0o6755, 1600000007),
	)
	// Name and target classes: a tar writer puts long (> 100 bytes) or non-ASCII names and link
	// targets in PAX records, which mksquashfs 4.5.1 once mangled (leading "/" and "../" dropped).
	long := strings.Repeat("long-directory-name/", 6)
	classes := []imagetest.TarEntry{
		imagetest.TarDir("usr/share/ca"),
		imagetest.TarFile("usr/share/ca/Főtanúsítvány.crt", "cert\n"),
		imagetest.TarSymlink("usr/share/ca/abs-nonascii", "/usr/share/ca/Főtanúsítvány.crt"),
		imagetest.TarSymlink("usr/share/ca/rel-nonascii", "../ca/Főtanúsítvány.crt"),
		imagetest.TarSymlink("usr/share/ca/abs-long", "/"+long+"target"),
		imagetest.TarSymlink("usr/share/ca/rel-long", "../../"+long+"target"),
		imagetest.TarSymlink("usr/share/ca/dot", "./Főtanúsítvány.crt"),
		imagetest.TarSymlink("usr/share/ca/ünïcödé-name", "/etc/passwd"),
		imagetest.TarFile("usr/share/"+long+"file-with-a-long-name-"+strings.Repeat("x", 60), "long\n"),
		imagetest.TarSymlink("usr/share/"+long+"symlink-with-a-long-name-"+strings.Repeat("y", 60), "/"+long+"z"),
		imagetest.TarHardlink("usr/share/ca/hard-ünï-"+strings.Repeat("h", 100), "usr/share/ca/Főtanúsítvány.crt"),
	}
	l2 := imagetest.TarLayer(t,
		imagetest.TarHardlink("bin/ping6", "bin/ping"),
		imagetest.TarHardlink("usr/bin/sudoedit", "usr/bin/sudo"),
		imagetest.TarHardlink("usr/bin/sudoedit2", "usr/bin/sudo"),
		at(imagetest.TarFile("etc/hostname", "c2vm\n"), 0, 0, 0o644, 1600000008),
	)
	return [][]byte{l1, l2, imagetest.TarLayer(t, classes...)}
}

// flattenLayers builds a tree from uncompressed tar layers.
func flattenLayers(t testing.TB, layers [][]byte) *flatten.Tree {
	t.Helper()
	var ls []flatten.Layer
	for i, b := range layers {
		ls = append(ls, flatten.Layer{
			Digest: "sha256:layer" + string(rune('0'+i)),
			Open: func(context.Context) (io.ReadCloser, error) {
				return io.NopCloser(bytes.NewReader(b)), nil
			},
		})
	}
	tree, err := flatten.Flatten(context.Background(), ls, flatten.Options{SpoolDir: t.TempDir()})
	if err != nil {
		t.Fatalf("flatten: %v", err)
	}
	t.Cleanup(func() { _ = tree.Close() })
	return tree
}

// file is one name of a listing, the attributes compared across formats.
type file struct {
	Type         byte // tar typeflag; hardlinks appear as the type of their target
	Mode         int64
	UID, GID     int
	Mtime        int64 // seconds
	Target       string
	Content      string
	Major, Minor int64
	Xattrs       map[string]string
	LinkOf       string // for a hardlink (where the format keeps them): the first name of the inode
}

// want lists a tree as every format should show it; withXattrs keeps xattrs.
func want(t *testing.T, tree *flatten.Tree, withXattrs bool) map[string]file {
	t.Helper()
	byPath := map[string]*flatten.Entry{}
	out := map[string]file{}
	for _, e := range tree.Entries {
		byPath[e.Path] = e
		src, linkOf := e, ""
		if e.Type == tar.TypeLink {
			src, linkOf = byPath[e.Linkname], e.Linkname
		}
		f := file{Type: src.Type, Mode: src.Mode, UID: src.UID, GID: src.GID, Mtime: src.ModTime.Unix(),
			Target: src.Linkname, Major: src.Devmajor, Minor: src.Devminor, LinkOf: linkOf}
		if src.Type != tar.TypeSymlink {
			f.Target = ""
		}
		if src.Type == tar.TypeReg {
			b, err := tree.ReadFile(src.Path)
			if err != nil {
				t.Fatal(err)
			}
			f.Content = string(b)
		}
		if withXattrs && len(src.Xattrs) > 0 {
			f.Xattrs = src.Xattrs
		}
		out[e.Path] = f
	}
	return out
}

// compare reports differences between want and got; ignoreLinkOf drops hardlink identity.
func compare(t *testing.T, want, got map[string]file, ignoreLinkOf bool) {
	t.Helper()
	for p, w := range want {
		g, ok := got[p]
		if !ok {
			t.Errorf("%s: missing from image", p)
			continue
		}
		if ignoreLinkOf {
			w.LinkOf, g.LinkOf = "", ""
		}
		if !equalFile(w, g) {
			t.Errorf("%s:\n got  %+v\n want %+v", p, g, w)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("%s: in image but not in tree", p)
		}
	}
}

func equalFile(a, b file) bool {
	if len(a.Xattrs) != len(b.Xattrs) {
		return false
	}
	for k, v := range a.Xattrs {
		if b.Xattrs[k] != v {
			return false
		}
	}
	a.Xattrs, b.Xattrs = nil, nil
	return reflect.DeepEqual(a, b)
}

// listDir lists an extracted tree with lstat (used when running as root, where extraction
// keeps owners and devices). Hardlinks are reported by inode number.
func listDir(t *testing.T, root string) map[string]file {
	t.Helper()
	out := map[string]file{}
	firstName := map[uint64]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		f := file{Mode: int64(st.Mode & 0o7777), UID: int(st.Uid), GID: int(st.Gid), Mtime: st.Mtim.Sec, Xattrs: xattrs(t, p)}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			f.Type = tar.TypeDir
		case unix.S_IFLNK:
			f.Type = tar.TypeSymlink
			f.Target, _ = os.Readlink(p)
		case unix.S_IFCHR, unix.S_IFBLK:
			f.Type = tar.TypeChar
			if st.Mode&unix.S_IFMT == unix.S_IFBLK {
				f.Type = tar.TypeBlock
			}
			f.Major, f.Minor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
		case unix.S_IFIFO:
			f.Type = tar.TypeFifo
		default:
			f.Type = tar.TypeReg
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			f.Content = string(b)
			if st.Nlink > 1 {
				if first, ok := firstName[st.Ino]; ok {
					f.LinkOf = first
				} else {
					firstName[st.Ino] = rel
				}
			}
		}
		out[rel] = f
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func xattrs(t *testing.T, p string) map[string]string {
	t.Helper()
	buf := make([]byte, 4096)
	n, err := unix.Llistxattr(p, buf)
	if err != nil || n == 0 {
		return nil
	}
	out := map[string]string{}
	for _, name := range bytes.Split(bytes.TrimRight(buf[:n], "\x00"), []byte{0}) {
		v := make([]byte, 4096)
		m, err := unix.Lgetxattr(p, string(name), v)
		if err != nil {
			t.Fatalf("getxattr %s %s: %v", p, name, err)
		}
		out[string(name)] = string(v[:m])
	}
	return out
}

// needTool skips when an external tool is missing, except under CI=true where it fails.
func needTool(t testing.TB, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not installed (CI=true)", name)
		}
		t.Skipf("%s not installed", name) // not in CI: fails above
	}
}
