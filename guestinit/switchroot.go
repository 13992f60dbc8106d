package guestinit

import (
	"context"
	"fmt"
	"path"

	"github.com/c2vm/c2vm/bootcfg"
	"golang.org/x/sys/unix"
)

const (
	newRootDir = "/c2vm-newroot"
	runcPath   = bootcfg.RuncPath
)

// stepSwitchRoot moves the init from the initramfs to a tmpfs root, because runc's pivot_root
// fails when the current root is the initramfs (rootfs cannot be pivoted away). Like LinuxKit's
// init: mount a tmpfs, bind runc and copy the configs there, bind the initrd-format rootfs dir, move
// the early mounts, delete the rest of the initramfs to free its memory, move the tmpfs onto /
// and chroot into it.
func stepSwitchRoot(_ context.Context, st *State) error {
	if st.switched {
		return nil
	}
	sys := st.Sys
	nr := func(p string) string { return path.Join(newRootDir, p) }
	if err := sys.MkdirAll(newRootDir, 0o755); err != nil {
		return err
	}
	if err := sys.Mount("c2vm-root", newRootDir, "tmpfs", 0, "mode=0755"); err != nil {
		return fmt.Errorf("mount tmpfs root: %w", err)
	}
	// runc's directory is bound, not copied: a 10 MB copy doubled runc in memory while switching,
	// which is what made 92-94 MiB guests die. The initramfs stays mounted below the new root, so
	// the directory does too. (A bind of the file alone breaks runc: its exe seal mounts an overlay
	// of the binary's directory, which would see the empty mount point.)
	runcDir := path.Dir(runcPath)
	keep := []string{newRootDir, runcDir}
	if err := sys.MkdirAll(nr(runcDir), 0o755); err != nil {
		return err
	}
	if err := sys.Mount(runcDir, nr(runcDir), "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s into the new root: %w", runcDir, err)
	}
	copies := []struct {
		src  string
		perm uint32
	}{{st.ConfigPath, 0o644}, {st.Cfg.Container.SpecPath, 0o644}}
	if rf := st.Cfg.Container.Rootfs; rf.Format == bootcfg.FormatInitrd {
		if _, err := sys.Stat(rf.Path + bootcfg.XattrsSuffix); err == nil {
			copies = append(copies, struct {
				src  string
				perm uint32
			}{rf.Path + bootcfg.XattrsSuffix, 0o600})
		}
	}
	for _, c := range copies {
		if err := sys.MkdirAll(path.Dir(nr(c.src)), 0o755); err != nil {
			return err
		}
		if err := sys.CopyFile(c.src, nr(c.src), fsMode(c.perm)); err != nil {
			return fmt.Errorf("copy %s to the new root: %w", c.src, err)
		}
	}
	if rf := st.Cfg.Container.Rootfs; rf.Format == bootcfg.FormatInitrd {
		if err := sys.MkdirAll(nr(rf.Path), 0o755); err != nil {
			return err
		}
		if err := sys.Mount(rf.Path, nr(rf.Path), "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind initrd rootfs %s: %w", rf.Path, err)
		}
		keep = append(keep, rf.Path)
	}
	for _, t := range topMounts(st.early) {
		if err := sys.MkdirAll(nr(t), 0o755); err != nil {
			return err
		}
		if err := sys.Mount(t, nr(t), "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("move mount %s: %w", t, err)
		}
	}
	if err := sys.EmptyInitramfs("/", keep); err != nil {
		return fmt.Errorf("free initramfs: %w", err)
	}
	if err := sys.Chdir(newRootDir); err != nil {
		return err
	}
	if err := sys.Mount(newRootDir, "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move new root onto /: %w", err)
	}
	if err := sys.Chroot("."); err != nil {
		return err
	}
	if err := sys.Chdir("/"); err != nil {
		return err
	}
	st.switched = true
	return nil
}
