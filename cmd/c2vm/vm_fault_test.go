package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/c2vm/c2vm/bootcfg"
	"github.com/c2vm/c2vm/bundle"
)

// segvELF is a minimal static x86-64 ELF executable whose entry point loads from address 0: it dies
// of SIGSEGV. One PT_LOAD segment maps the whole file at 0x400000; the code follows the headers.
func segvELF() []byte {
	const base, hdrs = 0x400000, 64 + 56
	code := []byte{0x8b, 0x04, 0x25, 0, 0, 0, 0, 0x0f, 0x0b} // mov eax, [0]; ud2
	size := uint64(hdrs + len(code))
	var b bytes.Buffer
	le := binary.LittleEndian
	b.Write([]byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	for _, v := range []any{uint16(2), uint16(0x3e), uint32(1), uint64(base + hdrs), uint64(64), uint64(0),
		uint32(0), uint16(64), uint16(56), uint16(1), uint16(0), uint16(0), uint16(0)} {
		_ = binary.Write(&b, le, v)
	}
	for _, v := range []any{uint32(1), uint32(5), uint64(0), uint64(base), uint64(base), size, size, uint64(0x1000)} {
		_ = binary.Write(&b, le, v)
	}
	b.Write(code)
	return b.Bytes()
}

// printfOctal is a shell printf format that writes b exactly.
func printfOctal(b []byte) string {
	var s strings.Builder
	for _, c := range b {
		fmt.Fprintf(&s, "\\%03o", c)
	}
	return s.String()
}

// segvScript writes segvELF into the guest with busybox printf and execs it.
func segvScript(t *testing.T) string {
	t.Helper()
	script := "printf '" + printfOctal(segvELF()) + "' > /tmp/segv && chmod 755 /tmp/segv && exec /tmp/segv"
	// Check the program and the script on the host first: a bad ELF would make the VM test lie.
	dir := t.TempDir()
	host := strings.ReplaceAll(script, "/tmp/segv", filepath.Join(dir, "segv"))
	err := exec.Command("/bin/busybox", "sh", "-c", host).Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != -1 || !strings.Contains(ee.String(), "segmentation fault") {
		t.Fatalf("segv program on the host: %v, want death by SIGSEGV", err)
	}
	return script
}

// editedBundle returns a copy of src (files hardlinked: run refuses symlinks) whose manifest edit changed; edit may also
// replace files in the copy (it gets the copy's directory) and must then re-describe them.
func editedBundle(t *testing.T, src string, edit func(t *testing.T, m *bundle.Manifest, dir string)) string {
	t.Helper()
	dir := t.TempDir()
	m, err := bundle.Read(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range m.Files {
		if err := os.Link(filepath.Join(src, f.Name), filepath.Join(dir, f.Name)); err != nil {
			t.Fatal(err)
		}
	}
	edit(t, m, dir)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, bundle.ManifestFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// corruptRootfs replaces the rootfs of the copy by one whose first 64 KiB (superblock and
// metadata) are zeros, and records its new digest.
func corruptRootfs(t *testing.T, m *bundle.Manifest, dir string) {
	t.Helper()
	name := bundle.RootfsFile(m.RootfsFormat)
	p := filepath.Join(dir, name)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	clear(b[:min(len(b), 64<<10)])
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := bundle.Describe(p)
	if err != nil {
		t.Fatal(err)
	}
	for i := range m.Files {
		if m.Files[i].Name == name {
			m.Files[i] = f
		}
	}
}

// qemuChildren lists the QEMU processes whose parent is this test process.
func qemuChildren(t *testing.T) []string {
	t.Helper()
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var out []string
	me := strconv.Itoa(os.Getpid())
	for _, s := range stats {
		b, err := os.ReadFile(s)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		line := string(b)
		i := strings.LastIndexByte(line, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(line[i+1:])
		if len(fields) > 1 && fields[1] == me && strings.Contains(line[:i], "qemu") {
			out = append(out, line[:i+1])
		}
	}
	return out
}

// TestVMFaults: whatever goes wrong in the guest, c2vm run ends with a status and a message, and no
// QEMU is left running.
func TestVMFaults(t *testing.T) {
	src := testBundle(t, "squashfs")
	none := func(*testing.T, *bundle.Manifest, string) {}
	tests := []struct {
		name   string
		edit   func(t *testing.T, m *bundle.Manifest, dir string)
		flags  []string // run flags before the bundle
		script func(t *testing.T) string
		code   int      // want exit status; -1: any non-zero
		stderr []string // substrings of stderr
	}{
		{name: "workload segfault", edit: none, script: segvScript, code: 139},
		{name: "missing rootfs device",
			edit: func(_ *testing.T, m *bundle.Manifest, _ string) {
				m.Boot.Container.Rootfs = bootcfg.Rootfs{Format: m.Boot.Container.Rootfs.Format, Device: "/dev/vdz"}
			},
			code:   ExitFailure,
			stderr: []string{"c2vm-init: ", "/dev/vdz"}},
		{name: "rootfs disk not found",
			edit: func(_ *testing.T, m *bundle.Manifest, _ string) {
				m.Boot.Container.Rootfs.Serial = "c2vm-elsewhere"
				m.Boot.Container.Rootfs.Identity.SHA256 = strings.Repeat("0", 64)
			},
			code:   ExitFailure,
			stderr: []string{"c2vm-init: rootfs: no disk with serial \"c2vm-elsewhere\" or the rootfs image's identity", "(disks: vda)"}},
		{name: "corrupt rootfs image", edit: corruptRootfs, code: ExitFailure, stderr: []string{"c2vm-init: ", "rootfs"}},
		{name: "missing kernel module",
			edit: func(_ *testing.T, m *bundle.Manifest, _ string) {
				m.Boot.Modules = append(m.Boot.Modules, "c2vm_no_such_module")
			},
			code:   ExitFailure,
			stderr: []string{"c2vm-init: modules: ", "c2vm_no_such_module"}},
		{name: "boot config of an unknown major version",
			edit:   func(_ *testing.T, m *bundle.Manifest, _ string) { m.Boot.Version = "99.0" },
			code:   ExitFailure,
			stderr: []string{"99.0", "newer than"}},
		{name: "kernel panic",
			edit: func(_ *testing.T, m *bundle.Manifest, _ string) {
				m.BootArgs += " rdinit=/c2vm-no-such-init root=/dev/c2vm-none"
			},
			code:   -1,
			stderr: []string{"panic"}},
		{name: "workload that never exits", edit: none, flags: []string{"--timeout", "20s"},
			script: func(*testing.T) string { return "exec sleep 1000" },
			code:   -1,
			stderr: []string{"--timeout 20s"}},
	}
	// Checked once all cases are done: they run two at a time.
	t.Cleanup(func() {
		if q := qemuChildren(t); len(q) != 0 {
			t.Errorf("QEMU still running: %q", q)
		}
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel() // one TCG vCPU per VM: two cores run two
			dir := editedBundle(t, src, tt.edit)
			args := append([]string{"run"}, tt.flags...)
			if len(tt.flags) == 0 {
				args = append(args, "--timeout", "120s")
			}
			args = append(args, dir)
			if tt.script != nil {
				args = append(args, "--", tt.script(t))
			}
			code, stdout, stderr := c2vm(t, "", args...)
			t.Logf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
			if (tt.code == -1 && code == 0) || (tt.code != -1 && code != tt.code) {
				t.Errorf("exit %d, want %d", code, tt.code)
			}
			for _, s := range tt.stderr {
				if !strings.Contains(strings.ToLower(stderr), strings.ToLower(s)) {
					t.Errorf("stderr %q does not mention %q", stderr, s)
				}
			}
			if code != 0 && strings.TrimSpace(stderr) == "" && tt.code != 139 {
				t.Errorf("failed without a message")
			}
		})
	}
}
