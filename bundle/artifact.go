package bundle

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/c2vm/c2vm/initgen"
)

// A bundle travels through registries as an OCI 1.1 artifact: bundle.json is the config, each
// other file a layer with its own media type and its name in org.opencontainers.image.title.
const (
	ArtifactType     = "application/vnd.c2vm.bundle.v1"
	ConfigMediaType  = "application/vnd.c2vm.bundle.config.v1+json"
	KernelMediaType  = "application/vnd.c2vm.kernel.v1"
	InitrdMediaType  = "application/vnd.c2vm.initrd.v1+zstd"
	rootfsMediaType  = "application/vnd.c2vm.rootfs.v1."
	AnnotationPrefix = "dev.c2vm.bundle."
)

// RootfsMediaType is the layer media type of a rootfs format (…rootfs.v1.squashfs).
func RootfsMediaType(format string) string { return rootfsMediaType + format }

// fileMediaTypes maps a bundle file to its layer media type.
func (m *Manifest) fileMediaType(name string) (string, bool) {
	switch name {
	case KernelFile:
		return KernelMediaType, true
	case InitrdFile:
		return InitrdMediaType, true
	case RootfsFile(m.RootfsFormat):
		return RootfsMediaType(m.RootfsFormat), true
	}
	return "", false
}

// ArtifactManifest returns the OCI manifest of the bundle at dir, whose bundle.json bytes are
// raw: layers in bundle.json's file order, digests and sizes from bundle.json (check them with
// Verify first), annotations for the platform, the kernel version and the source image, and
// org.opencontainers.image.created from SOURCE_DATE_EPOCH when set (so that pushing the same
// bundle twice gives the same manifest digest).
func (m *Manifest) ArtifactManifest(raw []byte) (ocispec.Manifest, error) {
	man := ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: ArtifactType,
		Config:       ocispec.Descriptor{MediaType: ConfigMediaType, Digest: digest.FromBytes(raw), Size: int64(len(raw))},
		Annotations: map[string]string{
			AnnotationPrefix + "platform":       platforms.Format(m.Platform),
			AnnotationPrefix + "kernel.version": m.Kernel.Version,
			AnnotationPrefix + "rootfs.format":  m.RootfsFormat,
		},
	}
	if m.Source.ManifestDigest != "" {
		man.Annotations[AnnotationPrefix+"source.digest"] = m.Source.ManifestDigest
	}
	n, set, err := initgen.SourceDateEpoch()
	if err != nil {
		return man, err
	}
	if set {
		man.Annotations[ocispec.AnnotationCreated] = time.Unix(n, 0).UTC().Format(time.RFC3339)
	}
	for _, f := range m.Files {
		mt, ok := m.fileMediaType(f.Name)
		if !ok {
			return man, fmt.Errorf("bundle file %s: not part of the artifact format", f.Name)
		}
		b, err := hex.DecodeString(f.SHA256)
		if err != nil || len(b) != 32 {
			return man, fmt.Errorf("bundle file %s: bad sha256 %q in %s", f.Name, f.SHA256, ManifestFile)
		}
		man.Layers = append(man.Layers, ocispec.Descriptor{
			MediaType: mt, Digest: digest.NewDigestFromEncoded(digest.SHA256, f.SHA256), Size: f.Size,
			Annotations: map[string]string{ocispec.AnnotationTitle: f.Name},
		})
	}
	return man, nil
}

// ArtifactFiles checks a pulled artifact manifest and returns, for each layer, the file name it
// becomes: one of the bundle's own names, each at most once.
func ArtifactFiles(man ocispec.Manifest) ([]string, error) {
	if man.ArtifactType != ArtifactType || man.Config.MediaType != ConfigMediaType {
		return nil, fmt.Errorf("not a c2vm bundle artifact (artifactType %q, config %q): push bundles with c2vm push", man.ArtifactType, man.Config.MediaType)
	}
	seen := map[string]bool{}
	var names []string
	for _, l := range man.Layers {
		name := l.Annotations[ocispec.AnnotationTitle]
		ok := name == KernelFile || name == InitrdFile || (filepath.Ext(name) != "" && name == RootfsFile(filepath.Ext(name)[1:]))
		if !ok || seen[name] || filepath.Base(name) != name {
			return nil, fmt.Errorf("artifact layer %s has title %q: not a bundle file name (or twice)", l.Digest, name)
		}
		seen[name] = true
		names = append(names, name)
	}
	return names, nil
}

// CommitRaw writes raw as bundle.json (as pulled, byte for byte), checks every file against it
// and renames the stage onto the target.
func (s *Stage) CommitRaw(raw []byte) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", ManifestFile, err)
	}
	if m.SchemaVersion != SchemaVersion {
		return nil, fmt.Errorf("%s has schema version %d, this c2vm reads %d", ManifestFile, m.SchemaVersion, SchemaVersion)
	}
	if err := os.WriteFile(s.Path(ManifestFile), raw, 0o644); err != nil {
		return nil, err
	}
	if err := m.Verify(s.Dir); err != nil {
		return nil, err
	}
	if err := m.CheckFiles(s.Dir); err != nil {
		return nil, err
	}
	if err := s.commit(); err != nil {
		return nil, err
	}
	return &m, nil
}
