// Package assets locates the guest-side binaries c2vm puts into every initrd: the guest init
// (c2vm-init) and a static runc, one pair per guest architecture. A c2vm built with
// `-tags c2vm_embed` (what `make build` does) carries them inside (files/<arch>/); otherwise they
// are looked up in <dir>/<arch>/ (and, for the host's architecture, in <dir> itself) for dir =
// $C2VM_LIBDIR, the executable's directory and ../lib/c2vm relative to it.
//
// See docs/platforms-and-kernels.md (guest architectures, the guest archive).
package assets

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/c2vm/c2vm/initgen"
)

// File names of the assets: the guest init and runc in a lib dir; the guest archive made of
// them (initgen.WriteGuest, compressed with zstd -19 by the build) in a lib dir and in files/ for
// embedding.
const (
	InitName  = "c2vm-init"
	RuncName  = "runc"
	GuestName = "guest.cpio.zst"
)

// EnvLibDir names the environment variable with a directory holding c2vm-init and runc.
const EnvLibDir = "C2VM_LIBDIR"

// Assets are the guest init and runc: the guest archive holding both (embedded, or beside them in
// a lib dir), else the two host files. Use sets them in initgen.Options.
type Assets struct {
	Init, Runc initgen.Blob
	Guest      initgen.Blob
	// Where says where they came from: "embedded" or a directory.
	Where string
}

// Find returns the guest init and static runc for guest architecture arch (a GOARCH; "" = the
// host's): embedded when built with -tags c2vm_embed, else from $C2VM_LIBDIR, else next to the
// executable or in its ../lib/c2vm.
func Find(arch string) (Assets, error) {
	if arch == "" {
		arch = runtime.GOARCH
	}
	if a, ok := embedded(arch); ok {
		return a, nil
	}
	if Embedded {
		return Assets{}, fmt.Errorf("this c2vm carries no guest init and runc for %s guests (only %v): rebuild it with `make build` on a machine that can cross-build for %s", arch, EmbeddedArches(), arch)
	}
	return fromLibDirs(arch)
}

// fromLibDirs looks the assets of arch up in the lib dirs (searchDirs), as a c2vm without
// embedded assets does.
func fromLibDirs(arch string) (Assets, error) {
	dirs, err := searchDirs()
	if err != nil {
		return Assets{}, err
	}
	for _, d := range dirs {
		if a, ok := inDir(filepath.Join(d, arch)); ok {
			return a, nil
		}
		if arch != runtime.GOARCH {
			continue
		}
		if a, ok := inDir(d); ok {
			return a, nil
		}
	}
	return Assets{}, fmt.Errorf("guest init (%s) and static runc for %s not found (looked in %v and their %s/): run `make build` or set %s to a directory holding %s/%s and %s/%s",
		InitName, arch, dirs, arch, EnvLibDir, arch, InitName, arch, RuncName)
}

func searchDirs() ([]string, error) {
	if d := os.Getenv(EnvLibDir); d != "" {
		return []string{d}, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find guest init: %w", err)
	}
	if resolved, err := filepath.EvalSymlinks(exe); err == nil {
		exe = resolved
	}
	dir := filepath.Dir(exe)
	return []string{dir, filepath.Join(dir, "..", "lib", "c2vm")}, nil
}

// Use puts the assets into o: the guest archive when there is one, else the init and runc.
func (a Assets) Use(o *initgen.Options) {
	if a.Guest.Data != nil || a.Guest.Source != "" {
		o.Guest = a.Guest
		return
	}
	o.Init, o.Runc = a.Init, a.Runc
}

// inDir finds c2vm-init and runc in dir, and the guest archive beside them unless it is older
// than either (a binary rebuilt by hand).
func inDir(dir string) (Assets, bool) {
	initPath, runcPath, guestPath := filepath.Join(dir, InitName), filepath.Join(dir, RuncName), filepath.Join(dir, GuestName)
	ini, rc := modTime(initPath), modTime(runcPath)
	if ini.IsZero() || rc.IsZero() {
		return Assets{}, false
	}
	a := Assets{Init: initgen.Blob{Source: initPath}, Runc: initgen.Blob{Source: runcPath}, Where: dir}
	if g := modTime(guestPath); !g.IsZero() && !g.Before(ini) && !g.Before(rc) {
		a.Guest = initgen.Blob{Source: guestPath}
	}
	return a, true
}

// modTime is a regular file's modification time, zero when p is not one.
func modTime(p string) time.Time {
	fi, err := os.Stat(p)
	if err != nil || !fi.Mode().IsRegular() {
		return time.Time{}
	}
	return fi.ModTime()
}
