package image

import (
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/c2vm/c2vm/internal/testkit/imagetest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// benchLayer returns an uncompressed tar of about size bytes of text-like, compressible content.
func benchLayer(b *testing.B, size int) []byte {
	b.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	words := strings.Fields("the quick brown fox jumps over a lazy dog lorem ipsum dolor sit amet 0x1f ELF libc.so.6 /usr/lib")
	var entries []imagetest.TarEntry
	for n, i := 0, 0; n < size; i++ {
		var sb strings.Builder
		for sb.Len() < 256<<10 {
			sb.WriteString(words[rng.IntN(len(words))])
			sb.WriteByte(byte(' ' + rng.IntN(3)))
		}
		entries = append(entries, imagetest.TarFile(fmt.Sprintf("usr/share/f%04d", i), sb.String()))
		n += sb.Len()
	}
	return imagetest.TarLayer(b, entries...)
}

func BenchmarkOpenLayer(b *testing.B) {
	raw := benchLayer(b, 64<<20)
	for _, mt := range []string{ocispec.MediaTypeImageLayerGzip, ocispec.MediaTypeImageLayerZstd, ocispec.MediaTypeImageLayer} {
		name := mt[strings.LastIndex(mt, ".")+1:]
		b.Run(name, func(b *testing.B) {
			p := b.TempDir() + "/img.tar"
			imagetest.WriteOCIArchive(b, p, imagetest.Image{Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
				Layers: []imagetest.Layer{compress(b, raw, mt)}})
			img := mustOpen(b, p, "linux/amd64")
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				rc, err := img.OpenLayer(b.Context(), 0)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, rc); err != nil {
					b.Fatal(err)
				}
				rc.Close()
			}
			b.ReportMetric(float64(img.Layers[0].Desc.Size)/float64(len(raw)), "ratio")
		})
	}
}
