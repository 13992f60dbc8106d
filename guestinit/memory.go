package guestinit

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// The workload's share of the guest's memory. The container's cgroup gets memory.max = what is
// available when it starts minus a margin for runc (which stays as the workload's parent), the
// kernel's watermarks and its allocations while the workload runs. A workload that fills its tmpfs
// upper (charged to its cgroup) and then allocates is then OOM-killed inside its cgroup at once,
// instead of driving the whole guest into a reclaim livelock that lasts minutes (measured: 2 min
// in a 256 MiB guest with 109 MB in the upper, before the global OOM killer acted).
const (
	marginBase     = 16 << 20
	marginFraction = 32 // of MemTotal
	// minLimit: below this the guest is too small to split (runc's own init, which runs in the
	// container's cgroup while it sets up, was OOM-killed under a 7 MiB limit in a 96 MiB guest),
	// and the workload gets the whole guest as before.
	minLimit = 32 << 20
)

// workloadMemoryLimit returns the memory.max for the container in a guest whose /proc/meminfo is
// meminfo: MemAvailable minus 16 MiB and 1/32 of MemTotal. 0 (no limit) when meminfo cannot be
// read or the limit would be under 32 MiB.
func workloadMemoryLimit(meminfo []byte) int64 {
	total, avail := meminfoField(meminfo, "MemTotal"), meminfoField(meminfo, "MemAvailable")
	limit := avail - marginBase - total/marginFraction
	if total == 0 || avail == 0 || limit < minLimit {
		return 0
	}
	return limit
}

// meminfoField is a "Name:   N kB" line of /proc/meminfo in bytes (0 when absent).
func meminfoField(meminfo []byte, name string) int64 {
	for _, l := range strings.Split(string(meminfo), "\n") {
		v, ok := strings.CutPrefix(l, name+":")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0
		}
		return kb << 10
	}
	return 0
}

// patchMemoryLimit sets linux.resources.memory.limit to limit unless the spec has a lower one;
// other resource settings are kept.
func patchMemoryLimit(linux map[string]json.RawMessage, limit int64) error {
	if limit <= 0 {
		return nil
	}
	var res map[string]json.RawMessage
	if err := unmarshalField(linux, "resources", &res); err != nil {
		return fmt.Errorf("linux: %w", err)
	}
	if res == nil {
		res = map[string]json.RawMessage{}
	}
	var mem specs.LinuxMemory
	if err := unmarshalField(res, "memory", &mem); err != nil {
		return fmt.Errorf("linux.resources: %w", err)
	}
	if mem.Limit != nil && *mem.Limit > 0 && *mem.Limit <= limit {
		return nil
	}
	mem.Limit = &limit
	if err := setField(res, "memory", mem); err != nil {
		return err
	}
	return setField(linux, "resources", res)
}
