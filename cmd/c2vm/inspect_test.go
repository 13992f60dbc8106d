package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/c2vm/c2vm/bundle"
	"github.com/c2vm/c2vm/internal/testkit/fakekernel"
	"github.com/c2vm/c2vm/internal/testkit/imagetest"
)

// convertFake converts a tiny image with a fake kernel and stand-in guest assets (no VM needed).
func convertFake(t *testing.T, extra ...string) (dir, stdout string) {
	t.Helper()
	lib := t.TempDir()
	for _, n := range []string{"c2vm-init", "runc"} {
		os.WriteFile(filepath.Join(lib, n), []byte("stand-in"), 0o755)
	}
	t.Setenv("C2VM_LIBDIR", lib)
	kdir := t.TempDir()
	var mods []fakekernel.Mod
	for _, m := range []string{"virtio_pci", "virtio_mmio", "virtio_blk", "virtio_console", "virtio_net", "virtio-rng", "overlay", "squashfs", "erofs", "binfmt_misc", "vsock", "vmw_vsock_virtio_transport", "fuse", "virtiofs"} {
		mods = append(mods, fakekernel.Mod{Path: "kernel/" + m + ".ko"})
	}
	fakekernel.WriteTree(t, kdir, fakekernel.Files("6.1.0-fake", mods, nil))
	img := filepath.Join(t.TempDir(), "oci")
	imagetest.WriteOCILayout(t, img, imagetest.Image{
		Name: "demo", Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		Config: ocispec.Image{Config: ocispec.ImageConfig{Cmd: []string{"/bin/echo", "hello world"}, Env: []string{"PATH=/bin"}}},
		Layers: []imagetest.Layer{{Data: imagetest.TarLayer(t, imagetest.TarDir("bin"), imagetest.TarFile("bin/echo", "x"))}},
	})
	out := filepath.Join(t.TempDir(), "demo.bundle")
	args := append([]string{"convert", "--kernel", kdir, "--platform", "linux/amd64", "--rootfs-format", "erofs", "-o", out}, extra...)
	code, stdout, stderr := c2vm(t, "", append(args, "oci:"+img+":demo")...)
	if code != 0 {
		t.Fatalf("convert: exit %d: %s", code, stderr)
	}
	return out, stdout
}

func TestInspect(t *testing.T) {
	dir, out := convertFake(t, "-e", "GREETING=hi", "--memory", "256")
	if !strings.Contains(out, "erofs bundle of oci:") || strings.Count(out, "\n") != 1 {
		t.Errorf("convert printed %q, want one result line", out)
	}
	code, stdout, stderr := c2vm(t, "", "inspect", "--verify", dir)
	if code != 0 {
		t.Fatalf("inspect: exit %d: %s", code, stderr)
	}
	for _, want := range []string{"linux/amd64", "6.1.0-fake", `/bin/echo "hello world"`, "GREETING=hi", "256 MiB", "file vmlinuz", "file rootfs.erofs", "sha256:", "console=ttyS0"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, stdout)
		}
	}
	code, stdout, _ = c2vm(t, "", "inspect", "--json", dir)
	var m bundle.Manifest
	if code != 0 || json.Unmarshal([]byte(stdout), &m) != nil || m.MemoryMiB != 256 || m.SchemaVersion != bundle.SchemaVersion {
		t.Fatalf("inspect --json: exit %d, manifest %+v", code, m)
	}
	os.WriteFile(filepath.Join(dir, "rootfs.erofs"), []byte("tampered"), 0o644)
	code, _, stderr = c2vm(t, "", "inspect", "--verify", dir)
	if code != ExitFailure || !strings.Contains(stderr, "rootfs.erofs does not match") {
		t.Fatalf("inspect --verify after tampering: exit %d, stderr %q", code, stderr)
	}
}

func TestConvertJSONAndQuiet(t *testing.T) {
	if _, out := convertFake(t, "--quiet"); out != "" {
		t.Errorf("convert --quiet printed %q", out)
	}
	dir, out := convertFake(t, "--json")
	var m bundle.Manifest
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("convert --json printed %q: %v", out, err)
	}
	onDisk, err := bundle.Read(dir)
	if err != nil || m.Source.ManifestDigest != onDisk.Source.ManifestDigest || m.Process.Args[1] != "hello world" {
		t.Fatalf("--json manifest %+v differs from bundle.json (%v)", m, err)
	}
}
