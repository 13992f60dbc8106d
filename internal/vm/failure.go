package vm

import (
	"fmt"
	"strings"
)

// describeFailure says why a VM ended without the init reporting a status, from the console's
// tail and QEMU's stderr, in one line with what to do where there is something to do.
func describeFailure(console, qemuStderr string, memMiB int) error {
	if memMiB <= 0 {
		memMiB = defaultMemoryMiB
	}
	switch {
	case outOfMemory(console):
		return fmt.Errorf("%w: the kernel ran out of memory at -m %dm: raise -m (Debian's kernel needs ~96 MiB) or use --kernel c2vm", ErrNoStatus, memMiB)
	case strings.Contains(console, "Kernel panic"):
		return fmt.Errorf("%w: the guest kernel panicked: %s", ErrNoStatus, lineFrom(console, "Kernel panic"))
	case strings.TrimSpace(qemuStderr) != "":
		return fmt.Errorf("%w: qemu: %s", ErrNoStatus, LastLine(qemuStderr))
	}
	return ErrNoStatus
}

// oomSigns are what Linux prints when it runs out of memory: the OOM killer at work, its panic
// when nothing is left to kill, and the page allocator's deadlock panic.
var oomSigns = []string{
	"invoked oom-killer", "Out of memory", "out of memory", "System is deadlocked on memory", "oom-kill:",
}

func outOfMemory(console string) bool {
	for _, s := range oomSigns {
		if strings.Contains(console, s) {
			return true
		}
	}
	return false
}
