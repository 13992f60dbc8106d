package image

import (
	"fmt"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Docker media types, with the names and values of containerd's core/images constants. They are
// repeated here because importing core/images pulls in containerd/errdefs, which the module does
// not otherwise need.
const (
	MediaTypeDockerSchema2Layer            = "application/vnd.docker.image.rootfs.diff.tar"
	MediaTypeDockerSchema2LayerForeign     = "application/vnd.docker.image.rootfs.foreign.diff.tar"
	MediaTypeDockerSchema2LayerGzip        = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	MediaTypeDockerSchema2LayerZstd        = "application/vnd.docker.image.rootfs.diff.tar.zstd"
	MediaTypeDockerSchema2LayerForeignGzip = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
	MediaTypeDockerSchema2Config           = "application/vnd.docker.container.image.v1+json"
	MediaTypeDockerSchema2Manifest         = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerSchema2ManifestList     = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeDockerSchema1Manifest         = "application/vnd.docker.distribution.manifest.v1+prettyjws"
)

// Compression of a layer blob.
type Compression int

// Compressions a layer can have.
const (
	Uncompressed Compression = iota
	Gzip
	Zstd
)

func (c Compression) String() string {
	return [...]string{"uncompressed", "gzip", "zstd"}[c]
}

// LayerCompression maps a layer media type to its compression, or returns a clear error for types
// c2vm cannot read (foreign, non-distributable, encrypted, unknown).
func LayerCompression(mediaType string) (Compression, error) {
	switch mediaType {
	case ocispec.MediaTypeImageLayer, MediaTypeDockerSchema2Layer:
		return Uncompressed, nil
	case ocispec.MediaTypeImageLayerGzip, MediaTypeDockerSchema2LayerGzip:
		return Gzip, nil
	case ocispec.MediaTypeImageLayerZstd, MediaTypeDockerSchema2LayerZstd:
		return Zstd, nil
	case MediaTypeDockerSchema2LayerForeign, MediaTypeDockerSchema2LayerForeignGzip:
		return 0, fmt.Errorf("foreign layer type %s (Windows base layers) is not supported", mediaType)
	case ocispec.MediaTypeImageLayerNonDistributable, ocispec.MediaTypeImageLayerNonDistributableGzip, //nolint:staticcheck // deprecated but still seen
		ocispec.MediaTypeImageLayerNonDistributableZstd: //nolint:staticcheck
		return 0, fmt.Errorf("non-distributable layer type %s is not supported", mediaType)
	}
	if strings.Contains(mediaType, "+encrypted") {
		return 0, fmt.Errorf("encrypted layer type %s is not supported (decrypt the image first, e.g. with skopeo --decryption-key)", mediaType)
	}
	return 0, fmt.Errorf("unsupported layer media type %q (want OCI or Docker v2 tar, tar+gzip or tar+zstd)", mediaType)
}

func isIndexType(mt string) bool {
	return mt == ocispec.MediaTypeImageIndex || mt == MediaTypeDockerSchema2ManifestList
}

func isManifestType(mt string) bool {
	return mt == ocispec.MediaTypeImageManifest || mt == MediaTypeDockerSchema2Manifest
}

func isConfigType(mt string) bool {
	return mt == ocispec.MediaTypeImageConfig || mt == MediaTypeDockerSchema2Config
}
