package spec

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/opencontainers/runtime-spec/specs-go"
)

const (
	// ContainerID is the container's id: it names containerd's default spec and the cgroup.
	ContainerID = "c2vm"
	// CgroupsPath is the cgroup runc creates for the workload in the guest.
	CgroupsPath = "/c2vm"
	// DefaultHostname is the container's hostname when Overrides.Hostname is empty.
	DefaultHostname = "c2vm"
	// RootPath is root.path: the rootfs directory inside the runc bundle.
	RootPath = "rootfs"
)

// Overrides are the user's convert-time or run-time overrides; zero value = use the image's.
type Overrides struct {
	Entrypoint *[]string // nil = image's; pointer to empty = clear it (like docker --entrypoint ""); either way an override drops the image's Cmd
	Cmd        []string  // nil = image's Cmd; non-nil replaces Cmd (docker run IMAGE ARGS...)
	Env        []string  // KEY=VAL appended/overriding image Env (later wins, by key); "KEY" alone unsets KEY
	User       string    // name, uid, uid:gid, user:group; "" = the image's USER
	WorkingDir string    // absolute; "" = the image's WORKDIR, else "/"
	Hostname   string    // "" = DefaultHostname
	Terminal   bool      // allocate a terminal (also sets TERM=xterm unless given)
	ReadOnly   bool      // mount the container's root filesystem read-only (docker --read-only)
	CapAdd     []string  // capabilities to add (docker --cap-add: NET_ADMIN, net_admin, CAP_NET_ADMIN, ALL)
	CapDrop    []string  // capabilities to drop (docker --cap-drop)
}

// Options for Generate. The zero value takes the platform from the image and has no passwd/group.
type Options struct {
	Platform      ocispec.Platform // target platform (os/arch/variant) of the image; empty fields come from the image
	Passwd, Group []byte           // /etc/passwd and /etc/group content of the flattened image; nil = absent
	Overrides     Overrides
	// VMArch is the guest kernel's architecture, whose system calls the seccomp profile allows
	// (an emulated image makes them through qemu-user); "" = the image's own.
	VMArch string
	// AllowNoCommand generates a spec without process args when the image and the overrides give
	// no command (a bundle that needs one at run time) instead of failing with ErrNoCommand.
	AllowNoCommand bool
}

// Generate builds the runtime spec for img: containerd's default Linux spec, then the image
// config and the overrides. See the package doc for what it keeps and removes.
func Generate(ctx context.Context, img ocispec.Image, opts Options) (*specs.Spec, error) {
	plat, err := targetPlatform(img, opts.Platform)
	if err != nil {
		return nil, err
	}
	s, err := defaultSpec(ctx, plat)
	if err != nil {
		return nil, err
	}
	if err := applyImage(s, img.Config, opts); err != nil {
		return nil, err
	}
	applyVM(s)
	s.Root.Readonly = opts.Overrides.ReadOnly
	if err := tweakCaps(s.Process, opts.Overrides.CapAdd, opts.Overrides.CapDrop); err != nil {
		return nil, fmt.Errorf("runtime spec: %w", err)
	}
	arch := GuestArch(plat.Architecture)
	if opts.VMArch != "" {
		arch = opts.VMArch
	}
	s.Linux.Seccomp = seccompProfile(s, arch)
	return s, nil
}

// targetPlatform fills the options' platform from the image (then the host's architecture) and
// rejects anything but Linux.
func targetPlatform(img ocispec.Image, p ocispec.Platform) (ocispec.Platform, error) {
	if p.OS == "" {
		p.OS = img.OS
	}
	if p.Architecture == "" {
		p.Architecture, p.Variant = img.Architecture, img.Variant
	}
	if p.OS == "" {
		p.OS = "linux"
	}
	if p.Architecture == "" {
		p.Architecture = runtime.GOARCH
	}
	p = platforms.Normalize(p)
	for _, os := range []string{p.OS, img.OS} {
		if os != "" && os != "linux" {
			return p, fmt.Errorf("runtime spec: image OS %q is not supported: c2vm runs Linux images only", os)
		}
	}
	return p, nil
}

// defaultSpec is containerd's default spec for the platform, made host-independent.
func defaultSpec(ctx context.Context, plat ocispec.Platform) (*specs.Spec, error) {
	if _, ok := namespaces.Namespace(ctx); !ok {
		ctx = namespaces.WithNamespace(ctx, "c2vm")
	}
	s, err := oci.GenerateSpecWithPlatform(ctx, nil, platforms.Format(plat), &containers.Container{ID: ContainerID})
	if err != nil {
		return nil, fmt.Errorf("runtime spec: containerd defaults for %s: %w", platforms.Format(plat), err)
	}
	if s.Process == nil || s.Linux == nil || s.Root == nil {
		return nil, fmt.Errorf("runtime spec: containerd defaults for %s have no Linux section", platforms.Format(plat))
	}
	s.Linux.MaskedPaths = withoutHostPaths(s.Linux.MaskedPaths)
	return s, nil
}

