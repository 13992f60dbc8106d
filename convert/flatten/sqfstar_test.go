package flatten

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	it "github.com/c2vm/c2vm/internal/testkit/imagetest"
)

// needTool skips when a tool is missing, unless CI=true.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not installed (Debian package squashfs-tools)", name)
		}
		t.Skipf("%s not installed (Debian package squashfs-tools)", name) // not in CI: fails above
	}
	return p
}

// TestSqfstar pipes WriteTar into sqfstar and checks what unsquashfs lists: owners, modes,
// devices, symlinks, and hardlinks sharing one inode (sqfstar crashes if a link precedes its target).
func TestSqfstar(t *testing.T) {
	sqfstar := needTool(t, "sqfstar")
	unsquashfs := needTool(t, "unsquashfs")
	tr := flattenRaw(t,
		it.TarLayer(t,
			with(it.TarFile("z/su", "suid"), func(h *tar.Header) { h.Mode = 0o4755; h.Uid = 0; h.Gid = 0 }),
			it.TarHardlink("a/su-link", "z/su"),
			with(it.TarFile("home/u/f", "mine"), func(h *tar.Header) { h.Mode = 0o600; h.Uid = 1000; h.Gid = 1001 }),
			with(it.TarDir("tmp"), func(h *tar.Header) { h.Mode = 0o1777 }),
			with(named(tar.TypeChar, "dev/null", 0o666), func(h *tar.Header) { h.Devmajor, h.Devminor = 1, 3 }),
			named(tar.TypeFifo, "run/fifo", 0o644),
			it.TarSymlink("bin", "usr/bin"),
			with(it.TarFile("usr/bin/cap", "x"), func(h *tar.Header) {
				h.PAXRecords = map[string]string{"SCHILY.xattr.user.note": "hi"}
			}),
		),
		it.TarLayer(t, it.TarFile("dup", "d"), it.TarHardlink("dup2", "dup"), it.TarHardlink("0first", "dup")),
	)
	var buf bytes.Buffer
	if err := tr.WriteTar(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "out.sqfs")
	cmd := exec.Command(sqfstar, "-comp", "zstd", "-quiet", "-no-progress", "-mkfs-time", "0",
		"-root-mode", fmt.Sprintf("%o", tr.Root.Mode), "-root-uid", "0", "-root-gid", "0", img)
	cmd.Stdin = &buf
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, out)
	}
	out, err := exec.Command(unsquashfs, "-lln", img).CombinedOutput()
	if err != nil {
		t.Fatalf("unsquashfs -lln: %v\n%s", err, out)
	}
	// "-rwsr-xr-x 0/0 4 2020-01-02 03:04 squashfs-root/z/su" → "-rwsr-xr-x 0/0 4 z/su"
	re := regexp.MustCompile(`^(\S+) (\d+/\d+) +(\d+, +\d+|\S+) \S+ \S+ squashfs-root/?(.*)$`)
	var got []string
	for l := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		if m := re.FindStringSubmatch(l); m != nil {
			got = append(got, strings.Join(m[1:], " "))
		}
	}
	want := []string{
		rootLine(),
		"-rw-r--r-- 0/0 1 0first",
		"drwxr-xr-x 0/0 * a",
		"-rwsr-xr-x 0/0 4 a/su-link",
		"lrwxrwxrwx 0/0 7 bin -> usr/bin",
		"drwxr-xr-x 0/0 * dev",
		"crw-rw-rw- 0/0 1, 3 dev/null",
		"-rw-r--r-- 0/0 1 dup",
		"-rw-r--r-- 0/0 1 dup2",
		"drwxr-xr-x 0/0 * home",
		"drwxr-xr-x 0/0 * home/u",
		"-rw------- 1000/1001 4 home/u/f",
		"drwxr-xr-x 0/0 * run",
		"prw-r--r-- 0/0 0 run/fifo",
		"drwxrwxrwt 0/0 * tmp",
		"drwxr-xr-x 0/0 * usr",
		"drwxr-xr-x 0/0 * usr/bin",
		"-rw-r--r-- 0/0 1 usr/bin/cap",
		"drwxr-xr-x 0/0 * z",
		"-rwsr-xr-x 0/0 4 z/su",
	}
	norm := func(ls []string) []string {
		var out []string
		for _, l := range ls {
			if strings.HasPrefix(l, "d") {
				f := strings.SplitN(l, " ", 4)
				f[2] = "*" // directory sizes are sqfstar's business
				l = strings.Join(f, " ")
			}
			out = append(out, regexp.MustCompile(`, +`).ReplaceAllString(l, ", "))
		}
		return out
	}
	if g := norm(got); !slices.Equal(g, norm(want)) {
		t.Errorf("unsquashfs -lln:\n%s\ngot  %q\nwant %q", out, g, want)
	}
	// Hardlinks share inodes: 20 paths (with the root), 3 of them hardlinks → 17 inodes.
	stat, err := exec.Command(unsquashfs, "-s", img).CombinedOutput()
	if err != nil {
		t.Fatalf("unsquashfs -s: %v\n%s", err, stat)
	}
	if !strings.Contains(string(stat), "Number of inodes 17") {
		t.Errorf("want 17 inodes (20 paths, 3 of them hardlinks):\n%s", stat)
	}
}

// rootLine is the listing line of the image root: sqfstar 4.5.1 ignores -root-uid/-root-gid and
// gives the root to the user running it (convert/rootfs maps that user to 0 in a user namespace;
// this test runs sqfstar directly).
func rootLine() string {
	return fmt.Sprintf("drwxr-xr-x %d/%d * ", os.Geteuid(), os.Getegid())
}
