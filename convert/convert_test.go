package convert

import (
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/c2vm/c2vm/bootcfg"
	"github.com/c2vm/c2vm/bundle"
	"github.com/c2vm/c2vm/convert/spec"
	"github.com/c2vm/c2vm/internal/testkit/fakekernel"
	"github.com/c2vm/c2vm/internal/testkit/imagetest"
)

const fakeVersion = "6.1.0-fake"

// fakeKernelDir writes a kernel tree (boot/vmlinuz-*, lib/modules/<ver>/) with every default module.
func fakeKernelDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	fakekernel.WriteTree(t, dir, fakekernel.Files(fakeVersion, fakeModules, []string{"kernel/fs/ext4/ext4.ko"}))
	return dir
}

// fakeModules are every default module of a fake kernel, with their dependencies.
var fakeModules = []fakekernel.Mod{
	{Path: "kernel/drivers/virtio/virtio.ko"},
	{Path: "kernel/drivers/virtio/virtio_ring.ko"},
	{Path: "kernel/drivers/virtio/virtio_pci.ko", Depends: []string{"virtio", "virtio_ring"}},
	{Path: "kernel/drivers/virtio/virtio_mmio.ko", Depends: []string{"virtio", "virtio_ring"}},
	{Path: "kernel/drivers/block/virtio_blk.ko", Depends: []string{"virtio", "virtio_ring"}},
	{Path: "kernel/drivers/char/virtio_console.ko", Depends: []string{"virtio", "virtio_ring"}},
	{Path: "kernel/net/core/failover.ko"},
	{Path: "kernel/drivers/net/net_failover.ko", Depends: []string{"failover"}},
	{Path: "kernel/drivers/net/virtio_net.ko", Depends: []string{"net_failover", "virtio", "virtio_ring"}},
	{Path: "kernel/drivers/char/hw_random/virtio-rng.ko", Depends: []string{"virtio", "virtio_ring"}},
	{Path: "kernel/fs/overlayfs/overlay.ko"},
	{Path: "kernel/fs/squashfs/squashfs.ko"},
	{Path: "kernel/lib/libcrc32c.ko"},
	{Path: "kernel/fs/erofs/erofs.ko", Depends: []string{"libcrc32c"}},
	{Path: "kernel/fs/binfmt_misc.ko"},
	{Path: "kernel/net/vmw_vsock/vsock.ko"},
	{Path: "kernel/net/vmw_vsock/vmw_vsock_virtio_transport_common.ko", Depends: []string{"vsock", "virtio", "virtio_ring"}},
	{Path: "kernel/net/vmw_vsock/vmw_vsock_virtio_transport.ko", Depends: []string{"vmw_vsock_virtio_transport_common", "vsock"}},
	{Path: "kernel/fs/fuse/fuse.ko"},
	{Path: "kernel/fs/fuse/virtiofs.ko", Depends: []string{"fuse", "virtio", "virtio_ring"}},
}

