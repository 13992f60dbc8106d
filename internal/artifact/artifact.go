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
	"strings"
	"syscall"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/platforms"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/c2vm/c2vm/bootcfg"
	"github.com/c2vm/c2vm/bundle"
	"github.com/c2vm/c2vm/internal/cachedir"
	"github.com/c2vm/c2vm/internal/descriptor"
	"github.com/c2vm/c2vm/internal/fileutil"
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
		return nil, fmt.Errorf("push %s: %w", refStr, err)
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
	raw, err := readFile(filepath.Join(dir, bundle.ManifestFile), bundle.MaxManifestSize)
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
		f, err := openFile(filepath.Join(dir, filepath.FromSlash(l.Annotations[ocispec.AnnotationTitle])), l.Size)
		if err != nil {
			return ocispec.Descriptor{}, err
		}
		err = push(l, io.LimitReader(f, l.Size))
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

// openFile opens a file to push: a regular file (never a FIFO or device) of the size its
// descriptor says.
func openFile(path string, size int64) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	switch {
	case err != nil:
	case !fi.Mode().IsRegular():
		err = fmt.Errorf("%s is not a regular file (%s)", path, fi.Mode().Type())
	case size >= 0 && fi.Size() != size:
		err = fmt.Errorf("%s is %d bytes, its descriptor says %d: it changed since it was verified", path, fi.Size(), size)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// readFile reads a regular file of at most max bytes.
func readFile(path string, max int64) ([]byte, error) {
	f, err := openFile(path, -1)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err == nil && int64(len(b)) > max {
		err = fmt.Errorf("%s is over the %d MiB limit", path, max>>20)
	}
	return b, err
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
// there and intact, and returns that directory (for `c2vm run REF`). The bundle is built in a
// stage beside it and renamed into place only when that name is free: of two concurrent pulls the
// first wins and the others reuse its directory, which is never replaced while intact. Its files
// are not kept in the blob cache as well.
func PullCached(ctx context.Context, c *registry.Client, refStr, cacheDir, platform string) (string, error) {
	name, desc, err := resolve(ctx, c, refStr, platform)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cachedir.Dir(cacheDir).PulledBundles(), desc.Digest.Encoded()) // checked by resolve: plain hex
	if intact(dir) {
		return dir, nil
	}
	man, names, raw, err := readBundleArtifact(ctx, c, name, desc)
	if err != nil {
		return "", fmt.Errorf("pull %s: %w", refStr, err)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", fmt.Errorf("pull %s: %w", refStr, err)
	}
	err = fileutil.AtomicDir(dir, fileutil.AtomicDirOptions{Sync: true, Keep: intact}, func(stage string) error {
		if err := fetchLayers(ctx, c, name, man, names, stage); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(stage, bundle.ManifestFile), raw, 0o644); err != nil {
			return err
		}
		return checkBundle(stage)
	})
	if err != nil {
		return "", fmt.Errorf("pull %s: %w", refStr, err)
	}
	return dir, nil
}

// intact reports whether dir holds a bundle whose files match its bundle.json.
func intact(dir string) bool { return checkBundle(dir) == nil }

// checkBundle checks the bundle at dir: its bundle.json, every file against it, and the files the
// VM is handed.
func checkBundle(dir string) error {
	m, err := bundle.Read(dir)
	if err != nil {
		return err
	}
	if err := m.Verify(dir); err != nil {
		return err
	}
	return m.CheckFiles(dir)
}

// resolve returns the bundle manifest a reference names (picking from an index by platform),
// its descriptor checked.
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

// bundleKind is what a bundle artifact's manifest may hold.
var bundleKind = kind{
	config:     bundle.ConfigMediaType,
	layerTypes: []string{bundle.KernelMediaType, bundle.InitrdMediaType, bundle.RootfsMediaType(bootcfg.FormatSquashfs), bundle.RootfsMediaType(bootcfg.FormatErofs)},
	maxLayer:   maxBundleFile,
	notIt:      "not a c2vm bundle artifact (artifactType %q, config %q): push bundles with c2vm push",
}

