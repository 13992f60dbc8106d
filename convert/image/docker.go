package image

import (
	"github.com/containerd/containerd/v2/core/images"

	"context"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"regexp"
	"sort"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/c2vm/c2vm/internal/decompress"
)

// dockerEntry is one image of a docker-archive's manifest.json.
type dockerEntry struct {
	Config       string
	RepoTags     []string
	Layers       []string
	LayerSources map[digest.Digest]ocispec.Descriptor `json:",omitempty"`
}

var hexName = regexp.MustCompile(`^([0-9a-f]{64})(\.json|\.tar\.gz)?$`)

// dockerCandidates lists the images of a docker-archive that tag selects. The platform of each
// comes from its config, so the platform filter works for docker-archives too.
func dockerCandidates(ctx context.Context, s *openCache, tag string) ([]candidate, error) {
	b, err := readMember(s, "manifest.json", -1)
	if err != nil {
		return nil, fmt.Errorf("manifest.json: %w", err)
	}
	var entries []dockerEntry
	if err := unmarshal(b, &entries); err != nil {
		return nil, fmt.Errorf("manifest.json in %s: %w", s.where(), err)
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("manifest.json in %s lists no images", s.where())
	}
	selected, err := selectDocker(entries, tag)
	if err != nil {
		return nil, err
	}
	var cands []candidate
	seen := map[string]bool{}
	for _, e := range selected {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		// An entry listed again (same config, layers and tags) is the same image: load it once.
		key, err := json.Marshal(e)
		if err != nil {
			return nil, err
		}
		if seen[string(key)] {
			continue
		}
		seen[string(key)] = true
		img, err := loadDocker(s, e, tag)
		if err != nil {
			return nil, err
		}
		cands = append(cands, candidate{name: img.Name, digest: img.ManifestDigest, platform: img.Platform, known: true,
			load: func() (*Image, error) { return img, nil }})
	}
	return cands, nil
}

func entryKey(e dockerEntry) string {
	tags := append([]string(nil), e.RepoTags...)
	sort.Strings(tags)
	return strings.Join(tags, ",")
}

// selectDocker picks the entries tagged tag, or all entries when they carry the same tags (one
// image for several platforms).
func selectDocker(entries []dockerEntry, tag string) ([]dockerEntry, error) {
	if tag != "" {
		want := normalizeDockerName(tag)
		var out []dockerEntry
		for _, e := range entries {
			for _, t := range e.RepoTags {
				if normalizeDockerName(t) == want {
					out = append(out, e)
					break
				}
			}
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("no image tagged %q; the archive has: %s", tag, listDocker(entries))
		}
		return out, nil
	}
	for _, e := range entries[1:] {
		if entryKey(e) != entryKey(entries[0]) {
			return nil, fmt.Errorf("%w in one archive and none was named; add :NAME:TAG to the reference, one of: %s", errAmbiguous, listDocker(entries))
		}
	}
	return entries, nil
}

func listDocker(entries []dockerEntry) string {
	var parts []string
	for _, e := range entries {
		name := strings.Join(e.RepoTags, " ")
		if name == "" {
			name = "(untagged)"
		}
		parts = append(parts, name+" (config "+e.Config+")")
	}
	return strings.Join(parts, ", ")
}

// pathDigest returns the digest a blob's path encodes (blobs/ALG/HEX, HEX.json, HEX.tar.gz).
func pathDigest(p string) (digest.Digest, bool) {
	if dir, enc := path.Split(p); strings.HasPrefix(dir, "blobs/") {
		d := digest.NewDigestFromEncoded(digest.Algorithm(strings.TrimSuffix(strings.TrimPrefix(dir, "blobs/"), "/")), enc)
		return d, d.Validate() == nil
	}
	if m := hexName.FindStringSubmatch(p); m != nil {
		return digest.NewDigestFromEncoded(digest.SHA256, m[1]), true
	}
	return "", false
}

func loadDocker(s *openCache, e dockerEntry, tag string) (*Image, error) {
	cfgPath, err := cleanMember(e.Config)
	if err != nil {
		return nil, fmt.Errorf("manifest.json: config: %w", err)
	}
	cb, err := readMember(s, cfgPath, -1)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", cfgPath, err)
	}
	cfgDigest := digest.FromBytes(cb)
	if want, ok := pathDigest(cfgPath); ok && want.Algorithm().FromBytes(cb) != want {
		return nil, fmt.Errorf("config %s: digest mismatch: content has %s; the archive is corrupt", cfgPath, want.Algorithm().FromBytes(cb))
	} else if ok {
		cfgDigest = want
	}
	cfg, err := decodeConfigOnce(s, cfgPath, cb, len(e.Layers))
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", cfgPath, err)
	}
	img := &Image{Name: dockerName(e, tag), ConfigDigest: cfgDigest, Config: cfg, Platform: mustPlatform(cfg)}
	for i, lp := range e.Layers {
		l, p, err := dockerLayer(s, lp, cfg.RootFS.DiffIDs[i], e.LayerSources)
		if err != nil {
			return nil, err
		}
		img.Layers = append(img.Layers, l)
		img.paths = append(img.paths, p)
	}
	img.ManifestDigest, err = synthManifestDigest(img, int64(len(cb)))
	return img, err
}

