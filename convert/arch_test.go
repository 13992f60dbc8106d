package convert

import (
	"context"
	"debug/elf"
	"encoding/binary"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/c2vm/c2vm/internal/testkit/fakekernel"
	"github.com/c2vm/c2vm/internal/testkit/imagetest"
)

// archFixture is a cache with an amd64 and (optionally) an arm64 kernel package, guest assets for
// both architectures and an image of arch.
type archFixture struct {
	cache, image string
}

func newArchFixture(t *testing.T, arch string, arm64Kernel bool) archFixture {
	t.Helper()
	if runtime.GOARCH != "amd64" {
		t.Skip("the fixture's host kernel is an x86 bzImage") // CI runs on amd64
	}
	lib := t.TempDir()
	for _, d := range []string{lib, filepath.Join(lib, "arm64")} {
		os.MkdirAll(d, 0o755)
		for _, n := range []string{"c2vm-init", "runc"} {
			if err := os.WriteFile(filepath.Join(d, n), []byte("#!fake "+n+"\n"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Setenv("C2VM_LIBDIR", lib)
	t.Setenv("C2VM_KERNEL", "")
	cache := t.TempDir()
	pkgs := filepath.Join(cache, "kernel")
	os.MkdirAll(pkgs, 0o755)
	writeDeb := func(a string, vmlinuz []byte) {
		ver := "6.1.0-9-cloud-" + a
		files := fakekernel.Files(ver, fakeModules, nil)
		files["boot/vmlinuz-"+ver] = vmlinuz
		ctl := "Package: linux-image-" + ver + "\nVersion: 6.1.1-1\nArchitecture: " + a + "\nDescription: test\n"
		fakekernel.Deb(t, filepath.Join(pkgs, "linux-image-"+ver+"_6.1.1-1_"+a+".deb"), ctl, files, "xz")
	}
	writeDeb("amd64", fakekernel.Image("6.1.0-9-cloud-amd64"))
	if arm64Kernel {
		writeDeb("arm64", fakekernel.ImageArm64())
	}
	image := filepath.Join(t.TempDir(), "oci")
	imagetest.WriteOCILayout(t, image, imagetest.Image{
		Name: "app", Platform: ocispec.Platform{OS: "linux", Architecture: arch},
		Config: ocispec.Image{Config: ocispec.ImageConfig{Cmd: []string{"/x"}}},
		Layers: []imagetest.Layer{{Data: imagetest.TarLayer(t, imagetest.TarFile("x", "x"))}},
	})
	return archFixture{cache: cache, image: image}
}

func (f archFixture) options(t *testing.T, platform string) Options {
	return Options{Image: "oci:" + f.image + ":app", Output: filepath.Join(t.TempDir(), "b"), Platform: platform, CacheDir: f.cache}
}

// TestConvertVMArchRule: without --kernel the VM is the image's architecture when a kernel for it
// is cached (no emulator, the PL011 console), else the host's with a one-line warning and the
// image under emulation.
func TestConvertVMArchRule(t *testing.T) {
	t.Run("arm64 kernel cached", func(t *testing.T) {
		f := newArchFixture(t, "arm64", true)
		var warnings []string
		opts := f.options(t, "linux/arm64")
		opts.Warn = func(s string) { warnings = append(warnings, s) }
		m, err := Convert(context.Background(), opts)
		if err != nil {
			t.Fatal(err)
		}
		if m.VMArch != "arm64" || m.Emulator != nil || !strings.Contains(m.BootArgs, "console=ttyAMA0") || len(m.Boot.Binfmt) != 0 || len(warnings) != 0 {
			t.Errorf("vm %s, emulator %+v, boot args %q, binfmt %d, warnings %q", m.VMArch, m.Emulator, m.BootArgs, len(m.Boot.Binfmt), warnings)
		}
	})
	t.Run("no arm64 kernel", func(t *testing.T) {
		f := newArchFixture(t, "arm64", false)
		var warnings []string
		opts := f.options(t, "linux/arm64")
		opts.Warn = func(s string) { warnings = append(warnings, s) }
		opts.EmulatorDir = t.TempDir()
		os.WriteFile(filepath.Join(opts.EmulatorDir, "qemu-aarch64-static"), elfFor(elf.EM_X86_64), 0o755)
		m, err := Convert(context.Background(), opts)
		if err != nil {
			t.Fatal(err)
		}
		if m.VMArch != "amd64" || m.Emulator == nil || !strings.Contains(m.BootArgs, "console=ttyS0") {
			t.Errorf("vm %s, emulator %+v, boot args %q", m.VMArch, m.Emulator, m.BootArgs)
		}
		if len(warnings) < 1 || !strings.Contains(warnings[0], "no arm64 kernel") || !strings.Contains(warnings[0], "make kernel") {
			t.Errorf("warnings %q, want the missing arm64 kernel named first", warnings)
		}
	})
	t.Run("arm v7 gets the host kernel", func(t *testing.T) {
		f := newArchFixture(t, "arm", true)
		opts := f.options(t, "linux/arm/v7")
		opts.EmulatorDir = t.TempDir()
		os.WriteFile(filepath.Join(opts.EmulatorDir, "qemu-arm-static"), elfFor(elf.EM_X86_64), 0o755)
		m, err := Convert(context.Background(), opts)
		if err != nil {
			t.Fatal(err)
		}
		if m.VMArch != "amd64" || m.Emulator == nil || m.Emulator.Name != "qemu-arm-static" {
			t.Errorf("vm %s, emulator %+v", m.VMArch, m.Emulator)
		}
	})
}

// TestConvertC2VMKernelArch: --kernel c2vm follows the same rule: the image's architecture's c2vm
// kernel when there is one, else the host's with a warning naming how to get one.
func TestConvertC2VMKernelArch(t *testing.T) {
	c2vmKernel := func(t *testing.T, cache, arch string, img []byte) {
		dir := filepath.Join(cache, "kernel-c2vm", "build-"+arch)
		var builtin []string // every module built in, as in the real one
		for _, m := range fakeModules {
			builtin = append(builtin, m.Path)
		}
		files := fakekernel.Files("6.1.192-c2vm", nil, builtin)
		files["boot/vmlinuz-6.1.192-c2vm"] = img
		fakekernel.WriteTree(t, dir, files)
		if err := os.Symlink("build-"+arch, filepath.Join(cache, "kernel-c2vm", arch)); err != nil {
			t.Fatal(err)
		}
	}
	for _, arm64 := range []bool{true, false} {
		t.Run(map[bool]string{true: "arm64 c2vm kernel", false: "host's only"}[arm64], func(t *testing.T) {
			f := newArchFixture(t, "arm64", true)
			c2vmKernel(t, f.cache, "amd64", fakekernel.Image("6.1.192-c2vm"))
			if arm64 {
				c2vmKernel(t, f.cache, "arm64", fakekernel.ImageArm64())
			}
			var warnings []string
			opts := f.options(t, "linux/arm64")
			opts.Kernel, opts.EmulatorDir = "c2vm", t.TempDir()
			opts.Warn = func(s string) { warnings = append(warnings, s) }
			os.WriteFile(filepath.Join(opts.EmulatorDir, "qemu-aarch64-static"), elfFor(elf.EM_X86_64), 0o755)
			m, err := Convert(context.Background(), opts)
			if err != nil {
				t.Fatal(err)
			}
			want := map[bool]string{true: "arm64", false: "amd64"}[arm64]
			if m.VMArch != want || m.Kernel.Version != "6.1.192-c2vm" {
				t.Errorf("vm %s, kernel %s; want %s, the c2vm kernel", m.VMArch, m.Kernel.Version, want)
			}
			if warned := len(warnings) > 0 && strings.Contains(warnings[0], "make kernel-c2vm"); warned == arm64 {
				t.Errorf("warnings %q (want one naming make kernel-c2vm: %v)", warnings, !arm64)
			}
		})
	}
}

// TestConvertAmd64InArm64: an amd64 image with an arm64 kernel runs under a qemu-x86_64 built for
// arm64, looked up where `make foreign` unpacks it; one built for the host is refused.
func TestConvertAmd64InArm64(t *testing.T) {
	f := newArchFixture(t, "amd64", true)
	arm64Kernel, _ := filepath.Glob(filepath.Join(f.cache, "kernel", "*_arm64.deb"))
	opts := f.options(t, "linux/amd64")
	opts.Kernel = arm64Kernel[0]
	_, err := Convert(context.Background(), opts)
	if err == nil || !strings.Contains(err.Error(), "make foreign") || !strings.Contains(err.Error(), "qemu-user-static:arm64") {
		t.Fatalf("err = %v, want the missing arm64 emulator and how to get it", err)
	}
	bin := filepath.Join(f.cache, "emulators", "arm64", "usr", "bin")
	os.MkdirAll(bin, 0o755)
	emu := filepath.Join(bin, "qemu-x86_64-static")
	os.WriteFile(emu, elfFor(elf.EM_X86_64), 0o755)
	if _, err := Convert(context.Background(), opts); err == nil || !strings.Contains(err.Error(), "not for the arm64 VM") {
		t.Fatalf("err = %v, want an x86 emulator refused for the arm64 VM", err)
	}
	os.WriteFile(emu, append(elfFor(elf.EM_AARCH64), "qemu-x86_64 version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\n"...), 0o755)
	m, err := Convert(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if m.VMArch != "arm64" || m.Emulator == nil || m.Emulator.Version != "qemu-x86_64 version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)" {
		t.Errorf("vm %s, emulator %+v", m.VMArch, m.Emulator)
	}
	if len(m.Boot.Binfmt) != 1 || !strings.HasPrefix(m.Boot.Binfmt[0].Registration, ":qemu-x86_64:M:0:") {
		t.Errorf("binfmt %+v", m.Boot.Binfmt)
	}
}

// elfFor is staticELF for another machine.
func elfFor(m elf.Machine) []byte {
	h := staticELF()
	binary.LittleEndian.PutUint16(h[18:], uint16(m))
	return h
}
