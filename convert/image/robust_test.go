package image

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/c2vm/c2vm/internal/decompress"
	"github.com/c2vm/c2vm/internal/testkit/imagetest"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// countingStore counts the bytes read from each member.
type countingStore struct {
	store
	mu    sync.Mutex
	bytes map[string]int64
}

func (c *countingStore) open(name string) (io.ReadCloser, int64, error) {
	rc, size, err := c.store.open(name)
	if err != nil {
		return nil, 0, err
	}
	return &countingRC{rc, c, name}, size, nil
}

type countingRC struct {
	io.ReadCloser
	c    *countingStore
	name string
}

func (r *countingRC) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	r.c.mu.Lock()
	r.c.bytes[r.name] += int64(n)
	r.c.mu.Unlock()
	return n, err
}

func platformless(d ocispec.Descriptor) ocispec.Descriptor {
	d.Platform = nil
	return d
}

func repeat(d ocispec.Descriptor, n int) []ocispec.Descriptor {
	out := make([]ocispec.Descriptor, n)
	for i := range out {
		out[i] = d
	}
	return out
}

// TestOpenReadsEachMemberOnce checks that a manifest, index, config or layer listed thousands of
// times is read (and hashed) once per Open.
func TestOpenReadsEachMemberOnce(t *testing.T) {
	img := testImage(t, "x:1", "linux/amd64", ocispec.MediaTypeImageLayerGzip)
	dir := t.TempDir()
	tests := []struct {
		name  string
		build func(t *testing.T, p string) string // writes the image at p, returns the tag to select
		oci   bool
	}{
		{name: "oci manifest without platform listed 5000 times", oci: true,
			build: func(t *testing.T, p string) string {
				l := imagetest.NewLayout()
				l.Index.Manifests = repeat(platformless(l.AddImage(t, img)), 5000)
				l.WriteDir(t, p)
				return ""
			}},
		{name: "oci nested index listed 5000 times", oci: true,
			build: func(t *testing.T, p string) string {
				l := imagetest.NewLayout()
				idx := l.AddIndex(t, platformless(l.AddImage(t, img)))
				l.Index.Manifests = repeat(idx, 5000)
				l.WriteDir(t, p)
				return ""
			}},
		{name: "docker entries sharing config and a hashed layer", oci: false,
			build: func(t *testing.T, p string) string {
				files := imagetest.DockerFiles(t, true, img) // legacy: layer paths do not encode a digest
				var entries []dockerEntry
				if err := json.Unmarshal(files["manifest.json"], &entries); err != nil {
					t.Fatal(err)
				}
				var many []dockerEntry
				for i := range 3000 {
					e := entries[0]
					if i%2 == 1 {
						e.RepoTags = []string{"x:1", "y:2"}
					}
					many = append(many, e)
				}
				b, err := json.Marshal(many)
				if err != nil {
					t.Fatal(err)
				}
				files["manifest.json"] = b
				imagetest.WriteTarFile(t, p, files)
				return "x:1"
			}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, fmt.Sprint(i))
			tag := tt.build(t, p)
			var raw store
			var err error
			if tt.oci {
				raw, err = openDirStore(p)
			} else {
				raw, err = openTarStore(p)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			cs := &countingStore{store: raw, bytes: map[string]int64{}}
			s := newOpenCache(cs)
			var cands []candidate
			if tt.oci {
				cands, err = ociCandidates(context.Background(), s, tag)
			} else {
				cands, err = dockerCandidates(context.Background(), s, tag)
			}
			if err != nil {
				t.Fatal(err)
			}
			c, err := choose(cands, ocispec.Platform{OS: "linux", Architecture: "amd64"})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.load(); err != nil {
				t.Fatal(err)
			}
			for name, n := range cs.bytes {
				rc, size, err := raw.open(name)
				if err != nil {
					t.Fatal(err)
				}
				rc.Close()
				// A layer is also sniffed (8 bytes) once per distinct entry.
				if n > size+64 {
					t.Errorf("%s: read %d bytes, it has %d: read more than once", name, n, size)
				}
			}
			if len(cs.bytes) < 2 {
				t.Errorf("only %d members read: %v", len(cs.bytes), cs.bytes)
			}
		})
	}
}

// zeroStore serves members of the given sizes, all zero bytes.
type zeroStore map[string]int64

