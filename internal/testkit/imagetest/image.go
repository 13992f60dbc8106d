// This file builds synthetic images — OCI layout directories, oci-archives and docker-archives —
// deterministically from in-memory layers.

package imagetest

import (
	"archive/tar"
	"bytes"
	_ "crypto/sha256" // digest.FromBytes
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/containerd/platforms"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Layer is a layer blob as stored: Data is already compressed when MediaType says so. MediaType ""
// means ocispec.MediaTypeImageLayer. DiffID, when set, overrides the diff_id computed by
// decompressing Data (use it for deliberately broken layers).
type Layer struct {
	Data      []byte
	MediaType string
	DiffID    digest.Digest
}

// Image is a synthetic single-platform image. Config's rootfs is filled in when empty, and its
// os/architecture/variant from Platform (or Platform from Config; both empty: the host's).
type Image struct {
	Layers   []Layer
	Config   ocispec.Image
	Platform ocispec.Platform
	Name     string
}

// MediaType returns the layer's media type, defaulting to an uncompressed OCI layer.
func (l Layer) mediaType() string {
	if l.MediaType == "" {
		return ocispec.MediaTypeImageLayer
	}
	return l.MediaType
}

// LayerDiffID returns the diff_id of l: its override, or the digest of its decompressed Data.
func LayerDiffID(t testing.TB, l Layer) digest.Digest {
	t.Helper()
	if l.DiffID != "" {
		return l.DiffID
	}
	var r io.Reader = bytes.NewReader(l.Data)
	switch mt := l.mediaType(); {
	case strings.HasSuffix(mt, "gzip"):
		zr, err := gzip.NewReader(r)
		if err != nil {
			t.Fatalf("imagetest: layer gzip: %v", err)
		}
		r = zr
	case strings.HasSuffix(mt, "zstd"):
		zr, err := zstd.NewReader(r)
		if err != nil {
			t.Fatalf("imagetest: layer zstd: %v", err)
		}
		defer zr.Close()
		r = zr
	}
	d, err := digest.FromReader(r)
	if err != nil {
		t.Fatalf("imagetest: decompress layer for diff_id: %v", err)
	}
	return d
}

// ImagePlatform returns the normalized platform img is built for.
func ImagePlatform(img Image) ocispec.Platform {
	p := img.Platform
	if p.OS == "" && p.Architecture == "" {
		p = img.Config.Platform
	}
	if p.OS == "" && p.Architecture == "" {
		p = platforms.DefaultSpec()
	}
	return platforms.Normalize(p)
}

// ConfigJSON returns the image config of img as written, with rootfs and platform filled in.
func ConfigJSON(t testing.TB, img Image) []byte {
	t.Helper()
	cfg := img.Config
	if cfg.OS == "" && cfg.Architecture == "" {
		p := ImagePlatform(img)
		cfg.OS, cfg.Architecture, cfg.Variant = p.OS, p.Architecture, p.Variant
	}
	if cfg.RootFS.Type == "" {
		cfg.RootFS.Type = "layers"
		cfg.RootFS.DiffIDs = []digest.Digest{}
		for _, l := range img.Layers {
			cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, LayerDiffID(t, l))
		}
	}
	return mustJSON(t, cfg)
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("imagetest: marshal: %v", err)
	}
	return b
}

// Layout is an OCI image layout in memory: index.json's content and the blobs. Tests may change
// it (add blobs, replace descriptors) before writing it.
type Layout struct {
	Index ocispec.Index
	Blobs map[digest.Digest][]byte
}

// NewLayout returns an empty layout.
func NewLayout() *Layout {
	return &Layout{
		Index: ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex,
			Manifests: []ocispec.Descriptor{}},
		Blobs: map[digest.Digest][]byte{},
	}
}

// AddBlob stores b and returns its descriptor.
func (l *Layout) AddBlob(mediaType string, b []byte) ocispec.Descriptor {
	d := digest.FromBytes(b)
	l.Blobs[d] = b
	return ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(b))}
}

// AddJSON stores v as JSON and returns its descriptor.
func (l *Layout) AddJSON(t testing.TB, mediaType string, v any) ocispec.Descriptor {
	t.Helper()
	return l.AddBlob(mediaType, mustJSON(t, v))
}

// AddImage stores img's layers, config and manifest and returns the manifest descriptor, with
// its Platform set.
func (l *Layout) AddImage(t testing.TB, img Image) ocispec.Descriptor {
	t.Helper()
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: l.AddBlob(ocispec.MediaTypeImageConfig, ConfigJSON(t, img)), Layers: []ocispec.Descriptor{}}
	for _, layer := range img.Layers {
		m.Layers = append(m.Layers, l.AddBlob(layer.mediaType(), layer.Data))
	}
	d := l.AddJSON(t, ocispec.MediaTypeImageManifest, m)
	p := ImagePlatform(img)
	d.Platform = &p
	return d
}

// AddIndex stores an image index of descs and returns its descriptor.
func (l *Layout) AddIndex(t testing.TB, descs ...ocispec.Descriptor) ocispec.Descriptor {
	t.Helper()
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: descs}
	return l.AddJSON(t, ocispec.MediaTypeImageIndex, idx)
}

