package image

import (
	"github.com/containerd/containerd/v2/core/images"

	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/c2vm/c2vm/internal/testkit/imagetest"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestOpenInputs(t *testing.T) {
	l1 := tarOf(t, "bin/sh", "etc/passwd")
	l2 := tarOf(t, "etc/hostname")
	l3 := tarOf(t, "usr/lib/x")
	img := imagetest.Image{Name: "demo:1", Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		Config: ocispec.Image{Config: ocispec.ImageConfig{Cmd: []string{"/bin/sh"}}},
		Layers: []imagetest.Layer{
			compress(t, l1, ocispec.MediaTypeImageLayerGzip),
			compress(t, l2, ocispec.MediaTypeImageLayerZstd),
			compress(t, l3, ocispec.MediaTypeImageLayer),
		}}
	plain := img
	plain.Layers = []imagetest.Layer{{Data: l1}, {Data: l2}, {Data: l3}}
	dir := t.TempDir()
	write := map[string]func(p string){
		"ocidir": func(p string) { imagetest.WriteOCILayout(t, p, img) },
		"ocitar": func(p string) { imagetest.WriteOCIArchive(t, p, img) },
		"docker": func(p string) { imagetest.WriteDockerArchive(t, p, img) },
		"legacy": func(p string) { imagetest.WriteDockerArchiveLegacy(t, p, plain) },
		"docker25": func(p string) {
			files := imagetest.BuildOCI(t, img).Files(t)
			for k, v := range imagetest.DockerFiles(t, false, img) {
				files[k] = v
			}
			imagetest.WriteTarFile(t, p, files)
		},
	}
	for name, w := range write {
		w(filepath.Join(dir, name))
	}
	tests := []struct {
		ref, transport string
	}{
		{"oci:" + dir + "/ocidir", "oci"},
		{dir + "/ocidir", "oci"},
		{"oci:" + dir + "/ocidir:demo:1", "oci"},
		{"oci-archive:" + dir + "/ocitar", "oci-archive"},
		{dir + "/ocitar", "oci-archive"},
		{"docker-archive:" + dir + "/docker", "docker-archive"},
		{"docker-archive:" + dir + "/docker:demo:1", "docker-archive"},
		{dir + "/docker", "docker-archive"},
		{dir + "/legacy", "docker-archive"},
		{dir + "/docker25", "docker-archive"},
		{"oci-archive:" + dir + "/docker25", "oci-archive"},
	}
	for _, tt := range tests {
		t.Run(strings.TrimPrefix(tt.ref, dir), func(t *testing.T) {
			got := mustOpen(t, tt.ref, "linux/amd64")
			if !strings.HasPrefix(got.Ref, tt.transport+":") {
				t.Errorf("Ref = %q, want transport %s", got.Ref, tt.transport)
			}
			if got.Name != "demo:1" || got.Platform.Architecture != "amd64" || got.Platform.OS != "linux" {
				t.Errorf("Name %q Platform %+v", got.Name, got.Platform)
			}
			if got.ConfigDigest == "" || got.ManifestDigest == "" || len(got.Config.Config.Cmd) != 1 {
				t.Errorf("config %s manifest %s cmd %v", got.ConfigDigest, got.ManifestDigest, got.Config.Config.Cmd)
			}
			if len(got.Layers) != 3 {
				t.Fatalf("%d layers, want 3", len(got.Layers))
			}
			for i, want := range [][]byte{l1, l2, l3} {
				b, err := readLayer(t, got, i)
				if err != nil {
					t.Fatalf("layer %d (%s): %v", i, got.Layers[i].Desc.MediaType, err)
				}
				if !bytes.Equal(b, want) {
					t.Errorf("layer %d: content differs (%d bytes, want %d)", i, len(b), len(want))
				}
				if got.Layers[i].DiffID != digest.FromBytes(want) {
					t.Errorf("layer %d: diff_id %s", i, got.Layers[i].DiffID)
				}
			}
		})
	}
}

