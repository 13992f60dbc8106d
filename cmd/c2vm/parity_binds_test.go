package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/c2vm/c2vm/internal/testkit/dockertest"
)

// TestParityBinds runs docker and c2vm on the fidelity image with host directories bound the
// docker ways (-v DIR:/src, -v DIR:/src:ro, --mount type=bind, a single file) over the same host
// directory, made afresh before each run: the container's listing (ls -ln), a write and the host's
// view of it afterwards, EROFS on a read-only bind, and what non-root user app (1000) may write
// must all be the same.
func TestParityBinds(t *testing.T) {
	if os.Getenv("C2VM_PARITY") != "1" {
		t.Skip("parity tier: runs with C2VM_PARITY=1 (make test-parity; make test and CI run it)")
	}
	requireVM(t)
	if m := dockertest.Missing(); len(m) > 0 {
		t.Fatalf("parity test needs: %s — run `make test-parity`, which installs them", strings.Join(m, "; "))
	}
	d := dockertest.Start(t)
	d.BaseImage(t, dockertest.CacheDir(), "c2vm-parity-base", parityBase)
	work := t.TempDir()
	bundle := buildAndConvert(t, d, work, "fidelity", "squashfs")
	host := filepath.Join(work, "host")
	src, conf := filepath.Join(host, "src"), filepath.Join(host, "app.conf")
	const ls = "ls -ln --time-style=+"
	cases := []struct {
		name  string
		flags []string
		args  string
	}{
		{"bind-listing", []string{"-v", src + ":/src"}, ls + " /src /src/sub"},
		{"bind-write", []string{"-v", src + ":/src"}, "echo from the container > /src/new && " + ls + " /src/new && cat /src/new"},
		{"bind-read-only", []string{"-v", src + ":/src:ro"}, "echo x > /src/x; echo status $?; rm /src/hello.txt"},
		{"mount-bind-read-only", []string{"--mount", "type=bind,source=" + src + ",target=/src,readonly"}, "touch /src/y; " + ls + " /src"},
		{"mount-bind", []string{"--mount", "type=bind,source=" + src + ",target=/src"}, "mkdir /src/made && " + ls + " -d /src/made"},
		{"single-file", []string{"-v", conf + ":/etc/app.conf:ro"}, "cat /etc/app.conf; " + ls + " /etc/app.conf; echo x >> /etc/app.conf"},
		{"non-root-write", []string{"-u", "app", "-v", src + ":/src"}, "touch /src/appdir/ok && echo appdir ok; touch /src/sub/no; echo x > /src/hello.txt; cat /src/secret; " + ls + " /src/appdir"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pc := parityCase{name: tc.name, image: "fidelity", flags: tc.flags, args: []string{"sh", "-c", tc.args}}
			makeBindHost(t, host)
			want := dockerRun(d, pc)
			wantHost := hostListing(t, host)
			makeBindHost(t, host)
			got := c2vmRun(t, bundle, pc)
			gotHost := hostListing(t, host)
			compareRuns(t, &allowList{reasons: map[string]string{}, used: map[string]bool{}}, tc.name, want, got)
			if wantHost != gotHost {
				t.Errorf("the host directory after the run differs:\ndocker:\n%s\nc2vm:\n%s", wantHost, gotHost)
			}
			t.Logf("docker and c2vm: exit %d, stdout %q, stderr %q", got.code, clip(got.stdout), clip(got.stderr))
		})
	}
}

// makeBindHost (re)makes the host side: src (owned by root) with a file, a root-only file, a
// root-owned directory and one owned by app (1000), and a single file app.conf, at fixed times.
func makeBindHost(t *testing.T, host string) {
	t.Helper()
	if err := os.RemoveAll(host); err != nil {
		t.Fatal(err)
	}
	when := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, f := range []struct {
		rel      string
		content  string // "" = a directory
		mode     os.FileMode
		uid, gid int
	}{
		{"", "", 0o755, 0, 0},
		{"src", "", 0o755, 0, 0},
		{"src/hello.txt", "hello\n", 0o644, 0, 0},
		{"src/secret", "secret\n", 0o600, 0, 0},
		{"src/sub", "", 0o755, 0, 0},
		{"src/sub/file", "in sub\n", 0o640, 0, 50},
		{"src/appdir", "", 0o750, 1000, 1000},
		{"app.conf", "key = value\n", 0o644, 0, 0},
	} {
		p := filepath.Join(host, f.rel)
		var err error
		if f.content == "" {
			err = os.MkdirAll(p, f.mode)
		} else {
			err = os.WriteFile(p, []byte(f.content), f.mode)
		}
		if err == nil {
			err = os.Chmod(p, f.mode)
		}
		if err == nil {
			err = os.Chown(p, f.uid, f.gid)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, rel := range []string{"src/sub/file", "src/sub", "src/hello.txt", "src/secret", "src/appdir", "app.conf", "src"} {
		if err := os.Chtimes(filepath.Join(host, rel), when, when); err != nil {
			t.Fatal(err)
		}
	}
}

// hostListing is the host directory as the host sees it: paths, types, owners, modes, contents.
func hostListing(t *testing.T, host string) string {
	t.Helper()
	out, err := exec.Command("sh", "-c", `cd "$1" && find . -printf '%p %y %U:%G %m\n' | LC_ALL=C sort && find . -type f -exec md5sum {} + | LC_ALL=C sort`, "sh", host).CombinedOutput()
	if err != nil {
		t.Fatalf("list %s: %v: %s", host, err, out)
	}
	return string(out)
}
