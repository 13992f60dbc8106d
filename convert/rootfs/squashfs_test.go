package rootfs

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/c2vm/c2vm/bootcfg"
	"github.com/c2vm/c2vm/internal/testkit/imagetest"
)

// listSquashfs lists an image through `unsquashfs -pf` (a pseudo-file dump with full attributes,
// hardlinks and contents), which works unprivileged.
func listSquashfs(t *testing.T, img string) map[string]file {
	t.Helper()
	pf := filepath.Join(t.TempDir(), "pseudo")
	if out, err := exec.Command("unsquashfs", "-pf", pf, img).CombinedOutput(); err != nil {
		t.Fatalf("unsquashfs -pf: %v\n%s", err, out)
	}
	b, err := os.ReadFile(pf)
	if err != nil {
		t.Fatal(err)
	}
	const marker = "# START OF DATA - DO NOT MODIFY\n#\n"
	i := bytes.Index(b, []byte(marker))
	if i < 0 {
		t.Fatalf("no data marker in pseudo file:\n%s", b)
	}
	data := b[i+len(marker):]
	out := map[string]file{}
	for _, line := range strings.Split(string(b[:i]), "\n") {
		if line == "" || line == "#" || strings.HasPrefix(line, "/ ") {
			continue
		}
		name, typ, rest := cut3(line)
		if typ == "L" {
			f := out[rest]
			f.LinkOf = rest
			out[name] = f
			continue
		}
		fields := strings.SplitN(rest, " ", 5)
		f := file{Mtime: atoi(t, fields[0]), Mode: octal(t, fields[1]), UID: int(atoi(t, fields[2])), GID: int(atoi(t, fields[3]))}
		var extra []string
		if len(fields) == 5 {
			extra = strings.Fields(fields[4])
		}
		switch typ {
		case "D":
			f.Type = tar.TypeDir
		case "S":
			f.Type, f.Target = tar.TypeSymlink, fields[4]
		case "I":
			f.Type = tar.TypeFifo
		case "C", "B":
			f.Type = tar.TypeChar
			if typ == "B" {
				f.Type = tar.TypeBlock
			}
			f.Major, f.Minor = atoi(t, extra[0]), atoi(t, extra[1])
		case "R":
			f.Type = tar.TypeReg
			size, off := atoi(t, extra[0]), atoi(t, extra[1])
			f.Content = string(data[off : off+size])
		default:
			t.Fatalf("unexpected pseudo line %q", line)
		}
		out[name] = f
	}
	return out
}

func cut3(line string) (string, string, string) {
	name, rest, _ := strings.Cut(line, " ")
	typ, rest, _ := strings.Cut(rest, " ")
	return name, typ, rest
}

func atoi(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("number %q: %v", s, err)
	}
	return n
}

func octal(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 8, 64)
	if err != nil {
		t.Fatalf("octal %q: %v", s, err)
	}
	return n
}

func TestSquashfs(t *testing.T) {
	needTool(t, "mksquashfs")
	needTool(t, "unsquashfs")
	tree := flattenLayers(t, fixtureLayers(t))
	tree.Root.Mode, tree.Root.UID, tree.Root.GID = 0o751, 0, 10
	for _, comp := range []string{"", "zstd:19", "gzip", "lz4", "xz", "none"} {
		t.Run("comp="+comp, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "rootfs.squashfs")
			if err := Write(context.Background(), bootcfg.FormatSquashfs, tree, img, Options{Compression: comp, MkfsTime: 1700000000}); err != nil {
				t.Fatal(err)
			}
			compare(t, want(t, tree, false), listSquashfs(t, img), false)
			out, err := exec.Command("unsquashfs", "-s", img).CombinedOutput()
			if err != nil {
				t.Fatalf("unsquashfs -s: %v\n%s", err, out)
			}
			wantComp := map[string]string{"": "zstd", "zstd:19": "zstd", "none": "gzip"}[comp]
			if wantComp == "" {
				wantComp = comp
			}
			if !strings.Contains(string(out), "Compression "+wantComp) {
				t.Errorf("superblock does not say compression %s:\n%s", wantComp, out)
			}
			if !strings.Contains(string(out), "Number of xattr ids 1") {
				t.Errorf("want one xattr id:\n%s", out)
			}
		})
	}
}