// BuildOCI builds a layout with one index.json entry per distinct Name (in order of first
// appearance), annotated with org.opencontainers.image.ref.name when the name is not empty. Images
// sharing a Name are put in a nested index, one manifest per platform.
func BuildOCI(t testing.TB, imgs ...Image) *Layout {
	t.Helper()
	l := NewLayout()
	var order []string
	groups := map[string][]ocispec.Descriptor{}
	for _, img := range imgs {
		if _, seen := groups[img.Name]; !seen {
			order = append(order, img.Name)
		}
		groups[img.Name] = append(groups[img.Name], l.AddImage(t, img))
	}
	for _, name := range order {
		d := groups[name][0]
		if len(groups[name]) > 1 {
			d = l.AddIndex(t, groups[name]...)
		}
		if name != "" {
			d.Annotations = map[string]string{ocispec.AnnotationRefName: name}
		}
		l.Index.Manifests = append(l.Index.Manifests, d)
	}
	return l
}

// Files returns the layout's files by slash-separated path.
func (l *Layout) Files(t testing.TB) map[string][]byte {
	t.Helper()
	files := map[string][]byte{
		"oci-layout": []byte(`{"imageLayoutVersion":"1.0.0"}`),
		"index.json": mustJSON(t, l.Index),
	}
	for d, b := range l.Blobs {
		files["blobs/"+d.Algorithm().String()+"/"+d.Encoded()] = b
	}
	return files
}

// WriteDir writes the layout as a directory.
func (l *Layout) WriteDir(t testing.TB, dir string) {
	t.Helper()
	WriteFiles(t, dir, l.Files(t))
}

// WriteTar writes the layout as an oci-archive.
func (l *Layout) WriteTar(t testing.TB, path string) {
	t.Helper()
	WriteTarFile(t, path, l.Files(t))
}

// WriteOCILayout writes imgs as an OCI layout directory (see BuildOCI).
func WriteOCILayout(t testing.TB, dir string, imgs ...Image) {
	t.Helper()
	BuildOCI(t, imgs...).WriteDir(t, dir)
}

// WriteOCIArchive writes imgs as an oci-archive (see BuildOCI).
func WriteOCIArchive(t testing.TB, path string, imgs ...Image) {
	t.Helper()
	BuildOCI(t, imgs...).WriteTar(t, path)
}

// DockerEntry is one image of a docker-archive's manifest.json.
type DockerEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// DockerFiles returns the files of a docker-archive of imgs: manifest.json with RepoTags [Name]
// (none when Name is ""). New style (Docker ≥ 25) stores config and layers as blobs/sha256/HEX;
// legacy style stores HEX.json and ID/layer.tar.
func DockerFiles(t testing.TB, legacy bool, imgs ...Image) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	entries := []DockerEntry{}
	for _, img := range imgs {
		cfg := ConfigJSON(t, img)
		e := DockerEntry{Config: "blobs/sha256/" + digest.FromBytes(cfg).Encoded(), RepoTags: []string{}, Layers: []string{}}
		if legacy {
			e.Config = digest.FromBytes(cfg).Encoded() + ".json"
		}
		if img.Name != "" {
			e.RepoTags = append(e.RepoTags, img.Name)
		}
		files[e.Config] = cfg
		parent := ""
		for _, l := range img.Layers {
			p := "blobs/sha256/" + digest.FromBytes(l.Data).Encoded()
			if legacy {
				parent = digest.FromString(parent + LayerDiffID(t, l).String()).Encoded()
				p = parent + "/layer.tar"
			}
			files[p] = l.Data
			e.Layers = append(e.Layers, p)
		}
		entries = append(entries, e)
	}
	files["manifest.json"] = mustJSON(t, entries)
	return files
}

// WriteDockerArchive writes imgs as a new-style docker-archive (blobs/sha256/...).
func WriteDockerArchive(t testing.TB, path string, imgs ...Image) {
	t.Helper()
	WriteTarFile(t, path, DockerFiles(t, false, imgs...))
}

// WriteDockerArchiveLegacy writes imgs as an old-style docker-archive (ID/layer.tar, HEX.json).
func WriteDockerArchiveLegacy(t testing.TB, path string, imgs ...Image) {
	t.Helper()
	WriteTarFile(t, path, DockerFiles(t, true, imgs...))
}

// WriteFiles writes files (slash-separated relative paths) under dir.
func WriteFiles(t testing.TB, dir string, files map[string][]byte) {
	t.Helper()
	for name, b := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TarBytes returns a tar of files in sorted order with fixed metadata.
func TarBytes(t testing.TB, files map[string][]byte) []byte {
	t.Helper()
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		h := &tar.Header{Name: n, Mode: 0o644, Size: int64(len(files[n])), Typeflag: tar.TypeReg,
			ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(files[n]); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// WriteTarFile writes TarBytes(files) to path.
func WriteTarFile(t testing.TB, path string, files map[string][]byte) {
	t.Helper()
	if err := os.WriteFile(path, TarBytes(t, files), 0o644); err != nil {
		t.Fatal(err)
	}
}
