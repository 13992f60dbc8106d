package convert

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/c2vm/c2vm/bootcfg"
	"github.com/c2vm/c2vm/internal/testkit/imagetest"
)

// benchImage writes a 3-layer gzip image of about 96 MiB uncompressed: many small text files, some
// large half-random files, and a layer that replaces and whites out part of the first.
func benchImage(b *testing.B) (dir string, size int64) {
	b.Helper()
	rng := rand.New(rand.NewSource(1))
	text := strings.Repeat("the quick brown fox jumps over the lazy dog\n", 1024)
	var layers []imagetest.Layer
	for l := 0; l < 3; l++ {
		var es []imagetest.TarEntry
		es = append(es, imagetest.TarDir(fmt.Sprintf("d%d", l)))
		for i := 0; i < 2000; i++ {
			body := text[:1024+rng.Intn(8192)]
			es = append(es, imagetest.TarFile(fmt.Sprintf("d%d/f%04d", l, i), body))
			size += int64(len(body))
		}
		for i := 0; i < 4; i++ {
			buf := make([]byte, 4<<20)
			rng.Read(buf[:2<<20])
			copy(buf[2<<20:], strings.Repeat(text, 50))
			es = append(es, imagetest.TarFile(fmt.Sprintf("d%d/big%d", l, i), string(buf)))
			size += int64(len(buf))
		}
		if l == 2 {
			es = append(es, imagetest.TarWhiteout("d0/f0001"), imagetest.TarFile("d0/f0002", "replaced"))
		}
		layers = append(layers, imagetest.Layer{Data: imagetest.Gzip(b, imagetest.TarLayer(b, es...)), MediaType: ocispec.MediaTypeImageLayerGzip})
	}
	dir = filepath.Join(b.TempDir(), "oci")
	imagetest.WriteOCILayout(b, dir, imagetest.Image{
		Name: "bench", Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		Config: ocispec.Image{Config: ocispec.ImageConfig{Cmd: []string{"/bin/sh"}}}, Layers: layers,
	})
	return dir, size
}

// BenchmarkConvert measures a whole conversion (open, verify, decompress, flatten, rootfs, spec,
// initrd with stand-in assets) per rootfs format, and — when umoci and mksquashfs are installed —
// the `umoci raw unpack` + `mksquashfs` pipeline on the same image for comparison.
func BenchmarkConvert(b *testing.B) {
	img, size := benchImage(b)
	libdir := b.TempDir()
	for _, n := range []string{"c2vm-init", "runc"} {
		os.WriteFile(filepath.Join(libdir, n), []byte("stand-in"), 0o755)
	}
	b.Setenv("C2VM_LIBDIR", libdir)
	kdir := fakeKernelDir(b)
	for _, format := range []string{bootcfg.FormatSquashfs, bootcfg.FormatErofs, bootcfg.FormatInitrd} {
		b.Run(format, func(b *testing.B) {
			if format == bootcfg.FormatSquashfs {
				if _, err := exec.LookPath("mksquashfs"); err != nil {
					b.Skip("mksquashfs missing")
				}
			}
			b.SetBytes(size)
			for i := 0; i < b.N; i++ {
				out := filepath.Join(b.TempDir(), "b")
				opts := Options{Image: "oci:" + img + ":bench", Output: out, Platform: "linux/amd64", Kernel: kdir, RootfsFormat: format, CacheDir: b.TempDir()}
				if _, err := Convert(context.Background(), opts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("umoci+mksquashfs", func(b *testing.B) {
		for _, tool := range []string{"umoci", "mksquashfs"} {
			if _, err := exec.LookPath(tool); err != nil {
				b.Skipf("%s missing (Debian packages umoci, squashfs-tools)", tool)
			}
		}
		b.SetBytes(size)
		for i := 0; i < b.N; i++ {
			tmp := b.TempDir()
			run(b, "umoci", "raw", "unpack", "--rootless", "--image", img+":bench", filepath.Join(tmp, "rootfs"))
			run(b, "mksquashfs", filepath.Join(tmp, "rootfs"), filepath.Join(tmp, "rootfs.squashfs"), "-comp", "zstd", "-Xcompression-level", "3", "-noappend", "-quiet", "-no-progress")
		}
	})
}

func run(b *testing.B, name string, args ...string) {
	b.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		b.Fatalf("%s: %v\n%s", name, err, out)
	}
}
