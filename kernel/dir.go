package kernel

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

var errNoVmlinuz = errors.New("no boot/vmlinuz-* with a matching lib/modules/<version>/")

// fromDir finds boot/vmlinuz-<v> with lib/modules/<v>/ (or usr/lib/modules/<v>/) in dir; with
// several, the newest version wins.
func fromDir(dir string) (*Kernel, error) {
	images, err := filepath.Glob(filepath.Join(dir, "boot", "vmlinuz-*"))
	if err != nil {
		return nil, err
	}
	var best *Kernel
	for _, img := range images {
		v := strings.TrimPrefix(filepath.Base(img), "vmlinuz-")
		mods := modulesFor(dir, v)
		if mods == "" {
			continue
		}
		if best == nil || compareNatural(v, best.Version) > 0 {
			best = &Kernel{Version: v, Vmlinuz: img, ModulesDir: mods}
		}
	}
	if best == nil {
		if len(images) > 0 {
			return nil, fmt.Errorf("%s: %s has no lib/modules/%s/", errNoVmlinuz.Error(), images[0],
				strings.TrimPrefix(filepath.Base(images[0]), "vmlinuz-"))
		}
		return nil, errNoVmlinuz
	}
	return best, nil
}

func modulesFor(root, version string) string {
	for _, d := range []string{"lib/modules", "usr/lib/modules"} {
		p := filepath.Join(root, d, version)
		if isDir(p) {
			return p
		}
	}
	return ""
}

// fromVmlinuz pairs a kernel image with modulesDir: lib/modules/<version>/ itself, or its parent.
func fromVmlinuz(img, modulesDir string) (*Kernel, error) {
	ver := ImageVersion(img)
	if ver == "" {
		ver = strings.TrimPrefix(filepath.Base(img), "vmlinuz-")
		if ver == filepath.Base(img) {
			ver = ""
		}
	}
	if modulesDir == "" {
		return nil, fmt.Errorf("a bare kernel image needs its modules directory too (--modules lib/modules/%s)", orPlaceholder(ver))
	}
	if !isDir(modulesDir) {
		return nil, fmt.Errorf("modules directory %s: not a directory", modulesDir)
	}
	mods, err := versionDir(modulesDir, ver)
	if err != nil {
		return nil, err
	}
	if ver == "" {
		ver = filepath.Base(mods)
	}
	return &Kernel{Version: ver, Vmlinuz: img, ModulesDir: mods}, nil
}

// versionDir resolves modulesDir to the lib/modules/<version> directory for ver ("" = unknown).
func versionDir(modulesDir, ver string) (string, error) {
	if ver != "" && isDir(filepath.Join(modulesDir, ver)) {
		return filepath.Join(modulesDir, ver), nil
	}
	if looksLikeModules(modulesDir) {
		if ver != "" && filepath.Base(modulesDir) != ver {
			return "", fmt.Errorf("modules directory %s does not match the kernel image's version %s", modulesDir, ver)
		}
		return modulesDir, nil
	}
	entries, err := os.ReadDir(modulesDir)
	if err != nil {
		return "", err
	}
	var found []string
	for _, e := range entries {
		if p := filepath.Join(modulesDir, e.Name()); e.IsDir() && looksLikeModules(p) {
			found = append(found, p)
		}
	}
	if len(found) != 1 || ver != "" {
		return "", fmt.Errorf("modules directory %s: no module tree for version %s (want lib/modules/<version>/)", modulesDir, orPlaceholder(ver))
	}
	return found[0], nil
}

// looksLikeModules reports whether p is a lib/modules/<version> directory.
func looksLikeModules(p string) bool {
	for _, n := range []string{"kernel", "modules.order", "modules.builtin", "modules.dep"} {
		if _, err := os.Stat(filepath.Join(p, n)); err == nil {
			return true
		}
	}
	return false
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

func orPlaceholder(v string) string {
	if v == "" {
		return "<version>"
	}
	return v
}
