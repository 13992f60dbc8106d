// Package export writes runner descriptors for a c2vm bundle, so that a VMM other than `c2vm run`
// can boot it: a standalone QEMU script, a Tangled spindle image (spec.json), a Firecracker
// config with the uncompressed vmlinux it needs, and a Cloud Hypervisor script. Each descriptor
// lives in its own directory with the bundle's files hard-linked (or copied) in, and paths
// relative to it; the guest finds its rootfs by identity and reports the workload's exit status on
// the console, so no c2vm-specific device layout is needed.
//
// See docs/vmms.md (the runners and how each is tested).
package export

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/c2vm/c2vm/bundle"
	"github.com/c2vm/c2vm/internal/fileutil"
)

// Runners, as `c2vm export --runner` takes them.
const (
	QEMU            = "qemu"
	Spindle         = "spindle"
	Firecracker     = "firecracker"
	CloudHypervisor = "cloud-hypervisor"
)

// Runners lists the runner names, sorted.
func Runners() []string { return slices.Sorted(maps.Keys(writers)) }

// Options for Write. The zero value of each field is the sensible default.
type Options struct {
	Runner string // one of Runners
	// TCG makes the spindle descriptor work on a host without KVM (accel=tcg in the machine, an
	// early TSC frequency for the microvm machine); the default is spindle's stock KVM machine.
	TCG bool
	// WorkspaceMiB is the size of the spindle descriptor's /workspace volume (default
	// DefaultWorkspaceMiB).
	WorkspaceMiB int
}

// Result says what Write wrote.
type Result struct {
	Dir   string
	Files []string // relative to Dir, sorted
	Entry string   // the file to run or hand to the VMM
}

// Write exports the bundle at bundleDir for opts.Runner into dir, which must not exist or be
// empty. It is atomic: the directory appears complete or not at all.
func Write(ctx context.Context, bundleDir, dir string, opts Options) (*Result, error) {
	m, err := bundle.Read(bundleDir)
	if err != nil {
		return nil, err
	}
	if err := m.CheckFiles(bundleDir); err != nil {
		return nil, err
	}
	w, ok := writers[opts.Runner]
	if !ok {
		return nil, fmt.Errorf("export: unknown runner %q: want %s", opts.Runner, strings.Join(Runners(), ", "))
	}
	if vm := m.GuestArch(); vm != "amd64" && opts.Runner != QEMU {
		return nil, fmt.Errorf("export: the bundle's VM is %s: %s descriptors are written for amd64 VMs only; use --runner qemu", vm, opts.Runner)
	}
	if err := usableTarget(dir); err != nil {
		return nil, err
	}
	// Built in a stage beside dir, which replaces dir only if it is still missing or empty: a
	// directory filled meanwhile is kept and the export fails.
	var e *exporter
	var entry string
	var werr error
	filled := false
	keep := func(target string) bool {
		filled = usableTarget(target) != nil
		return filled
	}
	err = fileutil.AtomicDir(dir, fileutil.AtomicDirOptions{Perm: 0o755, Keep: keep}, func(stage string) error {
		e = &exporter{ctx: ctx, m: m, src: bundleDir, dir: stage, opts: opts}
		entry, werr = w(e)
		return werr
	})
	switch {
	case werr != nil:
		return nil, fmt.Errorf("export %s: %w", opts.Runner, werr)
	case err != nil:
		return nil, fmt.Errorf("export: %w", err)
	case filled:
		return nil, fmt.Errorf("export: %s exists and is not empty: give a new directory", dir)
	}
	sort.Strings(e.files)
	return &Result{Dir: dir, Files: e.files, Entry: entry}, nil
}

// usableTarget accepts a missing or empty directory.
func usableTarget(dir string) error {
	ents, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("export: %s: %w", dir, err)
	case len(ents) > 0:
		return fmt.Errorf("export: %s exists and is not empty: give a new directory", dir)
	}
	return nil
}

var writers = map[string]func(*exporter) (string, error){
	QEMU:            writeQEMU,
	Spindle:         writeSpindle,
	Firecracker:     writeFirecracker,
	CloudHypervisor: writeCloudHypervisor,
}

// exporter is one export in progress.
type exporter struct {
	ctx   context.Context
	m     *bundle.Manifest
	src   string
	dir   string
	opts  Options
	files []string
}

// rootfs returns the bundle's rootfs file name, "" for the initrd format.
func (e *exporter) rootfs() string { return bundle.RootfsFile(e.m.RootfsFormat) }

// link puts a bundle file into the export: a hard link, else a copy.
func (e *exporter) link(name string) error {
	src, dst := filepath.Join(e.src, name), filepath.Join(e.dir, name)
	if err := os.Link(src, dst); err != nil {
		if err := fileutil.CopyFile(src, dst, 0o644); err != nil {
			return fmt.Errorf("copy %s: %w", name, err)
		}
	}
	e.files = append(e.files, name)
	return nil
}

// linkBoot links the kernel (unless the runner has its own), the initrd and the rootfs.
func (e *exporter) linkBoot(kernel bool) error {
	names := []string{bundle.InitrdFile}
	if kernel {
		names = append(names, bundle.KernelFile)
	}
	if r := e.rootfs(); r != "" {
		names = append(names, r)
	}
	for _, n := range names {
		if err := e.link(n); err != nil {
			return err
		}
	}
	return nil
}

// write writes a new file of the export.
func (e *exporter) write(name string, data []byte, perm os.FileMode) error {
	if err := os.WriteFile(filepath.Join(e.dir, name), data, perm); err != nil {
		return err
	}
	if err := os.Chmod(filepath.Join(e.dir, name), perm); err != nil {
		return err
	}
	e.files = append(e.files, name)
	return nil
}

// bootArgs returns the bundle's kernel command line with the console replaced and extra
// arguments appended.
func (e *exporter) bootArgs(console string, extra ...string) string {
	var out []string
	for _, f := range strings.Fields(e.m.BootArgs) {
		if strings.HasPrefix(f, "console=") {
			f = "console=" + console
		}
		out = append(out, f)
	}
	return strings.Join(append(out, extra...), " ")
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