// maxBundleFile bounds one file of a pulled bundle.
const maxBundleFile = 64 << 30

func pull(ctx context.Context, c *registry.Client, refStr, name string, desc ocispec.Descriptor, dir string) (*bundle.Manifest, error) {
	man, names, raw, err := readBundleArtifact(ctx, c, name, desc)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", refStr, err)
	}
	stage, err := bundle.NewStage(dir)
	if err != nil {
		return nil, err
	}
	defer stage.Abort()
	if err := fetchLayers(ctx, c, name, man, names, stage.Dir); err != nil {
		return nil, fmt.Errorf("pull %s: %w", refStr, err)
	}
	m, err := stage.CommitRaw(raw)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", refStr, err)
	}
	return m, nil
}

// readBundleArtifact reads and checks a bundle artifact's manifest and bundle.json: the layers'
// file names and the raw bundle.json, before anything is written.
func readBundleArtifact(ctx context.Context, c *registry.Client, name string, desc ocispec.Descriptor) (ocispec.Manifest, []string, []byte, error) {
	man, err := readManifest(ctx, c, name, desc, bundleKind)
	if err != nil {
		return man, nil, nil, err
	}
	names, err := artifactFiles(man)
	if err != nil {
		return man, nil, nil, err
	}
	raw, err := c.ReadBlob(ctx, name, man.Config, bundle.MaxManifestSize)
	if err != nil {
		return man, nil, nil, fmt.Errorf("%s: %w", bundle.ManifestFile, err)
	}
	if err := sameFiles(raw, man.Layers, names); err != nil {
		return man, nil, nil, err
	}
	return man, names, raw, nil
}

// fetchLayers downloads each layer into dir as its file name.
func fetchLayers(ctx context.Context, c *registry.Client, name string, man ocispec.Manifest, names []string, dir string) error {
	for i, l := range man.Layers {
		if err := fetchFile(ctx, c, name, l, filepath.Join(dir, names[i])); err != nil {
			return fmt.Errorf("%s: %w", names[i], err)
		}
	}
	return nil
}

// artifactFiles is bundle.ArtifactFiles with each layer's media type checked against its name.
func artifactFiles(man ocispec.Manifest) ([]string, error) {
	names, err := bundle.ArtifactFiles(man)
	if err != nil {
		return nil, err
	}
	for i, n := range names {
		want := bundle.RootfsMediaType(strings.TrimPrefix(filepath.Ext(n), "."))
		switch n {
		case bundle.KernelFile:
			want = bundle.KernelMediaType
		case bundle.InitrdFile:
			want = bundle.InitrdMediaType
		}
		if man.Layers[i].MediaType != want {
			return nil, fmt.Errorf("artifact layer %s (%s) has media type %q, want %q", man.Layers[i].Digest, n, man.Layers[i].MediaType, want)
		}
	}
	return names, nil
}

// kind says what an artifact manifest may hold: its config's media type, its layers' media types
// and the largest layer.
type kind struct {
	config     string
	layerTypes []string
	maxLayer   int64
	// notIt is the one-line error for a manifest of another kind (another config media type).
	notIt string
}

// readManifest reads the artifact manifest desc names and checks it (decodeManifest).
func readManifest(ctx context.Context, c *registry.Client, name string, desc ocispec.Descriptor, k kind) (ocispec.Manifest, error) {
	b, err := c.ReadBlob(ctx, name, desc, descriptor.MaxManifest)
	if err != nil {
		return ocispec.Manifest{}, fmt.Errorf("manifest: %w", err)
	}
	return decodeManifest(b, desc.MediaType, k)
}

