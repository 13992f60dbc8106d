package image

import (
	"github.com/containerd/containerd/v2/core/images"

	"fmt"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/c2vm/c2vm/internal/decompress"
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

// format is the decompressor c needs.
func (c Compression) format() decompress.Format {
	return [...]decompress.Format{decompress.None, decompress.Gzip, decompress.Zstd}[c]
}

// LayerCompression maps a layer media type to its compression, or returns a clear error for types
// c2vm cannot read (foreign, non-distributable, encrypted, unknown).
func LayerCompression(mediaType string) (Compression, error) {
	switch mediaType {
	case ocispec.MediaTypeImageLayer, images.MediaTypeDockerSchema2Layer:
		return Uncompressed, nil
	case ocispec.MediaTypeImageLayerGzip, images.MediaTypeDockerSchema2LayerGzip:
		return Gzip, nil
	case ocispec.MediaTypeImageLayerZstd, images.MediaTypeDockerSchema2LayerZstd:
		return Zstd, nil
	case images.MediaTypeDockerSchema2LayerForeign, images.MediaTypeDockerSchema2LayerForeignGzip:
		return 0, fmt.Errorf("foreign layer type %s (Windows base layers) is not supported", mediaType)
	//lint:ignore SA1019 deprecated, still seen in old images: named to refuse them clearly
	case ocispec.MediaTypeImageLayerNonDistributable, ocispec.MediaTypeImageLayerNonDistributableGzip, ocispec.MediaTypeImageLayerNonDistributableZstd:
		return 0, fmt.Errorf("non-distributable layer type %s is not supported", mediaType)
	}
	if strings.Contains(mediaType, "+encrypted") {
		return 0, fmt.Errorf("encrypted layer type %s is not supported (decrypt the image first, e.g. with skopeo --decryption-key)", mediaType)
	}
	return 0, fmt.Errorf("unsupported layer media type %q (want OCI or Docker v2 tar, tar+gzip or tar+zstd)", mediaType)
}

func isIndexType(mt string) bool { return images.IsIndexType(mt) }

func isManifestType(mt string) bool { return images.IsManifestType(mt) }

func isConfigType(mt string) bool {
	return mt == ocispec.MediaTypeImageConfig || mt == images.MediaTypeDockerSchema2Config
}