func TestSelectByTag(t *testing.T) {
	dir := t.TempDir()
	a := testImage(t, "a:1", "linux/amd64", "")
	b := testImage(t, "b:2", "linux/amd64", ocispec.MediaTypeImageLayerGzip)
	imagetest.WriteOCILayout(t, dir+"/oci", a, b)
	imagetest.WriteOCIArchive(t, dir+"/oci.tar", a, b)
	imagetest.WriteDockerArchive(t, dir+"/docker.tar", a, b)
	for _, base := range []string{"oci:" + dir + "/oci", "oci-archive:" + dir + "/oci.tar", "docker-archive:" + dir + "/docker.tar"} {
		t.Run(strings.TrimPrefix(base, dir), func(t *testing.T) {
			_, err := open(t, base, "linux/amd64")
			if err == nil || !strings.Contains(err.Error(), "a:1") || !strings.Contains(err.Error(), "b:2") {
				t.Fatalf("no tag: err = %v, want a listing of a:1 and b:2", err)
			}
			img := mustOpen(t, base+":b:2", "linux/amd64")
			if id := idOf(t, img); id != "b:2 linux/amd64" || img.Name != "b:2" {
				t.Fatalf("tag b:2 opened %q named %q", id, img.Name)
			}
			_, err = open(t, base+":c:3", "linux/amd64")
			if err == nil || !strings.Contains(err.Error(), `"c:3"`) || !strings.Contains(err.Error(), "a:1") {
				t.Fatalf("unknown tag: err = %v, want one naming c:3 and listing a:1", err)
			}
		})
	}
	// Docker names are normalized: docker.io/library/x:latest matches x.
	imagetest.WriteDockerArchive(t, dir+"/bb.tar", testImage(t, "busybox:latest", "linux/amd64", ""), b)
	img := mustOpen(t, "docker-archive:"+dir+"/bb.tar:docker.io/library/busybox", "linux/amd64")
	if id := idOf(t, img); id != "busybox:latest linux/amd64" {
		t.Fatalf("normalized name opened %q", id)
	}
}

func TestPlatformSelection(t *testing.T) {
	dir := t.TempDir()
	imgs := []imagetest.Image{
		testImage(t, "multi", "linux/amd64", ocispec.MediaTypeImageLayerGzip),
		testImage(t, "multi", "linux/arm64", ocispec.MediaTypeImageLayerZstd),
		testImage(t, "multi", "linux/arm/v7", ""),
	}
	// OCI: the three manifests plus an attestation go into a nested index under a top-level index.
	l := imagetest.NewLayout()
	var descs []ocispec.Descriptor
	for _, img := range imgs {
		descs = append(descs, l.AddImage(t, img))
	}
	att := l.AddJSON(t, ocispec.MediaTypeImageManifest, ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest,
		Config: ocispec.Descriptor{MediaType: "application/vnd.in-toto+json", Digest: digest.FromString("x"), Size: 1}})
	att.Platform = &ocispec.Platform{OS: "unknown", Architecture: "unknown"}
	att.Annotations = map[string]string{annotationRefType: attestationManifest}
	attNoPlatform := att
	attNoPlatform.Platform = nil
	inner := l.AddIndex(t, append(descs, att, attNoPlatform)...)
	outer := l.AddIndex(t, inner)
	outer.Annotations = map[string]string{ocispec.AnnotationRefName: "multi"}
	l.Index.Manifests = []ocispec.Descriptor{outer}
	l.WriteDir(t, dir+"/oci")
	imagetest.WriteOCILayout(t, dir+"/simple", imgs...) // one nested index, written by the helper
	imagetest.WriteDockerArchive(t, dir+"/docker.tar", imgs...)

	for _, ref := range []string{"oci:" + dir + "/oci", "oci:" + dir + "/simple:multi", "docker-archive:" + dir + "/docker.tar"} {
		t.Run(strings.TrimPrefix(ref, dir), func(t *testing.T) {
			for _, p := range []string{"linux/amd64", "linux/arm64", "linux/arm/v7"} {
				img := mustOpen(t, ref, p)
				if id := idOf(t, img); id != "multi "+p {
					t.Errorf("platform %s opened %q", p, id)
				}
			}
			_, err := open(t, ref, "linux/s390x")
			if err == nil || !strings.Contains(err.Error(), "linux/amd64, linux/arm/v7, linux/arm64;") {
				t.Fatalf("s390x: err = %v, want the available platforms listed", err)
			}
			if strings.Contains(err.Error(), "unknown") {
				t.Errorf("attestation listed as a platform: %v", err)
			}
		})
	}
}

