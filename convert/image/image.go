package image

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/containerd/platforms"

	"github.com/c2vm/c2vm/internal/registry"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Options tune Open. The zero value selects the host platform and reports no progress.
type Options struct {
	// Platform is "os/arch[/variant]"; "" means the host's (platforms.DefaultSpec()).
	Platform string
	// Progress, when set, is called as a layer's compressed blob is read, with the bytes read so far.
	Progress func(layer digest.Digest, n int64)
	// Registry configures registry references (insecure hosts, the blob cache, warnings).
	Registry registry.Options
}

// Image is one platform's image, opened for reading. Close releases the underlying file.
type Image struct {
	Ref            string // canonical reference, transport resolved ("oci-archive:/x.tar:latest")
	Name           string // image name or tag when known (ref.name annotation or RepoTags)
	ManifestDigest digest.Digest
	Platform       ocispec.Platform
	ConfigDigest   digest.Digest
	Config         ocispec.Image
	Layers         []Layer

	store    store
	paths    []string // where each layer's blob is in the store
	progress func(digest.Digest, int64)
}

// Layer is a layer descriptor (as stored: media type says the compression) and its diff_id.
type Layer struct {
	Desc   ocispec.Descriptor
	DiffID digest.Digest
}

// Close releases the open directory or archive. Layers must not be read afterwards.
func (img *Image) Close() error {
	if img.store == nil {
		return nil
	}
	err := img.store.Close()
	img.store = nil
	return err
}

// Open opens the image ref names, selects the manifest for opts.Platform and reads and verifies its
// manifest and config. Layers are verified as they are read through OpenLayer.
func Open(ctx context.Context, ref string, opts Options) (*Image, error) {
	r, err := ParseRef(ref)
	if err != nil {
		return nil, err
	}
	want, err := wantPlatform(opts.Platform)
	if err != nil {
		return nil, err
	}
	s, r, err := openStore(ctx, r, opts.Registry)
	if err != nil {
		return nil, err
	}
	img, err := resolve(ctx, s, r, want)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("image %s: %w", r, err)
	}
	img.Ref = r.String()
	img.store = s
	img.progress = opts.Progress
	return img, nil
}

// Platforms lists the platforms the image ref names offers (one for a single-platform image),
// sorted, for converting them all.
func Platforms(ctx context.Context, ref string, opts Options) ([]ocispec.Platform, error) {
	r, err := ParseRef(ref)
	if err != nil {
		return nil, err
	}
	s, r, err := openStore(ctx, r, opts.Registry)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	cands, err := candidates(ctx, newOpenCache(s), r)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", r, err)
	}
	seen := map[string]bool{}
	var out []ocispec.Platform
	for _, c := range cands {
		if key := platforms.Format(c.platform); c.known && !seen[key] {
			seen[key] = true
			out = append(out, c.platform)
		}
	}
	slices.SortFunc(out, func(a, b ocispec.Platform) int { return strings.Compare(platforms.Format(a), platforms.Format(b)) })
	return out, nil
}

func wantPlatform(s string) (ocispec.Platform, error) {
	if s == "" {
		return platforms.Normalize(platforms.DefaultSpec()), nil
	}
	p, err := platforms.Parse(s)
	if err != nil {
		return p, fmt.Errorf("platform %q: want os/arch[/variant] such as linux/arm64: %w", s, err)
	}
	return platforms.Normalize(p), nil
}

func resolve(ctx context.Context, s store, r Ref, want ocispec.Platform) (*Image, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cands, err := candidates(ctx, newOpenCache(s), r)
	if err != nil {
		return nil, err
	}
	c, err := choose(cands, want)
	if err != nil {
		return nil, err
	}
	return c.load()
}

// candidates lists the single-platform images the store offers for r.
func candidates(ctx context.Context, s *openCache, r Ref) ([]candidate, error) {
	if r.Transport == TransportDockerArchive {
		return dockerCandidates(ctx, s, r.Tag)
	}
	return ociCandidates(ctx, s, r.Tag)
}

// openStore opens the directory, archive or registry image r names, detecting the transport of
// a bare reference.
func openStore(ctx context.Context, r Ref, ropts registry.Options) (store, Ref, error) {
	if r.Transport == "" {
		if _, err := os.Stat(r.Path); err != nil && registry.LooksLikeReference(r.Path) {
			r = Ref{Transport: TransportDocker, Path: r.Path}
		}
	}
	if r.Transport == TransportDocker {
		s, err := openRegistry(ctx, r, ropts)
		if err != nil {
			return nil, r, fmt.Errorf("image %s: %w", r, err)
		}
		return s, r, nil
	}
	if r.Transport == "" {
		var err error
		if r, err = splitBare(r.Path); err != nil {
			return nil, r, err
		}
	}
	st, err := os.Stat(r.Path)
	if err != nil {
		return nil, r, fmt.Errorf("image %s: %w", r, err)
	}
	if st.IsDir() {
		return openDir(r)
	}
	if r.Transport == TransportOCI {
		return nil, r, fmt.Errorf("image %s: %s is a file, not an OCI layout directory; use oci-archive: for a tar", r, r.Path)
	}
	ts, err := openTarStore(r.Path)
	if err != nil {
		return nil, r, err
	}
	if r.Transport == "" {
		switch {
		case ts.has("manifest.json"):
			r.Transport = TransportDockerArchive
		case ts.has("index.json"):
			r.Transport = TransportOCIArchive
		default:
			ts.Close()
			return nil, r, fmt.Errorf("image %s: archive has neither manifest.json (docker-archive) nor index.json (oci-archive)", r.Path)
		}
	}
	return ts, r, nil
}

func openDir(r Ref) (store, Ref, error) {
	if r.Transport != "" && r.Transport != TransportOCI {
		return nil, r, fmt.Errorf("image %s: %s is a directory; use oci:%s for an OCI layout", r, r.Path, r.Path)
	}
	ds, err := openDirStore(r.Path)
	if err != nil {
		return nil, r, err
	}
	if !ds.has("index.json") {
		ds.Close()
		return nil, r, fmt.Errorf("image %s: directory has no index.json; it is not an OCI image layout", r.Path)
	}
	r.Transport = TransportOCI
	return ds, r, nil
}

// splitBare splits "PATH[:TAG]" at the first ':' whose prefix exists, so paths containing ':' work
// as long as they exist.
func splitBare(s string) (Ref, error) {
	if _, err := os.Stat(s); err == nil {
		return Ref{Path: s}, nil
	}
	for i := 0; i < len(s); i++ {
		if s[i] != ':' {
			continue
		}
		if _, err := os.Stat(s[:i]); err == nil {
			return Ref{Path: s[:i], Tag: s[i+1:]}, nil
		}
	}
	return Ref{Path: s}, fmt.Errorf("image %s: no such file or directory", s)
}

// names lists candidate names for error messages.
func listing(cands []candidate) string {
	var b strings.Builder
	for i, c := range cands {
		if i > 0 {
			b.WriteString(", ")
		}
		name := c.name
		if name == "" {
			name = "(unnamed)"
		}
		fmt.Fprintf(&b, "%s %s", name, shortDigest(c.digest))
		if c.known {
			fmt.Fprintf(&b, " %s", platforms.Format(c.platform))
		}
	}
	return b.String()
}

func shortDigest(d digest.Digest) string {
	s := d.String()
	if len(s) > 19 {
		return s[:19]
	}
	return s
}

var errAmbiguous = errors.New("several images")
