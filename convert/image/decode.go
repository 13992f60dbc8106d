package image

import (
	"bytes"
	_ "crypto/sha256" // digest algorithms used by go-digest
	_ "crypto/sha512"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/c2vm/c2vm/internal/descriptor"
)

// MaxJSONSize bounds index, manifest and config blobs; larger ones are rejected before reading.
const MaxJSONSize = 16 << 20

// blobPath is where a layout keeps the blob of a descriptor.
func blobPath(d digest.Digest) string {
	return "blobs/" + d.Algorithm().String() + "/" + d.Encoded()
}

// validateDescriptor checks the fields every descriptor must carry (media types are checked where
// their kind is known).
func validateDescriptor(d ocispec.Descriptor) error { return descriptor.Check(d, -1) }

// readJSONBlob reads a small blob named by desc, checking size and digest. what says what it is
// ("manifest", "config", …) for error messages.
func readJSONBlob(s *openCache, desc ocispec.Descriptor, what string) ([]byte, error) {
	if err := validateDescriptor(desc); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if desc.Size > MaxJSONSize {
		return nil, fmt.Errorf("%s %s: %d bytes is over the %d MiB limit for JSON blobs", what, desc.Digest, desc.Size, MaxJSONSize>>20)
	}
	p := blobPath(desc.Digest)
	b, err := readMember(s, p, desc.Size)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, desc.Digest, err)
	}
	s.mu.Lock()
	ok := s.verified[p]
	s.mu.Unlock()
	if ok {
		return b, nil
	}
	if got := desc.Digest.Algorithm().FromBytes(b); got != desc.Digest {
		return nil, fmt.Errorf("%s %s: digest mismatch: content in %s has digest %s; the image is corrupt", what, desc.Digest, s.where(), got)
	}
	s.mu.Lock()
	s.verified[p] = true
	s.mu.Unlock()
	return b, nil
}

// MaxOpenJSON bounds the JSON (index.json or manifest.json, indexes, manifests, configs) one Open
// reads in total; members read again are served from a cache and not counted twice.
const MaxOpenJSON = 64 << 20

// openCache wraps the store of one Open: whole members read by readMember are cached by name and
// their total size is bounded by MaxOpenJSON, blobs are verified against their digest once, and
// members hashed by hashMember are hashed once. Like the stores, it is safe for concurrent use.
type openCache struct {
	store
	mu       sync.Mutex
	read     int64
	members  map[string][]byte
	verified map[string]bool // blob paths whose content matched their digest
	hashes   map[string]digest.Digest
	configs  map[string]ocispec.Image // decoded docker-archive configs by path and layer count
}

func newOpenCache(s store) *openCache {
	return &openCache{store: s, members: map[string][]byte{}, verified: map[string]bool{}, hashes: map[string]digest.Digest{},
		configs: map[string]ocispec.Image{}}
}

// readMember reads a whole member of at most MaxJSONSize bytes; want >= 0 also requires that size.
func readMember(c *openCache, name string, want int64) ([]byte, error) {
	c.mu.Lock()
	b, hit := c.members[name]
	c.mu.Unlock()
	if hit {
		if want >= 0 && int64(len(b)) != want {
			return nil, fmt.Errorf("size mismatch: %s in %s is %d bytes, the descriptor says %d", name, c.where(), len(b), want)
		}
		return b, nil
	}
	b, err := readMemberUncached(c.store, name, want)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.read+int64(len(b)) > MaxOpenJSON {
		return nil, fmt.Errorf("%s in %s: the image's JSON (indexes, manifests, configs) is over the %d MiB limit in total",
			name, c.where(), MaxOpenJSON>>20)
	}
	c.read += int64(len(b))
	c.members[name] = b
	return b, nil
}

