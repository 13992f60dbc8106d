package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/c2vm/c2vm/initgen/kernel"
)

// foreignBusybox unpacks Debian's busybox-static of arch (fetched by `make foreign` into the
// cache) and returns its binary.
func foreignBusybox(t *testing.T, arch string) string {
	t.Helper()
	cache, err := kernel.DefaultCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	debs, _ := filepath.Glob(filepath.Join(cache, "debs", "busybox-static_*_"+arch+".deb"))
	if len(debs) == 0 {
		require(t, "foreign-architecture VM", []string{"busybox-static:" + arch + " in " + filepath.Join(cache, "debs") + " (make foreign)"})
	}
	dir := t.TempDir()
	if out, err := exec.Command("dpkg", "-x", debs[0], dir).CombinedOutput(); err != nil {
		t.Fatalf("dpkg -x %s: %v\n%s", debs[0], err, out)
	}
	return filepath.Join(dir, "bin", "busybox")
}

// TestVMForeignArch: arm64, s390x, arm/v7 and ppc64le images run in the amd64 VM, their binaries under the static
// qemu-user emulator the initrd carries (registered with binfmt_misc, flags F and C); the init and
// runc stay native.
func TestVMForeignArch(t *testing.T) {
	requireVM(t)
	if _, err := os.Stat("/usr/bin/qemu-aarch64-static"); err != nil {
		require(t, "foreign-architecture VM", []string{"/usr/bin/qemu-aarch64-static (Debian package qemu-user-static)"})
	}
	for _, tc := range []struct{ deb, arch, variant, uname string }{
		{"arm64", "arm64", "", "aarch64"}, {"s390x", "s390x", "", "s390x"}, {"armhf", "arm", "v7", "armv7l"}, {"ppc64el", "ppc64le", "", "ppc64le"},
	} {
		t.Run(tc.arch, func(t *testing.T) {
			dir := t.TempDir()
			layout := filepath.Join(dir, "oci")
			plat := ocispec.Platform{OS: "linux", Architecture: tc.arch, Variant: tc.variant}
			busyboxImageFor(t, layout, foreignBusybox(t, tc.deb), plat,
				ocispec.ImageConfig{Entrypoint: []string{"/bin/sh", "-c"}, Cmd: []string{"uname -m; echo $((6*7)) as $(id -un)"}})
			b := filepath.Join(dir, "bundle")
			code, _, stderr := c2vm(t, "", "convert", "--quiet", "--platform", platforms.Format(plat), "-o", b, "oci:"+layout+":test")
			if code != 0 {
				t.Fatalf("convert: %s", stderr)
			}
			if code, out, _ := c2vm(t, "", "inspect", b); code != 0 || !regexp.MustCompile(`vm arch +amd64`).MatchString(out) || !regexp.MustCompile(`emulator +qemu-`).MatchString(out) {
				t.Errorf("inspect: %d\n%s", code, out)
			}
			stdout, _ := runVM(t, 0, b)
			if want := tc.uname + "\n42 as root\n"; stdout != want {
				t.Errorf("stdout %q, want %q", stdout, want)
			}
			if stdout, _ := runVM(t, 3, "-u", "app", b, "--", "sh -c 'id -u; exit 3'"); stdout != "1000\n" {
				t.Errorf("as app: %q", stdout)
			}
		})
	}
}