func TestAmbiguousSamePlatform(t *testing.T) {
	dir := t.TempDir()
	a := testImage(t, "x", "linux/amd64", "")
	b := testImage(t, "x", "linux/amd64", ocispec.MediaTypeImageLayerGzip)
	imagetest.WriteDockerArchive(t, dir+"/d.tar", a, b)
	_, err := open(t, dir+"/d.tar", "linux/amd64")
	if !errors.Is(err, errAmbiguous) {
		t.Fatalf("err = %v, want ambiguity", err)
	}
}

// brokenLayout returns a layout directory made from one image, after mutate changed the layout.
func brokenLayout(t *testing.T, img imagetest.Image, mutate func(l *imagetest.Layout)) string {
	t.Helper()
	l := imagetest.BuildOCI(t, img)
	if mutate != nil {
		mutate(l)
	}
	dir := t.TempDir()
	l.WriteDir(t, dir)
	return dir
}

func manifestOf(t *testing.T, l *imagetest.Layout) ocispec.Manifest {
	t.Helper()
	m, err := DecodeManifest(l.Blobs[l.Index.Manifests[0].Digest], "")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// replaceManifest stores m and points index.json at it.
func replaceManifest(t *testing.T, l *imagetest.Layout, m ocispec.Manifest) {
	t.Helper()
	d := l.AddJSON(t, ocispec.MediaTypeImageManifest, m)
	d.Platform = l.Index.Manifests[0].Platform
	l.Index.Manifests[0] = d
}

func TestOpenErrors(t *testing.T) {
	good := tarOf(t, "a")
	base := imagetest.Image{Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		Layers: []imagetest.Layer{compress(t, good, ocispec.MediaTypeImageLayerGzip)}}
	withLayer := func(l imagetest.Layer) imagetest.Image {
		img := base
		img.Layers = []imagetest.Layer{l}
		return img
	}
	gz := imagetest.Gzip(t, good)
	zs := imagetest.Zstd(t, good)
	tests := []struct {
		name    string
		img     imagetest.Image
		mutate  func(l *imagetest.Layout)
		openErr string // error from Open; "" = Open succeeds
		readErr string // error reading layer 0
	}{
		{name: "ok", img: base},
		{name: "unknown layer type", img: withLayer(imagetest.Layer{Data: good, MediaType: "application/x-foo"}),
			openErr: `unsupported layer media type "application/x-foo"`},
		{name: "encrypted layer", img: withLayer(imagetest.Layer{Data: good, MediaType: ocispec.MediaTypeImageLayerGzip + "+encrypted"}),
			openErr: "encrypted layer type"},
		{name: "foreign layer", img: withLayer(imagetest.Layer{Data: good, MediaType: images.MediaTypeDockerSchema2LayerForeign}),
			openErr: "foreign layer"},
		{name: "diff_id mismatch", img: withLayer(imagetest.Layer{Data: gz, MediaType: ocispec.MediaTypeImageLayerGzip, DiffID: digest.FromString("other")}),
			readErr: "diff_id mismatch"},
		{name: "truncated gzip", img: withLayer(imagetest.Layer{Data: gz[:len(gz)-12], MediaType: ocispec.MediaTypeImageLayerGzip, DiffID: digest.FromBytes(good)}),
			readErr: "gzip"},
		{name: "truncated zstd", img: withLayer(imagetest.Layer{Data: zs[:len(zs)-6], MediaType: ocispec.MediaTypeImageLayerZstd, DiffID: digest.FromBytes(good)}),
			readErr: "zstd"},
		{name: "trailing garbage after gzip", img: withLayer(imagetest.Layer{Data: append(append([]byte{}, gz...), "garbage"...), MediaType: ocispec.MediaTypeImageLayerGzip, DiffID: digest.FromBytes(good)}),
			readErr: "gzip"},
		{name: "compressed blob digest mismatch", img: base, mutate: func(l *imagetest.Layout) {
			m := manifestOf(t, l)
			b := append([]byte{}, l.Blobs[m.Layers[0].Digest]...)
			b[len(b)-1] ^= 0xff // corrupt the gzip trailer's size bytes
			l.Blobs[m.Layers[0].Digest] = b
		}, readErr: "digest mismatch"},
		{name: "layer size mismatch", img: base, mutate: func(l *imagetest.Layout) {
			m := manifestOf(t, l)
			m.Layers[0].Size++
			replaceManifest(t, l, m)
		}, readErr: "size mismatch"},
		{name: "missing layer blob", img: base, mutate: func(l *imagetest.Layout) {
			delete(l.Blobs, manifestOf(t, l).Layers[0].Digest)
		}, openErr: "not found in directory"},
		{name: "missing config blob", img: base, mutate: func(l *imagetest.Layout) {
			delete(l.Blobs, manifestOf(t, l).Config.Digest)
		}, openErr: "not found in directory"},
		{name: "malformed manifest", img: base, mutate: func(l *imagetest.Layout) {
			d := l.AddBlob(ocispec.MediaTypeImageManifest, []byte(`{"schemaVersion":2,`))
			l.Index.Manifests[0] = d
		}, openErr: "malformed JSON"},
		{name: "malformed config", img: base, mutate: func(l *imagetest.Layout) {
			m := manifestOf(t, l)
			m.Config = l.AddBlob(ocispec.MediaTypeImageConfig, []byte(`{"rootfs":`))
			replaceManifest(t, l, m)
		}, openErr: "malformed JSON"},
		{name: "config without layers rootfs", img: base, mutate: func(l *imagetest.Layout) {
			m := manifestOf(t, l)
			m.Config = l.AddBlob(ocispec.MediaTypeImageConfig, []byte(`{"os":"linux","architecture":"amd64","rootfs":{"type":"x"}}`))
			replaceManifest(t, l, m)
		}, openErr: `rootfs.type "x"`},
		{name: "diff_ids count", img: base, mutate: func(l *imagetest.Layout) {
			m := manifestOf(t, l)
			m.Layers = append(m.Layers, m.Layers[0])
			replaceManifest(t, l, m)
		}, openErr: "1 rootfs.diff_ids for 2 layers"},
		{name: "manifest digest mismatch", img: base, mutate: func(l *imagetest.Layout) {
			d := l.Index.Manifests[0].Digest
			l.Blobs[d] = append([]byte(" "), l.Blobs[d][1:]...)
		}, openErr: "digest mismatch"},
		{name: "oversized manifest", img: base, mutate: func(l *imagetest.Layout) {
			l.Index.Manifests[0].Size = MaxJSONSize + 1
		}, openErr: "over the 16 MiB limit"},
		{name: "artifact config", img: base, mutate: func(l *imagetest.Layout) {
			m := manifestOf(t, l)
			m.Config.MediaType = "application/vnd.example+json"
			replaceManifest(t, l, m)
		}, openErr: "not a container image config"},
		{name: "platform disagrees with config", img: base, mutate: func(l *imagetest.Layout) {
			l.Index.Manifests[0].Platform = &ocispec.Platform{OS: "linux", Architecture: "amd64"}
			m := manifestOf(t, l)
			m.Config = l.AddBlob(ocispec.MediaTypeImageConfig, []byte(`{"os":"linux","architecture":"arm64","rootfs":{"type":"layers","diff_ids":["`+digest.FromBytes(good).String()+`"]}}`))
			replaceManifest(t, l, m)
		}, openErr: "but the config says linux/arm64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := brokenLayout(t, tt.img, tt.mutate)
			img, err := open(t, dir, "linux/amd64")
			if tt.openErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.openErr) {
					t.Fatalf("Open: err = %v, want %q", err, tt.openErr)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Errorf("error spans lines: %q", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			_, err = readLayer(t, img, 0)
			if tt.readErr == "" {
				if err != nil {
					t.Fatalf("read: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.readErr) {
				t.Fatalf("read: err = %v, want %q", err, tt.readErr)
			}
			if d := img.Layers[0].Desc.Digest.String(); !strings.Contains(err.Error(), d) {
				t.Errorf("read error does not name layer %s: %v", d, err)
			}
		})
	}
}

func TestOpenErrorsFiles(t *testing.T) {
	dir := t.TempDir()
	img := testImage(t, "x:1", "linux/amd64", "")
	files := imagetest.DockerFiles(t, false, img)
	escape := bytes.Replace(files["manifest.json"], []byte(`"blobs/sha256/`), []byte(`"../../blobs/sha256/`), 1)
	abs := bytes.Replace(files["manifest.json"], []byte(`"blobs/sha256/`), []byte(`"/blobs/sha256/`), 1)
	tests := []struct {
		name, wantErr string
		files         map[string][]byte
		raw           []byte
	}{
		{name: "docker path escape", wantErr: "escapes the image", files: with(files, "manifest.json", escape)},
		{name: "docker absolute path", wantErr: "not a relative path", files: with(files, "manifest.json", abs)},
		{name: "docker malformed manifest.json", wantErr: "manifest.json", files: with(files, "manifest.json", []byte("[{"))},
		{name: "docker empty manifest.json", wantErr: "lists no images", files: with(files, "manifest.json", []byte("[]"))},
		{name: "not an image", wantErr: "neither manifest.json", files: map[string][]byte{"hello": []byte("x")}},
		{name: "gzip archive", wantErr: "gzip-compressed", raw: imagetest.Gzip(t, imagetest.TarBytes(t, files))},
		{name: "not a tar", wantErr: "not a valid tar", raw: bytes.Repeat([]byte("x"), 2000)},
		{name: "malformed index.json", wantErr: "index.json", files: map[string][]byte{"index.json": []byte("{")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_"))
			if tt.raw != nil {
				if err := os.WriteFile(p, tt.raw, 0o644); err != nil {
					t.Fatal(err)
				}
			} else {
				imagetest.WriteTarFile(t, p, tt.files)
			}
			_, err := open(t, p, "linux/amd64")
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
	if _, err := open(t, filepath.Join(dir, "nope"), ""); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("missing path: err = %v", err)
	}
	if _, err := open(t, "oci:"+dir+"/empty", ""); err == nil {
		t.Fatal("missing oci dir: no error")
	}
	if err := os.Mkdir(dir+"/emptydir", 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := open(t, dir+"/emptydir", ""); err == nil || !strings.Contains(err.Error(), "not an OCI image layout") {
		t.Fatalf("empty dir: err = %v", err)
	}
}

func with(files map[string][]byte, name string, b []byte) map[string][]byte {
	out := map[string][]byte{}
	for k, v := range files {
		out[k] = v
	}
	out[name] = b
	return out
}

func TestProgressAndClose(t *testing.T) {
	dir := t.TempDir()
	imagetest.WriteOCIArchive(t, dir+"/a.tar", testImage(t, "", "linux/amd64", ocispec.MediaTypeImageLayerGzip))
	var last int64
	img, err := Open(t.Context(), dir+"/a.tar", Options{Platform: "linux/amd64", Progress: func(d digest.Digest, n int64) {
		if n < last {
			t.Errorf("progress went back from %d to %d", last, n)
		}
		last = n
	}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := readLayer(t, img, 0); err != nil {
		t.Fatal(err)
	}
	if last != img.Layers[0].Desc.Size {
		t.Errorf("progress ended at %d, blob is %d bytes", last, img.Layers[0].Desc.Size)
	}
	if _, err := img.OpenLayer(t.Context(), 1); err == nil {
		t.Error("OpenLayer(1) of a 1-layer image: no error")
	}
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := img.OpenLayer(t.Context(), 0); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("OpenLayer after Close: %v", err)
	}
}
