package vm

import (
	"strings"
	"testing"

	"github.com/c2vm/c2vm/bootcfg"
)

func TestParseStatus(t *testing.T) {
	tests := []struct {
		line string
		code int
		ok   bool
	}{
		{"c2vm-exit-status: 0", 0, true},
		{"c2vm-exit-status: 137\r\n", 137, true},
		{"c2vm-exit-status: 256", 0, false},
		{"c2vm-exit-status: -1", 0, false},
		{"c2vm-exit-status: x", 0, false},
		{"c2vm-init: rootfs: no device", 0, false},
		{"prefix c2vm-exit-status: 3", 0, false},
	}
	for _, tt := range tests {
		code, ok := bootcfg.ParseStatus(tt.line)
		if code != tt.code || ok != tt.ok {
			t.Errorf("ParseStatus(%q) = %d, %v; want %d, %v", tt.line, code, ok, tt.code, tt.ok)
		}
	}
}

// TestArgvArm64: arm64 guests get QEMU's virt machine and, under TCG, a 64-bit CPU model.
func TestArgvArm64(t *testing.T) {
	cfg := Config{QEMU: "/usr/bin/qemu-system-aarch64", Arch: "arm64", Kernel: "/b/vmlinuz", Initrd: "/t/initrd", Cmdline: "console=ttyAMA0", Accel: "tcg"}
	argv, err := Argv(cfg, map[string]string{portConsole: "/s/con"})
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(argv, " ")
	for _, want := range []string{"-M virt,gic-version=max", "-accel tcg -cpu max,pauth-impdef=on", "-serial chardev:con", "virtio-serial-pci"} {
		if !strings.Contains(got, want) {
			t.Errorf("argv lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "q35") || strings.Contains(got, "qboot") {
		t.Errorf("arm64 argv has x86 parts:\n%s", got)
	}
	if _, err := Argv(Config{QEMU: "/q", Arch: "mips64", Accel: "tcg"}, nil); err == nil {
		t.Error("Argv for mips64: no error")
	}
}

func TestArgv(t *testing.T) {
	cfg := Config{
		QEMU: "/usr/bin/qemu-system-x86_64", Kernel: "/b/vmlinuz", Initrd: "/t/initrd", Cmdline: "console=ttyS0",
		Disks:     []Disk{{Path: "/b/rootfs.squashfs", ReadOnly: true}},
		MemoryMiB: 64, CPUs: 2, Accel: "tcg",
		Network: &Network{Forwards: []Forward{{HostPort: 8080, GuestPort: 80}, {Proto: "udp", HostIP: "0.0.0.0", HostPort: 53, GuestPort: 5353}}},
	}
	socks := map[string]string{portConsole: "/s/con", portStdout: "/s/out", portStderr: "/s/err", portStatus: "/s/status", portQMP: "/s/q,mp"}
	argv, err := Argv(cfg, socks)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(argv, " ")
	for _, want := range []string{
		"-m 64 -smp 2", "-no-reboot", "-accel tcg", "-kernel /b/vmlinuz -initrd /t/initrd -append console=ttyS0",
		"socket,id=con,path=/s/con -serial chardev:con", "-qmp unix:/s/q,,mp,server=on,wait=off",
		"virtserialport,bus=vser.0,chardev=stdout,name=c2vm.stdout",
		"virtserialport,bus=vser.0,chardev=status,name=c2vm.status",
		"id=disk0,file=/b/rootfs.squashfs,format=raw,if=none,readonly=on",
		"hostfwd=tcp:127.0.0.1:8080-:80", "hostfwd=udp:0.0.0.0:53-:5353",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("argv lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "c2vm.stdin") {
		t.Errorf("argv has a stdin port without Stdin:\n%s", got)
	}
}

// TestArgvStdinServer checks that QEMU is the server of the stdin port's socket (see feedStdin)
// and the client of the others.
func TestArgvStdinServer(t *testing.T) {
	socks := map[string]string{portConsole: "/s/con", portStdout: "/s/out", portStderr: "/s/err", portStatus: "/s/status", portStdin: "/s/in"}
	argv, err := Argv(Config{QEMU: "/usr/bin/qemu-system-x86_64", Accel: "tcg"}, socks)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(argv, " ")
	for _, want := range []string{
		"socket,id=stdin,path=/s/in,server=on,wait=off -device virtserialport,bus=vser.0,chardev=stdin,name=c2vm.stdin",
		"socket,id=status,path=/s/status -device",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("argv lacks %q:\n%s", want, got)
		}
	}
	if l := (WindowSize{Rows: 33, Cols: 77}).line(); l != "winsize 33 77\n" {
		t.Errorf("winsize line %q", l)
	}
}

func TestTailKeepsLastLines(t *testing.T) {
	var tl tail
	for i := 0; i < 5000; i++ {
		tl.Write([]byte("line\r\n"))
	}
	tl.Write([]byte("last one\r\n"))
	s := tl.String()
	lines := strings.Split(s, "\n")
	if len(lines) != consoleTailLines || lines[len(lines)-1] != "last one" || strings.Contains(s, "\r") {
		t.Fatalf("tail = %d lines ending %q", len(lines), lines[len(lines)-1])
	}
}
