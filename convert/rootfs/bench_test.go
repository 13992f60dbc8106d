package rootfs

import (
	"archive/tar"
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/c2vm/c2vm/bootcfg"
	"github.com/c2vm/c2vm/internal/testkit/imagetest"
)

// BenchmarkWrite writes a ~200 MiB tree (400 files of 512 KiB, half random bytes, half
// repetitive text) in each format; b.SetBytes makes the MB/s column the tree's content rate.
func BenchmarkWrite(b *testing.B) {
	const files, size = 400, 512 << 10
	rng := rand.New(rand.NewPCG(1, 2))
	entries := []imagetest.TarEntry{imagetest.TarDir("data")}
	for i := range files {
		body := make([]byte, size)
		if i%2 == 0 {
			for j := range body {
				body[j] = byte(rng.Uint32())
			}
		} else {
			for j := range body {
				body[j] = "the quick brown fox jumps over the lazy dog\n"[(j+i)%44]
			}
		}
		entries = append(entries, imagetest.TarEntry{Hdr: tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("data/f%04d", i), Mode: 0o644}, Body: string(body)})
	}
	tree := flattenLayers(b, [][]byte{imagetest.TarLayer(b, entries...)})
	for _, tc := range []struct{ format, comp string }{
		{bootcfg.FormatSquashfs, ""}, {bootcfg.FormatSquashfs, "lz4"}, {bootcfg.FormatErofs, ""}, {bootcfg.FormatInitrd, ""}, {bootcfg.FormatInitrd, "gzip"},
	} {
		b.Run(tc.format+"/"+tc.comp, func(b *testing.B) {
			if tc.format == bootcfg.FormatSquashfs {
				needTool(b, "mksquashfs")
			}
			out := filepath.Join(b.TempDir(), "img")
			b.SetBytes(files * size)
			for b.Loop() {
				if err := Write(context.Background(), tc.format, tree, out, Options{Compression: tc.comp}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
