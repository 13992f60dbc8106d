package image

import (
	"github.com/containerd/containerd/v2/core/images"

	"bytes"
	"context"
	"io"
	"testing"

	"github.com/c2vm/c2vm/internal/testkit/imagetest"
	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// tarOf returns an uncompressed layer holding one file per name, with body "content of NAME".
func tarOf(t testing.TB, names ...string) []byte {
	t.Helper()
	var entries []imagetest.TarEntry
	for _, n := range names {
		entries = append(entries, imagetest.TarFile(n, "content of "+n))
	}
	return imagetest.TarLayer(t, entries...)
}

// testImage is an image named name for platform plat ("linux/arm64") whose single file "id" holds
// name+plat, so tests can tell images apart by content.
func testImage(t testing.TB, name, plat string, mediaType string) imagetest.Image {
	t.Helper()
	data := imagetest.TarLayer(t, imagetest.TarFile("id", name+" "+plat))
	return imagetest.Image{Name: name, Platform: platforms.MustParse(plat),
		Layers: []imagetest.Layer{compress(t, data, mediaType)}}
}

// compress stores data with the compression mediaType implies.
func compress(t testing.TB, data []byte, mediaType string) imagetest.Layer {
	t.Helper()
	switch mediaType {
	case ocispec.MediaTypeImageLayerGzip, images.MediaTypeDockerSchema2LayerGzip:
		return imagetest.Layer{Data: imagetest.Gzip(t, data), MediaType: mediaType}
	case ocispec.MediaTypeImageLayerZstd, images.MediaTypeDockerSchema2LayerZstd:
		return imagetest.Layer{Data: imagetest.Zstd(t, data), MediaType: mediaType}
	}
	return imagetest.Layer{Data: data, MediaType: mediaType}
}

func open(t testing.TB, ref, plat string) (*Image, error) {
	t.Helper()
	img, err := Open(context.Background(), ref, Options{Platform: plat})
	if err == nil {
		t.Cleanup(func() { img.Close() })
	}
	return img, err
}

func mustOpen(t testing.TB, ref, plat string) *Image {
	t.Helper()
	img, err := open(t, ref, plat)
	if err != nil {
		t.Fatalf("Open(%s): %v", ref, err)
	}
	return img
}

// readLayer reads layer i to EOF and returns its content and the read error.
func readLayer(t testing.TB, img *Image, i int) ([]byte, error) {
	t.Helper()
	rc, err := img.OpenLayer(context.Background(), i)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var buf bytes.Buffer
	_, err = io.Copy(&buf, rc)
	return buf.Bytes(), err
}

// idOf returns the content of file "id" in layer 0.
func idOf(t testing.TB, img *Image) string {
	t.Helper()
	b, err := readLayer(t, img, 0)
	if err != nil {
		t.Fatalf("read layer 0: %v", err)
	}
	return string(bytes.TrimRight(b[512:1024], "\x00"))
}
