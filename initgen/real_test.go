package initgen

import (
	"github.com/u-root/u-root/pkg/cpio"

	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/c2vm/c2vm/internal/testkit/realkernel"
	"github.com/u-root/u-root/pkg/kmodule"
)

// defaultModules is the module list the converter passes by default.
var defaultModules = []string{"virtio_pci", "virtio_mmio", "virtio_blk", "virtio_console", "virtio_net",
	"virtio_rng", "overlay", "squashfs", "erofs", "binfmt_misc", "vsock", "vmw_vsock_virtio_transport"}

// runcPath is the static runc `make build` leaves in the repository's bin/.
var runcPath = filepath.Join("..", "bin", "runc")

func realOptions(t testing.TB) Options {
	t.Helper()
	k := realkernel.Real(t)
	runc := Blob{Source: runcPath}
	if _, err := os.Stat(runcPath); err != nil {
		runc = Blob{Data: bytes.Repeat([]byte("runc"), 1<<20)}
	}
	return Options{
		Kernel:     k,
		Modules:    defaultModules,
		Init:       Blob{Data: []byte("init")},
		Runc:       runc,
		BootConfig: []byte(`{"version":"1.0"}`),
		Spec:       []byte(`{}`),
	}
}

// TestRealInitrdModules writes an initrd with the real kernel's default module closure, unpacks
// it into a directory and lets u-root's kmodule (the guest init's loader) probe every module from
// it in dry-run mode: each must be found and loaded after its dependencies.
func TestRealInitrdModules(t *testing.T) {
	opts := realOptions(t)
	es := readInitrd(t, write(t, opts), Zstd)
	assertWellFormed(t, es)
	root := t.TempDir()
	for _, e := range es {
		dst := filepath.Join(root, filepath.FromSlash(e.Name))
		if e.Mode&cpio.S_IFMT == cpio.S_IFDIR {
			if err := os.MkdirAll(dst, 0o755); err != nil {
				t.Fatal(err)
			}
		} else if e.Mode&cpio.S_IFMT == cpio.S_IFREG {
			if err := os.WriteFile(dst, []byte(e.Data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	modDir := filepath.Join(root, "lib", "modules", opts.Kernel.Version)
	var mu sync.Mutex
	var order []string
	p, err := kmodule.NewProber(kmodule.ProbeOpts{RootDir: root, KVer: opts.Kernel.Version, IgnoreProcMods: true,
		DryRunCB: func(p string) {
			mu.Lock()
			defer mu.Unlock()
			order = append(order, strings.TrimSuffix(filepath.Base(p), ".ko"))
		}})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range append(defaultModules, "ext4") { // ext4 is built in: kmodule must skip it
		if err := p.Probe(m, ""); err != nil {
			t.Fatalf("probe %s: %v", m, err)
		}
	}
	pos := map[string]int{}
	for i, n := range order {
		pos[strings.ReplaceAll(n, "-", "_")] = i
	}
	for _, pair := range [][2]string{{"failover", "net_failover"}, {"net_failover", "virtio_net"},
		{"libcrc32c", "erofs"}, {"virtio_ring", "virtio"}, {"virtio", "virtio_pci"}, {"vsock", "vmw_vsock_virtio_transport"}} {
		dep, mod := pos[pair[0]], pos[pair[1]]
		if _, ok := pos[pair[1]]; !ok || dep > mod {
			t.Errorf("%s loaded at %d, its dependency %s at %d (order %q)", pair[1], mod, pair[0], dep, order)
		}
	}
	if _, ok := pos["ext4"]; ok {
		t.Error("built-in ext4 was loaded")
	}
	if len(order) != 20 {
		t.Errorf("loaded %d modules, want the 20 of the default closure: %q", len(order), order)
	}
	if _, err := os.Stat(filepath.Join(modDir, "modules.dep")); err != nil {
		t.Error(err)
	}
}

// BenchmarkWriteReal measures the initrd with the real runc and the default module closure.
func BenchmarkWriteReal(b *testing.B) {
	for _, comp := range []string{Zstd, Gzip} {
		b.Run(comp, func(b *testing.B) {
			opts := realOptions(b)
			opts.Compression = comp
			var size int
			for b.Loop() {
				var buf bytes.Buffer
				if err := Write(context.Background(), &buf, opts); err != nil {
					b.Fatal(err)
				}
				size = buf.Len()
			}
			b.ReportMetric(float64(size)/(1<<20), "MB")
		})
	}
}