// withoutHostPaths drops the masked paths containerd adds for the converting host's CPUs
// (/sys/devices/system/cpu/cpuN/thermal_throttle): they describe the host, not the guest.
func withoutHostPaths(paths []string) []string {
	var out []string
	for _, p := range paths {
		if strings.HasPrefix(p, "/sys/devices/system/cpu/cpu") && strings.HasSuffix(p, "/thermal_throttle") {
			continue
		}
		out = append(out, p)
	}
	return out
}

// applyImage sets the process from the image config and the overrides.
func applyImage(s *specs.Spec, c ocispec.ImageConfig, opts Options) error {
	o := opts.Overrides
	args, err := processArgs(c, o)
	if errors.Is(err, ErrNoCommand) && opts.AllowNoCommand {
		err = nil
	}
	if err != nil {
		return fmt.Errorf("runtime spec: %w", err)
	}
	cwd, err := workingDir(c, o)
	if err != nil {
		return fmt.Errorf("runtime spec: %w", err)
	}
	userSpec := c.User
	if o.User != "" {
		userSpec = o.User
	}
	u, err := ResolveUser(userSpec, opts.Passwd, opts.Group)
	if err != nil {
		return fmt.Errorf("runtime spec: %w", err)
	}
	s.Hostname = o.Hostname
	if s.Hostname == "" {
		s.Hostname = DefaultHostname
	}
	p := s.Process
	p.Args = args
	p.Cwd = cwd
	p.Terminal = o.Terminal
	p.User = specs.User{UID: u.UID, GID: u.GID, AdditionalGids: withPrimary(u.GID, u.AdditionalGids)}
	p.Env = buildEnv(envInput{image: c.Env, overrides: o.Env, hostname: s.Hostname, home: u.Home, terminal: o.Terminal})
	return nil
}

// withPrimary lists the primary gid first, then the supplementary ones without duplicates, as
// containerd does (so that dropping a supplementary group cannot drop the primary one).
func withPrimary(gid uint32, extra []uint32) []uint32 {
	out := []uint32{gid}
	for _, g := range extra {
		if !slices.Contains(out, g) {
			out = append(out, g)
		}
	}
	return out
}

// DockerNofile is the open-file limit of docker's containers under its packaged systemd unit
// (LimitNOFILE=infinity, i.e. the kernel's nr_open): docker sets no rlimit of its own, the workload
// inherits the daemon's. containerd's default spec has 1024.
const DockerNofile = 1 << 20

// dockerMounts turns containerd's default mounts into docker's: no tmpfs on /run (docker shows the
// image's /run), and the cgroup filesystem read-only at /sys/fs/cgroup.
func dockerMounts(ms []specs.Mount) []specs.Mount {
	var out []specs.Mount
	for _, m := range ms {
		if m.Destination == "/run" || m.Destination == "/sys/fs/cgroup" {
			continue
		}
		out = append(out, m)
		if m.Destination == "/sys" {
			out = append(out, specs.Mount{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup",
				Options: []string{"ro", "nosuid", "noexec", "nodev"}})
		}
	}
	return out
}

// applyVM adapts containerd's defaults to running as the only container of a VM the way docker
// runs one: no network namespace (the workload uses the VM's network), a cgroup namespace, a fixed
// cgroup path, a writable rootfs directory in the bundle and no no_new_privs.
func applyVM(s *specs.Spec) {
	var ns []specs.LinuxNamespace
	hasCgroup := false
	for _, n := range s.Linux.Namespaces {
		switch n.Type {
		case specs.NetworkNamespace:
			continue
		case specs.CgroupNamespace:
			hasCgroup = true
		}
		ns = append(ns, n)
	}
	if !hasCgroup {
		ns = append(ns, specs.LinuxNamespace{Type: specs.CgroupNamespace})
	}
	s.Linux.Namespaces = ns
	s.Linux.CgroupsPath = CgroupsPath
	// docker leaves no_new_privs off (only --security-opt no-new-privileges sets it): setuid
	// binaries and file capabilities work for non-root users, as in docker.
	s.Process.NoNewPrivileges = false
	s.Mounts = dockerMounts(s.Mounts)
	s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: DockerNofile, Hard: DockerNofile}}
	s.Root = &specs.Root{Path: RootPath, Readonly: false}
}
