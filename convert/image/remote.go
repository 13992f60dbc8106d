package image

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"sync"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/c2vm/c2vm/internal/registry"
)

// TransportDocker is a registry reference: docker://HOST/REPO[:TAG|@DIGEST], or HOST/REPO... bare
// when HOST has a dot, a colon or is localhost (docker's rule for telling a registry from a path).
const TransportDocker = "docker"

// maxManifest bounds index and manifest blobs read from a registry.
const maxManifest = 4 << 20

// registryStore serves a registry image as if it were an OCI layout: a synthetic index.json
// naming the resolved manifest, and blobs by digest, each fetched through the client's cache.
// It learns the descriptors of the blobs it may be asked for from the indexes and manifests it
// serves (the registry needs a blob's media type and size to fetch it).
type registryStore struct {
	ctx   context.Context
	c     *registry.Client
	ref   reference.Named
	name  string
	index []byte

	mu    sync.Mutex
	known map[digest.Digest]ocispec.Descriptor
}

func openRegistry(ctx context.Context, r Ref, opts registry.Options) (*registryStore, error) {
	ref, err := registry.ParseReference(r.Path)
	if err != nil {
		return nil, err
	}
	c, err := registry.New(opts)
	if err != nil {
		return nil, err
	}
	name, root, err := c.Resolve(ctx, ref)
	if err != nil {
		return nil, err
	}
	top := root
	top.Annotations = map[string]string{ocispec.AnnotationRefName: reference.FamiliarString(ref)}
	idx, err := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{top}})
	if err != nil {
		return nil, err
	}
	s := &registryStore{ctx: ctx, c: c, ref: ref, name: name, index: idx, known: map[digest.Digest]ocispec.Descriptor{root.Digest: root}}
	return s, nil
}

func (s *registryStore) open(name string) (io.ReadCloser, int64, error) {
	if name == "index.json" {
		return io.NopCloser(bytes.NewReader(s.index)), int64(len(s.index)), nil
	}
	d, ok := pathDigest(name)
	s.mu.Lock()
	desc, known := s.known[d]
	s.mu.Unlock()
	if !ok || !known {
		return nil, 0, fmt.Errorf("%s: %w", name, fs.ErrNotExist)
	}
	if images.IsIndexType(desc.MediaType) || images.IsManifestType(desc.MediaType) {
		b, err := s.c.ReadBlob(s.ctx, s.name, desc, maxManifest)
		if err != nil {
			return nil, 0, err
		}
		s.learn(b)
		return io.NopCloser(bytes.NewReader(b)), int64(len(b)), nil
	}
	rc, err := s.c.Open(s.ctx, s.name, desc)
	if err != nil {
		return nil, 0, err
	}
	return rc, desc.Size, nil
}

// learn records the descriptors an index or manifest lists.
func (s *registryStore) learn(b []byte) {
	var doc struct {
		Manifests []ocispec.Descriptor `json:"manifests"`
		Config    *ocispec.Descriptor  `json:"config"`
		Layers    []ocispec.Descriptor `json:"layers"`
	}
	if json.Unmarshal(b, &doc) != nil {
		return
	}
	all := append(doc.Manifests, doc.Layers...)
	if doc.Config != nil {
		all = append(all, *doc.Config)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range all {
		if d.Digest.Validate() == nil && d.Size >= 0 {
			s.known[d.Digest] = d
		}
	}
}

func (s *registryStore) has(name string) bool {
	if name == "index.json" {
		return true
	}
	d, ok := pathDigest(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	_, known := s.known[d]
	return ok && known
}

func (s *registryStore) where() string { return "registry " + reference.Domain(s.ref) }

func (s *registryStore) Close() error { return nil }
