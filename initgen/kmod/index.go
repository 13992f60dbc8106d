package kmod

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Index maps normalised module names to their paths relative to modulesDir (slash-separated), for
// every module file (.ko, .ko.xz, .ko.zst, .ko.gz) below it. When two files have the same name,
// the one whose path sorts first wins, so the result does not depend on directory order.
func Index(modulesDir string) (map[string]string, error) {
	idx := make(map[string]string)
	err := filepath.WalkDir(modulesDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !d.Type().IsRegular() {
			return nil
		}
		name := nameFromPath(p)
		if name == "" {
			return nil
		}
		rel, err := filepath.Rel(modulesDir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if old, ok := idx[name]; !ok || rel < old {
			idx[name] = rel
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("index modules in %s: %w", modulesDir, err)
	}
	return idx, nil
}

// Builtin returns the normalised names of the modules built into the kernel, from modulesDir's
// modules.builtin (lines such as "kernel/fs/ext4/ext4.ko"). A missing file gives an empty set.
func Builtin(modulesDir string) (map[string]bool, error) {
	set := make(map[string]bool)
	f, err := os.Open(filepath.Join(modulesDir, "modules.builtin"))
	if errors.Is(err, fs.ErrNotExist) {
		return set, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read modules.builtin: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if name := nameFromPath(strings.TrimSpace(sc.Text())); name != "" {
			set[name] = true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", f.Name(), err)
	}
	return set, nil
}
