package rootfs

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/c2vm/c2vm/bootcfg"
)

// TestReproducible writes each format twice from two separately flattened trees.
func TestReproducible(t *testing.T) {
	for _, format := range Formats() {
		t.Run(format, func(t *testing.T) {
			if format == bootcfg.FormatSquashfs {
				needTool(t, "mksquashfs")
			}
			var imgs [][]byte
			for range 2 {
				tree := flattenLayers(t, fixtureLayers(t))
				out := filepath.Join(t.TempDir(), Ext(format))
				if err := Write(context.Background(), format, tree, out, Options{MkfsTime: 1700000000}); err != nil {
					t.Fatal(err)
				}
				b, err := os.ReadFile(out)
				if err != nil {
					t.Fatal(err)
				}
				imgs = append(imgs, b)
			}
			if !bytes.Equal(imgs[0], imgs[1]) {
				t.Errorf("two writes differ (%d and %d bytes)", len(imgs[0]), len(imgs[1]))
			}
		})
	}
}

func TestUnknownFormat(t *testing.T) {
	tree := flattenLayers(t, fixtureLayers(t))
	if err := Write(context.Background(), "ext4", tree, filepath.Join(t.TempDir(), "x"), Options{}); err == nil {
		t.Fatal("ext4 accepted")
	}
	if Ext("ext4") != "" || Ext(bootcfg.FormatSquashfs) != "rootfs.squashfs" || Ext(bootcfg.FormatErofs) != "rootfs.erofs" || Ext(bootcfg.FormatInitrd) != "rootfs.cpio" {
		t.Error("Ext names changed")
	}
}
