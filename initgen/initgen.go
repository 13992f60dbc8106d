// Package initgen writes the initrd that boots a c2vm bundle: a newc cpio archive, compressed with
// zstd or gzip, holding the guest init as /init, a static runc, the kernel modules the boot config
// loads (with their dependency closure and a generated modules.dep), the boot config and the OCI
// runtime spec. The output is deterministic: the same inputs give the same bytes.
//
// See docs/bundle-format.md (the initrd) and docs/platforms-and-kernels.md (the guest archive).
package initgen

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path"
	"path/filepath"
	"slices"

	"github.com/c2vm/c2vm/bootcfg"
	"github.com/c2vm/c2vm/initgen/kmod"
	"github.com/c2vm/c2vm/kernel"
)

// Well-known paths in the initrd.
const (
	InitPath = bootcfg.InitPath
	RuncPath = bootcfg.RuncPath
)

// Blob is file content: in memory (Data) or a host file streamed when the archive is written
// (Source). Exactly one is set.
type Blob struct {
	Data   []byte
	Source string
}

// Options says what goes into the initrd. Kernel, Init and Runc are required.
type Options struct {
	// Kernel provides the modules; its version names lib/modules/<version>/ in the initrd.
	Kernel *kernel.Kernel
	// Modules are module names; their dependency closure goes under lib/modules/<version>/ with a
	// modules.dep. Names that modules.builtin lists as built in are skipped (and modules.builtin
	// is copied, so the guest's module loader skips them too).
	Modules []string
	// Init is the guest init binary, written as /init (0755).
	Init Blob
	// Runc is the static runc binary, written as /sbin/runc (0755).
	Runc Blob
	// Guest, instead of Init and Runc, is the guest archive made at build time (WriteGuest,
	// compressed with zstd as hard as the kernel's decompressor allows: see assets): written
	// first, as is, with the rest of the initrd as a second archive after it. With a Compression
	// other than zstd it is decompressed and recompressed.
	Guest Blob
	// BootConfig is written to bootcfg.Path, Spec to bootcfg.SpecPath (both 0644, when set).
	BootConfig []byte
	Spec       []byte
	// Emulators are qemu-user binaries for foreign-architecture images (EmulatorDir/NAME, 0755).
	Emulators []Emulator
	// Extra files to add; a path may not repeat one of the above.
	Extra []File
	// Compression is "zstd" (the default when empty) or "gzip".
	Compression string
}

// DevNullPath is the one device node the initrd carries (devtmpfs is mounted over /dev later).
const DevNullPath = "/dev/null"

// Write writes the initrd for opts to w.
func Write(ctx context.Context, w io.Writer, opts Options) error {
	files, err := Files(opts)
	if err != nil {
		return err
	}
	if opts.Guest.set() {
		if err := writeGuestArchive(w, opts.Guest, opts.Compression); err != nil {
			return err
		}
	}
	return WriteFiles(ctx, w, files, opts.Compression)
}

// Files returns the files Write puts in the initrd (after the guest archive when opts.Guest is
// set), before sorting and parent directories.
func Files(opts Options) ([]File, error) {
	if opts.Kernel == nil {
		return nil, fmt.Errorf("initrd: no kernel")
	}
	var files []File
	if opts.Guest.set() {
		if opts.Init.set() || opts.Runc.set() {
			return nil, fmt.Errorf("initrd: a guest archive and an init or runc binary: give one or the other")
		}
		if err := checkBlob("guest archive", opts.Guest); err != nil {
			return nil, err
		}
	} else {
		var err error
		if files, err = guestFiles(opts.Init, opts.Runc); err != nil {
			return nil, err
		}
	}
	if opts.BootConfig != nil {
		files = append(files, File{Path: bootcfg.Path, Mode: 0o644, Data: opts.BootConfig})
	}
	if opts.Spec != nil {
		files = append(files, File{Path: bootcfg.SpecPath, Mode: 0o644, Data: opts.Spec})
	}
	mods, err := moduleFiles(opts.Kernel, opts.Modules)
	if err != nil {
		return nil, err
	}
	files = append(files, mods...)
	for _, e := range opts.Emulators {
		files = append(files, File{Path: e.Path(), Mode: 0o755, Source: e.Source})
	}
	return append(files, opts.Extra...), nil
}

// guestFiles are what every initrd starts with: the init, runc and /dev/null.
func guestFiles(init, runc Blob) ([]File, error) {
	if err := checkBlob("init", init); err != nil {
		return nil, err
	}
	if err := checkBlob("runc", runc); err != nil {
		return nil, err
	}
	return []File{
		{Path: InitPath, Mode: 0o755, Data: init.Data, Source: init.Source},
		{Path: RuncPath, Mode: 0o755, Data: runc.Data, Source: runc.Source},
		// The Go runtime of /init opens /dev/null for fds 0-2 when the kernel found no console to
		// give it (console=hvc0 before virtio_console is loaded) and dies without it.
		{Path: DevNullPath, Mode: ModeCharDev | 0o666, Major: 1, Minor: 3},
	}, nil
}

func (b Blob) set() bool { return b.Data != nil || b.Source != "" }

func checkBlob(what string, b Blob) error {
	switch {
	case b.Data == nil && b.Source == "":
		return fmt.Errorf("initrd: no %s binary", what)
	case b.Data != nil && b.Source != "":
		return fmt.Errorf("initrd: %s: both Data and Source set", what)
	}
	return nil
}

// moduleFiles returns the closure of names as files under lib/modules/<version>/ plus the
// modules.dep (and modules.builtin when the kernel has one) that go with them.
func moduleFiles(k *kernel.Kernel, names []string) ([]File, error) {
	if len(names) == 0 {
		return nil, nil
	}
	builtin, err := kmod.Builtin(k.ModulesDir)
	if err != nil {
		return nil, fmt.Errorf("initrd: kernel %s: %w", k.Version, err)
	}
	// Sorted so that modules.dep does not depend on the order the names were given in.
	var load []string
	for _, n := range names {
		if n = kmod.NormName(n); !builtin[n] {
			load = append(load, n)
		}
	}
	slices.Sort(load)
	load = slices.Compact(load)
	mods, err := kmod.Closure(k.ModulesDir, load)
	if err != nil {
		return nil, fmt.Errorf("initrd: kernel %s: %w", k.Version, err)
	}
	base := path.Join("/lib/modules", k.Version)
	var files []File
	for _, m := range mods {
		files = append(files, File{Path: path.Join(base, m.Path), Mode: 0o644,
			Source: filepath.Join(k.ModulesDir, filepath.FromSlash(m.Path))})
	}
	var dep bytes.Buffer
	if err := kmod.WriteDep(&dep, mods); err != nil {
		return nil, fmt.Errorf("initrd: %w", err)
	}
	files = append(files, File{Path: path.Join(base, "modules.dep"), Mode: 0o644, Data: dep.Bytes()})
	if len(builtin) > 0 {
		files = append(files, File{Path: path.Join(base, "modules.builtin"), Mode: 0o644,
			Source: filepath.Join(k.ModulesDir, "modules.builtin")})
	}
	return files, nil
}
