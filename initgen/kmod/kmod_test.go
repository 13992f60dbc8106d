package kmod

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/c2vm/c2vm/internal/testkit/fakekernel"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

const fakeVer = "6.1.0-test"

// fakeTree writes a synthetic module tree shaped like Debian's and returns lib/modules/<ver>.
func fakeTree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	fakekernel.WriteTree(t, root, fakekernel.Files(fakeVer, []fakekernel.Mod{
		{Path: "kernel/drivers/virtio/virtio_ring.ko"},
		{Path: "kernel/drivers/virtio/virtio.ko", Depends: []string{"virtio_ring"}},
		{Path: "kernel/net/core/failover.ko"},
		{Path: "kernel/drivers/net/net_failover.ko", Depends: []string{"failover"}},
		{Path: "kernel/drivers/net/virtio_net.ko", Depends: []string{"virtio_ring", "virtio", "net_failover"}},
		{Path: "kernel/drivers/char/hw_random/virtio-rng.ko", Depends: []string{"virtio", "virtio_ring"}},
		{Path: "kernel/fs/overlayfs/overlay.ko"},
		{Path: "kernel/lib/libcrc32c.ko"},
		{Path: "kernel/fs/erofs/erofs.ko", Depends: []string{"libcrc32c"}},
		{Path: "kernel/test/cycle_a.ko", Depends: []string{"cycle_b"}},
		{Path: "kernel/test/cycle_b.ko", Depends: []string{"cycle_a"}},
		{Path: "kernel/test/broken_dep.ko", Depends: []string{"no_such_dep"}},
	}, []string{"kernel/fs/ext4/ext4.ko", "kernel/drivers/base/firmware_loader/firmware_class.ko"}))
	dir := filepath.Join(root, "lib", "modules", fakeVer)
	if err := os.WriteFile(filepath.Join(dir, "kernel", "not_elf.ko"), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestDepends(t *testing.T) {
	dir := fakeTree(t)
	tests := []struct {
		path string
		want []string
	}{
		{"kernel/drivers/net/virtio_net.ko", []string{"virtio_ring", "virtio", "net_failover"}},
		{"kernel/fs/erofs/erofs.ko", []string{"libcrc32c"}},
		{"kernel/fs/overlayfs/overlay.ko", nil},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			got, err := Depends(filepath.Join(dir, tt.path))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Depends = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDependsErrors(t *testing.T) {
	dir := fakeTree(t)
	noModinfo := filepath.Join(t.TempDir(), "plain.ko")
	elfNoModinfo := bytes.Replace(fakekernel.Module("depends="), []byte(".modinfo"), []byte(".notinfo"), 1)
	if err := os.WriteFile(noModinfo, elfNoModinfo, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ path, want string }{
		{filepath.Join(dir, "kernel/not_elf.ko"), "not_elf.ko"},
		{filepath.Join(dir, "kernel/missing.ko"), "missing.ko"},
		{noModinfo, "no .modinfo section"},
	} {
		_, err := Depends(tt.path)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Depends(%s) error = %v, want it to mention %q", tt.path, err, tt.want)
		}
	}
}

// TestDependsCompressed checks .ko.xz, .ko.zst and .ko.gz modules, as newer distributions artifact.
func TestDependsCompressed(t *testing.T) {
	raw := fakekernel.Module("name=foo", "depends=bar,baz-qux", "license=GPL")
	compressors := map[string]func(*bytes.Buffer) (io.WriteCloser, error){
		".ko.xz":  func(b *bytes.Buffer) (io.WriteCloser, error) { return xz.NewWriter(b) },
		".ko.zst": func(b *bytes.Buffer) (io.WriteCloser, error) { return zstd.NewWriter(b) },
		".ko.gz":  func(b *bytes.Buffer) (io.WriteCloser, error) { return gzip.NewWriter(b), nil },
	}
	for suffix, newW := range compressors {
		t.Run(suffix, func(t *testing.T) {
			var b bytes.Buffer
			w, err := newW(&b)
			if err != nil {
				t.Fatal(err)
			}
			w.Write(raw)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(t.TempDir(), "foo"+suffix)
			if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := Depends(p)
			if err != nil {
				t.Fatal(err)
			}
			if want := []string{"bar", "baz_qux"}; !reflect.DeepEqual(got, want) {
				t.Errorf("Depends = %q, want %q", got, want)
			}
		})
	}
}

func TestIndex(t *testing.T) {
	dir := fakeTree(t)
	// A duplicate name in a path sorting later must not win.
	fakekernel.WriteTree(t, dir, map[string][]byte{"updates/zz/overlay.ko": fakekernel.Module("depends=")})
	idx, err := Index(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"virtio_rng": "kernel/drivers/char/hw_random/virtio-rng.ko",
		"overlay":    "kernel/fs/overlayfs/overlay.ko",
		"not_elf":    "kernel/not_elf.ko",
		"failover":   "kernel/net/core/failover.ko",
	}
	for name, p := range want {
		if idx[name] != p {
			t.Errorf("Index[%s] = %q, want %q", name, idx[name], p)
		}
	}
	if _, ok := idx["modules.builtin"]; ok || len(idx) != 13 {
		t.Errorf("Index has %d entries, want 13 modules only: %v", len(idx), idx)
	}
	if _, err := Index(filepath.Join(dir, "nope")); err == nil {
		t.Error("Index of a missing dir: no error")
	}
}

func names(mods []Module) []string {
	var out []string
	for _, m := range mods {
		out = append(out, m.Name)
	}
	return out
}

func TestClosure(t *testing.T) {
	dir := fakeTree(t)
	tests := []struct {
		in   []string
		want []string
	}{
		{[]string{"virtio_net"}, []string{"virtio_ring", "virtio", "failover", "net_failover", "virtio_net"}},
		{[]string{"erofs"}, []string{"libcrc32c", "erofs"}},
		{[]string{"overlay"}, []string{"overlay"}},
		{[]string{"virtio-rng", "virtio_rng", "overlay", "virtio_net"}, []string{"virtio_ring", "virtio", "virtio_rng", "overlay", "failover", "net_failover", "virtio_net"}},
		{nil, nil},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.in, ","), func(t *testing.T) {
			got, err := Closure(dir, tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(names(got), tt.want) {
				t.Errorf("Closure = %q, want %q", names(got), tt.want)
			}
			assertDepsFirst(t, got)
		})
	}
}

func assertDepsFirst(t *testing.T, mods []Module) {
	t.Helper()
	pos := map[string]int{}
	for i, m := range mods {
		pos[m.Name] = i
	}
	for i, m := range mods {
		for _, d := range m.Depends {
			if j, ok := pos[d]; !ok || j >= i {
				t.Errorf("%s (at %d) depends on %s, which is at %d (present %v)", m.Name, i, d, j, ok)
			}
		}
	}
}

func TestClosureErrors(t *testing.T) {
	dir := fakeTree(t)
	tests := []struct {
		in      string
		want    []string
		builtin bool
	}{
		{"nosuchmod", []string{`"nosuchmod"`, "not found", "modules.builtin"}, false},
		{"ext4", []string{`"ext4"`, "built into the kernel"}, true},
		{"broken_dep", []string{`"no_such_dep"`, "needed by broken_dep"}, false},
		{"cycle_a", []string{"cycle", "cycle_a -> cycle_b -> cycle_a"}, false},
		{"not_elf", []string{"not_elf.ko"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			_, err := Closure(dir, []string{"overlay", tt.in})
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if errors.Is(err, ErrBuiltin) != tt.builtin {
				t.Errorf("errors.Is(err, ErrBuiltin) = %v, want %v", !tt.builtin, tt.builtin)
			}
		})
	}
}

func TestBuiltin(t *testing.T) {
	dir := fakeTree(t)
	got, err := Builtin(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]bool{"ext4": true, "firmware_class": true}; !reflect.DeepEqual(got, want) {
		t.Errorf("Builtin = %v, want %v", got, want)
	}
	got, err = Builtin(t.TempDir())
	if err != nil || len(got) != 0 {
		t.Errorf("Builtin without modules.builtin = %v, %v; want empty, nil", got, err)
	}
}

func TestWriteDep(t *testing.T) {
	dir := fakeTree(t)
	mods, err := Closure(dir, []string{"overlay", "virtio_net"})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := WriteDep(&b, mods); err != nil {
		t.Fatal(err)
	}
	want := `kernel/fs/overlayfs/overlay.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/net/core/failover.ko:
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
`
	if b.String() != want {
		t.Errorf("modules.dep:\n%s\nwant:\n%s", b.String(), want)
	}
	for _, line := range strings.Split(b.String(), "\n") {
		if strings.HasSuffix(line, " ") {
			t.Errorf("line %q ends in a space (u-root's kmodule mis-parses it)", line)
		}
	}
}

func TestWriteDepMissingDependency(t *testing.T) {
	err := WriteDep(&bytes.Buffer{}, []Module{{Name: "a", Path: "a.ko", Depends: []string{"b"}}})
	if err == nil || !strings.Contains(err.Error(), "a depends on b") {
		t.Errorf("error = %v, want one naming a and b", err)
	}
}
