// Package kernel finds a Linux kernel and its modules for a VM bundle. It accepts a Debian or
// Ubuntu kernel package (.deb, read in Go and unpacked once into a cache), a metapackage whose
// real kernel package lies beside it, a directory holding boot/vmlinuz-<version> and
// lib/modules/<version>/, or a bare vmlinuz together with a modules directory.
//
// See docs/platforms-and-kernels.md.
package kernel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/c2vm/c2vm/internal/cachedir"
)

// Kernel is a kernel image and the module tree that belongs to it.
type Kernel struct {
	Version    string // e.g. "6.1.0-56-cloud-amd64"
	Vmlinuz    string // path to the kernel image
	ModulesDir string // path to lib/modules/<Version>
	Source     string // what the user gave (for bundle.json)
	Package    string // the .deb's file name when the kernel came from a package
}

// Options tunes Load and Default. The zero value is the sensible default.
type Options struct {
	// CacheDir is the cache root (see internal/cachedir): it holds the packages `make kernel`
	// downloads, unpacked kernel packages and the c2vm kernels. "" means cachedir.Default().
	CacheDir string
	// ModulesDir is the module tree for a bare vmlinuz: lib/modules/<version> or its parent.
	ModulesDir string
	// Arch is the guest architecture (GOARCH) Default looks for: packages named *_<Arch>.deb.
	// "" means the host's.
	Arch string
}

// EnvKernel names the environment variable Default reads first.
const EnvKernel = "C2VM_KERNEL"

// arch is the guest architecture Default and the c2vm kernel are for.
func (o Options) arch() string {
	if o.Arch == "" {
		return runtime.GOARCH
	}
	return o.Arch
}

func (o Options) cacheDir() (cachedir.Dir, error) { return cachedir.Or(o.CacheDir) }

// Load finds the kernel that src names: a kernel .deb (or a metapackage .deb with its kernel
// package beside it), a directory with boot/vmlinuz-* and lib/modules/<version>/, or a vmlinuz
// file together with opts.ModulesDir.
func Load(ctx context.Context, src string, opts Options) (*Kernel, error) {
	if src == C2VM {
		dir, err := c2vmDir(opts)
		if err != nil {
			return nil, err
		}
		k, err := load(ctx, dir, opts)
		if err != nil {
			return nil, fmt.Errorf("kernel %s (%s): %w", src, dir, err)
		}
		k.Source, k.Package = src, "c2vm"
		return k, nil
	}
	k, err := load(ctx, src, opts)
	if err != nil {
		return nil, fmt.Errorf("kernel %s: %w", src, err)
	}
	k.Source = src
	return k, nil
}

func load(ctx context.Context, src string, opts Options) (*Kernel, error) {
	fi, err := os.Stat(src)
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		return fromDir(src)
	}
	isDeb, err := hasArMagic(src)
	if err != nil {
		return nil, err
	}
	if isDeb {
		return fromDeb(ctx, src, opts)
	}
	return fromVmlinuz(src, opts.ModulesDir)
}

// C2VM names the c2vm kernel (--kernel c2vm): the tailored, module-free kernel `make kernel-c2vm`
// builds from Debian's linux-source into CacheDir/kernel-c2vm/<arch>.
const C2VM = "c2vm"

func c2vmDir(opts Options) (string, error) {
	cache, err := opts.cacheDir()
	if err != nil {
		return "", err
	}
	arch := opts.arch()
	dir := C2VMKernelDir(cache.Path(), arch)
	if _, err := os.Stat(dir); err != nil {
		return "", fmt.Errorf("kernel %s: %w for %s in %s: run `make kernel-c2vm`, `c2vm kernel pull REF`, or pass another --kernel", C2VM, ErrNoKernel, arch, dir)
	}
	return dir, nil
}

// ErrNoKernel is returned (wrapped) by Default when no kernel package for the wanted
// architecture is in the cache.
var ErrNoKernel = errors.New("no kernel")

// Default returns $C2VM_KERNEL when set, else the newest kernel package for opts.Arch in
// CacheDir/kernel/ (where `make kernel` puts them), else an error wrapping ErrNoKernel that says
// how to get one.
func Default(ctx context.Context, opts Options) (*Kernel, error) {
	if src := os.Getenv(EnvKernel); src != "" {
		return Load(ctx, src, opts)
	}
	cache, err := opts.cacheDir()
	if err != nil {
		return nil, err
	}
	arch := opts.arch()
	dir := cache.KernelPackages()
	deb, err := newestDeb(dir, arch)
	if err != nil {
		return nil, err
	}
	if deb == "" {
		return nil, fmt.Errorf("%w: %s", ErrNoKernel, noKernelHelp(dir, arch))
	}
	return Load(ctx, deb, opts)
}

func noKernelHelp(dir, arch string) string {
	pkg, multiarch := "linux-image-cloud-"+arch, ""
	if arch != runtime.GOARCH {
		pkg += ":" + arch
		multiarch = fmt.Sprintf("dpkg --add-architecture %s && apt-get update && ", arch)
	}
	return fmt.Sprintf("no %s kernel: pass --kernel or set %s, run `make kernel`, or download Debian's cloud kernel "+
		"into %s: %smkdir -p %s && cd %s && apt-get download %s "+
		"$(apt-cache depends %s | sed -n 's/^ *Depends: //p')",
		arch, EnvKernel, dir, multiarch, dir, dir, pkg, pkg)
}

// newestDeb returns the newest linux-image-*_<arch>.deb in dir ("" when there is none),
// preferring real kernel packages (linux-image-<digit>...) over metapackages.
func newestDeb(dir, arch string) (string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("look for kernel packages: %w", err)
	}
	var best string
	bestReal := false
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || !strings.HasPrefix(n, "linux-image-") || !strings.HasSuffix(n, "_"+arch+".deb") {
			continue
		}
		rest := strings.TrimPrefix(n, "linux-image-")
		real := rest != "" && rest[0] >= '0' && rest[0] <= '9'
		if best == "" || (real && !bestReal) || (real == bestReal && compareNatural(n, best) > 0) {
			best, bestReal = n, real
		}
	}
	if best == "" {
		return "", nil
	}
	return filepath.Join(dir, best), nil
}

// hasArMagic reports whether the file starts like an ar archive (a .deb).
func hasArMagic(p string) (bool, error) {
	f, err := os.Open(p)
	if err != nil {
		return false, err
	}
	defer f.Close()
	var b [len(arMagic)]byte
	if _, err := io.ReadFull(f, b[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return false, nil
		}
		return false, err
	}
	return string(b[:]) == arMagic, nil
}