// TestSquashfsRootAndTime checks the root's attributes and the mkfs time, which -pf shows.
func TestSquashfsRootAndTime(t *testing.T) {
	needTool(t, "mksquashfs")
	tree := flattenLayers(t, fixtureLayers(t))
	tree.Root.Mode, tree.Root.UID, tree.Root.GID = 0o751, 3, 10
	tree.Root.ModTime = tree.Entries[0].ModTime
	t.Setenv("SOURCE_DATE_EPOCH", "1234567890") // older than the tree: must not clamp file times
	img := filepath.Join(t.TempDir(), "rootfs.squashfs")
	if err := Write(context.Background(), bootcfg.FormatSquashfs, tree, img, Options{}); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("unsquashfs", "-mkfs-time", img).Output()
	if err != nil || strings.TrimSpace(string(out)) != "1600000008" {
		t.Errorf("mkfs time %q, %v; want 1600000008 (the newest mtime)", out, err)
	}
	pf := filepath.Join(t.TempDir(), "pseudo")
	if out, err := exec.Command("unsquashfs", "-pf", pf, img).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	b, _ := os.ReadFile(pf)
	// The root's time is the newest in the tree (SOURCE_DATE_EPOCH is older); sqfstar 4.5.1
	// ignores -root-uid/-root-gid.
	wantRoot := "/ D 1600000008 751 0 0\n"
	if !strings.HasPrefix(string(b), wantRoot) {
		t.Errorf("root line: got %q, want %q", strings.SplitN(string(b), "\n", 2)[0], wantRoot)
	}
	// File times are kept, not clamped to SOURCE_DATE_EPOCH.
	if got := listSquashfs(t, img)["etc/hostname"].Mtime; got != 1600000008 {
		t.Errorf("etc/hostname mtime %d, want 1600000008", got)
	}
}

// TestSquashfsXattrs extracts the image: as root everything is compared through lstat (owners,
// devices, xattrs incl. security.capability, hardlinks as shared inodes); unprivileged only
// bin/ping with its user xattrs.
func TestSquashfsXattrs(t *testing.T) {
	needTool(t, "mksquashfs")
	needTool(t, "unsquashfs")
	tree := flattenLayers(t, fixtureLayers(t))
	img := filepath.Join(t.TempDir(), "rootfs.squashfs")
	if err := Write(context.Background(), bootcfg.FormatSquashfs, tree, img, Options{}); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "x")
	if os.Geteuid() == 0 {
		if out, err := exec.Command("unsquashfs", "-q", "-n", "-d", dir, img).CombinedOutput(); err != nil {
			t.Fatalf("unsquashfs: %v\n%s", err, out)
		}
		compare(t, want(t, tree, true), listDir(t, dir), false)
		return
	}
	if out, err := exec.Command("unsquashfs", "-q", "-n", "-u", "-d", dir, img, "bin/ping").CombinedOutput(); err != nil {
		t.Fatalf("unsquashfs: %v\n%s", err, out)
	}
	got := xattrs(t, filepath.Join(dir, "bin/ping"))
	if got["user.note"] != "hello" {
		t.Errorf("bin/ping xattrs %q, want user.note=hello", got)
	}
}

func TestSquashfsErrors(t *testing.T) {
	tree := flattenLayers(t, fixtureLayers(t))
	t.Run("missing mksquashfs", func(t *testing.T) {
		t.Setenv("PATH", t.TempDir())
		out := filepath.Join(t.TempDir(), "img")
		err := Write(context.Background(), bootcfg.FormatSquashfs, tree, out, Options{})
		if err == nil || !strings.Contains(err.Error(), "mksquashfs not found: install Debian package squashfs-tools") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("mksquashfs fails", func(t *testing.T) {
		needTool(t, "mksquashfs")
		out := filepath.Join(t.TempDir(), "no-such-dir", "img")
		err := Write(context.Background(), bootcfg.FormatSquashfs, tree, out, Options{})
		if err == nil || !strings.Contains(err.Error(), "mksquashfs: exit status") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("canceled", func(t *testing.T) {
		needTool(t, "mksquashfs")
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		out := filepath.Join(t.TempDir(), "img")
		err := Write(ctx, bootcfg.FormatSquashfs, tree, out, Options{})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want context.Canceled", err)
		}
		if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("partial output left behind: %v", err)
		}
	})
	t.Run("xattrs on a long symlink", func(t *testing.T) {
		lnk := imagetest.TarSymlink("lnk", "/"+strings.Repeat("t", 120))
		lnk.Hdr.PAXRecords = map[string]string{"SCHILY.xattr.security.selinux": "system_u:object_r:bin_t:s0"}
		bad := flattenLayers(t, [][]byte{imagetest.TarLayer(t, lnk)})
		err := Write(context.Background(), bootcfg.FormatSquashfs, bad, filepath.Join(t.TempDir(), "img"), Options{})
		if err == nil || !strings.Contains(err.Error(), "symlink lnk has xattrs") || !strings.Contains(err.Error(), "--rootfs-format erofs") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("bad compression", func(t *testing.T) {
		for _, bad := range []string{"lzma", "zstd:0", "zstd:23", "zstd:x"} {
			err := Write(context.Background(), bootcfg.FormatSquashfs, tree, filepath.Join(t.TempDir(), "img"), Options{Compression: bad})
			if err == nil || !strings.Contains(err.Error(), `unknown squashfs compression "`+bad+`"`) {
				t.Fatalf("%s: got %v", bad, err)
			}
		}
	})
}
