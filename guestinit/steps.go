package guestinit

import (
	"bytes"
	"context"
	"fmt"

	"github.com/c2vm/c2vm/bootcfg"
)

// Steps returns the boot steps in order.
func Steps() []Step {
	return []Step{
		{Name: "config", Run: stepConfig},
		{Name: "mounts", Run: stepMounts},
		{Name: "modules", Run: stepModules},
		{Name: "ports", Optional: true, Run: stepPorts},
		// Before the switch: the emulators are in the initramfs, and flag F opens them now.
		{Name: "binfmt", Run: stepBinfmt},
		// Shuttle mode (spindle's agent, shuttle.go): these steps do nothing otherwise.
		{Name: "shuttle-idle", Run: stepShuttleIdle},
		{Name: "switchroot", Run: stepSwitchRoot},
		{Name: "rootfs", Run: stepRootfs},
		{Name: "shuttle-disks", Run: stepShuttleDisks},
		{Name: "volumes", Run: stepVolumes},
		{Name: "shares", Run: stepShares},
		{Name: "network", Run: stepNetwork},
		{Name: "files", Run: stepFiles},
		{Name: "sysctl", Run: stepSysctl},
		{Name: "spec", Run: stepSpec},
		{Name: "shuttle-image", Run: stepShuttleImage},
		// Optional: a VM whose agent cannot start still runs its workload.
		{Name: "agent", Optional: true, Run: stepAgent},
		{Name: "shuttle", Run: stepShuttle},
		{Name: "run", Run: stepRun},
	}
}

// stepConfig reads and validates the boot config. It lives in the initramfs, so it needs no mounts.
func stepConfig(_ context.Context, st *State) error {
	data, err := st.Sys.ReadFile(st.ConfigPath)
	if err != nil {
		return fmt.Errorf("read boot config: %w", err)
	}
	cfg, err := bootcfg.Decode(bytes.NewReader(data))
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%s: %w", st.ConfigPath, err)
	}
	st.Cfg = cfg
	st.Debug = st.Debug || cfg.Debug
	return nil
}

// stepModules loads the boot config's kernel modules.
func stepModules(ctx context.Context, st *State) error {
	for _, m := range st.Cfg.Modules {
		if err := st.Sys.LoadModule(ctx, m); err != nil {
			return fmt.Errorf("load module %s: %w", m, err)
		}
	}
	return nil
}
