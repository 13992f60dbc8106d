package guestinit

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// The init and runc must survive when the guest runs out of memory, so that the workload is what
// the OOM killer ends and its status (137) is reported. The kernel never OOM-kills PID 1, but runc
// is an ordinary process: the init sets its own oom_score_adj to -1000 before starting runc, which
// inherits it, and the runtime spec gives the workload a normal score (0) unless it has its own.

// protectFromOOM makes the init, and runc which inherits it, the OOM killer's last choice, so
// that running out of memory kills the workload (whose runtime spec resets its score, see
// PatchSpec) and the init can still report 137. Best effort: a failure is only logged.
func protectFromOOM(st *State) {
	if err := st.Sys.AppendFile("/proc/self/oom_score_adj", []byte("-1000")); err != nil {
		st.Debugf("oom_score_adj: %v", err)
	}
}

// patchOOMScore sets process.oomScoreAdj to 0 when the spec has a process without one, so that the
// workload does not inherit the init's -1000.
func patchOOMScore(doc map[string]json.RawMessage) error {
	var proc map[string]json.RawMessage
	if err := unmarshalField(doc, "process", &proc); err != nil {
		return err
	}
	if proc == nil {
		return nil
	}
	if _, ok := proc["oomScoreAdj"]; ok {
		return nil
	}
	if err := setField(proc, "oomScoreAdj", 0); err != nil {
		return fmt.Errorf("process.%w", err)
	}
	return setField(doc, "process", proc)
}

// reportOOM tells the host, when the workload died of SIGKILL and the kernel's OOM killer ran,
// that it ran out of memory: a 137 alone does not say why.
func reportOOM(st *State) {
	if st.ExitStatus != 128+9 {
		return
	}
	data, err := st.Sys.ReadFile("/proc/vmstat")
	if err != nil || oomKills(data) == 0 {
		return
	}
	line := "c2vm-init: the workload was killed by the kernel's OOM killer: the VM ran out of memory (give it more with --memory)"
	if st.MemoryLimit > 0 {
		line = fmt.Sprintf("c2vm-init: the workload was killed by the kernel's OOM killer: it reached its memory limit, %d MiB of the VM's memory with its tmpfs writes (give the VM more with --memory)", st.MemoryLimit>>20)
	}
	st.Console("%s", line)
	if err := st.writeStatus([]byte(line + "\n")); err != nil {
		st.Debugf("status port: %v", err)
	}
}

// oomKills returns the oom_kill counter of /proc/vmstat.
func oomKills(vmstat []byte) int {
	for _, l := range strings.Split(string(vmstat), "\n") {
		if v, ok := strings.CutPrefix(l, "oom_kill "); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}
