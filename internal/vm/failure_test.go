package vm

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

// Console tails as the kernels print them when a VM dies before the init reports.
const (
	// The OOM killer finds nothing to kill.
	tailOOMInit = `[    2.911502] c2vm-init invoked oom-killer: gfp_mask=0x140cca(GFP_HIGHUSER_MOVABLE|__GFP_COMP), order=0, oom_score_adj=0
[    2.912876] CPU: 0 PID: 1 Comm: c2vm-init Not tainted 6.1.0-41-amd64 #1  Debian 6.1.158-1
[    2.930911] Out of memory and no killable processes...
[    2.931507] Kernel panic - not syncing: System is deadlocked on memory
[    2.932290] CPU: 0 PID: 1 Comm: c2vm-init Not tainted 6.1.0-41-amd64 #1  Debian 6.1.158-1
[    2.934840] ---[ end Kernel panic - not syncing: System is deadlocked on memory ]---`
	// The OOM killer kills the init itself.
	tailOOMKilled = `[    3.120001] Out of memory: Killed process 1 (c2vm-init) total-vm:1236908kB, anon-rss:10240kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:64kB oom_score_adj:0
[    3.121230] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000009`
	tailNoRoot = `[    1.402113] VFS: Cannot open root device "vda" or unknown-block(0,0): error -6
[    1.402990] Please append a correct "root=" boot option; here are the available partitions:
[    1.403816] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)
[    1.404601] CPU: 0 PID: 1 Comm: swapper/0 Not tainted 6.1.0-41-amd64 #1  Debian 6.1.158-1`
)

func TestDescribeFailure(t *testing.T) {
	// Debian's 6.1 cloud kernel at -m 88m (and 80m), recorded: the panic's first line is followed by
	// a stack trace longer than the 30 lines of Result.ConsoleTail.
	debian88, err := os.ReadFile("testdata/console-debian-88m.txt")
	if err != nil {
		t.Fatal(err)
	}
	oom := "the kernel ran out of memory at -m %dm: raise -m (Debian's kernel needs ~96 MiB) or use --kernel c2vm"
	for _, tt := range []struct {
		name, console, qemu string
		mem                 int
		started             bool
		want                string
	}{
		{"debian 88m", string(debian88), "", 88, false, fmt.Sprintf(oom, 88)},
		// At -m 64m Debian's kernel prints nothing at all: its decompressor fails in silence.
		{"debian 64m", "", "", 64, false, "the guest kernel stopped before printing anything: " + fmt.Sprintf(oom, 64)},
		{"silent with plenty", "", "", 512, false, ErrNoStatus.Error()},
		{"silent after the init started", "", "", 64, true, ErrNoStatus.Error()},
		{"oom deadlock", tailOOMInit, "", 64, false, fmt.Sprintf(oom, 64)},
		{"init killed", tailOOMKilled, "", 64, true, fmt.Sprintf(oom, 64)},
		{"default memory", tailOOMKilled, "", 0, true, fmt.Sprintf(oom, 512)},
		{"cgroup oom is the workload's", "[ 5.1] Memory cgroup out of memory: Killed process 88 (stress)\n" + tailNoRoot, "", 64, true, "the guest kernel panicked: Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)"},
		{"other panic", tailNoRoot, "", 64, false, "the guest kernel panicked: Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)"},
		{"qemu", "", "qemu-system-x86_64: -drive id=disk0: Could not open '/x': No such file or directory\n", 64, false, "qemu: qemu-system-x86_64: -drive id=disk0: Could not open '/x': No such file or directory"},
		{"nothing", "[    0.1] booting", "", 64, true, ErrNoStatus.Error()},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := describeFailure(tt.console, tt.qemu, tt.mem, tt.started)
			if !errors.Is(err, ErrNoStatus) || !strings.HasSuffix(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") ||
				errors.Is(err, ErrGuestMemory) != strings.Contains(tt.want, "out of memory") {
				t.Errorf("describeFailure = %q; want one line ending in %q", err, tt.want)
			}
		})
	}
}

// TestRunOutOfMemory: the recorded Debian console through the relay (the tail keeps more than the
// 30 lines it shows, so the panic's first line is still there).
func TestRunOutOfMemory(t *testing.T) {
	cfg, _, _ := fakeConfig(t, "boot", AccelTCG)
	debian88, err := os.ReadFile("testdata/console-debian-88m.txt")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("C2VM_FAKE_CONSOLE", strings.ReplaceAll(string(debian88), "\n", "\r\n"))
	t.Setenv("C2VM_FAKE_NO_STATUS", "1")
	cfg.MemoryMiB = 88
	res, err := Run(t.Context(), cfg)
	if !errors.Is(err, ErrNoStatus) || !strings.Contains(err.Error(), "ran out of memory at -m 88m") {
		t.Fatalf("Run = %v; want the out-of-memory line", err)
	}
	if n := strings.Count(res.ConsoleTail, "\n") + 1; n != consoleTailLines || strings.Contains(res.ConsoleTail, "deadlocked") {
		t.Errorf("ConsoleTail has %d lines, want the last %d", n, consoleTailLines)
	}
}

func TestConsoleTail(t *testing.T) {
	var tl tail
	tl.Write([]byte("\x1b[2J\x1b[01;01HSeaBIOS (version 1.16.2)\r\n\x1bc\x1b]0;title\x07booting \x1b[1;31mred\x1b[0m\r\n"))
	for i := 0; i < consoleTailLines; i++ {
		tl.Write([]byte("line\r\n"))
	}
	tl.Write([]byte("last\r\n"))
	got := tl.String()
	lines := strings.Split(got, "\n")
	if len(lines) != consoleTailLines || lines[len(lines)-1] != "last" || strings.ContainsAny(got, "\r\x1b") {
		t.Errorf("tail = %q; want the last %d lines without \\r or escapes", got, consoleTailLines)
	}
	tl = tail{}
	tl.Write([]byte("\x1b[2J\x1b[01;01HSeaBIOS (version 1.16.2)\r\n\x1bc\x1b]0;title\x07booting \x1b[1;31mred\x1b[0m\r\n"))
	if want := "SeaBIOS (version 1.16.2)\nbooting red"; tl.String() != want {
		t.Errorf("tail = %q, want %q", tl.String(), want)
	}
}