// decodeConfigOnce decodes a docker-archive config, once per Open for entries sharing it.
func decodeConfigOnce(c *openCache, cfgPath string, b []byte, nLayers int) (ocispec.Image, error) {
	key := fmt.Sprintf("%s\x00%d", cfgPath, nLayers)
	c.mu.Lock()
	cfg, ok := c.configs[key]
	c.mu.Unlock()
	if ok {
		return cfg, nil
	}
	cfg, err := DecodeConfig(b, nLayers)
	if err != nil {
		return cfg, err
	}
	c.mu.Lock()
	c.configs[key] = cfg
	c.mu.Unlock()
	return cfg, nil
}

func mustPlatform(cfg ocispec.Image) ocispec.Platform {
	p, _ := checkPlatform(nil, cfg)
	return p
}

func dockerName(e dockerEntry, tag string) string {
	if tag != "" {
		return tag
	}
	if len(e.RepoTags) > 0 {
		return e.RepoTags[0]
	}
	return ""
}

// dockerLayer builds the descriptor of a docker-archive layer: its digest from the path when the
// path encodes one, else the diff_id when the blob is uncompressed (they are then equal), else
// by hashing the blob; its media type from LayerSources or the blob's leading bytes.
func dockerLayer(s *openCache, lp string, diffID digest.Digest, sources map[digest.Digest]ocispec.Descriptor) (Layer, string, error) {
	p, err := cleanMember(lp)
	if err != nil {
		return Layer{}, "", fmt.Errorf("manifest.json: layer %s: %w", diffID, err)
	}
	if src, ok := sources[diffID]; ok {
		if _, err := LayerCompression(src.MediaType); err != nil {
			return Layer{}, "", fmt.Errorf("layer %s: %w", src.Digest, err)
		}
	}
	rc, size, err := s.open(p)
	if err != nil {
		return Layer{}, "", fmt.Errorf("layer %s: %w", diffID, err)
	}
	defer rc.Close()
	head := make([]byte, 8)
	n, _ := io.ReadFull(rc, head)
	desc := ocispec.Descriptor{Size: size}
	switch c := decompress.Detect(head[:n]); c {
	case decompress.None:
		desc.MediaType = images.MediaTypeDockerSchema2Layer
	case decompress.Gzip:
		desc.MediaType = images.MediaTypeDockerSchema2LayerGzip
	case decompress.Zstd:
		desc.MediaType = images.MediaTypeDockerSchema2LayerZstd
	default:
		return Layer{}, "", fmt.Errorf("layer %s (%s): %s-compressed layers are not supported", diffID, p, c)
	}
	if d, ok := pathDigest(p); ok {
		desc.Digest = d
	} else if desc.MediaType == images.MediaTypeDockerSchema2Layer {
		desc.Digest = diffID
	} else if desc.Digest, err = hashMember(s, p); err != nil {
		return Layer{}, "", fmt.Errorf("layer %s: %w", diffID, err)
	}
	return Layer{Desc: desc, DiffID: diffID}, p, nil
}

// hashMember returns the digest of member p, hashing it once per Open.
func hashMember(c *openCache, p string) (digest.Digest, error) {
	c.mu.Lock()
	d, ok := c.hashes[p]
	c.mu.Unlock()
	if ok {
		return d, nil
	}
	rc, _, err := c.open(p)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	d, err = digest.FromReader(rc)
	if err != nil {
		return "", err
	}
	c.mu.Lock()
	c.hashes[p] = d
	c.mu.Unlock()
	return d, nil
}

// synthManifestDigest gives a docker-archive image a stable identity: the digest of the Docker v2
// manifest that describes its config and layers.
func synthManifestDigest(img *Image, cfgSize int64) (digest.Digest, error) {
	m := ocispec.Manifest{MediaType: images.MediaTypeDockerSchema2Manifest,
		Config: ocispec.Descriptor{MediaType: images.MediaTypeDockerSchema2Config, Digest: img.ConfigDigest, Size: cfgSize}}
	m.SchemaVersion = 2
	for _, l := range img.Layers {
		m.Layers = append(m.Layers, l.Desc)
	}
	b, err := json.Marshal(m)
	if err != nil {
		return "", err
	}
	return digest.FromBytes(b), nil
}
