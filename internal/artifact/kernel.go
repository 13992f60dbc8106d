package artifact

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/c2vm/c2vm/internal/descriptor"
	"github.com/c2vm/c2vm/internal/fileutil"
	"github.com/c2vm/c2vm/internal/registry"
	"github.com/c2vm/c2vm/kernel"
)

// KernelDir is one c2vm kernel to push: its directory and architecture ("" = its image's).
type KernelDir struct {
	Dir, Arch string
}

// PushKernel uploads c2vm kernels as ref: an OCI index of kernel artifacts (kernel.ArtifactType),
// one manifest per architecture. The same kernels give the same digests.
func PushKernel(ctx context.Context, c *registry.Client, kernels []KernelDir, refStr string) (*PushResult, error) {
	ref, err := registry.ParseReference(refStr)
	if err != nil {
		return nil, err
	}
	if len(kernels) == 0 {
		return nil, errors.New("push kernel: no c2vm kernel to push: run `make kernel-c2vm` first")
	}
	p, err := c.Pusher(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("push kernel %s: %w", refStr, err)
	}
	res := &PushResult{}
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, ArtifactType: kernel.ArtifactType}
	for _, k := range kernels {
		t, err := kernel.DescribeTree(k.Dir, k.Arch)
		if err != nil {
			return nil, fmt.Errorf("push kernel %s: %w", refStr, err)
		}
		raw, err := json.Marshal(t)
		if err != nil {
			return nil, err
		}
		d, err := pushArtifact(ctx, c, p, ref, kernelManifest(t, raw), raw, k.Dir, res)
		if err != nil {
			return nil, fmt.Errorf("push kernel %s: %s: %w", refStr, k.Arch, err)
		}
		d.Platform = &ocispec.Platform{OS: t.OS, Architecture: t.Architecture}
		idx.Manifests = append(idx.Manifests, d)
	}
	if res.Digest, err = pushIndex(ctx, c, p, ref, idx, res); err != nil {
		return nil, fmt.Errorf("push kernel %s: %w", refStr, err)
	}
	return res, nil
}

// kernelManifest is the artifact manifest of a kernel tree whose config bytes are raw.
func kernelManifest(t *kernel.Tree, raw []byte) ocispec.Manifest {
	man := ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: kernel.ArtifactType,
		Config:       ocispec.Descriptor{MediaType: kernel.ArtifactConfigType, Digest: digest.FromBytes(raw), Size: int64(len(raw))},
		Annotations:  map[string]string{ocispec.AnnotationVersion: t.Version},
	}
	for _, f := range t.Files {
		man.Layers = append(man.Layers, ocispec.Descriptor{
			MediaType: f.MediaType, Digest: digest.NewDigestFromEncoded(digest.SHA256, f.SHA256), Size: f.Size,
			Annotations: map[string]string{ocispec.AnnotationTitle: f.Name},
		})
	}
	return man
}

// kernelKind is what a kernel artifact's manifest may hold.
var kernelKind = kind{
	config:     kernel.ArtifactConfigType,
	layerTypes: []string{kernel.VmlinuzMediaType, kernel.ConfigMediaType, kernel.ModulesBuiltinMedia},
	maxLayer:   maxKernelFile,
	notIt:      "not a c2vm kernel artifact (artifactType %q, config %q): push kernels with c2vm kernel push",
}

// maxKernelFile bounds one file of a pulled kernel (as kernel.Tree.Check does).
const maxKernelFile = 256 << 20

// PullKernel downloads the c2vm kernel ref names for platform ("" = the host's) into
// cacheDir/kernel-c2vm/pulled-<manifest digest>/, verified, and makes it the c2vm kernel of its
// architecture (what --kernel c2vm boots). It returns the kernel's description and directory.
func PullKernel(ctx context.Context, c *registry.Client, refStr, cacheDir, platform string) (*kernel.Tree, string, error) {
	name, desc, err := resolve(ctx, c, refStr, platform)
	if err != nil {
		return nil, "", err
	}
	fail := func(err error) (*kernel.Tree, string, error) {
		return nil, "", fmt.Errorf("pull kernel %s: %w", refStr, err)
	}
	arch := "" // what the index said, which the config must agree with
	if desc.Platform != nil {
		arch = desc.Platform.Architecture
	}
	man, t, err := readKernelManifest(ctx, c, name, desc, arch)
	if err != nil {
		return fail(err)
	}
	dir := kernel.PulledDir(cacheDir, desc.Digest.Encoded()) // checked by resolve: plain hex
	if have, err := kernel.DescribeTree(dir, t.Architecture); err != nil || !slices.Equal(have.Files, t.Files) {
		if err := fetchTree(ctx, c, name, man, t, dir); err != nil {
			return fail(err)
		}
	}
	if err := kernel.Activate(cacheDir, t.Architecture, dir); err != nil {
		return fail(err)
	}
	return t, dir, nil
}

// readKernelManifest reads and checks a kernel artifact's manifest and config.
func readKernelManifest(ctx context.Context, c *registry.Client, name string, desc ocispec.Descriptor, arch string) (ocispec.Manifest, *kernel.Tree, error) {
	man, err := readManifest(ctx, c, name, desc, kernelKind)
	if err != nil {
		return man, nil, err
	}
	if man.ArtifactType != kernel.ArtifactType {
		return man, nil, fmt.Errorf("not a c2vm kernel artifact (artifactType %q): push kernels with c2vm kernel push", descriptor.Clip(man.ArtifactType))
	}
	raw, err := c.ReadBlob(ctx, name, man.Config, 1<<20)
	if err != nil {
		return man, nil, fmt.Errorf("config: %w", err)
	}
	var t kernel.Tree
	if err := descriptor.Unmarshal(raw, &t); err != nil {
		return man, nil, fmt.Errorf("config: %w", err)
	}
	if err := t.Check(arch); err != nil {
		return man, nil, err
	}
	if !slices.EqualFunc(man.Layers, t.Files, func(l ocispec.Descriptor, f kernel.TreeFile) bool {
		return l.Annotations[ocispec.AnnotationTitle] == f.Name && l.Digest.Algorithm() == digest.SHA256 && l.Digest.Encoded() == f.SHA256 && l.Size == f.Size && l.MediaType == f.MediaType
	}) {
		return man, nil, errors.New("the artifact's layers are not the files its config lists")
	}
	return man, &t, nil
}

// fetchTree downloads a kernel tree's files into a stage beside dir and renames it onto dir; a
// directory that is there and intact (a concurrent pull's) is kept.
func fetchTree(ctx context.Context, c *registry.Client, name string, man ocispec.Manifest, t *kernel.Tree, dir string) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	keep := func(dir string) bool {
		have, err := kernel.DescribeTree(dir, t.Architecture)
		return err == nil && slices.Equal(have.Files, t.Files)
	}
	return fileutil.AtomicDir(dir, fileutil.AtomicDirOptions{Keep: keep}, func(stage string) error {
		for _, l := range man.Layers {
			path := filepath.Join(stage, filepath.FromSlash(l.Annotations[ocispec.AnnotationTitle]))
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return err
			}
			if err := fetchFile(ctx, c, name, l, path); err != nil {
				return fmt.Errorf("%s: %w", l.Annotations[ocispec.AnnotationTitle], err)
			}
		}
		return nil
	})
}
