package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/c2vm/c2vm/bundle"
	"github.com/c2vm/c2vm/internal/launch"
)

// TestVMVolumes boots twice. The first run, as user app, reads a read-only disk image, writes a
// read-write one (checked on the host with debugfs), writes a named volume created on first use
// (its root owned by app), changes the root filesystem kept by --persist, and finds the image's
// VOLUME /vol as an empty tmpfs. The second run finds the named volume's file and the root
// filesystem change again, and /vol empty.
func TestVMVolumes(t *testing.T) {
	dir := volumeBundle(t, testBundle(t, "squashfs"), "/vol")
	vols := t.TempDir()
	t.Setenv(launch.VolumesEnv, vols)
	tmp, persist := t.TempDir(), filepath.Join(t.TempDir(), "state")
	src := filepath.Join(tmp, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "hello.txt"), []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	roImg, rwImg := filepath.Join(tmp, "ro.img"), filepath.Join(tmp, "rw.img")
	mkfs(t, roImg, "-d", src)
	mkfs(t, rwImg, "-E", "root_owner=1000:1000")

	const first = `cat /ro/hello.txt; (echo x > /ro/f) 2>/dev/null && echo ro: writable || echo ro: read-only;` +
		` echo written in the guest > /rw/out; echo run1 > /data/note; echo data owner: $(stat -c %u:%g /data);` +
		` echo change > /home/app/persisted; echo vol: $(grep ' /vol ' /proc/mounts | cut -d' ' -f3);` +
		` echo t > /vol/t && echo vol: writable`
	stdout, _ := runVM(t, 0, "-u", "app", "--persist", persist, "-v", roImg+":/ro:ro", "-v", rwImg+":/rw",
		"-v", "named:/data", dir, "--", first)
	want := "from the host\nro: read-only\ndata owner: 1000:1000\nvol: tmpfs\nvol: writable\n"
	if stdout != want {
		t.Errorf("first run stdout:\n%s\nwant:\n%s", stdout, want)
	}
	if got := debugfsCat(t, rwImg, "/out"); got != "written in the guest\n" {
		t.Errorf("rw.img /out on the host = %q", got)
	}
	for _, f := range []string{filepath.Join(vols, "named.img"), filepath.Join(persist, "upper.img")} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("disk image not created: %v", err)
		}
	}

	stdout, _ = runVM(t, 0, "--persist", persist, "-v", "named:/data", dir, "--",
		`cat /data/note /home/app/persisted; ls -A /vol; echo end`)
	if want := "run1\nchange\nend\n"; stdout != want {
		t.Errorf("second run stdout %q, want %q", stdout, want)
	}
}

// volumeBundle returns a copy of the bundle src (files linked) whose image config declares the
// given VOLUMEs.
func volumeBundle(t *testing.T, src string, volumes ...string) string {
	t.Helper()
	return editedBundle(t, src, func(_ *testing.T, m *bundle.Manifest, _ string) {
		m.Image.Volumes = map[string]struct{}{}
		for _, v := range volumes {
			m.Image.Volumes[v] = struct{}{}
		}
	})
}

// mkfs makes a 32 MiB ext4 image.
func mkfs(t *testing.T, img string, args ...string) {
	t.Helper()
	all := append([]string{"-q", "-F"}, args...)
	all = append(all, img, "32M")
	if out, err := exec.Command(sbinTool(t, "mkfs.ext4"), all...).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4 %v: %v: %s", all, err, out)
	}
}

// debugfsCat reads a file from an ext4 image on the host.
func debugfsCat(t *testing.T, img, file string) string {
	t.Helper()
	out, err := exec.Command(sbinTool(t, "debugfs"), "-R", "cat "+file, img).Output()
	if err != nil {
		t.Fatalf("debugfs cat %s: %v", file, err)
	}
	return string(out)
}

func sbinTool(t *testing.T, name string) string {
	t.Helper()
	for _, p := range []string{name, "/usr/sbin/" + name, "/sbin/" + name} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	t.Fatalf("%s not found: install Debian package e2fsprogs", name)
	return ""
}
