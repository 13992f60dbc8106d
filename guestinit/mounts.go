package guestinit

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/c2vm/c2vm/bootcfg"
	"golang.org/x/sys/unix"
)

// stepMounts mounts the boot config's filesystems; optional ones may fail. Then it reads the
// kernel command line for the debug switch.
func stepMounts(_ context.Context, st *State) error {
	for _, m := range st.Cfg.Mounts {
		if err := mountOne(st, m); err != nil {
			if !m.Optional {
				return err
			}
			st.Debugf("optional mount %s: %v", m.Target, err)
			continue
		}
		if !containsMount(st.early, m.Target) {
			st.early = append(st.early, m)
		}
	}
	if data, err := st.Sys.ReadFile("/proc/cmdline"); err == nil {
		st.Halt = bootcfg.ParseHalt(string(data))
	}
	return nil
}

func mountOne(st *State, m bootcfg.Mount) error {
	flags, err := bootcfg.ParseMountFlags(m.Flags)
	if err != nil {
		return fmt.Errorf("mount %s: %w", m.Target, err)
	}
	if err := st.Sys.MkdirAll(m.Target, 0o755); err != nil {
		return fmt.Errorf("mount %s: %w", m.Target, err)
	}
	if err := st.Sys.Mount(m.Source, m.Target, m.FSType, flags, m.Data); err != nil && !errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("mount %s on %s (%s): %w", m.Source, m.Target, m.FSType, err)
	}
	for _, d := range m.Mkdir {
		p := path.Join(m.Target, d)
		if !isBelow(p, m.Target) {
			return fmt.Errorf("mount %s: mkdir %q escapes the target", m.Target, d)
		}
		if err := st.Sys.MkdirAll(p, 0o755); err != nil {
			return fmt.Errorf("mount %s: %w", m.Target, err)
		}
	}
	return nil
}

// topMounts returns the mount targets not below another mount target of the list, in order: the
// ones to move to the new root (nested mounts move with them).
func topMounts(ms []bootcfg.Mount) []string {
	var out []string
	for i, m := range ms {
		nested := false
		for j, o := range ms {
			if i != j && o.Target != m.Target && isBelow(m.Target, o.Target) {
				nested = true
				break
			}
		}
		if !nested && m.Target != "/" && !contains(out, m.Target) {
			out = append(out, m.Target)
		}
	}
	return out
}

// isBelow reports whether p is strictly below dir.
func isBelow(p, dir string) bool {
	if dir == "/" {
		return p != "/"
	}
	return strings.HasPrefix(p, dir+"/")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func containsMount(ms []bootcfg.Mount, target string) bool {
	for _, m := range ms {
		if m.Target == target {
			return true
		}
	}
	return false
}
