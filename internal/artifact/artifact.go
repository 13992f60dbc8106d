// Package artifact moves bundles and kernels through registries as OCI artifacts (bundle's artifact
// format): Push uploads a verified bundle, skipping blobs the registry has; Pull resolves a
// reference (an index by platform), downloads into a stage beside the target, verifies every blob
// against its descriptor and every file against bundle.json, and only then renames.
//
// See docs/registries.md (the artifact formats).
package artifact

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/platforms"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/c2vm/c2vm/bundle"
	"github.com/c2vm/c2vm/internal/registry"
)

// PushResult says what Push did.
type PushResult struct {
	Digest   digest.Digest // the manifest's
	Uploaded int           // blobs uploaded (the others were there already)
	Blobs    int
}

// Push uploads the bundle at dir as ref; a bundle set becomes an OCI index with a platform per
// bundle manifest.
func Push(ctx context.Context, c *registry.Client, dir, refStr string) (*PushResult, error) {
	ref, err := registry.ParseReference(refStr)
	if err != nil {
		return nil, err
	}
	p, err := c.Pusher(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("push %s: %w", refStr, err)
	}
	set, isSet, err := bundle.ReadSet(dir)
	if err != nil {
		return nil, err
	}
	res := &PushResult{}
	if !isSet {
		d, err := pushBundle(ctx, c, p, ref, dir, res)
		if err != nil {
			return nil, fmt.Errorf("push %s: %w", refStr, err)
		}
		res.Digest = d.Digest
		return res, nil
	}
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, ArtifactType: bundle.ArtifactType}
	for _, e := range set.Bundles {
		d, err := pushBundle(ctx, c, p, ref, filepath.Join(dir, e.Path), res)
		if err != nil {
			return nil, fmt.Errorf("push %s: %s: %w", refStr, e.Path, err)
		}
		plat := e.Platform
		d.Platform = &plat
		idx.Manifests = append(idx.Manifests, d)
	}
	if res.Digest, err = pushIndex(ctx, c, p, ref, idx, res); err != nil {
		return nil, fmt.Errorf("push %s: %w", refStr, err)
	}
	return res, nil
}

// pushIndex uploads an index (after its manifests) and returns its digest.
func pushIndex(ctx context.Context, c *registry.Client, p remotes.Pusher, ref reference.Named, idx ocispec.Index, res *PushResult) (digest.Digest, error) {
	b, err := json.Marshal(idx)
	if err != nil {
		return "", err
	}
	desc := ocispec.Descriptor{MediaType: idx.MediaType, ArtifactType: idx.ArtifactType, Digest: digest.FromBytes(b), Size: int64(len(b))}
	if _, err := c.Push(ctx, p, desc, bytes.NewReader(b)); err != nil {
		return "", fmt.Errorf("index: %w", registry.Describe(ref, err))
	}
	res.Blobs++
	return desc.Digest, nil
}

// pushBundle uploads one bundle's blobs and manifest and returns the manifest's descriptor.
func pushBundle(ctx context.Context, c *registry.Client, p remotes.Pusher, ref reference.Named, dir string, res *PushResult) (ocispec.Descriptor, error) {
	m, err := bundle.Read(dir)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	if err := m.Verify(dir); err != nil {
		return ocispec.Descriptor{}, err
	}
	raw, err := os.ReadFile(filepath.Join(dir, bundle.ManifestFile))
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	man, err := m.ArtifactManifest(raw)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	return pushArtifact(ctx, c, p, ref, man, raw, dir, res)
}

// pushArtifact uploads an artifact manifest's config (raw), its layers (the files under dir named
// by their titles) and the manifest, and returns the manifest's descriptor.
func pushArtifact(ctx context.Context, c *registry.Client, p remotes.Pusher, ref reference.Named, man ocispec.Manifest, raw []byte, dir string, res *PushResult) (ocispec.Descriptor, error) {
	manJSON, err := json.Marshal(man)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	res.Blobs += len(man.Layers) + 1 // config and files; the manifest is always pushed
	push := func(desc ocispec.Descriptor, r io.Reader) error {
		up, err := c.Push(ctx, p, desc, r)
		if err != nil {
			return fmt.Errorf("blob %s: %w", desc.Digest, registry.Describe(ref, err))
		}
		if up {
			res.Uploaded++
		}
		return nil
	}
	if err := push(man.Config, bytes.NewReader(raw)); err != nil {
		return ocispec.Descriptor{}, err
	}
	for _, l := range man.Layers {
		f, err := os.Open(filepath.Join(dir, filepath.FromSlash(l.Annotations[ocispec.AnnotationTitle])))
		if err != nil {
			return ocispec.Descriptor{}, err
		}
		err = push(l, f)
		f.Close()
		if err != nil {
			return ocispec.Descriptor{}, err
		}
	}
	mdesc := ocispec.Descriptor{MediaType: man.MediaType, ArtifactType: man.ArtifactType, Digest: digest.FromBytes(manJSON), Size: int64(len(manJSON))}
	if _, err := c.Push(ctx, p, mdesc, bytes.NewReader(manJSON)); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("manifest: %w", registry.Describe(ref, err))
	}
	return mdesc, nil
}

// Pull downloads the bundle ref names into dir (which must not exist, be empty or be a bundle).
// platform ("" = the host's) picks from an index.
func Pull(ctx context.Context, c *registry.Client, refStr, dir, platform string) (*bundle.Manifest, error) {
	name, desc, err := resolve(ctx, c, refStr, platform)
	if err != nil {
		return nil, err
	}
	return pull(ctx, c, refStr, name, desc, dir)
}

