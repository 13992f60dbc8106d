package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/c2vm/c2vm/bundle"
	"github.com/c2vm/c2vm/convert"
	it "github.com/c2vm/c2vm/internal/testkit/imagetest"
	"github.com/c2vm/c2vm/internal/testkit/registrytest"
	"github.com/c2vm/c2vm/kernel"
)

// registryEnv is a TLS + htpasswd registry holding the busybox test image as app:v1 (and a
// two-platform index as multi:v1), a docker config with its credentials, and a cache dir of its
// own. Converts use the cached reference kernel directly (--kernel/--modules), so that the test's
// XDG_CACHE_HOME holds only what the registry client caches.
type registryEnv struct {
	s               *registrytest.Server
	kernel, modules string
	dockerConfig    string
}

func newRegistryEnv(t *testing.T) *registryEnv {
	t.Helper()
	requireVM(t)
	require(t, "registry", registrytest.Missing())
	k, err := kernel.Default(t.Context(), kernel.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := registrytest.Start(t, registrytest.Options{Auth: true})
	layout := filepath.Join(t.TempDir(), "oci")
	busyboxImage(t, layout, ocispec.ImageConfig{Entrypoint: []string{"/bin/sh", "-c"}, Cmd: []string{"echo hello from the registry"}})
	s.Copy(t, "oci:"+layout+":test", "app:v1")
	e := &registryEnv{s: s, kernel: k.Vmlinuz, modules: k.ModulesDir, dockerConfig: s.DockerConfig(t, s.User, s.Password)}
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	t.Setenv("DOCKER_CONFIG", e.dockerConfig)
	t.Setenv("SSL_CERT_FILE", s.CAFile)
	return e
}

func (e *registryEnv) convert(t *testing.T, ref string, extra ...string) (int, string, string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "bundle")
	args := append([]string{"convert", "--quiet", "--kernel", e.kernel, "--modules", e.modules, "-o", out}, extra...)
	code, _, stderr := c2vm(t, "", append(args, ref)...)
	return code, out, stderr
}

func TestRegistryConvert(t *testing.T) {
	e := newRegistryEnv(t)
	ref := e.s.Addr + "/app:v1"
	code, out, stderr := e.convert(t, ref)
	if code != 0 {
		t.Fatalf("convert %s: exit %d: %s", ref, code, stderr)
	}
	m, err := bundle.Read(out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(m.Source.ManifestDigest, "sha256:") {
		t.Fatalf("manifest digest %q", m.Source.ManifestDigest)
	}
	byDigest := e.s.Addr + "/app@" + m.Source.ManifestDigest
	if code, _, stderr := e.convert(t, "docker://"+byDigest); code != 0 {
		t.Fatalf("convert by digest: %s", stderr)
	}
	if blobs, _ := filepath.Glob(filepath.Join(os.Getenv("XDG_CACHE_HOME"), "c2vm", "blobs", "sha256", "*")); len(blobs) < 4 {
		t.Errorf("cache holds %d blobs, want the manifest, config and both layers", len(blobs))
	}
	if stdout, _ := runVM(t, 0, out); stdout != "hello from the registry\n" {
		t.Errorf("run: %q", stdout)
	}
	if code, out, _ := c2vm(t, "", "cache", "ls"); code != 0 || !strings.Contains(out, "blobs") || !strings.Contains(out, "total") {
		t.Errorf("cache ls: %d %q", code, out)
	}

	t.Run("errors", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			env  map[string]string
			ref  string
			want []string
		}{
			{"no credentials", map[string]string{"DOCKER_CONFIG": t.TempDir()}, ref, []string{"registry " + e.s.Addr, "denied", "docker login " + e.s.Addr}},
			{"wrong password", map[string]string{"DOCKER_CONFIG": e.s.DockerConfig(t, e.s.User, "wrong")}, ref, []string{"denied", "docker login"}},
			{"untrusted CA", map[string]string{"SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt"}, ref, []string{"registry " + e.s.Addr, "TLS", "certificate", "SSL_CERT_FILE"}},
			{"no such tag", nil, e.s.Addr + "/app:nope", []string{"not found", "app:nope"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				for k, v := range tc.env {
					t.Setenv(k, v)
				}
				t.Setenv("XDG_CACHE_HOME", t.TempDir()) // nothing cached to fall back on
				code, out, stderr := e.convert(t, tc.ref)
				if code != ExitFailure || strings.Count(stderr, "\n") != 1 {
					t.Fatalf("exit %d, stderr %q: want 125 and one line", code, stderr)
				}
				for _, w := range tc.want {
					if !strings.Contains(stderr, w) {
						t.Errorf("stderr %q lacks %q", stderr, w)
					}
				}
				if _, err := os.Stat(out); !os.IsNotExist(err) {
					t.Errorf("failed convert left %s", out)
				}
			})
		}
	})

	t.Run("concurrent converts share the cache", func(t *testing.T) {
		t.Setenv("XDG_CACHE_HOME", t.TempDir())
		var wg sync.WaitGroup
		errs := make([]error, 3)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = convert.Convert(context.Background(), convert.Options{Image: ref, Output: filepath.Join(t.TempDir(), "b"), Kernel: e.kernel, ModulesDir: e.modules})
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("convert %d: %v", i, err)
			}
		}
		if code, _, stderr := e.convert(t, byDigest); code != 0 {
			t.Errorf("convert from the shared cache: %s", stderr)
		}
	})

	t.Run("prune", func(t *testing.T) {
		t.Setenv("XDG_CACHE_HOME", t.TempDir())
		e.convert(t, ref)
		if code, out, _ := c2vm(t, "", "cache", "prune"); code != 0 || !strings.HasPrefix(out, "freed ") {
			t.Errorf("cache prune: %d %q", code, out)
		}
		if _, size, _ := du(filepath.Join(os.Getenv("XDG_CACHE_HOME"), "c2vm", "blobs")); size != 0 {
			t.Errorf("%d bytes of blobs left after prune", size)
		}
	})

	t.Run("registry down", func(t *testing.T) {
		e.s.Stop()
		if code, _, stderr := e.convert(t, byDigest); code != 0 || stderr != "" {
			t.Errorf("by digest with the registry down: exit %d, %q; want it served from the cache, silently", code, stderr)
		}
		code, _, stderr := e.convert(t, ref)
		if code != 0 || !strings.Contains(stderr, "c2vm: warning: registry "+e.s.Addr+" is unreachable") || !strings.Contains(stderr, "using the cached") {
			t.Errorf("by tag with the registry down: exit %d, %q; want the cached tag and one warning", code, stderr)
		}
	})
}

