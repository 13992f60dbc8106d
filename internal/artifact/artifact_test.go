package artifact

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/c2vm/c2vm/bundle"
	"github.com/c2vm/c2vm/internal/cachedir"
	"github.com/c2vm/c2vm/internal/registry"
	"github.com/c2vm/c2vm/internal/testkit/registrytest"
)

func newClient(t *testing.T, cache string) *registry.Client {
	t.Helper()
	c, err := registry.New(registry.Options{CacheDir: cache, DockerConfig: filepath.Join(t.TempDir(), "none.json"),
		Timeouts: registry.Timeouts{Idle: 2 * time.Second, ResponseHeader: 2 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// tree lists every path under dir.
func tree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && p != dir {
			out = append(out, strings.TrimPrefix(p, dir+"/"))
		}
		return nil
	})
	return out
}

// TestPullHostile: every descriptor a registry hands over is checked before a path or request is
// built from it; each fault ends in one error line naming the reference, and nothing is created
// outside the cache (nor a bundle inside it).
func TestPullHostile(t *testing.T) {
	reg := registrytest.StartHostile(t, false)
	a := reg.PutBundle(t)
	good := reg.PutJSON(t, "app", "", ocispec.MediaTypeImageManifest, a.Manifest)
	for _, tc := range []struct {
		name string
		top  func(victim string) any // an index or a manifest
		want string
	}{
		{"index entry escapes the cache", func(victim string) any {
			d := good
			d.Digest = digest.Digest("sha256:../../../../../../../../.." + victim)
			return registrytest.Index(d)
		}, "manifests[0]: descriptor digest"},
		{"index entry without a colon", func(string) any {
			d := good
			d.Digest = "nocolon"
			return registrytest.Index(d)
		}, "manifests[0]: descriptor digest"},
		{"index entry of unknown algorithm", func(string) any {
			d := good
			d.Digest = "md5:d41d8cd98f00b204e9800998ecf8427e"
			return registrytest.Index(d)
		}, "unsupported"},
		{"index entry of negative size", func(string) any {
			d := good
			d.Size = -1
			return registrytest.Index(d)
		}, "negative size"},
		{"index entry is an index", func(string) any {
			d := good
			d.MediaType = ocispec.MediaTypeImageIndex
			return registrytest.Index(d)
		}, "media type"},
		{"config digest escapes", func(victim string) any {
			m := a.Manifest
			m.Config.Digest = digest.Digest("sha256:../../" + victim)
			return m
		}, "config: descriptor digest"},
		{"config too large", func(string) any {
			m := a.Manifest
			m.Config.Size = 1 << 40
			return m
		}, "config: descriptor"},
		{"layer without a colon", func(string) any {
			m := a.Manifest
			m.Layers = append([]ocispec.Descriptor(nil), m.Layers...)
			m.Layers[0].Digest = "nocolon"
			return m
		}, "layers[0]: descriptor digest"},
		{"layer of another media type", func(string) any {
			m := a.Manifest
			m.Layers = append([]ocispec.Descriptor(nil), m.Layers...)
			m.Layers[0].MediaType = bundle.KernelMediaType
			return m
		}, "media type"},
		{"layer title escapes", func(string) any {
			m := a.Manifest
			m.Layers = append([]ocispec.Descriptor(nil), m.Layers...)
			m.Layers[0].Annotations = map[string]string{ocispec.AnnotationTitle: "../../initrd.img"}
			return m
		}, "not a bundle file name"},
		{"layer of other content", func(string) any {
			m := a.Manifest
			m.Layers = append([]ocispec.Descriptor(nil), m.Layers...)
			d := reg.PutBlob("", []byte("not the initrd"))
			m.Layers[0].Digest, m.Layers[0].Size = d.Digest, d.Size
			return m
		}, "is not the file its bundle.json lists"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			home := t.TempDir()
			victim := filepath.Join(home, "other.bundle")
			cache := filepath.Join(home, "cache")
			out := filepath.Join(home, "out")
			top := tc.top(victim)
			mt := ocispec.MediaTypeImageManifest
			if _, ok := top.(ocispec.Index); ok {
				mt = ocispec.MediaTypeImageIndex
			}
			tag := strings.NewReplacer(" ", "-").Replace(tc.name)
			reg.PutJSON(t, "app", tag, mt, top)
			ref := reg.Host + "/app:" + tag
			c := newClient(t, cache)
			_, errPull := Pull(context.Background(), c, ref, out, "linux/amd64")
			_, errCached := PullCached(context.Background(), c, ref, cache, "linux/amd64")
			for _, err := range []error{errPull, errCached} {
				if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "app:"+tag) || strings.Contains(err.Error(), "\n") {
					t.Errorf("got %v, want one line naming %s with %q", err, ref, tc.want)
				}
			}
			for _, p := range tree(t, home) {
				if !strings.HasPrefix(p, "cache/") && p != "cache" {
					t.Errorf("created %s outside the cache", p)
				}
				if strings.HasPrefix(p, "cache/bundles/") {
					t.Errorf("left %s", p)
				}
			}
		})
	}
}

