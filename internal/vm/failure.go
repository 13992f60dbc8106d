package vm

import (
	"errors"
	"fmt"
	"strings"
)

// ErrGuestMemory means the guest kernel ran out of memory before the init reported; the error
// says how much the VM had and what to do.
var ErrGuestMemory = errors.New("the kernel ran out of memory")

// describeFailure says why a VM ended without the init reporting a status, in one line with what
// to do where there is something to do, from the console (all that was kept of it), QEMU's stderr,
// the guest's memory and whether the init started.
func describeFailure(console, qemuStderr string, memMiB int, initStarted bool) error {
	if memMiB <= 0 {
		memMiB = defaultMemoryMiB
	}
	oom := fmt.Errorf("%w at -m %dm: raise -m (Debian's kernel needs ~96 MiB) or use --kernel c2vm", ErrGuestMemory, memMiB)
	switch {
	case outOfMemory(console):
		return fmt.Errorf("%w: %w", ErrNoStatus, oom)
	case strings.Contains(console, "Kernel panic"):
		return fmt.Errorf("%w: the guest kernel panicked: %s", ErrNoStatus, lineFrom(console, "Kernel panic"))
	case strings.TrimSpace(qemuStderr) != "":
		return fmt.Errorf("%w: qemu: %s", ErrNoStatus, LastLine(qemuStderr))
	case !initStarted && strings.TrimSpace(console) == "" && memMiB < smallMemoryMiB:
		// Debian's bzImage needs ~51.5 MiB to decompress itself, and its decompressor fails
		// without a word on the console (measured at -m 64m).
		return fmt.Errorf("%w: the guest kernel stopped before printing anything: %w", ErrNoStatus, oom)
	}
	return ErrNoStatus
}

// smallMemoryMiB is the guest memory below which a kernel that dies in silence is taken to have
// run out of memory: Debian's kernel needs ~92 MiB, c2vm's ~52 MiB.
const smallMemoryMiB = 128

// oomSigns are what Linux prints when it runs out of memory: the OOM killer at work, its panic
// when nothing is left to kill, the page allocator's deadlock panic (at KERN_EMERG, so even with
// quiet) and its stack frame.
var oomSigns = []string{
	"invoked oom-killer", "Out of memory", "out of memory", "System is deadlocked on memory", "oom-kill:", " out_of_memory",
}

// outOfMemory reports whether the kernel ran out of memory; a container hitting its own memory
// limit ("Memory cgroup out of memory") is the workload's matter, not the VM's.
func outOfMemory(console string) bool {
	for _, l := range strings.Split(console, "\n") {
		if strings.Contains(l, "Memory cgroup") {
			continue
		}
		for _, s := range oomSigns {
			if strings.Contains(l, s) {
				return true
			}
		}
	}
	return false
}