func (z zeroStore) open(name string) (io.ReadCloser, int64, error) {
	size, ok := z[name]
	if !ok {
		return nil, 0, notFound(z, name)
	}
	return io.NopCloser(io.LimitReader(zeroReader{}, size)), size, nil
}
func (z zeroStore) has(name string) bool { _, ok := z[name]; return ok }
func (z zeroStore) where() string        { return "test store" }
func (z zeroStore) Close() error         { return nil }

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// TestOpenJSONBudget checks that one Open reads at most MaxOpenJSON bytes of JSON, counting a
// member read again (served from the cache) once.
func TestOpenJSONBudget(t *testing.T) {
	const mib = 1 << 20
	s := newOpenCache(zeroStore{"a": 15 * mib, "b": 15 * mib, "c": 15 * mib, "d": 15 * mib, "e": 5 * mib})
	steps := []struct {
		name    string
		wantErr string
	}{
		{"a", ""}, {"a", ""}, {"b", ""}, {"c", ""}, {"a", ""}, {"d", ""}, // 60 MiB read
		{"e", "over the 64 MiB limit in total"},
		{"b", ""}, // cached
	}
	for i, st := range steps {
		b, err := readMember(s, st.name, -1)
		if st.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), st.wantErr) || !strings.Contains(err.Error(), st.name) {
				t.Fatalf("step %d: read %s: err = %v, want %q", i, st.name, err, st.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("step %d: read %s: %v", i, st.name, err)
		}
		if want := s.store.(zeroStore)[st.name]; int64(len(b)) != want {
			t.Fatalf("step %d: read %d bytes of %s, want %d", i, len(b), st.name, want)
		}
	}
	if s.read != 60*mib {
		t.Errorf("counted %d bytes, want %d", s.read, 60*mib)
	}
}

// TestOpenSkipsArtifacts checks that artifact manifests in an index are skipped, and listed when
// nothing else is there.
func TestOpenSkipsArtifacts(t *testing.T) {
	img := testImage(t, "x:1", "linux/amd64", "")
	// artifactByType is an index entry with artifactType set; its blob is not even there.
	artifactByType := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, ArtifactType: "application/vnd.example.sbom",
		Digest: digest.FromString("missing"), Size: 7}
	// artifactByConfig has no platform and a config that is not an image config.
	artifactByConfig := func(l *imagetest.Layout) ocispec.Descriptor {
		cfg := l.AddBlob("application/vnd.example.config+json", []byte(`{}`))
		m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: cfg, Layers: []ocispec.Descriptor{}}
		m.SchemaVersion = 2
		return l.AddJSON(t, ocispec.MediaTypeImageManifest, m)
	}
	tests := []struct {
		name    string
		entries func(l *imagetest.Layout) []ocispec.Descriptor // children of one nested index
		wantErr []string                                       // "" = opens img
	}{
		{name: "artifactType child beside an image",
			entries: func(l *imagetest.Layout) []ocispec.Descriptor {
				return []ocispec.Descriptor{artifactByType, l.AddImage(t, img)}
			}},
		{name: "platform-less artifact child beside an image",
			entries: func(l *imagetest.Layout) []ocispec.Descriptor {
				return []ocispec.Descriptor{artifactByConfig(l), platformless(l.AddImage(t, img))}
			}},
		{name: "only artifacts",
			entries: func(l *imagetest.Layout) []ocispec.Descriptor {
				return []ocispec.Descriptor{artifactByType, artifactByConfig(l)}
			},
			wantErr: []string{"no image manifests found (2 skipped", "artifact application/vnd.example.sbom",
				`artifact with config media type application/vnd.example.config+json`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := imagetest.NewLayout()
			l.Index.Manifests = []ocispec.Descriptor{l.AddIndex(t, tt.entries(l)...)}
			dir := t.TempDir()
			l.WriteDir(t, dir)
			got, err := open(t, dir, "linux/amd64")
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("Open succeeded, want error %q", tt.wantErr)
				}
				for _, s := range tt.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not contain %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if id := idOf(t, got); id != "x:1 linux/amd64" {
				t.Errorf("opened image %q", id)
			}
		})
	}
}

