// Package convert turns a container image into a c2vm VM bundle: it opens the image for the chosen
// platform (convert/image), flattens its layers into one canonical tree (convert/flatten), writes the
// root filesystem image (convert/rootfs), generates the OCI runtime spec (convert/spec) and the boot
// config (bootcfg), builds the initrd with the guest init, static runc and kernel modules (initgen),
// and commits the bundle directory atomically (bundle).
//
// See docs/architecture.md (the pipeline) and docs/usage.md (convert's flags).
package convert

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/c2vm/c2vm/bootcfg"
	"github.com/c2vm/c2vm/bundle"
	"github.com/c2vm/c2vm/convert/flatten"
	"github.com/c2vm/c2vm/convert/image"
	"github.com/c2vm/c2vm/convert/rootfs"
	"github.com/c2vm/c2vm/convert/spec"
	"github.com/c2vm/c2vm/initgen"
	"github.com/c2vm/c2vm/initgen/assets"
	"github.com/c2vm/c2vm/initgen/kmod"
	"github.com/c2vm/c2vm/internal/cachedir"
	"github.com/c2vm/c2vm/kernel"
)

// Defaults recorded in a bundle when the options leave them zero.
const (
	DefaultMemoryMiB = 512
	DefaultCPUs      = 1
	DefaultFormat    = bootcfg.FormatSquashfs
)

// DefaultModules are the kernel modules every bundle loads (dependencies are added by initgen):
// virtio over PCI (QEMU q35, Cloud Hypervisor) and over MMIO described by ACPI (QEMU microvm,
// Firecracker >= 1.8); virtiofs (with fuse) for host directories (-v /dir:/path).
var DefaultModules = []string{
	"virtio_pci", "virtio_mmio", "virtio_blk", "virtio_console", "virtio_net", "virtio_rng",
	"overlay", "squashfs", "erofs", "binfmt_misc", "vsock", "vmw_vsock_virtio_transport",
	"fuse", "virtiofs",
}

// Options configures a conversion. Only Image and Output are required.
type Options struct {
	Image        string // image reference (see convert/image.ParseRef)
	Output       string // bundle directory to create or replace
	Platform     string // os/arch[/variant]; "" = host
	Kernel       string // kernel .deb, directory or vmlinuz; "" = kernel.Default
	ModulesDir   string // with a bare vmlinuz
	CacheDir     string // cache root (internal/cachedir); "" = cachedir.Default()
	RootfsFormat string // squashfs (default), erofs, initrd
	MemoryMiB    int
	CPUs         int
	Overrides    spec.Overrides // baked in: Entrypoint, Cmd, Env, User, WorkingDir (run-time ones are refused)
	Debug        bool           // guest init logs each step
	MaxSize      int64          // bound on the uncompressed rootfs; 0 = flatten's default
	// Compression of the rootfs image (see rootfs.Options.Compression); "" = the format's default.
	Compression string
	// Changes are Dockerfile instructions applied over the image config (see ApplyChanges).
	Changes []string
	// ConfigFile is an OCI image config JSON for a rootfs: input (see TransportRootfs).
	ConfigFile string
	// EmulatorDir holds the static qemu-user emulators for foreign-architecture images; "" =
	// /usr/bin (Debian's qemu-user-static).
	EmulatorDir string
	// Insecure lists registry hosts reached over plain HTTP or unverified TLS (loopback
	// addresses may use plain HTTP anyway).
	Insecure []string
	// Progress receives compressed bytes read per layer; Step receives stage names. nil = silent.
	Progress func(layer string, done, total int64)
	Step     func(name string)
	Warn     func(msg string)
}

// Convert builds the bundle and returns its manifest. On any error or cancellation nothing is left
// at Output (an existing bundle there is untouched).
func Convert(ctx context.Context, opts Options) (*bundle.Manifest, error) {
	opts = opts.withDefaults()
	stage, err := bundle.NewStage(opts.Output)
	if err != nil {
		return nil, err
	}
	defer stage.Abort()
	c := &conversion{opts: opts, stage: stage}
	m, err := c.run(ctx)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := stage.Commit(m); err != nil {
		return nil, err
	}
	return m, nil
}

func (o Options) withDefaults() Options {
	if o.RootfsFormat == "" {
		o.RootfsFormat = DefaultFormat
	}
	if o.MemoryMiB == 0 {
		o.MemoryMiB = DefaultMemoryMiB
	}
	if o.CPUs == 0 {
		o.CPUs = DefaultCPUs
	}
	return o
}

type conversion struct {
	opts     Options
	stage    *bundle.Stage
	vmArch   string
	emulator *initgen.Emulator // nil for a native image
	builtin  map[string]bool   // the kernel's built-in modules
	assets   assets.Assets     // the guest init and runc for vmArch
}

