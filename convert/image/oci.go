package image

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

const (
	annotationImageName = "io.containerd.image.name" // full name, written by containerd and Docker ≥ 25
	annotationRefType   = "vnd.docker.reference.type"
	attestationManifest = "attestation-manifest"
	maxDescriptors      = 10000 // bound on descriptors visited while walking nested indexes
	maxIndexDepth       = 8
)

// ociCandidates lists the single-platform images of an OCI layout that tag selects.
func ociCandidates(ctx context.Context, s *openCache, tag string) ([]candidate, error) {
	b, err := readMember(s, "index.json", -1)
	if err != nil {
		return nil, fmt.Errorf("index.json: %w", err)
	}
	idx, err := DecodeIndex(b, "")
	if err != nil {
		return nil, fmt.Errorf("index.json in %s: %w", s.where(), err)
	}
	top, err := selectTop(idx.Manifests, tag)
	if err != nil {
		return nil, err
	}
	w := &walker{ctx: ctx, s: s, budget: maxDescriptors, indexes: map[digest.Digest]ocispec.Index{}, images: map[string]loaded{}}
	for _, d := range top {
		if err := w.expand(d, descName(d), 0); err != nil {
			return nil, err
		}
	}
	if len(w.cands) == 0 {
		msg := fmt.Sprintf("no image manifests found (%d skipped: attestations, artifacts or unknown platforms)", w.skipped)
		if len(w.skippedWhat) > 0 {
			msg += "; skipped: " + strings.Join(w.skippedWhat, ", ")
			if n := w.skipped - len(w.skippedWhat); n > 0 {
				msg += fmt.Sprintf(" and %d more", n)
			}
		}
		return nil, errors.New(msg)
	}
	return w.cands, nil
}

func descName(d ocispec.Descriptor) string {
	if n := d.Annotations[ocispec.AnnotationRefName]; n != "" {
		return n
	}
	return d.Annotations[annotationImageName]
}

func descMatches(d ocispec.Descriptor, tag string) bool {
	for _, n := range []string{d.Annotations[ocispec.AnnotationRefName], d.Annotations[annotationImageName]} {
		if n == "" {
			continue
		}
		if n == tag || (strings.ContainsAny(tag, ":/") && normalizeDockerName(n) == normalizeDockerName(tag)) {
			return true
		}
	}
	return false
}

// selectTop picks the index.json entries tag names, or all of them when they are one image (one
// name, perhaps several platforms); several differently named images and no tag is an error.
func selectTop(descs []ocispec.Descriptor, tag string) ([]ocispec.Descriptor, error) {
	if len(descs) == 0 {
		return nil, fmt.Errorf("index.json lists no images")
	}
	if tag != "" {
		var out []ocispec.Descriptor
		for _, d := range descs {
			if descMatches(d, tag) {
				out = append(out, d)
			}
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("no image named %q; the layout has: %s", tag, listDescs(descs))
		}
		return out, nil
	}
	names := map[string]bool{}
	for _, d := range descs {
		names[descName(d)] = true
	}
	if len(names) > 1 {
		return nil, fmt.Errorf("%w in one layout and none was named; add :TAG to the reference, one of: %s", errAmbiguous, listDescs(descs))
	}
	return descs, nil
}

