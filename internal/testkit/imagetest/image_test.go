package imagetest

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func sampleImages(t *testing.T) []Image {
	layer := TarLayer(t, TarFile("a", "hello"))
	return []Image{
		{Name: "x", Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"}, Layers: []Layer{{Data: Gzip(t, layer), MediaType: ocispec.MediaTypeImageLayerGzip}}},
		{Name: "x", Platform: ocispec.Platform{OS: "linux", Architecture: "arm64"}, Layers: []Layer{{Data: layer}}},
		{Name: "y", Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"}, Layers: []Layer{{Data: Zstd(t, layer), MediaType: ocispec.MediaTypeImageLayerZstd}}},
	}
}

func TestWritersDeterministic(t *testing.T) {
	dir := t.TempDir()
	for _, kind := range []string{"oci", "docker"} {
		if err := os.MkdirAll(filepath.Join(dir, kind), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 2 {
		WriteOCIArchive(t, filepath.Join(dir, "oci", string(rune('0'+i))), sampleImages(t)...)
		WriteDockerArchive(t, filepath.Join(dir, "docker", string(rune('0'+i))), sampleImages(t)...)
	}
	for _, kind := range []string{"oci", "docker"} {
		a, errA := os.ReadFile(filepath.Join(dir, kind, "0"))
		b, errB := os.ReadFile(filepath.Join(dir, kind, "1"))
		if errA != nil || errB != nil || !bytes.Equal(a, b) || len(a) == 0 {
			t.Errorf("%s: two writes differ or failed (%v, %v)", kind, errA, errB)
		}
	}
}

func TestBuildOCINestsPlatforms(t *testing.T) {
	l := BuildOCI(t, sampleImages(t)...)
	if len(l.Index.Manifests) != 2 {
		t.Fatalf("index.json has %d entries, want 2 (x, y)", len(l.Index.Manifests))
	}
	x := l.Index.Manifests[0]
	if x.MediaType != ocispec.MediaTypeImageIndex || x.Annotations[ocispec.AnnotationRefName] != "x" {
		t.Fatalf("entry x = %+v, want a nested index named x", x)
	}
	var nested ocispec.Index
	if err := json.Unmarshal(l.Blobs[x.Digest], &nested); err != nil || len(nested.Manifests) != 2 {
		t.Fatalf("nested index: %v, %d manifests", err, len(nested.Manifests))
	}
	if p := nested.Manifests[1].Platform; p == nil || p.Architecture != "arm64" {
		t.Errorf("second manifest platform = %+v", p)
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(ConfigJSON(t, sampleImages(t)[2]), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.RootFS.Type != "layers" || len(cfg.RootFS.DiffIDs) != 1 || cfg.Architecture != "amd64" {
		t.Errorf("config = %+v", cfg)
	}
	if got, want := cfg.RootFS.DiffIDs[0], LayerDiffID(t, sampleImages(t)[1].Layers[0]); got != want {
		t.Errorf("zstd layer diff_id %s, want the uncompressed digest %s", got, want)
	}
}