func (c *conversion) step(name string) {
	if c.opts.Step != nil {
		c.opts.Step(name)
	}
}

func (c *conversion) run(ctx context.Context) (*bundle.Manifest, error) {
	if set := c.opts.Overrides.RunTimeOnly(); set != nil {
		return nil, fmt.Errorf("convert: overrides %s apply at run time only: give them to c2vm run", strings.Join(set, ", "))
	}
	if !validFormat(c.opts.RootfsFormat) {
		return nil, fmt.Errorf("unknown rootfs format %q: use squashfs, erofs or initrd", c.opts.RootfsFormat)
	}
	if comp := c.opts.Compression; c.opts.RootfsFormat == bootcfg.FormatErofs && comp != "" && comp != "none" {
		return nil, fmt.Errorf("--compression %s: erofs images are written uncompressed (go-erofs): use --rootfs-format squashfs to compress", comp)
	}
	c.step("open image")
	img, err := c.openSource(ctx)
	if err != nil {
		return nil, err
	}
	defer img.Close()
	k, err := c.loadKernel(ctx, img.Platform)
	if err != nil {
		return nil, err
	}
	if c.builtin, err = kmod.Builtin(k.ModulesDir); err != nil {
		return nil, fmt.Errorf("kernel %s: %w", k.Source, err)
	}
	if err := c.planEmulation(k, img.Platform); err != nil {
		return nil, err
	}
	c.step("flatten layers")
	// Spool beside the output: that filesystem is about to hold the rootfs anyway.
	tree, err := flatten.Flatten(ctx, img.Layers, flatten.Options{MaxSize: c.opts.MaxSize, Warn: c.opts.Warn, SpoolDir: c.stage.Dir})
	if err != nil {
		return nil, err
	}
	defer tree.Close()
	passwd, group, err := userDB(tree)
	if err != nil {
		return nil, err
	}
	cfg, err := ApplyChanges(img.Config.Config, c.opts.Changes)
	if err != nil {
		return nil, err
	}
	cfg = c.opts.Overrides.ApplyToConfig(cfg)
	imgCfg := img.Config
	imgCfg.Config = cfg
	rs, err := spec.Generate(ctx, imgCfg, spec.Options{Platform: img.Platform, VMArch: c.vmArch, Passwd: passwd, Group: group, AllowNoCommand: true})
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", c.opts.Image, err)
	}
	if len(rs.Process.Args) == 0 && c.opts.Warn != nil {
		c.opts.Warn("the image has no CMD or ENTRYPOINT: give the command when you run the bundle (c2vm run BUNDLE -- COMMAND)")
	}
	c.step("write rootfs")
	if err := c.writeRootfs(ctx, tree); err != nil {
		return nil, err
	}
	c.checkInitrdFits(tree)
	id, err := c.rootfsIdentity()
	if err != nil {
		return nil, fmt.Errorf("rootfs: %w", err)
	}
	m := c.manifest(img, k, cfg, rs, passwd, group, id)
	c.step("write initrd")
	if err := c.writeBoot(ctx, k, m, rs); err != nil {
		return nil, err
	}
	return m, nil
}

// planEmulation decides how the image runs. The kernel's architecture is the VM's (the guest init
// and runc are built for it); an image of another architecture (beyond the VM's own 32-bit
// sibling) runs under a static qemu-user emulator built for the VM's architecture, which the
// initrd carries and the init registers with binfmt_misc.
func (c *conversion) planEmulation(k *kernel.Kernel, p ocispec.Platform) error {
	vm, err := kernel.Arch(k.Vmlinuz)
	if err != nil {
		return err
	}
	if c.assets, err = assets.Find(vm); err != nil {
		return fmt.Errorf("kernel %s is for %s guests: %w", k.Vmlinuz, vm, err)
	}
	c.vmArch = vm
	if spec.GuestArch(p.Architecture) == vm {
		return nil
	}
	dir, hint, err := c.emulatorDir(vm)
	if err != nil {
		return err
	}
	e, err := initgen.FindEmulator(p.Architecture, vm, dir, hint)
	if err != nil {
		return fmt.Errorf("image platform %s/%s in an %s VM: %w", p.OS, p.Architecture, vm, err)
	}
	c.emulator = &e
	if c.opts.Warn != nil {
		c.opts.Warn(fmt.Sprintf("the image is %s/%s and the VM %s: its binaries run under %s (%s)", p.OS, p.Architecture, vm, e.Name, e.Version))
	}
	return nil
}