func listDescs(descs []ocispec.Descriptor) string {
	var parts []string
	for _, d := range descs {
		name := descName(d)
		if name == "" {
			name = "(unnamed)"
		}
		p := name + " " + shortDigest(d.Digest)
		if d.Platform != nil {
			p += " " + platforms.Format(*d.Platform)
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, ", ")
}

// maxSkippedListed bounds the skipped entries a no-match error lists.
const maxSkippedListed = 10

// walker expands indexes into single-platform candidates.
type walker struct {
	ctx         context.Context
	s           *openCache
	budget      int
	skipped     int
	skippedWhat []string // the first maxSkippedListed skipped entries, for the no-match error
	cands       []candidate
	indexes     map[digest.Digest]ocispec.Index // decoded indexes, so one listed again is decoded once
	images      map[string]loaded               // manifests loaded while walking, by loadKey
}

// loaded is the result of loading one manifest while walking.
type loaded struct {
	img *Image
	err error
}

// skip counts a skipped descriptor and remembers what it was.
func (w *walker) skip(d ocispec.Descriptor, why string) {
	w.skipped++
	if len(w.skippedWhat) < maxSkippedListed {
		w.skippedWhat = append(w.skippedWhat, fmt.Sprintf("%s (%s)", shortDigest(d.Digest), why))
	}
}

func (w *walker) expand(d ocispec.Descriptor, name string, depth int) error {
	if err := w.ctx.Err(); err != nil {
		return err
	}
	if w.budget--; w.budget < 0 {
		return fmt.Errorf("indexes reference more than %d descriptors", maxDescriptors)
	}
	mt := d.MediaType
	if mt == "" {
		var err error
		if mt, err = sniffMediaType(w.s, d); err != nil {
			return err
		}
	}
	switch {
	case isIndexType(mt):
		return w.expandIndex(d, mt, name, depth)
	case isManifestType(mt):
		d.MediaType = mt
		return w.addManifest(d, name)
	case depth == 0:
		return fmt.Errorf("index.json entry %s has media type %q, not an image manifest or index", d.Digest, mt)
	}
	w.skip(d, "media type "+mt)
	return nil
}

func (w *walker) expandIndex(d ocispec.Descriptor, mt, name string, depth int) error {
	if depth >= maxIndexDepth {
		return fmt.Errorf("index %s: indexes nested more than %d deep", d.Digest, maxIndexDepth)
	}
	idx, ok := w.indexes[d.Digest]
	if !ok {
		b, err := readJSONBlob(w.s, d, "index")
		if err != nil {
			return err
		}
		if idx, err = DecodeIndex(b, mt); err != nil {
			return fmt.Errorf("index %s: %w", d.Digest, err)
		}
		w.indexes[d.Digest] = idx
	} else if idx.MediaType != "" && idx.MediaType != mt {
		return fmt.Errorf("index %s: mediaType %q differs from the descriptor's %q", d.Digest, idx.MediaType, mt)
	}
	for _, child := range idx.Manifests {
		if why := skipChild(child); why != "" {
			w.skip(child, why)
			continue
		}
		if err := w.expand(child, name, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// skipChild says why an index entry is skipped, or "": attestation manifests, entries for the
// "unknown" platform (BuildKit's provenance and SBOM records) and artifacts (artifactType set).
func skipChild(d ocispec.Descriptor) string {
	switch {
	case d.Annotations[annotationRefType] == attestationManifest:
		return "attestation"
	case d.ArtifactType != "":
		return "artifact " + d.ArtifactType
	case d.Platform != nil && (d.Platform.OS == "unknown" || d.Platform.Architecture == "unknown"):
		return "platform " + platforms.Format(*d.Platform)
	}
	return ""
}

func (w *walker) addManifest(d ocispec.Descriptor, name string) error {
	s := w.s
	c := candidate{name: name, digest: d.Digest, load: func() (*Image, error) { return loadOCI(s, d, name) }}
	if d.Platform != nil && d.Platform.OS != "" && d.Platform.Architecture != "" {
		c.platform, c.known = platforms.Normalize(*d.Platform), true
		w.cands = append(w.cands, c)
		return nil
	}
	// Without a platform in the descriptor the manifest and config say it; load them now, once
	// for a manifest listed again.
	key := loadKey(d, name)
	l, ok := w.images[key]
	if !ok {
		l.img, l.err = c.load()
		w.images[key] = l
	}
	img, err := l.img, l.err
	var nic *notImageConfigError
	if errors.As(err, &nic) {
		w.skip(d, "artifact with config media type "+nic.mediaType)
		return nil
	}
	if err != nil {
		return err
	}
	c.platform, c.known = img.Platform, true
	c.load = func() (*Image, error) { return img, nil }
	w.cands = append(w.cands, c)
	return nil
}

// loadKey identifies what loading d for name yields: the manifest, the platform it declares and
// the name.
func loadKey(d ocispec.Descriptor, name string) string {
	p := ""
	if d.Platform != nil {
		p = platforms.Format(*d.Platform) + "\x00" + d.Platform.OSVersion + "\x00" + strings.Join(d.Platform.OSFeatures, ",")
	}
	return string(d.Digest) + "\x00" + d.MediaType + "\x00" + p + "\x00" + name
}

// sniffMediaType reads a descriptor's blob to learn its type when the descriptor omits it.
func sniffMediaType(s *openCache, d ocispec.Descriptor) (string, error) {
	b, err := readJSONBlob(s, d, "manifest")
	if err != nil {
		return "", err
	}
	var probe struct {
		MediaType string `json:"mediaType"`
		Manifests []any  `json:"manifests"`
	}
	if err := unmarshal(b, &probe); err != nil {
		return "", fmt.Errorf("manifest %s: %w", d.Digest, err)
	}
	switch {
	case probe.MediaType != "":
		return probe.MediaType, nil
	case probe.Manifests != nil:
		return ocispec.MediaTypeImageIndex, nil
	}
	return ocispec.MediaTypeImageManifest, nil
}

// loadOCI reads and verifies a manifest and its config.
func loadOCI(s *openCache, d ocispec.Descriptor, name string) (*Image, error) {
	b, err := readJSONBlob(s, d, "manifest")
	if err != nil {
		return nil, err
	}
	m, err := DecodeManifest(b, d.MediaType)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", d.Digest, err)
	}
	cb, err := readJSONBlob(s, m.Config, "config")
	if err != nil {
		return nil, err
	}
	cfg, err := DecodeConfig(cb, len(m.Layers))
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", m.Config.Digest, err)
	}
	p, err := checkPlatform(d.Platform, cfg)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", d.Digest, err)
	}
	img := &Image{Name: name, ManifestDigest: d.Digest, Platform: p, ConfigDigest: m.Config.Digest, Config: cfg}
	for i, l := range m.Layers {
		if _, err := LayerCompression(l.MediaType); err != nil {
			return nil, fmt.Errorf("layer %s: %w", l.Digest, err)
		}
		path := blobPath(l.Digest)
		if !s.has(path) {
			return nil, fmt.Errorf("layer %s: blob %s not found in %s; the image is incomplete", l.Digest, path, s.where())
		}
		img.Layers = append(img.Layers, Layer{Desc: l, DiffID: cfg.RootFS.DiffIDs[i]})
		img.paths = append(img.paths, path)
	}
	return img, nil
}