func readMemberUncached(s store, name string, want int64) ([]byte, error) {
	rc, size, err := s.open(name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if want >= 0 && size != want {
		return nil, fmt.Errorf("size mismatch: %s in %s is %d bytes, the descriptor says %d", name, s.where(), size, want)
	}
	if size > MaxJSONSize {
		return nil, fmt.Errorf("%s in %s: %d bytes is over the %d MiB limit for JSON", name, s.where(), size, MaxJSONSize>>20)
	}
	b, err := io.ReadAll(io.LimitReader(rc, size))
	if err != nil {
		return nil, fmt.Errorf("read %s in %s: %w", name, s.where(), err)
	}
	if int64(len(b)) != size {
		return nil, fmt.Errorf("read %s in %s: short read", name, s.where())
	}
	return b, nil
}

// unmarshal decodes one JSON value and rejects trailing data.
func unmarshal(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("malformed JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("malformed JSON: data after the top-level value")
	}
	return nil
}

// DecodeIndex decodes and validates an OCI image index or Docker manifest list. mediaType is the
// type the referring descriptor gave ("" when unknown, as for index.json).
func DecodeIndex(b []byte, mediaType string) (ocispec.Index, error) {
	var idx ocispec.Index
	if err := unmarshal(b, &idx); err != nil {
		return idx, err
	}
	if idx.SchemaVersion != 2 {
		return idx, fmt.Errorf("index: schemaVersion %d, want 2", idx.SchemaVersion)
	}
	if idx.MediaType != "" && !isIndexType(idx.MediaType) {
		return idx, fmt.Errorf("index: mediaType %q is not an image index", idx.MediaType)
	}
	if mediaType != "" && idx.MediaType != "" && idx.MediaType != mediaType {
		return idx, fmt.Errorf("index: mediaType %q differs from the descriptor's %q", idx.MediaType, mediaType)
	}
	for i, d := range idx.Manifests {
		if err := validateDescriptor(d); err != nil {
			return idx, fmt.Errorf("index: manifests[%d]: %w", i, err)
		}
	}
	return idx, nil
}

// errNotImageConfig marks a manifest whose config is not an image config: an artifact.
var errNotImageConfig = errors.New("not a container image config (is this an artifact?)")

// notImageConfigError is errNotImageConfig with the config's media type.
type notImageConfigError struct{ mediaType string }

func (e *notImageConfigError) Error() string {
	return fmt.Sprintf("manifest: config media type %q is %v", e.mediaType, errNotImageConfig)
}

func (e *notImageConfigError) Is(target error) bool { return target == errNotImageConfig }

// DecodeManifest decodes and validates an OCI image manifest or Docker v2 schema 2 manifest.
func DecodeManifest(b []byte, mediaType string) (ocispec.Manifest, error) {
	var m ocispec.Manifest
	if err := unmarshal(b, &m); err != nil {
		return m, err
	}
	if m.SchemaVersion != 2 {
		return m, fmt.Errorf("manifest: schemaVersion %d, want 2 (Docker schema 1 is not supported)", m.SchemaVersion)
	}
	if m.MediaType != "" && !isManifestType(m.MediaType) {
		return m, fmt.Errorf("manifest: mediaType %q is not an image manifest", m.MediaType)
	}
	if mediaType != "" && m.MediaType != "" && m.MediaType != mediaType {
		return m, fmt.Errorf("manifest: mediaType %q differs from the descriptor's %q", m.MediaType, mediaType)
	}
	if err := validateDescriptor(m.Config); err != nil {
		return m, fmt.Errorf("manifest: config: %w", err)
	}
	if !isConfigType(m.Config.MediaType) {
		return m, &notImageConfigError{m.Config.MediaType}
	}
	for i, l := range m.Layers {
		if err := validateDescriptor(l); err != nil {
			return m, fmt.Errorf("manifest: layers[%d]: %w", i, err)
		}
	}
	return m, nil
}

// DecodeConfig decodes and validates an image config for a manifest with nLayers layers
// (nLayers < 0 skips the count check).
func DecodeConfig(b []byte, nLayers int) (ocispec.Image, error) {
	var c ocispec.Image
	if err := unmarshal(b, &c); err != nil {
		return c, err
	}
	if c.RootFS.Type != "layers" {
		return c, fmt.Errorf("config: rootfs.type %q, want \"layers\"", c.RootFS.Type)
	}
	if nLayers >= 0 && len(c.RootFS.DiffIDs) != nLayers {
		return c, fmt.Errorf("config: %d rootfs.diff_ids for %d layers", len(c.RootFS.DiffIDs), nLayers)
	}
	for i, d := range c.RootFS.DiffIDs {
		if err := d.Validate(); err != nil {
			return c, fmt.Errorf("config: rootfs.diff_ids[%d] %q: %w", i, d, err)
		}
	}
	if c.OS == "" || c.Architecture == "" {
		return c, fmt.Errorf("config: os %q / architecture %q missing", c.OS, c.Architecture)
	}
	return c, nil
}