// PullCached pulls the bundle ref names into cacheDir/bundles/<manifest digest> unless it is
// there and intact, and returns that directory (for `c2vm run REF`).
func PullCached(ctx context.Context, c *registry.Client, refStr, cacheDir, platform string) (string, error) {
	name, desc, err := resolve(ctx, c, refStr, platform)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cacheDir, "bundles", desc.Digest.Encoded())
	if m, err := bundle.Read(dir); err == nil && m.Verify(dir) == nil {
		return dir, nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", err
	}
	if _, err := pull(ctx, c, refStr, name, desc, dir); err != nil {
		return "", err
	}
	return dir, nil
}

// resolve returns the bundle manifest a reference names (picking from an index by platform).
func resolve(ctx context.Context, c *registry.Client, refStr, platform string) (string, ocispec.Descriptor, error) {
	ref, err := registry.ParseReference(refStr)
	if err != nil {
		return "", ocispec.Descriptor{}, err
	}
	name, desc, err := c.Resolve(ctx, ref)
	if err != nil {
		return "", desc, err
	}
	if images.IsIndexType(desc.MediaType) {
		if desc, err = pickPlatform(ctx, c, name, desc, platform); err != nil {
			return "", desc, fmt.Errorf("pull %s: %w", refStr, err)
		}
	}
	return name, desc, nil
}

func pull(ctx context.Context, c *registry.Client, refStr, name string, desc ocispec.Descriptor, dir string) (*bundle.Manifest, error) {
	man, err := readManifest(ctx, c, name, desc)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", refStr, err)
	}
	names, err := bundle.ArtifactFiles(man)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", refStr, err)
	}
	stage, err := bundle.NewStage(dir)
	if err != nil {
		return nil, err
	}
	defer stage.Abort()
	raw, err := c.ReadBlob(ctx, name, man.Config, 64<<20)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %s: %w", refStr, bundle.ManifestFile, err)
	}
	for i, l := range man.Layers {
		if err := fetchFile(ctx, c, name, l, stage.Path(names[i])); err != nil {
			return nil, fmt.Errorf("pull %s: %s: %w", refStr, names[i], err)
		}
	}
	if err := sameFiles(raw, names); err != nil {
		return nil, fmt.Errorf("pull %s: %w", refStr, err)
	}
	m, err := stage.CommitRaw(raw)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", refStr, err)
	}
	return m, nil
}

// readManifest reads the image manifest desc names (at most 4 MiB).
func readManifest(ctx context.Context, c *registry.Client, name string, desc ocispec.Descriptor) (ocispec.Manifest, error) {
	var man ocispec.Manifest
	b, err := c.ReadBlob(ctx, name, desc, 4<<20)
	if err != nil {
		return man, err
	}
	if err := json.Unmarshal(b, &man); err != nil {
		return man, fmt.Errorf("manifest: %w", err)
	}
	return man, nil
}

// sameFiles requires the artifact's layers to be exactly the files bundle.json lists.
func sameFiles(raw []byte, names []string) error {
	var m bundle.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return fmt.Errorf("%s: %w", bundle.ManifestFile, err)
	}
	var listed []string
	for _, f := range m.Files {
		listed = append(listed, f.Name)
	}
	got := slices.Clone(names)
	slices.Sort(listed)
	slices.Sort(got)
	if !slices.Equal(listed, got) {
		return fmt.Errorf("the artifact's files %v are not the %v its %s lists", got, listed, bundle.ManifestFile)
	}
	return nil
}

// fetchFile downloads one layer to path, checking its size and digest as it streams.
func fetchFile(ctx context.Context, c *registry.Client, name string, desc ocispec.Descriptor, path string) error {
	rc, err := c.Open(ctx, name, desc)
	if err != nil {
		return err
	}
	defer rc.Close()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	v := desc.Digest.Verifier()
	n, err := io.Copy(io.MultiWriter(f, v), io.LimitReader(rc, desc.Size+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	switch {
	case err != nil:
		return err
	case n != desc.Size || !v.Verified():
		return fmt.Errorf("blob %s: digest or size mismatch (got %d bytes, want %d): the registry holds other content than its manifest says; nothing was written", desc.Digest, n, desc.Size)
	}
	return nil
}

// pickPlatform returns the manifest of an index for platform ("" = the host's).
func pickPlatform(ctx context.Context, c *registry.Client, name string, desc ocispec.Descriptor, platform string) (ocispec.Descriptor, error) {
	b, err := c.ReadBlob(ctx, name, desc, 4<<20)
	if err != nil {
		return desc, err
	}
	var idx ocispec.Index
	if err := json.Unmarshal(b, &idx); err != nil {
		return desc, fmt.Errorf("index: %w", err)
	}
	want := platforms.DefaultSpec()
	if platform != "" {
		if want, err = platforms.Parse(platform); err != nil {
			return desc, err
		}
	}
	match := platforms.Only(want)
	var avail []string
	for _, m := range idx.Manifests {
		if m.Platform != nil {
			if match.Match(*m.Platform) {
				return m, nil
			}
			avail = append(avail, platforms.Format(*m.Platform))
		}
	}
	return desc, fmt.Errorf("nothing for %s in the index (it has %v): choose one with --platform", platforms.Format(want), avail)
}
