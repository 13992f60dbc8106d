package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// hostDirs makes a host directory src (owned by 1000:1000) with a file, a root-only directory and
// a root-only file, and a single file app.conf beside it.
func hostDirs(t *testing.T) (src, conf string) {
	t.Helper()
	root := t.TempDir()
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	src, conf = filepath.Join(root, "src"), filepath.Join(root, "app.conf")
	for _, f := range []struct {
		path     string
		content  string // "" = a directory
		mode     os.FileMode
		uid, gid int
	}{
		{src, "", 0o755, 1000, 1000},
		{filepath.Join(src, "hello.txt"), "from the host\n", 0o644, 1000, 1000},
		{filepath.Join(src, "rootonly"), "", 0o755, 0, 0},
		{filepath.Join(src, "secret"), "s\n", 0o600, 0, 0},
		{conf, "conf\n", 0o644, 0, 0},
	} {
		var err error
		if f.content == "" {
			err = os.Mkdir(f.path, f.mode)
		} else {
			err = os.WriteFile(f.path, []byte(f.content), f.mode)
		}
		if err == nil {
			err = os.Chmod(f.path, f.mode)
		}
		if err == nil {
			err = os.Chown(f.path, f.uid, f.gid)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return src, conf
}

// TestVMHostDirs binds a host directory read-write and read-only and a single file, as user app
// (1000): the guest sees the host's numeric owners and modes, app writes where the host lets uid
// 1000 write and is refused elsewhere, the read-only bind fails with EROFS, a guest write shows on
// the host with app's ids, and a host write made while the VM runs shows in the guest. No
// virtiofsd is left afterwards.
func TestVMHostDirs(t *testing.T) {
	dir := testBundle(t, "squashfs")
	src, conf := hostDirs(t)
	const script = `cd /src; stat -c '%n %u:%g %a' hello.txt rootonly secret /etc/app.conf; cat hello.txt /etc/app.conf;` +
		` cat secret 2>/dev/null || echo secret: denied; touch rootonly/f 2>/dev/null || echo rootonly: denied;` +
		` (echo x > /ro/x) 2>&1; (echo x >> /etc/app.conf) 2>&1; echo from the guest > out;` +
		` until [ -e fromhost ]; do sleep 0.1; done; cat fromhost; ls /ro`
	done := make(chan struct{})
	go func() { // the host's side: answer the guest's write with one of its own
		defer close(done)
		for deadline := time.Now().Add(3 * time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if b, _ := os.ReadFile(filepath.Join(src, "out")); string(b) == "from the guest\n" {
				os.WriteFile(filepath.Join(src, "fromhost"), []byte("from the host, later\n"), 0o644)
				return
			}
		}
	}()
	stdout, _ := runVM(t, 0, "-u", "app", "-v", src+":/src", "-v", src+":/ro:ro",
		"--mount", "type=bind,source="+conf+",target=/etc/app.conf,readonly", dir, "--", script)
	<-done
	want := "hello.txt 1000:1000 644\nrootonly 0:0 755\nsecret 0:0 600\n/etc/app.conf 0:0 644\nfrom the host\nconf\n" +
		"secret: denied\nrootonly: denied\n" +
		"/bin/sh: can't create /ro/x: Read-only file system\n/bin/sh: can't create /etc/app.conf: Read-only file system\n" +
		"from the host, later\nfromhost\nhello.txt\nout\nrootonly\nsecret\n"
	if stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", stdout, want)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(src, "out"), &st); err != nil {
		t.Fatalf("the guest's write is not on the host: %v", err)
	} else if st.Uid != 1000 || st.Gid != 1000 {
		t.Errorf("the guest's file is owned by %d:%d on the host, want 1000:1000 (app's ids)", st.Uid, st.Gid)
	}
	if p := processesWith(t, "source="+src); len(p) > 0 {
		t.Errorf("left running after the run: %q", p)
	}
}

// TestVMHostDirsKilled kills c2vm (SIGKILL) while its workload runs with a host directory: QEMU and
// virtiofsd go with it, and no virtiofsd socket is left in TMPDIR.
func TestVMHostDirsKilled(t *testing.T) {
	dir := testBundle(t, "squashfs")
	src, _ := hostDirs(t)
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "c2vm")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "run", "-v", src+":/src", dir, "--", "touch /src/started; sleep 600")
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	started := filepath.Join(src, "started")
	for {
		if _, err := os.Stat(started); err == nil {
			break
		}
		select {
		case <-exited:
			t.Fatalf("c2vm ended before the workload started: %s", stderr.String())
		case <-ctx.Done():
			t.Fatalf("the workload did not start: %s", stderr.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	if p := processesWith(t, "source="+src); len(p) == 0 { // virtiofsd and its sandboxed child
		t.Fatal("no virtiofsd while the workload runs")
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-exited
	var left []string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if left = processesWith(t, tmp); len(left) == 0 {
			left = processesWith(t, "source="+src)
		}
		if len(left) == 0 {
			break
		}
	}
	if len(left) > 0 {
		t.Errorf("left running 30 s after SIGKILL of c2vm: %q", left)
	}
	entries, _ := filepath.Glob(filepath.Join(tmp, "c2vm-fs-*"))
	if len(entries) > 0 {
		t.Errorf("virtiofsd socket directories left: %q", entries)
	}
}

// processesWith returns the command lines of the processes whose command line contains s.
func processesWith(t *testing.T, s string) []string {
	t.Helper()
	procs, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	self := "/proc/" + strconv.Itoa(os.Getpid()) + "/"
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || strings.HasPrefix(p, self) {
			continue
		}
		if line := strings.ReplaceAll(string(bytes.TrimRight(b, "\x00")), "\x00", " "); strings.Contains(line, s) {
			out = append(out, line)
		}
	}
	return out
}