// TestRegistryMultiArch: a two-platform index converts the platform asked for.
func TestRegistryMultiArch(t *testing.T) {
	e := newRegistryEnv(t)
	layout := filepath.Join(t.TempDir(), "multi")
	layer := it.Gzip(t, it.TarLayer(t, it.TarFile("which", "amd64\n")))
	other := it.Gzip(t, it.TarLayer(t, it.TarFile("which", "arm64\n")))
	it.WriteOCILayout(t, layout,
		it.Image{Name: "multi", Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"}, Config: ocispec.Image{Config: ocispec.ImageConfig{Cmd: []string{"/x"}}},
			Layers: []it.Layer{{Data: layer, MediaType: ocispec.MediaTypeImageLayerGzip}}},
		it.Image{Name: "multi", Platform: ocispec.Platform{OS: "linux", Architecture: "arm64"}, Config: ocispec.Image{Config: ocispec.ImageConfig{Cmd: []string{"/x"}}},
			Layers: []it.Layer{{Data: other, MediaType: ocispec.MediaTypeImageLayerGzip}}})
	e.s.Copy(t, "oci:"+layout+":multi", "multi:v1", "--all")
	code, out, stderr := e.convert(t, e.s.Addr+"/multi:v1", "--platform", "linux/amd64")
	if code != 0 {
		t.Fatalf("convert amd64: %s", stderr)
	}
	if m, err := bundle.Read(out); err != nil || m.Platform.Architecture != "amd64" {
		t.Errorf("bundle platform %+v, %v", m.Platform, err)
	}
	if code, _, stderr := e.convert(t, e.s.Addr+"/multi:v1", "--platform", "linux/s390x"); code != ExitFailure || !strings.Contains(stderr, "linux/arm64") {
		t.Errorf("missing platform: exit %d, %q; want the available platforms listed", code, stderr)
	}

	// A bundle set: every platform of the index, one bundle each (arm64 under emulation), pushed as
	// an OCI index and pulled by platform.
	code, set, stderr := e.convert(t, e.s.Addr+"/multi:v1", "--platform", "all")
	if code != 0 {
		t.Fatalf("convert --platform all: %s", stderr)
	}
	for _, p := range []string{"linux-amd64", "linux-arm64"} {
		if _, err := bundle.Read(filepath.Join(set, p)); err != nil {
			t.Errorf("set member %s: %v", p, err)
		}
	}
	if code, out, _ := c2vm(t, "", "inspect", "--platform", "linux/arm64", set); code != 0 || !strings.Contains(out, "linux/arm64") || !strings.Contains(out, "qemu-aarch64-static") {
		t.Errorf("inspect --platform linux/arm64 of the set: %d\n%s", code, out)
	}
	ref := e.s.Addr + "/multi-vm:v1"
	if code, _, stderr := c2vm(t, "", "push", set, ref); code != 0 {
		t.Fatalf("push set: %s", stderr)
	}
	for _, arch := range []string{"amd64", "arm64"} {
		dir := filepath.Join(t.TempDir(), arch)
		if code, _, stderr := c2vm(t, "", "pull", "--platform", "linux/"+arch, ref, dir); code != 0 {
			t.Fatalf("pull %s: %s", arch, stderr)
		}
		if m, err := bundle.Read(dir); err != nil || m.Platform.Architecture != arch {
			t.Errorf("pulled %s: %+v, %v", arch, m, err)
		}
	}
}

