package convert

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/c2vm/c2vm/bootcfg"
	"github.com/c2vm/c2vm/bundle"
	"github.com/c2vm/c2vm/convert/flatten"
	"github.com/c2vm/c2vm/convert/image"
	"github.com/c2vm/c2vm/convert/rootfs"
	"github.com/c2vm/c2vm/convert/spec"
	"github.com/c2vm/c2vm/initgen"
	"github.com/c2vm/c2vm/initgen/kmod"
	"github.com/c2vm/c2vm/internal/fileutil"
	"github.com/c2vm/c2vm/kernel"
)

// BaseBootArgs is the kernel command line every bundle boots with: the serial console for kernel
// messages, a guest that ends instead of hanging on panic, and overcommit so that the Go PID 1 can
// reserve its heap in small guests (the init puts the heuristic back for the workload: see
// bootcfg.DockerSysctls).
// The console is the VM architecture's first serial port (see BootArgs).
const BaseBootArgs = "console=ttyS0 quiet panic=-1 sysctl.vm.overcommit_memory=1"

// BootArgs is BaseBootArgs with the console of the VM architecture (bootcfg.SerialConsole).
func BootArgs(vmArch string) string {
	return strings.Replace(BaseBootArgs, "console=ttyS0", "console="+bootcfg.SerialConsole(vmArch), 1)
}

// rootfsCPIO is where the initrd-format rootfs is staged before it is appended to the initrd.
const rootfsCPIO = "rootfs.cpio"

// progress adapts the CLI's callback; sizes are looked up once the image is open.
func (c *conversion) progress(img **image.Image) func(digest.Digest, int64) {
	if c.opts.Progress == nil {
		return nil
	}
	return func(d digest.Digest, n int64) {
		var total int64
		for _, l := range (*img).Layers {
			if l.Desc.Digest == d {
				total = l.Desc.Size
			}
		}
		c.opts.Progress(d.String(), n, total)
	}
}

func (c *conversion) writeRootfs(ctx context.Context, tree *flatten.Tree) error {
	name := bundle.RootfsFile(c.opts.RootfsFormat)
	if name == "" {
		name = rootfsCPIO
	}
	return rootfs.Write(ctx, c.opts.RootfsFormat, tree, c.stage.Path(name), rootfs.Options{Compression: c.opts.Compression})
}

// BootOptions are what a bundle's boot config depends on.
type BootOptions struct {
	Format     string            // rootfs format
	Identity   *bootcfg.Identity // the rootfs image's, for squashfs and erofs
	Debug      bool              // the init logs its steps
	StopSignal string            // the image's STOPSIGNAL; "" = SIGTERM
	Emulator   *initgen.Emulator // registered with binfmt_misc for a foreign-architecture image
	// Builtin lists the modules built into the kernel (kmod.NormName): the init does not load them.
	Builtin map[string]bool
}

// BootConfig returns the boot config baked into a bundle's initrd. A disk rootfs is found by the
// serial c2vm run gives it, else by its identity, so that any VMM may attach it anywhere.
func BootConfig(o BootOptions) bootcfg.Config {
	b := bootcfg.Default()
	b.Debug = o.Debug
	b.Modules = nil
	for _, m := range DefaultModules {
		if !o.Builtin[kmod.NormName(m)] {
			b.Modules = append(b.Modules, m)
		}
	}
	b.Container.StopSignal = o.StopSignal
	if o.Emulator != nil {
		b.Binfmt = []bootcfg.Binfmt{{Registration: o.Emulator.Registration()}}
	}
	switch o.Format {
	case bootcfg.FormatInitrd:
		b.Container.Rootfs = bootcfg.Rootfs{Format: o.Format, Path: "/c2vm/rootfs"}
	default:
		b.Container.Rootfs = bootcfg.Rootfs{Format: o.Format, Serial: bootcfg.RootfsSerial, Identity: o.Identity}
	}
	return b
}

