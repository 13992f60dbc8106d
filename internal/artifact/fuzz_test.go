package artifact

import (
	"path/filepath"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/c2vm/c2vm/internal/descriptor"
)

// FuzzDecode feeds the pull path's index and manifest decoding arbitrary bytes: it must never
// panic, and whatever it accepts must be safe to build cache paths and requests from — every
// descriptor passes the shared check, and every digest's hex stays one plain path element.
// The seeds in testdata/fuzz/FuzzDecode run as part of go test.
func FuzzDecode(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		safe := func(d ocispec.Descriptor) {
			t.Helper()
			if err := descriptor.Check(d, -1); err != nil {
				t.Fatalf("accepted a descriptor the check refuses: %v", err)
			}
			if p := filepath.Join("/cache/bundles", d.Digest.Encoded()); filepath.Dir(p) != "/cache/bundles" {
				t.Fatalf("digest %q leaves the cache: %s", d.Digest, p)
			}
		}
		if idx, err := decodeIndex(b, ocispec.MediaTypeImageIndex); err == nil {
			for _, m := range idx.Manifests {
				safe(m)
				if m.MediaType != ocispec.MediaTypeImageManifest || m.Size > descriptor.MaxManifest {
					t.Fatalf("accepted index entry %+v", m)
				}
			}
		}
		for _, k := range []kind{bundleKind, kernelKind} {
			man, err := decodeManifest(b, ocispec.MediaTypeImageManifest, k)
			if err != nil {
				continue
			}
			safe(man.Config)
			for _, l := range man.Layers {
				safe(l)
			}
			if k.config != bundleKind.config {
				continue
			}
			names, err := artifactFiles(man)
			if err != nil {
				continue
			}
			for _, n := range names {
				if strings.ContainsAny(n, "/\x00") || n == "." || n == ".." || n == "" {
					t.Fatalf("accepted file name %q", n)
				}
			}
		}
	})
}
