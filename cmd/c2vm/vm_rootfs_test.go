package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// rootfsDir writes a busybox root filesystem as plain files (as a docker build stage is seen
// when bind-mounted): a user app, a directory owned by it, a setuid binary, a hardlink.
func rootfsDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "root")
	for _, d := range []string{"bin", "etc", "tmp", "home/app", "proc", "sys", "dev"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	bin, err := os.ReadFile("/bin/busybox") // requireVM checked it is there
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "bin/busybox"), bin, 0o755)
	out, _ := exec.Command("/bin/busybox", "--list").Output()
	for _, a := range strings.Fields(string(out)) {
		os.Symlink("busybox", filepath.Join(dir, "bin", a))
	}
	os.WriteFile(filepath.Join(dir, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "etc/group"), []byte("root:x:0:\napp:x:1000:\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "home/app/data"), []byte("owned\n"), 0o640)
	os.Link(filepath.Join(dir, "home/app/data"), filepath.Join(dir, "home/app/data.link"))
	if os.Geteuid() == 0 {
		os.Chown(filepath.Join(dir, "home/app"), 1000, 1000)
		os.Chown(filepath.Join(dir, "home/app/data"), 1000, 1000)
	}
	os.Chmod(filepath.Join(dir, "tmp"), os.ModeSticky|0o777)
	return dir
}

// TestVMRootfsInput: rootfs:DIR and rootfs:FILE.tar convert with the config given by --change
// (parsed as Dockerfile instructions), keeping owners, modes and hardlinks as they are on disk.
func TestVMRootfsInput(t *testing.T) {
	requireVM(t)
	dir := rootfsDir(t)
	tarball := filepath.Join(t.TempDir(), "root.tar")
	if out, err := exec.Command("tar", "--numeric-owner", "-C", dir, "-cf", tarball, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v %s", err, out)
	}
	changes := []string{"--change", `ENV GREETING="hello there"`, "--change", "WORKDIR /home/app", "--change", "USER app",
		"--change", `CMD echo "$GREETING" from $(id -un) in $(pwd); stat -c "%A %h %u %g" data; stat -c %A /tmp`}
	for _, in := range []string{"rootfs:" + dir, "rootfs:" + tarball} {
		t.Run(filepath.Base(in), func(t *testing.T) {
			t.Parallel() // one TCG vCPU per VM: two cores run two
			b := filepath.Join(t.TempDir(), "bundle")
			args := append(append([]string{"convert", "--quiet", "-o", b}, changes...), in)
			if code, _, stderr := c2vm(t, "", args...); code != 0 {
				t.Fatalf("convert %s: %s", in, stderr)
			}
			stdout, _ := runVM(t, 0, b)
			owner := "1000 1000"
			if os.Geteuid() != 0 {
				owner = fmt.Sprintf("%d %d", os.Getuid(), os.Getgid()) // unprivileged: the files are the tester's
			}
			want := "hello there from app in /home/app\n-rw-r----- 2 " + owner + "\ndrwxrwxrwt\n"
			if stdout != want {
				t.Errorf("stdout %q, want %q", stdout, want)
			}
		})
	}
	if code, _, stderr := c2vm(t, "", "convert", "-o", filepath.Join(t.TempDir(), "b"), "--change", "RUN rm -rf /", "rootfs:"+dir); code != ExitFailure || !strings.Contains(stderr, "only CMD, ENTRYPOINT") {
		t.Errorf("--change RUN: exit %d, %q", code, stderr)
	}
}
