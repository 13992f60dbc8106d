// Package launch boots a c2vm bundle: it applies run-time overrides (command, env, user, workdir,
// hostname, network) without rewriting the bundle — the new boot config and runtime spec travel in a
// small cpio appended to a temporary copy of the initrd, which the kernel unpacks over the bundle's
// own — and hands the VM to internal/vm.
//
// See docs/usage.md (run's flags, volumes, networking) and docs/architecture.md.
package launch

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/c2vm/c2vm/bootcfg"
	"github.com/c2vm/c2vm/bundle"
	"github.com/c2vm/c2vm/convert/spec"
	"github.com/c2vm/c2vm/initgen"
	"github.com/c2vm/c2vm/internal/share"
	"github.com/c2vm/c2vm/internal/vm"
)

// Options are run-time settings; the zero value boots the bundle as converted, with user-mode
// networking.
type Options struct {
	Overrides   spec.Overrides
	MemoryMiB   int // 0 = bundle default
	CPUs        int // 0 = bundle default
	Network     string
	DNS         []string
	Forwards    []vm.Forward
	StopTimeout int    // seconds; 0 = the guest default (10)
	StopSignal  string // "" = the image's StopSignal, else SIGTERM
	Debug       bool
	Accel       string
	// Volumes are -v/--mount disk images and named volumes, attached after the rootfs disk in
	// order, and host directories (Type TypeBind), shared with the VM.
	Volumes []Volume
	// Persist is a directory whose upper.img (created on first use) holds the overlay upper, so
	// changes to the root filesystem survive the run; "" = a tmpfs upper.
	Persist string
	// VolumeSize is the size of new named volumes and persist disks; 0 = DefaultVolumeSize.
	VolumeSize int64
	// Tmpfs are absolute paths that get a fresh, empty tmpfs (docker --tmpfs).
	Tmpfs []string
	// Platform, when set, must be the bundle's (docker run --platform); "" = any.
	Platform string
	// ReadyPoint has the guest stop at its ready point for a warm start (bootcfg.Config.ReadyPoint;
	// see internal/snapshot).
	ReadyPoint bool
}

// Network modes for Options.Network.
const (
	NetworkUser = "user" // QEMU user-mode networking (default)
	NetworkNone = "none" // loopback only
)

// QEMU user-mode networking addresses.
const (
	guestAddr = "10.0.2.15/24"
	gateway   = "10.0.2.2"
	slirpDNS  = "10.0.2.3"
)

// Plan is a prepared VM run. Close removes its temporary files and stops its share daemons.
type Plan struct {
	VM      vm.Config
	tmp     string
	servers []*share.Server
}

// Close removes the temporary initrd and stops the virtio-fs daemons of the run's host directories.
func (p *Plan) Close() error {
	for _, s := range p.servers {
		s.Close()
	}
	return os.RemoveAll(p.tmp)
}

// Prepare reads the bundle at dir and builds the VM configuration for a run with opts.
func Prepare(ctx context.Context, dir string, opts Options) (*Plan, error) {
	m, err := bundle.Read(dir)
	if err != nil {
		return nil, err
	}
	if err := m.CheckFiles(dir); err != nil {
		return nil, err
	}
	if err := checkPlatform(m, opts.Platform); err != nil {
		return nil, err
	}
	boot, rs, err := runConfig(ctx, m, opts)
	if err != nil {
		return nil, err
	}
	disks, err := attachVolumes(ctx, boot, m.Image.Volumes, rs, opts)
	if err != nil {
		return nil, err
	}
	shares, servers, err := attachShares(boot, opts)
	if err != nil {
		return nil, err
	}
	if err := boot.Validate(); err != nil {
		return nil, fmt.Errorf("run options: %w", err)
	}
	tmp, err := os.MkdirTemp("", "c2vm-run-")
	if err != nil {
		return nil, fmt.Errorf("prepare run: %w", err)
	}
	p := &Plan{tmp: tmp, servers: servers}
	initrd := filepath.Join(tmp, "initrd.img")
	if err := writeInitrd(ctx, initrd, filepath.Join(dir, bundle.InitrdFile), boot, rs); err != nil {
		p.Close()
		return nil, err
	}
	p.VM = vmConfig(dir, m, initrd, opts)
	p.VM.Disks = append(p.VM.Disks, disks...)
	p.VM.Shares = shares
	return p, nil
}