// emulatorDir is where the qemu-user emulators built for the VM's architecture are: the option,
// /usr/bin for the host's architecture, else the cache where `make foreign` unpacks Debian's
// qemu-user-static of that architecture. hint says how to get them.
func (c *conversion) emulatorDir(vm string) (dir, hint string, err error) {
	if c.opts.EmulatorDir != "" {
		return c.opts.EmulatorDir, "", nil
	}
	if vm == runtime.GOARCH {
		return "", "", nil
	}
	cache, err := cachedir.Or(c.opts.CacheDir)
	if err != nil {
		return "", "", err
	}
	root := filepath.Join(cache.Emulators(), vm)
	hint = fmt.Sprintf("run `make foreign`, or apt-get download qemu-user-static:%s and dpkg -x it into %s", vm, root)
	return filepath.Join(root, "usr", "bin"), hint, nil
}

// initrdHeadroomMiB is what a guest needs besides an initrd-format rootfs: the kernel's image and
// reservations, slab, the init, runc and the workload (see the README's Memory section).
const initrdHeadroomMiB = 64

// checkInitrdFits warns when an initrd-format rootfs is too big for the bundle's memory: the
// kernel unpacks it into RAM, and when that fails the run fails (c2vm run reports it).
func (c *conversion) checkInitrdFits(tree *flatten.Tree) {
	if c.opts.RootfsFormat != bootcfg.FormatInitrd || c.opts.Warn == nil {
		return
	}
	var size int64
	for _, e := range tree.Entries {
		if e.Type == tar.TypeReg {
			size += e.Size
		}
	}
	compressed := int64(0)
	if fi, err := os.Stat(c.stage.Path(rootfsCPIO)); err == nil {
		compressed = fi.Size()
	}
	// Measured with Debian's kernel: while it unpacks, the guest holds the compressed initrd and
	// the files, and the initramfs may fill at most half of the memory (175 MB of files in 60 MB
	// compressed boot in 512 MiB, 200 MB do not).
	need := (2*size+compressed)>>20 + initrdHeadroomMiB
	if need > int64(c.opts.MemoryMiB) {
		c.opts.Warn(fmt.Sprintf("the initrd rootfs holds %d MiB (%d MiB compressed), which the kernel unpacks into the guest's memory: %d MiB is too little, give at least --memory %d (at convert or run time), or use --rootfs-format squashfs",
			size>>20, compressed>>20, c.opts.MemoryMiB, need))
	}
}

func validFormat(f string) bool { return slices.Contains(rootfs.Formats(), f) }

// loadKernel returns the kernel the user gave, else the default kernel for the image's
// architecture when there is one (and this c2vm has a guest init for it), else the host's: the
// VM's architecture is its kernel's. --kernel c2vm names a family and follows the same rule. 32-bit images (arm, 386) get the host's kernel: an arm64
// host runs arm natively only where its CPUs have AArch32, which KVM cannot promise.
func (c *conversion) loadKernel(ctx context.Context, p ocispec.Platform) (*kernel.Kernel, error) {
	kopts := kernel.Options{CacheDir: c.opts.CacheDir, ModulesDir: c.opts.ModulesDir}
	load, hint := kernel.Default, "`make kernel` fetches one"
	switch c.opts.Kernel {
	case "":
	case kernel.C2VM: // the c2vm kernel of the image's arch, as for the default
		load = func(ctx context.Context, o kernel.Options) (*kernel.Kernel, error) {
			return kernel.Load(ctx, kernel.C2VM, o)
		}
		hint = "`make kernel-c2vm` builds one, `c2vm kernel pull` fetches one"
	default:
		return kernel.Load(ctx, c.opts.Kernel, kopts)
	}
	want := p.Architecture
	if want == runtime.GOARCH || want == "arm" || want == "386" {
		return load(ctx, kopts)
	}
	if _, err := assets.Find(want); err == nil {
		kopts.Arch = want
		k, err := load(ctx, kopts)
		if !errors.Is(err, kernel.ErrNoKernel) {
			return k, err
		}
		if c.opts.Warn != nil {
			c.opts.Warn(fmt.Sprintf("no %s kernel (%s): the VM is %s", want, hint, runtime.GOARCH))
		}
		kopts.Arch = ""
	}
	return load(ctx, kopts)
}

func flattenLayers(img *image.Image) []flatten.Layer {
	layers := make([]flatten.Layer, len(img.Layers))
	for i, l := range img.Layers {
		i := i
		layers[i] = flatten.Layer{Digest: l.Desc.Digest.String(), Open: func(ctx context.Context) (io.ReadCloser, error) {
			return img.OpenLayer(ctx, i)
		}}
	}
	return layers
}

// userDB captures /etc/passwd and /etc/group of the flattened image (nil when absent).
func userDB(t *flatten.Tree) (passwd, group []byte, err error) {
	read := func(p string) ([]byte, error) {
		b, err := t.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read %s from image: %w", p, err)
		}
		return b, nil
	}
	if passwd, err = read("etc/passwd"); err != nil {
		return nil, nil, err
	}
	group, err = read("etc/group")
	return passwd, group, err
}
