package guestinit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
)

const binfmtDir = "/proc/sys/fs/binfmt_misc"

// stepFiles writes the boot config's files into the guest.
func stepFiles(_ context.Context, st *State) error {
	for _, f := range st.Cfg.Files {
		if err := st.Sys.MkdirAll(path.Dir(f.Path), 0o755); err != nil {
			return fmt.Errorf("file %s: %w", f.Path, err)
		}
		if err := st.Sys.WriteFile(f.Path, []byte(f.Content), unixMode(f.Mode)); err != nil {
			return fmt.Errorf("file %s: %w", f.Path, err)
		}
	}
	return nil
}

// stepBinfmt registers the boot config's binfmt_misc entries, mounting binfmt_misc if needed.
func stepBinfmt(_ context.Context, st *State) error {
	if len(st.Cfg.Binfmt) == 0 {
		return nil
	}
	reg := path.Join(binfmtDir, "register")
	if _, err := st.Sys.Stat(reg); err != nil {
		if err := st.Sys.Mount("binfmt_misc", binfmtDir, "binfmt_misc", 0, ""); err != nil {
			return fmt.Errorf("mount binfmt_misc: %w", err)
		}
	}
	for _, b := range st.Cfg.Binfmt {
		err := st.Sys.AppendFile(reg, []byte(b.Registration))
		if errors.Is(err, os.ErrExist) { // already registered: the step is idempotent
			continue
		}
		if err != nil {
			return fmt.Errorf("register %q: %w", b.Registration, err)
		}
	}
	return nil
}

// stepSysctl sets the boot config's kernel parameters in the guest.
func stepSysctl(_ context.Context, st *State) error {
	for _, s := range st.Cfg.Sysctls {
		if err := st.Sys.AppendFile(s.Path(), []byte(s.Value+"\n")); err != nil {
			return fmt.Errorf("sysctl %s=%s: %w", s.Key, s.Value, err)
		}
	}
	return nil
}

// unixMode converts permission bits as stat(2) has them into an os.FileMode.
func unixMode(m uint32) os.FileMode {
	mode := os.FileMode(m & 0o777)
	if m&0o4000 != 0 {
		mode |= os.ModeSetuid
	}
	if m&0o2000 != 0 {
		mode |= os.ModeSetgid
	}
	if m&0o1000 != 0 {
		mode |= os.ModeSticky
	}
	return mode
}
