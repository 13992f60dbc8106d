package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/c2vm/c2vm/internal/cachedir"
	"github.com/c2vm/c2vm/internal/export"
	"github.com/c2vm/c2vm/internal/testkit/imagetest"
	"github.com/c2vm/c2vm/kernel"
)

// foreignBusybox unpacks Debian's busybox-static of arch (fetched by `make foreign` into the
// cache) and returns its binary.
func foreignBusybox(t *testing.T, arch string) string {
	t.Helper()
	cache, err := cachedir.Default()
	if err != nil {
		t.Fatal(err)
	}
	debs, _ := filepath.Glob(filepath.Join(cache.Debs(), "busybox-static_*_"+arch+".deb"))
	if len(debs) == 0 {
		require(t, "foreign-architecture VM", []string{"busybox-static:" + arch + " in " + cache.Debs() + " (make foreign)"})
	}
	dir := t.TempDir()
	if out, err := exec.Command("dpkg", "-x", debs[0], dir).CombinedOutput(); err != nil {
		t.Fatalf("dpkg -x %s: %v\n%s", debs[0], err, out)
	}
	return filepath.Join(dir, "bin", "busybox")
}

// suidProbe cross-compiles a static Go program for GOARCH arch (GOARM 7 for arm) that prints its
// architecture and real and effective uid, and returns it as a setuid-root file of the image.
func suidProbe(t *testing.T, arch string) imagetest.TarEntry {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	prog := "package main\n\nimport (\n\t\"fmt\"\n\t\"os\"\n\t\"runtime\"\n)\n\nfunc main() { fmt.Println(runtime.GOARCH, os.Getuid(), os.Geteuid()) }\n"
	if err := os.WriteFile(src, []byte(prog), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "probe")
	cmd := exec.Command("go", "build", "-o", bin, src)
	cmd.Env = append(os.Environ(), "GOARCH="+arch, "GOARM=7", "CGO_ENABLED=0", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the setuid probe for %s: %v\n%s", arch, err, out)
	}
	body, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	e := exe("bin/suid-probe", string(body))
	e.Hdr.Mode = 0o4755
	return e
}

// kernelFor returns the cached kernel package for guest arch arch (`make kernel` fetches one per
// guest arch), or "c2vm" when arch is "c2vm-ARCH" and the c2vm kernel for ARCH is built.
func kernelFor(t *testing.T, arch string) string {
	t.Helper()
	if a, ok := strings.CutPrefix(arch, "c2vm-"); ok {
		if _, err := kernel.Load(t.Context(), kernel.C2VM, kernel.Options{Arch: a}); err != nil {
			require(t, "c2vm kernel", []string{err.Error()})
		}
		return kernel.C2VM
	}
	k, err := kernel.Default(t.Context(), kernel.Options{Arch: arch})
	if err != nil {
		require(t, arch+" VM", []string{err.Error()})
	}
	return k.Source
}

// TestVMForeignArch: the VM's architecture is its kernel's. An arm64 image boots a native arm64 VM
// (qemu-system-aarch64, virt) with the default kernel; images of other architectures run in the VM
// under the static qemu-user emulator the initrd carries (registered with binfmt_misc, flags F and
// C: a setuid-root binary run by a user gets euid 0, as under docker), the init and runc native.
func TestVMForeignArch(t *testing.T) {
	requireVM(t)
	for _, tc := range []struct{ name, deb, arch, variant, uname, vm, kernel string }{
		{name: "arm64 native", deb: "arm64", arch: "arm64", uname: "aarch64", vm: "arm64"},
		{name: "arm64 native, c2vm kernel", deb: "arm64", arch: "arm64", uname: "aarch64", vm: "arm64", kernel: "c2vm-arm64"},
		{name: "arm64 in amd64", deb: "arm64", arch: "arm64", uname: "aarch64", vm: "amd64", kernel: "amd64"},
		{name: "amd64 in arm64", arch: "amd64", uname: "x86_64", vm: "arm64", kernel: "arm64"},
		{name: "s390x", deb: "s390x", arch: "s390x", uname: "s390x", vm: "amd64"},
		{name: "arm v7", deb: "armhf", arch: "arm", variant: "v7", uname: "armv7l", vm: "amd64"},
		{name: "ppc64le", deb: "ppc64el", arch: "ppc64le", uname: "ppc64le", vm: "amd64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // one TCG vCPU per VM: two cores run two
			busybox := "/bin/busybox"
			if tc.deb != "" {
				busybox = foreignBusybox(t, tc.deb)
			}
			dir := t.TempDir()
			layout := filepath.Join(dir, "oci")
			plat := ocispec.Platform{OS: "linux", Architecture: tc.arch, Variant: tc.variant}
			busyboxImageFor(t, layout, busybox, plat,
				ocispec.ImageConfig{Entrypoint: []string{"/bin/sh", "-c"}, Cmd: []string{"uname -m; echo $((6*7)) as $(id -un)"}},
				suidProbe(t, tc.arch))
			b := filepath.Join(dir, "bundle")
			args := []string{"convert", "--quiet", "--platform", platforms.Format(plat), "-o", b}
			if tc.kernel != "" {
				args = append(args, "--kernel", kernelFor(t, tc.kernel))
			}
			if code, _, stderr := c2vm(t, "", append(args, "oci:"+layout+":test")...); code != 0 {
				t.Fatalf("convert: %s", stderr)
			}
			emulated := tc.vm != tc.arch
			code, out, _ := c2vm(t, "", "inspect", b)
			if code != 0 || !regexp.MustCompile(`vm arch +`+tc.vm).MatchString(out) || regexp.MustCompile(`emulator +qemu-`).MatchString(out) != emulated {
				t.Errorf("inspect (want vm arch %s, emulated %v): %d\n%s", tc.vm, emulated, code, out)
			}
			if c2vmKernel := strings.HasPrefix(tc.kernel, "c2vm-"); strings.Contains(out, "-c2vm") != c2vmKernel {
				t.Errorf("inspect (want the c2vm kernel: %v):\n%s", c2vmKernel, out)
			}
			stdout, _ := runVM(t, 0, b)
			if want := tc.uname + "\n42 as root\n"; stdout != want {
				t.Errorf("stdout %q, want %q", stdout, want)
			}
			stdout, _ = runVM(t, 3, "-u", "app", b, "--", "sh -c 'id -u; suid-probe; exit 3'")
			if want := "1000\n" + tc.arch + " 1000 0\n"; stdout != want {
				t.Errorf("as app: %q, want %q", stdout, want)
			}
			if tc.vm == "arm64" && !emulated {
				checkArm64Export(t, b, tc.uname)
			}
		})
	}
}

// checkArm64Export: an arm64 VM bundle exports a QEMU script (qemu-system-aarch64, virt) that
// boots with the same output and status; the amd64-only descriptors are refused in one line.
func checkArm64Export(t *testing.T, b, uname string) {
	t.Helper()
	dir := exportTo(t, b, export.QEMU)
	out, code := bootCommand(t, []string{filepath.Join(dir, "run.sh")}, "ACCEL=tcg")
	if code != 0 || !strings.Contains(out, uname+"\n42 as root\n") || !strings.Contains(out, "c2vm-exit-status: 0") {
		t.Errorf("run.sh: exit %d:\n%s", code, out)
	}
	code, _, stderr := c2vm(t, "", "export", "--runner", export.Firecracker, "-o", filepath.Join(t.TempDir(), "fc"), b)
	if code == 0 || !strings.Contains(stderr, "amd64 VMs only") || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
		t.Errorf("export firecracker of an arm64 VM: exit %d, %q", code, stderr)
	}
}
