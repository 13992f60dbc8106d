package image

import (
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

const (
	seedDigest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	seedIndex  = `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + seedDigest + `","size":2,"platform":{"os":"linux","architecture":"arm64"}}]}`
	seedManif  = `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + seedDigest + `","size":2},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"` + seedDigest + `","size":0}]}`
	seedConfig = `{"os":"linux","architecture":"amd64","config":{"Cmd":["/bin/sh"]},"rootfs":{"type":"layers","diff_ids":["` + seedDigest + `"]}}`
)

func TestDecode(t *testing.T) {
	tests := []struct {
		name, in, kind, wantErr string
	}{
		{"index", seedIndex, "index", ""},
		{"manifest", seedManif, "manifest", ""},
		{"config", seedConfig, "config", ""},
		{"index trailing data", seedIndex + "{}", "index", "after the top-level value"},
		{"index schema 1", `{"schemaVersion":1,"manifests":[]}`, "index", "schemaVersion 1"},
		{"index is a manifest", seedManif, "index", "not an image index"},
		{"index bad digest", `{"schemaVersion":2,"manifests":[{"digest":"sha256:zz","size":1}]}`, "index", "manifests[0]"},
		{"manifest is an index", seedIndex, "manifest", "not an image manifest"},
		{"manifest negative size", strings.Replace(seedManif, `"size":0`, `"size":-1`, 1), "manifest", "negative size"},
		{"manifest truncated", seedManif[:40], "manifest", "malformed JSON"},
		{"config no rootfs", `{"os":"linux","architecture":"amd64"}`, "config", "rootfs.type"},
		{"config too many diff_ids", strings.Replace(seedConfig, `"]}}`, `","`+seedDigest+`"]}}`, 1), "config", "2 rootfs.diff_ids for 1 layers"},
		{"config bad diff_id", strings.Replace(seedConfig, seedDigest, "sha256:1", 1), "config", "diff_ids[0]"},
		{"config no arch", strings.Replace(seedConfig, `"architecture":"amd64",`, "", 1), "config", "architecture"},
		{"config not an object", `[]`, "config", "malformed JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			switch tt.kind {
			case "index":
				_, err = DecodeIndex([]byte(tt.in), ocispec.MediaTypeImageIndex)
			case "manifest":
				_, err = DecodeManifest([]byte(tt.in), ocispec.MediaTypeImageManifest)
			case "config":
				_, err = DecodeConfig([]byte(tt.in), 1)
			}
			if tt.wantErr == "" && err != nil {
				t.Fatalf("err = %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func FuzzDecodeManifest(f *testing.F) {
	for _, s := range []string{seedIndex, seedManif, seedConfig, "{}", "[]"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if idx, err := DecodeIndex(b, ""); err == nil {
			for _, d := range idx.Manifests {
				if d.Digest.Validate() != nil || d.Size < 0 {
					t.Fatalf("accepted index with bad descriptor %+v", d)
				}
			}
		}
		if m, err := DecodeManifest(b, ""); err == nil {
			if !isConfigType(m.Config.MediaType) || m.Config.Digest.Validate() != nil {
				t.Fatalf("accepted manifest with bad config %+v", m.Config)
			}
			for _, l := range m.Layers {
				if l.Digest.Validate() != nil || l.Size < 0 {
					t.Fatalf("accepted manifest with bad layer %+v", l)
				}
				_, _ = LayerCompression(l.MediaType)
			}
		}
		if c, err := DecodeConfig(b, -1); err == nil {
			if c.RootFS.Type != "layers" || c.OS == "" || c.Architecture == "" {
				t.Fatalf("accepted bad config %+v", c)
			}
			for _, d := range c.RootFS.DiffIDs {
				if d.Validate() != nil {
					t.Fatalf("accepted bad diff_id %q", d)
				}
			}
			if _, err := DecodeConfig(b, len(c.RootFS.DiffIDs)); err != nil {
				t.Fatalf("config valid for -1 layers but not for its own %d: %v", len(c.RootFS.DiffIDs), err)
			}
		}
		_ = digest.FromBytes(b)
	})
}