// TestTarLinksResolveDeterministically checks that link chains resolve the same way whatever the
// map order: a chain of up to maxLinkHops links resolves, a longer one is dropped.
func TestTarLinksResolveDeterministically(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "blob", Size: 4, Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte("data"))
	const n = 24
	for i := range n { // a00 -> a01 -> ... -> a23 -> blob; a_i is n-i hops from blob
		target := fmt.Sprintf("a%02d", i+1)
		if i == n-1 {
			target = "blob"
		}
		typ := byte(tar.TypeSymlink)
		if i%3 == 0 {
			typ = tar.TypeLink
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: typ, Name: fmt.Sprintf("a%02d", i), Linkname: target}); err != nil {
			t.Fatal(err)
		}
	}
	tw.Close()
	p := filepath.Join(t.TempDir(), "a.tar")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	for run := range 20 {
		s, err := openTarStore(p)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			want := n-i <= maxLinkHops
			if got := s.has(fmt.Sprintf("a%02d", i)); got != want {
				t.Errorf("run %d: has(a%02d) = %v, want %v", run, i, got, want)
			}
		}
		s.Close()
	}
}

func TestCheckPlatformVariant(t *testing.T) {
	cfg := func(arch, variant string) ocispec.Image {
		return ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: arch, Variant: variant}}
	}
	tests := []struct {
		declared ocispec.Platform
		cfg      ocispec.Image
		wantErr  string
	}{
		{ocispec.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}, cfg("arm", "v6"), "index declares platform linux/arm/v7 but the config says linux/arm/v6"},
		{ocispec.Platform{OS: "linux", Architecture: "arm", Variant: "v6"}, cfg("arm", "v6"), ""},
		{ocispec.Platform{OS: "linux", Architecture: "arm", Variant: "7"}, cfg("arm", "v7"), ""},
		{ocispec.Platform{OS: "linux", Architecture: "arm", Variant: "v6"}, cfg("arm", ""), ""},
		{ocispec.Platform{OS: "linux", Architecture: "arm"}, cfg("arm", "v6"), ""},
		{ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}, cfg("arm64", ""), ""},
		{ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}, cfg("arm64", "v9"), "but the config says linux/arm64/v9"},
		{ocispec.Platform{OS: "linux", Architecture: "amd64", Variant: "v3"}, cfg("amd64", "v2"), "linux/amd64/v3"},
	}
	for _, tt := range tests {
		name := fmt.Sprintf("%s/%s vs %s", tt.declared.Architecture, tt.declared.Variant, tt.cfg.Variant)
		t.Run(name, func(t *testing.T) {
			_, err := checkPlatform(&tt.declared, tt.cfg)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// zstdFrame returns a zstd frame of one raw block holding body whose header asks for a window of
// 2^log bytes.
func zstdFrame(log int, body string) []byte {
	b := []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, byte(log-10) << 3}
	hdr := uint32(len(body))<<3 | 1 // last block, raw
	b = append(b, byte(hdr), byte(hdr>>8), byte(hdr>>16))
	return append(b, body...)
}

func TestZstdWindowLimit(t *testing.T) {
	tests := []struct {
		log     int
		wantErr bool
	}{{10, false}, {23, false}, {27, false}, {28, true}, {31, true}}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("window 2^%d", tt.log), func(t *testing.T) {
			dec, err := decompress.NewReader(bytes.NewReader(zstdFrame(tt.log, "hello")), Zstd.format(), layerLimits)
			if err != nil {
				t.Fatal(err)
			}
			defer dec.Close()
			lr := &layerReader{layer: Layer{Desc: ocispec.Descriptor{Digest: digest.FromString("l")}, DiffID: digest.FromString("hello")}, comp: Zstd,
				raw: &blobVerifier{err: io.EOF}, dec: dec, h: digest.SHA256.Hash()}
			b, err := io.ReadAll(lr)
			if !tt.wantErr {
				if string(b) != "hello" || err != nil {
					t.Fatalf("read %q, %v", b, err)
				}
				return
			}
			if !errors.Is(err, zstd.ErrWindowSizeExceeded) || !strings.Contains(err.Error(), "over the 128 MiB limit") ||
				!strings.Contains(err.Error(), digest.FromString("l").String()) {
				t.Fatalf("err = %v, want the window limit error naming the layer", err)
			}
		})
	}
}