// decodeManifest decodes an artifact manifest fetched for a descriptor of mediaType and checks
// every descriptor in it against k before anything is built from them.
func decodeManifest(b []byte, mediaType string, k kind) (ocispec.Manifest, error) {
	var man ocispec.Manifest
	if err := descriptor.Unmarshal(b, &man); err != nil {
		return man, fmt.Errorf("manifest: %w", err)
	}
	if man.SchemaVersion != 2 {
		return man, fmt.Errorf("manifest: schemaVersion %d, want 2", man.SchemaVersion)
	}
	if man.MediaType != "" && man.MediaType != mediaType {
		return man, fmt.Errorf("manifest: mediaType %q, its descriptor says %q", man.MediaType, mediaType)
	}
	if mediaType != ocispec.MediaTypeImageManifest {
		return man, fmt.Errorf("manifest: media type %q is not an OCI artifact manifest", mediaType)
	}
	if err := descriptor.Check(man.Config, descriptor.MaxConfig); err != nil {
		return man, fmt.Errorf("manifest: config: %w", err)
	}
	if man.Config.MediaType != k.config {
		return man, fmt.Errorf(k.notIt, descriptor.Clip(man.ArtifactType), descriptor.Clip(man.Config.MediaType))
	}
	for i, l := range man.Layers {
		if err := descriptor.Check(l, k.maxLayer, k.layerTypes...); err != nil {
			return man, fmt.Errorf("manifest: layers[%d]: %w", i, err)
		}
	}
	return man, nil
}

// sameFiles requires the artifact's layers to be exactly the files bundle.json lists, by name,
// digest and size, before anything is downloaded.
func sameFiles(raw []byte, layers []ocispec.Descriptor, names []string) error {
	var m bundle.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return fmt.Errorf("%s: %w", bundle.ManifestFile, err)
	}
	listed := map[string]bundle.File{}
	for _, f := range m.Files {
		if err := bundle.CheckFileName(f.Name); err != nil {
			return err
		}
		listed[f.Name] = f
	}
	if len(listed) != len(m.Files) || len(listed) != len(names) {
		return fmt.Errorf("the artifact's files %v are not the %d its %s lists", names, len(m.Files), bundle.ManifestFile)
	}
	for i, n := range names {
		f, ok := listed[n]
		if l := layers[i]; !ok || l.Digest != digest.NewDigestFromEncoded(digest.SHA256, f.SHA256) || l.Size != f.Size {
			return fmt.Errorf("the artifact's layer %s (%s, %d bytes) is not the file its %s lists", n, l.Digest, l.Size, bundle.ManifestFile)
		}
	}
	return nil
}

// fetchFile downloads one layer to path, checking its size and digest as it streams; the blob is
// not kept in the blob cache (path is its verified home).
func fetchFile(ctx context.Context, c *registry.Client, name string, desc ocispec.Descriptor, path string) error {
	rc, err := c.Stream(ctx, name, desc)
	if err != nil {
		return err
	}
	defer rc.Close()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	v := desc.Digest.Verifier()
	n, err := io.Copy(io.MultiWriter(f, v), rc)
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
	b, err := c.ReadBlob(ctx, name, desc, descriptor.MaxManifest)
	if err != nil {
		return desc, fmt.Errorf("index: %w", err)
	}
	idx, err := decodeIndex(b, desc.MediaType)
	if err != nil {
		return desc, err
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

// decodeIndex decodes an index fetched for a descriptor of mediaType and checks every manifest
// descriptor in it (an OCI manifest within descriptor.MaxManifest) before anything is built from
// them.
func decodeIndex(b []byte, mediaType string) (ocispec.Index, error) {
	var idx ocispec.Index
	if err := descriptor.Unmarshal(b, &idx); err != nil {
		return idx, fmt.Errorf("index: %w", err)
	}
	if idx.SchemaVersion != 2 {
		return idx, fmt.Errorf("index: schemaVersion %d, want 2", idx.SchemaVersion)
	}
	if idx.MediaType != "" && idx.MediaType != mediaType {
		return idx, fmt.Errorf("index: mediaType %q, its descriptor says %q", idx.MediaType, mediaType)
	}
	for i, m := range idx.Manifests {
		if err := descriptor.Check(m, descriptor.MaxManifest, ocispec.MediaTypeImageManifest); err != nil {
			return idx, fmt.Errorf("index: manifests[%d]: %w", i, err)
		}
	}
	return idx, nil
}