// rootfsIdentity reads the identity of the written rootfs image (nil for the initrd format).
func (c *conversion) rootfsIdentity() (*bootcfg.Identity, error) {
	name := bundle.RootfsFile(c.opts.RootfsFormat)
	if name == "" {
		return nil, nil
	}
	f, err := os.Open(c.stage.Path(name))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	id, err := bootcfg.NewIdentity(f)
	return &id, err
}

func (c *conversion) manifest(img *source, k *kernel.Kernel, cfg ocispec.ImageConfig, rs *specs.Spec, passwd, group []byte, id *bootcfg.Identity) *bundle.Manifest {
	meta := spec.ImageMetadata(img.Config)
	args := BootArgs(c.vmArch)
	m := &bundle.Manifest{
		Platform:     img.Platform,
		Source:       bundle.Source{Ref: c.opts.Image, Name: img.Name, ManifestDigest: img.ManifestDigest.String(), ConfigDigest: img.ConfigDigest.String()},
		Kernel:       bundle.Kernel{Version: k.Version, Package: k.Package},
		RootfsFormat: c.opts.RootfsFormat,
		BootArgs:     args,
		MemoryMiB:    c.opts.MemoryMiB,
		CPUs:         c.opts.CPUs,
		Image:        cfg,
		Passwd:       string(passwd),
		Group:        string(group),
		Boot:         BootConfig(BootOptions{Format: c.opts.RootfsFormat, Identity: id, Debug: c.opts.Debug, StopSignal: meta.StopSignal, Emulator: c.emulator, Builtin: c.builtin}),
		VMArch:       c.vmArch,
		Emulator:     manifestEmulator(c.emulator),
		Process: bundle.Process{
			Args: rs.Process.Args, User: cfg.User, UID: rs.Process.User.UID, GID: rs.Process.User.GID,
			Env: rs.Process.Env, WorkingDir: rs.Process.Cwd, StopSignal: meta.StopSignal,
		},
	}
	return m
}

// writeBoot writes vmlinuz and initrd.img (with the rootfs appended for the initrd format).
func (c *conversion) writeBoot(ctx context.Context, k *kernel.Kernel, m *bundle.Manifest, rs *specs.Spec) error {
	if err := fileutil.CopyFile(k.Vmlinuz, c.stage.Path(bundle.KernelFile), 0o644); err != nil {
		return fmt.Errorf("copy kernel: %w", err)
	}
	bootJSON, err := m.Boot.Marshal()
	if err != nil {
		return err
	}
	specJSON, err := json.MarshalIndent(rs, "", "  ")
	if err != nil {
		return fmt.Errorf("encode runtime spec: %w", err)
	}
	f, err := os.Create(c.stage.Path(bundle.InitrdFile))
	if err != nil {
		return fmt.Errorf("write initrd: %w", err)
	}
	defer f.Close()
	opts := initgen.Options{
		Kernel: k, Modules: m.Boot.Modules, BootConfig: bootJSON, Spec: append(specJSON, '\n'),
	}
	c.assets.Use(&opts)
	if c.emulator != nil {
		opts.Emulators = []initgen.Emulator{*c.emulator}
	}
	err = initgen.Write(ctx, f, opts)
	if err != nil {
		return fmt.Errorf("write initrd: %w", err)
	}
	if c.opts.RootfsFormat == bootcfg.FormatInitrd {
		if err := appendFile(f, c.stage.Path(rootfsCPIO)); err != nil {
			return fmt.Errorf("append rootfs to initrd: %w", err)
		}
	}
	return f.Close()
}

// appendFile appends src to w and removes src.
func appendFile(w io.Writer, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	_, err = io.Copy(w, in)
	in.Close()
	if err != nil {
		return err
	}
	return os.Remove(src)
}

func manifestEmulator(e *initgen.Emulator) *bundle.Emulator {
	if e == nil {
		return nil
	}
	return &bundle.Emulator{Name: e.Name, Version: e.Version, SHA256: e.SHA256}
}