// TestRegistryPushPull: a bundle pushed as an OCI artifact pulls back byte for byte into another
// cache ("another host"), boots from its reference, reads with skopeo, pushes reproducibly, and a
// blob tampered with in the registry's storage is refused with nothing left behind.
func TestRegistryPushPull(t *testing.T) {
	e := newRegistryEnv(t)
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	code, b, stderr := e.convert(t, e.s.Addr+"/app:v1")
	if code != 0 {
		t.Fatal(stderr)
	}
	ref := e.s.Addr + "/bundles/app:v1"
	code, out, stderr := c2vm(t, "", "push", "--json", b, ref)
	if code != 0 {
		t.Fatalf("push: %s", stderr)
	}
	var first struct {
		Digest          string
		Uploaded, Blobs int
	}
	if err := json.Unmarshal([]byte(out), &first); err != nil || first.Uploaded != 4 || first.Blobs != 4 {
		t.Fatalf("push --json %q: %v", out, err)
	}
	_, out, _ = c2vm(t, "", "push", "--json", b, ref)
	var again struct {
		Digest   string
		Uploaded int
	}
	json.Unmarshal([]byte(out), &again)
	if again.Digest != first.Digest || again.Uploaded != 0 {
		t.Errorf("second push: %q; want the same digest %s and no blob uploaded", out, first.Digest)
	}
	raw, err := exec.Command("skopeo", "inspect", "--raw", "--creds", e.s.User+":"+e.s.Password, "--tls-verify=false", "docker://"+ref).CombinedOutput()
	if err != nil || !strings.Contains(string(raw), `"artifactType":"application/vnd.c2vm.bundle.v1"`) || !strings.Contains(string(raw), "org.opencontainers.image.title") {
		t.Errorf("skopeo inspect --raw: %v\n%s", err, raw)
	}

	layout := filepath.Join(t.TempDir(), "copy")
	if out, err := exec.Command("skopeo", "copy", "--quiet", "--src-creds", e.s.User+":"+e.s.Password, "--src-tls-verify=false", "docker://"+ref, "oci:"+layout+":b").CombinedOutput(); err != nil {
		t.Errorf("skopeo copy of the artifact to an OCI layout: %v: %s", err, out)
	} else if _, err := os.Stat(filepath.Join(layout, "blobs", "sha256", strings.TrimPrefix(first.Digest, "sha256:"))); err != nil {
		t.Errorf("skopeo's copy lacks the manifest %s: %v", first.Digest, err)
	}

	t.Setenv("XDG_CACHE_HOME", t.TempDir()) // another host
	pulled := filepath.Join(t.TempDir(), "pulled")
	if code, _, stderr := c2vm(t, "", "pull", ref, pulled); code != 0 {
		t.Fatalf("pull: %s", stderr)
	}
	for _, name := range []string{"bundle.json", "vmlinuz", "initrd.img", "rootfs.squashfs"} {
		want, _ := os.ReadFile(filepath.Join(b, name))
		got, err := os.ReadFile(filepath.Join(pulled, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: pulled copy differs (%v)", name, err)
		}
	}
	if stdout, _ := runVM(t, 0, ref); stdout != "hello from the registry\n" {
		t.Errorf("run %s: %q", ref, stdout)
	}

	t.Run("tampered blob", func(t *testing.T) {
		t.Setenv("XDG_CACHE_HOME", t.TempDir())
		m, _ := bundle.Read(b)
		var initrd bundle.File
		for _, f := range m.Files {
			if f.Name == "initrd.img" {
				initrd = f
			}
		}
		data := filepath.Join(e.s.Dir, "data", "docker", "registry", "v2", "blobs", "sha256", initrd.SHA256[:2], initrd.SHA256, "data")
		blob, err := os.ReadFile(data)
		if err != nil {
			t.Fatal(err)
		}
		blob[len(blob)/2] ^= 0xff
		if err := os.WriteFile(data, blob, 0o644); err != nil {
			t.Fatal(err)
		}
		dest := filepath.Join(t.TempDir(), "bad")
		code, _, stderr := c2vm(t, "", "pull", ref, dest)
		if code != ExitFailure || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "sha256:"+initrd.SHA256) || !strings.Contains(stderr, "mismatch") {
			t.Errorf("tampered pull: exit %d, %q; want one line naming the blob", code, stderr)
		}
		if ents, _ := os.ReadDir(filepath.Dir(dest)); len(ents) != 0 {
			t.Errorf("a failed pull left %v", ents)
		}
	})
}