// fakeAssets points C2VM_LIBDIR at stand-ins for the guest init and runc.
func fakeAssets(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	for _, n := range []string{"c2vm-init", "runc"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("#!fake "+n+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("C2VM_LIBDIR", dir)
}

func testImage(t *testing.T, cfg ocispec.ImageConfig) string {
	t.Helper()
	layer := imagetest.TarLayer(t,
		imagetest.TarDir("bin"), imagetest.TarFile("bin/sh", "#!fake shell\n"),
		imagetest.TarDir("etc"),
		imagetest.TarFile("etc/passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"),
		imagetest.TarFile("etc/group", "root:x:0:\napp:x:1000:\nstaff:x:50:app\n"),
	)
	dir := filepath.Join(t.TempDir(), "oci")
	imagetest.WriteOCILayout(t, dir, imagetest.Image{
		Name:     "app",
		Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		Config:   ocispec.Image{Config: cfg},
		Layers:   []imagetest.Layer{{Data: imagetest.Gzip(t, layer), MediaType: ocispec.MediaTypeImageLayerGzip}},
	})
	return dir
}

func requireFormat(t *testing.T, format string) {
	t.Helper()
	if format != bootcfg.FormatSquashfs {
		return
	}
	if _, err := exec.LookPath("mksquashfs"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("mksquashfs missing: install Debian package squashfs-tools")
		}
		t.Skip("mksquashfs missing: install Debian package squashfs-tools") // not in CI: fails above
	}
}

func baseOptions(t *testing.T, image, out string) Options {
	return Options{Image: "oci:" + image + ":app", Output: out, Platform: "linux/amd64", Kernel: fakeKernelDir(t), CacheDir: t.TempDir()}
}

func TestConvertFormats(t *testing.T) {
	fakeAssets(t)
	img := testImage(t, ocispec.ImageConfig{
		Entrypoint: []string{"/bin/sh", "-c"}, Cmd: []string{"echo hi"},
		Env: []string{"A=1"}, User: "app", WorkingDir: "/work", StopSignal: "SIGQUIT",
	})
	for _, format := range []string{bootcfg.FormatSquashfs, bootcfg.FormatErofs, bootcfg.FormatInitrd} {
		t.Run(format, func(t *testing.T) {
			requireFormat(t, format)
			out := filepath.Join(t.TempDir(), "b")
			opts := baseOptions(t, img, out)
			opts.RootfsFormat = format
			m, err := Convert(context.Background(), opts)
			if err != nil {
				t.Fatal(err)
			}
			back, err := bundle.Read(out)
			if err != nil {
				t.Fatal(err)
			}
			if err := back.Verify(out); err != nil {
				t.Fatal(err)
			}
			want := []string{bundle.InitrdFile, bundle.KernelFile}
			if f := bundle.RootfsFile(format); f != "" {
				want = append(want, f)
			}
			slices.Sort(want)
			var got []string
			for _, f := range m.Files {
				got = append(got, f.Name)
			}
			if !slices.Equal(got, want) {
				t.Errorf("files = %v, want %v", got, want)
			}
			p := m.Process
			if !slices.Equal(p.Args, []string{"/bin/sh", "-c", "echo hi"}) || p.UID != 1000 || p.GID != 1000 || p.WorkingDir != "/work" || p.StopSignal != "SIGQUIT" {
				t.Errorf("process = %+v", p)
			}
			if !slices.Contains(p.Env, "A=1") || !slices.Contains(p.Env, "HOME=/home/app") {
				t.Errorf("env = %v, want A=1 and HOME=/home/app", p.Env)
			}
			if m.Kernel.Version != fakeVersion || m.Platform.Architecture != "amd64" || !strings.HasPrefix(m.Source.ManifestDigest, "sha256:") {
				t.Errorf("kernel %q platform %+v source %+v", m.Kernel.Version, m.Platform, m.Source)
			}
			if m.Boot.Container.Rootfs.Format != format || m.Boot.Container.StopSignal != "SIGQUIT" || !strings.Contains(m.BootArgs, "overcommit_memory=1") {
				t.Errorf("boot = %+v args %q", m.Boot.Container, m.BootArgs)
			}
			if err := m.Boot.Validate(); err != nil {
				t.Errorf("boot config invalid: %v", err)
			}
			if !strings.Contains(m.Passwd, "app:x:1000") {
				t.Errorf("passwd not captured: %q", m.Passwd)
			}
		})
	}
}

// TestConvertReproducible converts the same image twice into different directories: every file of
// the two bundles must be identical (LinuxKit's build-twice-and-compare).
func TestConvertReproducible(t *testing.T) {
	fakeAssets(t)
	img := testImage(t, ocispec.ImageConfig{Cmd: []string{"/bin/sh"}})
	kdir := fakeKernelDir(t)
	for _, format := range []string{bootcfg.FormatSquashfs, bootcfg.FormatErofs, bootcfg.FormatInitrd} {
		t.Run(format, func(t *testing.T) {
			requireFormat(t, format)
			var sums [2][]bundle.File
			for i := range sums {
				out := filepath.Join(t.TempDir(), "b")
				opts := baseOptions(t, img, out)
				opts.Kernel, opts.RootfsFormat = kdir, format
				m, err := Convert(context.Background(), opts)
				if err != nil {
					t.Fatal(err)
				}
				man, err := bundle.Describe(filepath.Join(out, bundle.ManifestFile))
				if err != nil {
					t.Fatal(err)
				}
				sums[i] = append(m.Files, man)
			}
			if !slices.Equal(sums[0], sums[1]) {
				t.Fatalf("two conversions differ:\n%v\n%v", sums[0], sums[1])
			}
		})
	}
}

func TestConvertOverrides(t *testing.T) {
	fakeAssets(t)
	img := testImage(t, ocispec.ImageConfig{Entrypoint: []string{"/bin/app"}, Cmd: []string{"--serve"}, Env: []string{"A=1", "B=2"}})
	out := filepath.Join(t.TempDir(), "b")
	opts := baseOptions(t, img, out)
	opts.RootfsFormat = bootcfg.FormatErofs
	ep := []string{"/bin/sh"}
	opts.Overrides = spec.Overrides{Entrypoint: &ep, Env: []string{"B=3", "C=4"}, User: "1000:50", WorkingDir: "/tmp"}
	m, err := Convert(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	p := m.Process
	if !slices.Equal(p.Args, []string{"/bin/sh"}) {
		t.Errorf("args = %q: a new entrypoint must drop the image's Cmd", p.Args)
	}
	if p.UID != 1000 || p.GID != 50 || p.WorkingDir != "/tmp" {
		t.Errorf("process = %+v", p)
	}
	for _, kv := range []string{"A=1", "B=3", "C=4"} {
		if !slices.Contains(p.Env, kv) {
			t.Errorf("env %v lacks %s", p.Env, kv)
		}
	}
	if slices.Contains(p.Env, "B=2") {
		t.Errorf("env %v still has the overridden B=2", p.Env)
	}
}

// TestConvertRefusesRunTimeOverrides: a bundle cannot record a hostname, terminal, read-only root
// or capabilities, so convert names them instead of dropping them.
func TestConvertRefusesRunTimeOverrides(t *testing.T) {
	fakeAssets(t)
	img := testImage(t, ocispec.ImageConfig{Cmd: []string{"/bin/sh"}})
	opts := baseOptions(t, img, filepath.Join(t.TempDir(), "b"))
	opts.Overrides = spec.Overrides{Hostname: "h", CapAdd: []string{"NET_ADMIN"}}
	if _, err := Convert(context.Background(), opts); err == nil || !strings.Contains(err.Error(), "Hostname, CapAdd") || !strings.Contains(err.Error(), "c2vm run") {
		t.Fatalf("err = %v, want the run-time overrides named", err)
	}
}

// TestConvertFailureLeavesNothing checks that a failed conversion writes no bundle and no staging
// directory, and leaves an existing bundle untouched.
func TestConvertFailureLeavesNothing(t *testing.T) {
	fakeAssets(t)
	good := testImage(t, ocispec.ImageConfig{Cmd: []string{"/bin/sh"}})
	parent := t.TempDir()
	out := filepath.Join(parent, "b")
	opts := baseOptions(t, good, out)
	opts.RootfsFormat = bootcfg.FormatErofs
	if _, err := Convert(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	before, _ := bundle.Read(out)
	tests := []struct {
		name string
		edit func(*Options)
		want string
	}{
		{"bad format", func(o *Options) { o.RootfsFormat = "ext9" }, "unknown rootfs format"},
		{"missing image", func(o *Options) { o.Image = "oci:" + filepath.Join(parent, "nope") }, "nope"},
		{"wrong platform", func(o *Options) { o.Platform = "linux/s390x" }, "linux/amd64"},
		{"missing kernel", func(o *Options) { o.Kernel = filepath.Join(parent, "no-kernel") }, "no-kernel"},
		{"cancelled", func(o *Options) {}, context.Canceled.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := opts
			tt.edit(&o)
			ctx, cancel := context.WithCancel(context.Background())
			if tt.name == "cancelled" {
				cancel()
			}
			defer cancel()
			_, err := Convert(ctx, o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
			if tt.name == "cancelled" && !errors.Is(err, context.Canceled) {
				t.Errorf("err = %v, want context.Canceled", err)
			}
			ents, _ := os.ReadDir(parent)
			if len(ents) != 1 || ents[0].Name() != "b" {
				t.Errorf("parent holds %v, want only the old bundle", ents)
			}
			after, err := bundle.Read(out)
			if err != nil || !slices.Equal(after.Files, before.Files) {
				t.Errorf("existing bundle changed: %v", err)
			}
		})
	}
}

func TestMergeEnv(t *testing.T) {
	got := spec.MergeEnv([]string{"A=1", "B=2", "D=x"}, []string{"B=3", "C=4", "A=5", "D"})
	want := []string{"A=5", "B=3", "C=4"}
	if !slices.Equal(got, want) {
		t.Fatalf("MergeEnv = %v, want %v (a bare KEY unsets, as docker)", got, want)
	}
}

// TestConvertForeignArch: an image of another architecture than the kernel's gets the static
// qemu-user emulator for it in the initrd and a binfmt_misc registration (flags F and C) in the
// boot config; without the emulator it fails with one line saying which package to install.
func TestConvertForeignArch(t *testing.T) {
	fakeAssets(t)
	layer := imagetest.TarLayer(t, imagetest.TarFile("x", "x"))
	dir := filepath.Join(t.TempDir(), "oci")
	imagetest.WriteOCILayout(t, dir, imagetest.Image{
		Name: "app", Platform: ocispec.Platform{OS: "linux", Architecture: "arm64"},
		Config: ocispec.Image{Config: ocispec.ImageConfig{Cmd: []string{"/x"}}},
		Layers: []imagetest.Layer{{Data: layer}},
	})
	out := filepath.Join(t.TempDir(), "b")
	opts := baseOptions(t, dir, out)
	opts.Platform = "linux/arm64"
	opts.EmulatorDir = t.TempDir()
	_, err := Convert(context.Background(), opts)
	if err == nil || !strings.Contains(err.Error(), "qemu-aarch64-static") || !strings.Contains(err.Error(), "install Debian package qemu-user-static") {
		t.Fatalf("err = %v, want the missing emulator named with its package", err)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("output exists after the error: %v", err)
	}
	os.WriteFile(filepath.Join(opts.EmulatorDir, "qemu-aarch64-static"), staticELF(), 0o755)
	m, err := Convert(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if m.Platform.Architecture != "arm64" || m.GuestArch() != runtime.GOARCH || m.Emulator == nil || m.Emulator.Name != "qemu-aarch64-static" || len(m.Emulator.SHA256) != 64 {
		t.Errorf("platform %+v, VM %s, emulator %+v", m.Platform, m.GuestArch(), m.Emulator)
	}
	if len(m.Boot.Binfmt) != 1 || !strings.HasPrefix(m.Boot.Binfmt[0].Registration, ":qemu-aarch64:M:0:") || !strings.HasSuffix(m.Boot.Binfmt[0].Registration, ":/c2vm/qemu/qemu-aarch64-static:FC") {
		t.Errorf("binfmt %+v", m.Boot.Binfmt)
	}
	if err := m.Boot.Validate(); err != nil {
		t.Error(err)
	}
}

// TestConvertWarnsInitrdTooBig: an initrd-format rootfs is unpacked into the guest's memory, so a
// bundle whose memory cannot hold it gets a warning that says what to do.
func TestConvertWarnsInitrdTooBig(t *testing.T) {
	fakeAssets(t)
	img := testImage(t, ocispec.ImageConfig{Cmd: []string{"/bin/sh"}})
	for _, tc := range []struct {
		memory int
		warn   bool
	}{{48, true}, {512, false}} {
		var warnings []string
		opts := baseOptions(t, img, filepath.Join(t.TempDir(), "b"))
		opts.RootfsFormat, opts.MemoryMiB = bootcfg.FormatInitrd, tc.memory
		opts.Warn = func(msg string) { warnings = append(warnings, msg) }
		if _, err := Convert(context.Background(), opts); err != nil {
			t.Fatal(err)
		}
		got := strings.Join(warnings, "\n")
		if has := strings.Contains(got, "initrd rootfs") && strings.Contains(got, "--memory") && strings.Contains(got, "--rootfs-format squashfs"); has != tc.warn {
			t.Errorf("memory %d: warnings %q; want a fit warning: %v", tc.memory, got, tc.warn)
		}
	}
}

// TestConvertNoCommand: an image without CMD or ENTRYPOINT converts (docker pulls it too), with a
// warning; the command comes at run time.
func TestConvertNoCommand(t *testing.T) {
	fakeAssets(t)
	var warnings []string
	opts := baseOptions(t, testImage(t, ocispec.ImageConfig{}), filepath.Join(t.TempDir(), "b"))
	opts.RootfsFormat = bootcfg.FormatErofs
	opts.Warn = func(msg string) { warnings = append(warnings, msg) }
	m, err := Convert(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Process.Args) != 0 || len(warnings) != 1 || !strings.Contains(warnings[0], "c2vm run BUNDLE -- COMMAND") {
		t.Errorf("args %q, warnings %q; want no args and one warning saying how to run it", m.Process.Args, warnings)
	}
}

// staticELF is the smallest static x86-64 executable header (no program interpreter), standing in
// for a qemu-user emulator.
func staticELF() []byte {
	h := make([]byte, 64)
	copy(h, "\x7fELF\x02\x01\x01")
	binary.LittleEndian.PutUint16(h[16:], uint16(elf.ET_EXEC))
	binary.LittleEndian.PutUint16(h[18:], uint16(elf.EM_X86_64))
	binary.LittleEndian.PutUint32(h[20:], 1)  // EV_CURRENT
	binary.LittleEndian.PutUint16(h[52:], 64) // e_ehsize
	return h
}
