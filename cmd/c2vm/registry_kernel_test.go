package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/c2vm/c2vm/bundle"
	"github.com/c2vm/c2vm/kernel"
)

// TestRegistryKernel: the c2vm kernel built here goes through a real registry to "another host"
// (an empty cache), which converts with --kernel c2vm and boots the bundle.
func TestRegistryKernel(t *testing.T) {
	requireVM(t)
	host := runtime.GOARCH
	local, err := kernel.Load(t.Context(), kernel.C2VM, kernel.Options{})
	if err != nil {
		require(t, "c2vm kernel", []string{err.Error() + " (make kernel-c2vm)"})
	}
	localDir := filepath.Dir(filepath.Dir(local.Vmlinuz))
	e := newRegistryEnv(t)
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	ref := e.s.Addr + "/c2vm/kernel:6.1"

	push := func() (digest string, uploaded, blobs int) {
		t.Helper()
		code, out, stderr := c2vm(t, "", "kernel", "push", "--json", "--dir", localDir, "--arch", host, ref)
		var res struct {
			Digest          string
			Uploaded, Blobs int
		}
		if code != 0 || json.Unmarshal([]byte(out), &res) != nil {
			t.Fatalf("kernel push: exit %d, %q, %s", code, out, stderr)
		}
		return res.Digest, res.Uploaded, res.Blobs
	}
	d1, up, blobs := push()
	if up != 4 || blobs != 5 {
		t.Errorf("first push: %d of %d blobs uploaded, want 4 of 5 (config, vmlinuz, config, modules.builtin; index)", up, blobs)
	}
	if d2, up, _ := push(); d2 != d1 || up != 0 {
		t.Errorf("second push: %s with %d uploaded; want %s and none", d2, up, d1)
	}
	raw, err := exec.Command("skopeo", "inspect", "--raw", "--creds", e.s.User+":"+e.s.Password, "--tls-verify=false", "docker://"+ref).CombinedOutput()
	if err != nil || !strings.Contains(string(raw), `"artifactType":"`+kernel.ArtifactType+`"`) || !strings.Contains(string(raw), `"architecture":"`+host+`"`) {
		t.Errorf("skopeo inspect --raw: %v\n%s", err, raw)
	}
	layout := filepath.Join(t.TempDir(), "copy")
	if out, err := exec.Command("skopeo", "copy", "--quiet", "--all", "--src-creds", e.s.User+":"+e.s.Password, "--src-tls-verify=false", "docker://"+ref, "oci:"+layout+":k").CombinedOutput(); err != nil {
		t.Errorf("skopeo copy --all of the kernel index to an OCI layout: %v: %s", err, out)
	} else {
		// skopeo writes its own index; the kernel's manifest and vmlinuz blob come through as pushed
		var idx ocispec.Index
		json.Unmarshal(raw, &idx)
		vmlinuz, _ := kernel.DescribeTree(localDir, host)
		for _, d := range []string{manifestDigest(idx), "sha256:" + vmlinuz.Files[0].SHA256} {
			if _, err := os.Stat(filepath.Join(layout, "blobs", "sha256", strings.TrimPrefix(d, "sha256:"))); err != nil {
				t.Errorf("skopeo's copy lacks %s: %v", d, err)
			}
		}
	}

	t.Setenv("XDG_CACHE_HOME", t.TempDir()) // another host, without the kernel
	cache := filepath.Join(os.Getenv("XDG_CACHE_HOME"), "c2vm")
	code, out, stderr := c2vm(t, "", "kernel", "pull", ref)
	if code != 0 || !strings.Contains(out, "c2vm kernel "+local.Version+" for "+host) {
		t.Fatalf("kernel pull: exit %d, %q, %s", code, out, stderr)
	}
	b := filepath.Join(t.TempDir(), "bundle")
	layout = filepath.Join(t.TempDir(), "oci")
	busyboxImage(t, layout, ocispec.ImageConfig{Entrypoint: []string{"/bin/sh", "-c"}, Cmd: []string{"echo booted on $(uname -r)"}})
	if code, _, stderr := c2vm(t, "", "convert", "--quiet", "--kernel", "c2vm", "-o", b, "oci:"+layout+":test"); code != 0 {
		t.Fatalf("convert --kernel c2vm with the pulled kernel: %s", stderr)
	}
	want, _ := os.ReadFile(local.Vmlinuz)
	if got, err := os.ReadFile(filepath.Join(b, bundle.KernelFile)); err != nil || !bytes.Equal(got, want) {
		t.Errorf("the bundle's vmlinuz is not the pushed kernel (%v)", err)
	}
	if stdout, _ := runVM(t, 0, b); stdout != "booted on "+local.Version+"\n" {
		t.Errorf("run: %q", stdout)
	}

	oneLine := func(t *testing.T, args []string, want ...string) {
		t.Helper()
		code, _, stderr := c2vm(t, "", args...)
		if code != ExitFailure || strings.Count(stderr, "\n") != 1 {
			t.Fatalf("c2vm %v: exit %d, %q; want 125 and one line", args, code, stderr)
		}
		for _, w := range want {
			if !strings.Contains(stderr, w) {
				t.Errorf("stderr %q lacks %q", stderr, w)
			}
		}
	}
	t.Run("not a kernel", func(t *testing.T) {
		oneLine(t, []string{"kernel", "pull", e.s.Addr + "/app:v1"}, "not a c2vm kernel artifact", "c2vm kernel push")
	})
	t.Run("no such platform", func(t *testing.T) {
		oneLine(t, []string{"kernel", "pull", "--platform", "linux/s390x", ref}, "linux/s390x", "linux/"+host, "--platform")
	})
	t.Run("tampered blob", func(t *testing.T) {
		t.Setenv("XDG_CACHE_HOME", t.TempDir())
		tr, err := kernel.DescribeTree(localDir, host)
		if err != nil {
			t.Fatal(err)
		}
		sum := tr.Files[2].SHA256 // modules.builtin
		data := filepath.Join(e.s.Dir, "data", "docker", "registry", "v2", "blobs", "sha256", sum[:2], sum, "data")
		blob, err := os.ReadFile(data)
		if err != nil {
			t.Fatal(err)
		}
		blob[0] ^= 0xff
		if err := os.WriteFile(data, blob, 0o644); err != nil {
			t.Fatal(err)
		}
		oneLine(t, []string{"kernel", "pull", ref}, "sha256:"+sum, "mismatch")
		if ents, _ := os.ReadDir(filepath.Join(os.Getenv("XDG_CACHE_HOME"), "c2vm", "kernel-c2vm")); len(ents) != 0 {
			t.Errorf("a failed pull left %v", ents)
		}
	})
	if _, err := os.Stat(kernel.C2VMKernelDir(cache, host)); err != nil {
		t.Errorf("the pulled kernel is not the c2vm kernel any more: %v", err)
	}
}

// manifestDigest is the first manifest of an index (a digest no blob has when it has none).
func manifestDigest(idx ocispec.Index) string {
	if len(idx.Manifests) == 0 {
		return "sha256:no-manifest-in-the-index"
	}
	return idx.Manifests[0].Digest.String()
}