// checkPlatform refuses a bundle of another platform than the one asked for.
func checkPlatform(m *bundle.Manifest, want string) error {
	if want == "" {
		return nil
	}
	p, err := platforms.Parse(want)
	if err != nil {
		return fmt.Errorf("--platform %q: %w", want, err)
	}
	if !platforms.OnlyStrict(p).Match(platforms.Normalize(m.Platform)) {
		return fmt.Errorf("--platform %s: the bundle is %s: convert the image for %s", want, platforms.Format(m.Platform), platforms.Format(p))
	}
	return nil
}

// runConfig returns the boot config and runtime spec for this run.
func runConfig(ctx context.Context, m *bundle.Manifest, opts Options) (*bootcfg.Config, *specs.Spec, error) {
	img := ocispec.Image{Platform: m.Platform, Config: m.Image}
	so := spec.Options{Platform: m.Platform, VMArch: m.VMArch, Overrides: opts.Overrides}
	if m.Passwd != "" {
		so.Passwd = []byte(m.Passwd)
	}
	if m.Group != "" {
		so.Group = []byte(m.Group)
	}
	rs, err := spec.Generate(ctx, img, so)
	if err != nil {
		return nil, nil, err
	}
	boot := m.Boot
	boot.Debug = boot.Debug || opts.Debug
	boot.Hostname = opts.Overrides.Hostname
	if opts.StopTimeout > 0 {
		boot.Container.StopTimeout = opts.StopTimeout
	}
	if opts.StopSignal != "" {
		boot.Container.StopSignal = opts.StopSignal
	}
	boot.Network = network(opts)
	boot.ReadyPoint = opts.ReadyPoint
	boot.Container.SpecPath = bootcfg.SpecPath // where writeInitrd puts this run's spec
	return &boot, rs, nil
}

func network(opts Options) bootcfg.Network {
	if opts.Network == NetworkNone {
		return bootcfg.Network{Mode: bootcfg.NetworkNone, DNS: opts.DNS}
	}
	dns := opts.DNS
	if len(dns) == 0 {
		dns = []string{slirpDNS}
	}
	return bootcfg.Network{Mode: bootcfg.NetworkStatic, Interface: "eth0", Address: guestAddr, Gateway: gateway, DNS: dns}
}

// writeInitrd writes a copy of the bundle's initrd with the run's boot config and spec appended.
func writeInitrd(ctx context.Context, path, bundleInitrd string, boot *bootcfg.Config, rs *specs.Spec) error {
	bootJSON, err := boot.Marshal()
	if err != nil {
		return err
	}
	specJSON, err := json.MarshalIndent(rs, "", "  ")
	if err != nil {
		return fmt.Errorf("encode runtime spec: %w", err)
	}
	out, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("prepare initrd: %w", err)
	}
	defer out.Close()
	in, err := os.Open(bundleInitrd)
	if err != nil {
		return fmt.Errorf("bundle initrd: %w", err)
	}
	_, err = io.Copy(out, in)
	in.Close()
	if err != nil {
		return fmt.Errorf("prepare initrd: %w", err)
	}
	files := []initgen.File{
		{Path: bootcfg.Path, Mode: 0o644, Data: bootJSON},
		{Path: bootcfg.SpecPath, Mode: 0o644, Data: append(specJSON, '\n')},
	}
	if err := initgen.WriteFiles(ctx, out, files, "gzip"); err != nil {
		return fmt.Errorf("prepare initrd overrides: %w", err)
	}
	return out.Close()
}

func vmConfig(dir string, m *bundle.Manifest, initrd string, opts Options) vm.Config {
	cfg := vm.Config{
		Arch:       m.GuestArch(),
		Kernel:     filepath.Join(dir, bundle.KernelFile),
		Initrd:     initrd,
		Cmdline:    m.BootArgs,
		MemoryMiB:  pick(opts.MemoryMiB, m.MemoryMiB),
		CPUs:       pick(opts.CPUs, m.CPUs),
		Accel:      opts.Accel,
		ReadyPoint: opts.ReadyPoint,
	}
	if name := bundle.RootfsFile(m.RootfsFormat); name != "" {
		cfg.Disks = []vm.Disk{{Path: filepath.Join(dir, name), ReadOnly: true, Serial: bootcfg.RootfsSerial}}
	}
	if opts.Network != NetworkNone {
		cfg.Network = &vm.Network{Forwards: opts.Forwards}
	}
	return cfg
}

func pick(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}
