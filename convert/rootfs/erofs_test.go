package rootfs

import (
	"archive/tar"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/erofs/go-erofs"

	"github.com/c2vm/c2vm/bootcfg"
)

// listErofs lists an image with go-erofs' reader (hardlinks are copies, so no LinkOf).
func listErofs(t *testing.T, img string) map[string]file {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	efs, err := erofs.Open(f)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]file{}
	err = fs.WalkDir(efs, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == "." {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st := info.Sys().(*erofs.Stat)
		m := info.Mode()
		// go-erofs' reader keeps the raw unix permission bits (incl. setuid) in the low bits.
		g := file{Mode: int64(m & 0o7777), UID: int(st.UID), GID: int(st.GID), Mtime: int64(st.Mtime)}
		if len(st.Xattrs) > 0 {
			g.Xattrs = st.Xattrs
		}
		switch {
		case m.IsDir():
			g.Type = tar.TypeDir
		case m&fs.ModeSymlink != 0:
			g.Type = tar.TypeSymlink
			g.Target, err = fs.ReadLink(efs, p)
		case m&fs.ModeNamedPipe != 0:
			g.Type = tar.TypeFifo
		case m&fs.ModeDevice != 0:
			g.Type = tar.TypeBlock
			if m&fs.ModeCharDevice != 0 {
				g.Type = tar.TypeChar
			}
			g.Major, g.Minor = int64(st.Rdev>>8&0xfff), int64(st.Rdev&0xff|st.Rdev>>12&0xfff00)
		default:
			g.Type = tar.TypeReg
			var b []byte
			b, err = fs.ReadFile(efs, p)
			g.Content = string(b)
		}
		out[p] = g
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestErofs(t *testing.T) {
	tree := flattenLayers(t, fixtureLayers(t))
	img := filepath.Join(t.TempDir(), "rootfs.erofs")
	if err := Write(context.Background(), bootcfg.FormatErofs, tree, img, Options{MkfsTime: 1700000000}); err != nil {
		t.Fatal(err)
	}
	compare(t, want(t, tree, true), listErofs(t, img), true)

	needTool(t, "fsck.erofs")
	if out, err := exec.Command("fsck.erofs", img).CombinedOutput(); err != nil {
		t.Fatalf("fsck.erofs: %v\n%s", err, out)
	}
	needTool(t, "dump.erofs")
	// An independent reader: dump.erofs (it prints only the 0777 bits of the mode).
	for p, wantOut := range map[string][]string{
		"/home/user/secret": {"Uid: 1000   Gid: 1000", "Size: 6 ", "Access: 0600"},
		"/bin/ping":         {"Xattr size: 64", "Size: 12 ", "Links: 1 "},
		"/dev/null":         {"char dev"},
	} {
		out, err := exec.Command("dump.erofs", "--path="+p, img).CombinedOutput()
		if err != nil {
			t.Fatalf("dump.erofs %s: %v\n%s", p, err, out)
		}
		for _, w := range wantOut {
			if !strings.Contains(string(out), w) {
				t.Errorf("dump.erofs --path=%s: no %q in\n%s", p, w, out)
			}
		}
	}
}

func TestErofsErrors(t *testing.T) {
	tree := flattenLayers(t, fixtureLayers(t))
	err := Write(context.Background(), bootcfg.FormatErofs, tree, filepath.Join(t.TempDir(), "img"), Options{Compression: "lz4"})
	if err == nil {
		t.Fatal("lz4 compression accepted")
	}
	out := filepath.Join(t.TempDir(), "img")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Write(ctx, bootcfg.FormatErofs, tree, out, Options{}); err == nil {
		t.Fatal("canceled write succeeded")
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("partial output left behind")
	}
}
