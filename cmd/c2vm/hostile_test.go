package main

import (
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/c2vm/c2vm/bundle"
	"github.com/c2vm/c2vm/internal/testkit/registrytest"
)

// TestHostileRegistry runs pull, run REF and kernel pull against a registry that lies (issue 21):
// every case ends in exit 125 and one line naming the reference and the fault, nothing is created
// outside the cache, and no goroutine is left reading. Over TLS (--insecure-registry) and plain
// HTTP (loopback).
func TestHostileRegistry(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		name := "plain"
		if useTLS {
			name = "tls"
		}
		t.Run(name, func(t *testing.T) { hostileRegistry(t, useTLS) })
	}
}

func hostileRegistry(t *testing.T, useTLS bool) {
	reg := registrytest.StartHostile(t, useTLS)
	a := reg.PutBundle(t)
	good := reg.PutJSON(t, "app", "", ocispec.MediaTypeImageManifest, a.Manifest)
	withDigest := func(d ocispec.Descriptor, dg digest.Digest) ocispec.Descriptor { d.Digest = dg; return d }
	for _, tc := range []struct {
		name string
		top  func(home string) (string, any) // media type and document served as app:TAG
		want string
	}{ // kernel pull reads the index cases only: a bundle manifest is not a kernel artifact
		{"index entry escapes the cache", func(home string) (string, any) {
			return ocispec.MediaTypeImageIndex, registrytest.Index(withDigest(good, digest.Digest("sha256:../../../../../../../.."+filepath.Join(home, "other.bundle"))))
		}, "descriptor digest"},
		{"index entry digest without a colon", func(string) (string, any) {
			return ocispec.MediaTypeImageIndex, registrytest.Index(withDigest(good, "nocolon"))
		}, "descriptor digest"},
		{"manifest layer digest without a colon", func(string) (string, any) {
			m := a.Manifest
			m.Layers = append([]ocispec.Descriptor(nil), m.Layers...)
			m.Layers[1].Digest = "nocolon"
			return ocispec.MediaTypeImageManifest, m
		}, "layers[1]: descriptor digest"},
		{"endless manifest", func(string) (string, any) {
			return ocispec.MediaTypeImageIndex, endlessMarker
		}, "over the 4 MiB limit"},
		{"manifest config escapes", func(home string) (string, any) {
			m := a.Manifest
			m.Config.Digest = digest.Digest("sha256:../../" + home)
			return ocispec.MediaTypeImageManifest, m
		}, "config: descriptor digest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			home := t.TempDir()
			victim := filepath.Join(home, "other.bundle") // a directory the user has, not in the cache
			if err := os.MkdirAll(victim, 0o755); err != nil {
				t.Fatal(err)
			}
			t.Setenv("XDG_CACHE_HOME", filepath.Join(home, "cache"))
			t.Setenv("DOCKER_CONFIG", filepath.Join(home, "docker"))
			tag := strings.ReplaceAll(tc.name, " ", "-")
			mt, doc := tc.top(home)
			reg.Override = nil
			if doc == endlessMarker {
				reg.Override = func(w http.ResponseWriter, r *http.Request) bool {
					if strings.HasSuffix(r.URL.Path, "/manifests/"+strings.ReplaceAll(tc.name, " ", "-")) {
						registrytest.Endless(w, r, ocispec.MediaTypeImageIndex) // no digest: containerd reads the body
						return true
					}
					return false
				}
			} else {
				reg.PutJSON(t, "app", tag, mt, doc)
			}
			ref := reg.Host + "/app:" + tag
			flags := []string{"--insecure-registry", reg.Host}
			if !useTLS {
				flags = nil
			}
			for _, args := range [][]string{
				append(append([]string{"pull"}, flags...), ref, filepath.Join(home, "cache", "out")),
				append(append([]string{"run"}, flags...), ref),
				append(append([]string{"kernel", "pull"}, flags...), ref),
			} {
				if args[0] == "kernel" && mt != ocispec.MediaTypeImageIndex {
					continue
				}
				code, stdout, stderr := c2vm(t, "", args...)
				if code != ExitFailure || stdout != "" || strings.Count(stderr, "\n") != 1 ||
					!strings.Contains(stderr, "app:"+tag) || !strings.Contains(stderr, tc.want) {
					t.Errorf("c2vm %s: exit %d, stdout %q, stderr %q: want 125 and one line naming %s with %q", strings.Join(args, " "), code, stdout, stderr, ref, tc.want)
				}
			}
			for _, p := range tree(t, home) {
				if p != "other.bundle" && p != "cache" && !strings.HasPrefix(p, "cache/") {
					t.Errorf("created %s outside the cache", p)
				}
				if strings.HasPrefix(p, "cache/c2vm/bundles/") || strings.HasPrefix(p, "cache/out") {
					t.Errorf("left %s", p)
				}
			}
		})
	}
	noneReading(t) // the server still up: its connections too must have been closed by the client
	reg.Close()
}

// endlessMarker asks for a manifest response that never ends.
var endlessMarker = struct{ endless bool }{true}

// noneReading fails the test when a goroutine is still in an HTTP or TLS client or in c2vm's
// registry code (after a grace period for ones on their way out).
func noneReading(t *testing.T) {
	t.Helper()
	var left []string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		buf := make([]byte, 4<<20)
		left = left[:0]
		for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
			if strings.Contains(g, "net/http.(*Server).Serve(") { // the test server's accept loop
				continue
			}
			if strings.Contains(g, "net/http.") || strings.Contains(g, "crypto/tls.") || strings.Contains(g, "c2vm/internal/registry.") || strings.Contains(g, "c2vm/internal/artifact.") {
				left = append(left, g)
			}
		}
		if len(left) == 0 {
			return
		}
	}
	t.Errorf("%d goroutines left reading:\n%s", len(left), strings.Join(left, "\n\n"))
}

// tree lists every path under dir, relative to it.
func tree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, _ os.DirEntry, err error) error {
		if err == nil && p != dir {
			out = append(out, strings.TrimPrefix(p, dir+"/"))
		}
		return nil
	})
	return out
}

// TestHostileBundle: inspect --verify and push never follow bundle.json file names out of the
// bundle nor read what is not a regular file.
func TestHostileBundle(t *testing.T) {
	for _, name := range []string{"../../etc/hostname", "/dev/zero", "sub/x", ".."} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			m := bundle.Manifest{SchemaVersion: bundle.SchemaVersion, RootfsFormat: "initrd", Files: []bundle.File{{Name: name, Size: 1, SHA256: strings.Repeat("0", 64)}}}
			raw, err := m.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, bundle.ManifestFile), raw, 0o644); err != nil {
				t.Fatal(err)
			}
			for _, args := range [][]string{{"inspect", "--verify", dir}, {"push", dir, "127.0.0.1:1/app:v1"}} {
				code, stdout, stderr := c2vm(t, "", args...)
				if code != ExitFailure || stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "not a plain file name") {
					t.Errorf("c2vm %s: exit %d, stdout %q, stderr %q", strings.Join(args, " "), code, stdout, stderr)
				}
			}
		})
	}
	t.Run("bundle.json is /dev/zero", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Symlink("/dev/zero", filepath.Join(dir, bundle.ManifestFile)); err != nil {
			t.Fatal(err)
		}
		code, _, stderr := c2vm(t, "", "inspect", dir)
		if code != ExitFailure || !strings.Contains(stderr, "not a regular file") && !strings.Contains(stderr, "symbolic link") {
			t.Errorf("inspect: exit %d, %q", code, stderr)
		}
	})
}