// TestPullCachedOnce: concurrent pulls of one bundle end in one directory that later pulls reuse
// and never replace; the files are not kept in the blob cache as well; stale stages of killed
// pulls are removed.
func TestPullCachedOnce(t *testing.T) {
	reg := registrytest.StartHostile(t, false)
	a := reg.PutBundle(t)
	d := reg.PutJSON(t, "app", "v1", ocispec.MediaTypeImageManifest, a.Manifest)
	cache := t.TempDir()
	bundles := cachedir.Dir(cache).PulledBundles()
	if err := os.MkdirAll(filepath.Join(bundles, "."+d.Digest.Encoded()+".c2vm-tmp-999999999-x"), 0o755); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, cache)
	var wg sync.WaitGroup
	dirs := make([]string, 4)
	errs := make([]error, 4)
	for i := range dirs {
		wg.Go(func() { dirs[i], errs[i] = PullCached(context.Background(), c, reg.Host+"/app:v1", cache, "") })
	}
	wg.Wait()
	for i := range dirs {
		if errs[i] != nil || dirs[i] != filepath.Join(bundles, d.Digest.Encoded()) {
			t.Fatalf("pull %d: %s %v", i, dirs[i], errs[i])
		}
	}
	fi, err := os.Stat(dirs[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := PullCached(context.Background(), c, reg.Host+"/app:v1", cache, ""); err != nil {
		t.Fatal(err)
	}
	if fi2, err := os.Stat(dirs[0]); err != nil || !os.SameFile(fi, fi2) {
		t.Errorf("a later pull replaced %s", dirs[0])
	}
	if got := tree(t, bundles); len(got) != 4 { // the bundle dir and its bundle.json, vmlinuz, initrd.img
		t.Errorf("bundles/ holds %q, want one bundle", got)
	}
	for _, l := range a.Manifest.Layers {
		if _, err := os.Stat(filepath.Join(cachedir.Dir(cache).Blobs(), "sha256", l.Digest.Encoded())); err == nil {
			t.Errorf("%s is kept in the blob cache too", l.Annotations[ocispec.AnnotationTitle])
		}
	}
}

// TestPullInterrupted: a pull cancelled mid-download leaves nothing behind, and nothing reading.
func TestPullInterrupted(t *testing.T) {
	before := runtime.NumGoroutine()
	reg := registrytest.StartHostile(t, true)
	a := reg.PutBundle(t)
	reg.PutJSON(t, "app", "v1", ocispec.MediaTypeImageManifest, a.Manifest)
	ctx, cancel := context.WithCancel(context.Background())
	reg.Override = func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasSuffix(r.URL.Path, a.Manifest.Layers[1].Digest.String()) && r.Method == http.MethodGet {
			cancel()
			registrytest.Stall(w, r, a.Manifest.Layers[1].Size)
			return true
		}
		return false
	}
	cache := t.TempDir()
	c, err := registry.New(registry.Options{CacheDir: cache, Insecure: []string{reg.Host}, DockerConfig: filepath.Join(t.TempDir(), "none.json")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := PullCached(ctx, c, reg.Host+"/app:v1", cache, ""); err == nil {
		t.Fatal("pull succeeded")
	}
	if got := tree(t, cachedir.Dir(cache).PulledBundles()); len(got) != 0 {
		t.Errorf("left %q", got)
	}
	c.Close()
	reg.Close()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine() - before; n > 0 {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines left:\n%s", n, buf[:runtime.Stack(buf, true)])
	}
}

// TestPushRefusesEscapingNames: bundle.json file names that leave the bundle, or name what is not
// a regular file, are refused before anything is opened or sent.
func TestPushRefusesEscapingNames(t *testing.T) {
	reg := registrytest.StartHostile(t, false)
	for _, name := range []string{"../../etc/hostname", "/dev/zero", "sub/file", ".."} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			m := bundle.Manifest{SchemaVersion: bundle.SchemaVersion, Files: []bundle.File{{Name: name, Size: 1, SHA256: strings.Repeat("0", 64)}}}
			raw, _ := m.Marshal()
			os.WriteFile(filepath.Join(dir, bundle.ManifestFile), raw, 0o644)
			c := newClient(t, t.TempDir())
			_, err := Push(context.Background(), c, dir, reg.Host+"/app:v1")
			if err == nil || !strings.Contains(err.Error(), "not a plain file name") {
				t.Fatalf("push: %v", err)
			}
		})
	}
	t.Run("fifo", func(t *testing.T) {
		dir := t.TempDir()
		m := bundle.Manifest{SchemaVersion: bundle.SchemaVersion, Files: []bundle.File{{Name: "vmlinuz", Size: 1, SHA256: strings.Repeat("0", 64)}}}
		raw, _ := m.Marshal()
		os.WriteFile(filepath.Join(dir, bundle.ManifestFile), raw, 0o644)
		if err := mkfifo(filepath.Join(dir, "vmlinuz")); err != nil {
			t.Fatal(err)
		}
		c := newClient(t, t.TempDir())
		done := make(chan error, 1)
		go func() { _, err := Push(context.Background(), c, dir, reg.Host+"/app:v1"); done <- err }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "not a regular file") {
				t.Fatalf("push: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("push blocked on a FIFO")
		}
	})
}

func mkfifo(path string) error { return syscall.Mkfifo(path, 0o644) }
