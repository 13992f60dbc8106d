package kernel

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/c2vm/c2vm/internal/testkit/fakekernel"
)

const testVer = "6.1.0-99-test-amd64"

func control(pkg, depends string) string {
	c := "Package: " + pkg + "\nVersion: 6.1.1-1\nArchitecture: amd64\n"
	if depends != "" {
		c += "Depends: " + depends + "\n"
	}
	return c + "Description: test\n multi-line\n"
}

func kernelFiles(ver string) map[string][]byte {
	files := fakekernel.Files(ver, []fakekernel.Mod{
		{Path: "kernel/fs/overlayfs/overlay.ko"},
		{Path: "kernel/lib/libcrc32c.ko"},
		{Path: "kernel/fs/erofs/erofs.ko", Depends: []string{"libcrc32c"}},
	}, []string{"kernel/fs/ext4/ext4.ko"})
	files["usr/share/doc/linux-image-"+ver+"/changelog.gz"] = []byte("not extracted")
	return files
}

// writeKernelDeb writes linux-image-<ver>_6.1.1-1_<arch>.deb into dir and returns its path; the
// arch is ver's last dash-separated word.
func writeKernelDeb(t *testing.T, dir, ver, compression string) string {
	t.Helper()
	p := filepath.Join(dir, "linux-image-"+ver+"_6.1.1-1_"+ver[strings.LastIndex(ver, "-")+1:]+".deb")
	fakekernel.Deb(t, p, control("linux-image-"+ver, "kmod"), kernelFiles(ver), compression)
	return p
}

func writeMetaDeb(t *testing.T, dir, ver string) string {
	t.Helper()
	p := filepath.Join(dir, "linux-image-cloud-amd64_6.1.1-1_amd64.deb")
	fakekernel.Deb(t, p, control("linux-image-cloud-amd64", "linux-image-"+ver+" (= 6.1.1-1)"),
		map[string][]byte{"usr/share/doc/linux-image-cloud-amd64/copyright": []byte("x")}, "xz")
	return p
}

func assertKernel(t *testing.T, k *Kernel, ver string) {
	t.Helper()
	if k.Version != ver {
		t.Errorf("Version = %q, want %q", k.Version, ver)
	}
	if filepath.Base(k.Vmlinuz) != "vmlinuz-"+ver {
		t.Errorf("Vmlinuz = %q", k.Vmlinuz)
	}
	if got := ImageVersion(k.Vmlinuz); got != ver {
		t.Errorf("image version %q, want %q", got, ver)
	}
	if filepath.Base(k.ModulesDir) != ver {
		t.Errorf("ModulesDir = %q", k.ModulesDir)
	}
	if _, err := os.Stat(filepath.Join(k.ModulesDir, "kernel/fs/erofs/erofs.ko")); err != nil {
		t.Errorf("module missing: %v", err)
	}
}

func TestLoadDeb(t *testing.T) {
	for _, comp := range []string{"xz", "zst", "gz", ""} {
		t.Run("data.tar."+comp, func(t *testing.T) {
			dir, cache := t.TempDir(), t.TempDir()
			deb := writeKernelDeb(t, dir, testVer, comp)
			k, err := Load(context.Background(), deb, Options{CacheDir: cache})
			if err != nil {
				t.Fatal(err)
			}
			assertKernel(t, k, testVer)
			if k.Source != deb || k.Package != filepath.Base(deb) {
				t.Errorf("Source, Package = %q, %q", k.Source, k.Package)
			}
			if !strings.HasPrefix(k.Vmlinuz, filepath.Join(cache, "kernels")+"/") {
				t.Errorf("Vmlinuz %s not in the cache %s", k.Vmlinuz, cache)
			}
			root := filepath.Dir(filepath.Dir(k.Vmlinuz))
			if _, err := os.Stat(filepath.Join(root, "usr")); err == nil {
				t.Error("usr/share/doc was unpacked; only boot/ and lib/modules/ are needed")
			}
		})
	}
}

func TestLoadDebCacheReuse(t *testing.T) {
	dir, cache := t.TempDir(), t.TempDir()
	deb := writeKernelDeb(t, dir, testVer, "xz")
	k1, err := Load(context.Background(), deb, Options{CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(k1.ModulesDir, "marker")
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	k2, err := Load(context.Background(), deb, Options{CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	if *k1 != *k2 {
		t.Errorf("second Load = %+v, want %+v", k2, k1)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("cache was unpacked again: %v", err)
	}
	entries, err := os.ReadDir(filepath.Join(cache, "kernels"))
	if err != nil || len(entries) != 1 {
		t.Errorf("cache holds %d entries (%v), want 1 (no leftover temporary dirs)", len(entries), err)
	}
	// Another package gets its own cache entry.
	other := writeKernelDeb(t, t.TempDir(), "6.2.0-1-test", "gz")
	k3, err := Load(context.Background(), other, Options{CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(filepath.Dir(k3.Vmlinuz)) == filepath.Dir(filepath.Dir(k1.Vmlinuz)) {
		t.Error("two packages share one cache dir")
	}
}

func TestLoadMetapackage(t *testing.T) {
	dir, cache := t.TempDir(), t.TempDir()
	meta := writeMetaDeb(t, dir, testVer)
	_, err := Load(context.Background(), meta, Options{CacheDir: cache})
	if err == nil || !strings.Contains(err.Error(), "apt-get download linux-image-"+testVer) {
		t.Fatalf("metapackage alone: error %v, want one naming linux-image-%s", err, testVer)
	}
	deb := writeKernelDeb(t, dir, testVer, "xz")
	k, err := Load(context.Background(), meta, Options{CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	assertKernel(t, k, testVer)
	if k.Source != meta || k.Package != filepath.Base(deb) {
		t.Errorf("Source, Package = %q, %q; want %q, %q", k.Source, k.Package, meta, filepath.Base(deb))
	}
}

func TestLoadDir(t *testing.T) {
	root := t.TempDir()
	fakekernel.WriteTree(t, root, kernelFiles(testVer))
	fakekernel.WriteTree(t, root, kernelFiles("6.1.0-100-test-amd64"))
	// An image without modules is ignored.
	fakekernel.WriteTree(t, root, map[string][]byte{"boot/vmlinuz-9.9.9": fakekernel.Image("9.9.9")})
	k, err := Load(context.Background(), root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	assertKernel(t, k, "6.1.0-100-test-amd64")
	if k.Source != root || k.Package != "" {
		t.Errorf("Source, Package = %q, %q", k.Source, k.Package)
	}
}

func TestLoadVmlinuz(t *testing.T) {
	root := t.TempDir()
	fakekernel.WriteTree(t, root, kernelFiles(testVer))
	img := filepath.Join(root, "boot", "vmlinuz-"+testVer)
	plain := filepath.Join(t.TempDir(), "bzImage") // no version in the name
	if err := os.WriteFile(plain, fakekernel.Image(testVer), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, img, mods string }{
		{"version dir", img, filepath.Join(root, "lib/modules", testVer)},
		{"parent dir", img, filepath.Join(root, "lib/modules")},
		{"bzImage name", plain, filepath.Join(root, "lib/modules")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			k, err := Load(context.Background(), tt.img, Options{ModulesDir: tt.mods})
			if err != nil {
				t.Fatal(err)
			}
			if k.Version != testVer || k.Vmlinuz != tt.img || k.ModulesDir != filepath.Join(root, "lib/modules", testVer) {
				t.Errorf("got %+v", k)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	root := t.TempDir()
	fakekernel.WriteTree(t, root, kernelFiles(testVer))
	fakekernel.WriteTree(t, root, kernelFiles("5.10.0-1-other"))
	img := filepath.Join(root, "boot", "vmlinuz-"+testVer)

	good := writeKernelDeb(t, t.TempDir(), testVer, "xz")
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	truncated := write("truncated.deb", data[:len(data)/2])
	badHeader := write("badhdr.deb", append([]byte("!<arch>\nxxxxxxxx"), make([]byte, 80)...))
	noData := write("nodata.deb", []byte(strings.Replace(string(data), "data.tar.xz", "dxxx.tar.xz", 1)))
	corruptData := write("corrupt.deb", corruptMember(t, data))
	unsafe := filepath.Join(dir, "unsafe.deb")
	fakekernel.Deb(t, unsafe, control("x", ""), map[string][]byte{"boot/../../../etc/evil": []byte("x")}, "gz")
	emptyDir := t.TempDir()

	tests := []struct {
		name, src, mods string
		want            []string
	}{
		{"missing", filepath.Join(dir, "nope.deb"), "", []string{"nope.deb", "no such file"}},
		{"truncated", truncated, "", []string{"truncated.deb", "data.tar.xz"}},
		{"bad ar header", badHeader, "", []string{"badhdr.deb", "ar header"}},
		{"no data.tar", noData, "", []string{"nodata.deb", "no data.tar"}},
		{"corrupt data", corruptData, "", []string{"corrupt.deb", "data.tar"}},
		{"unsafe path", unsafe, "", []string{"unsafe path"}},
		{"empty dir", emptyDir, "", []string{"no boot/vmlinuz-*"}},
		{"vmlinuz without modules", img, "", []string{"--modules lib/modules/" + testVer}},
		{"vmlinuz with wrong modules", img, filepath.Join(root, "lib/modules/5.10.0-1-other"), []string{"does not match", testVer}},
		{"vmlinuz with no tree", img, emptyDir, []string{"no module tree"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(context.Background(), tt.src, Options{CacheDir: t.TempDir(), ModulesDir: tt.mods})
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// corruptMember flips bytes in the middle of the last ar member (data.tar.xz).
func corruptMember(t *testing.T, deb []byte) []byte {
	t.Helper()
	out := append([]byte(nil), deb...)
	i := strings.LastIndex(string(out), "data.tar.xz")
	if i < 0 {
		t.Fatal("no data.tar.xz member")
	}
	for j := i + 60 + 40; j < i+60+200 && j < len(out); j++ {
		out[j] ^= 0x5a
	}
	return out
}

func TestDefault(t *testing.T) {
	ctx := context.Background()
	t.Run("nothing", func(t *testing.T) {
		t.Setenv(EnvKernel, "")
		_, err := Default(ctx, Options{CacheDir: t.TempDir()})
		for _, w := range []string{"apt-get download linux-image-cloud-amd64", "make kernel", EnvKernel} {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("error %v does not mention %q", err, w)
			}
		}
	})
	t.Run("env", func(t *testing.T) {
		root := t.TempDir()
		fakekernel.WriteTree(t, root, kernelFiles(testVer))
		t.Setenv(EnvKernel, root)
		k, err := Default(ctx, Options{CacheDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		assertKernel(t, k, testVer)
	})
	t.Run("cache", func(t *testing.T) {
		t.Setenv(EnvKernel, "")
		cache := t.TempDir()
		pkgs := filepath.Join(cache, "kernel")
		if err := os.MkdirAll(pkgs, 0o755); err != nil {
			t.Fatal(err)
		}
		writeMetaDeb(t, pkgs, "6.1.0-10-test-amd64")
		writeKernelDeb(t, pkgs, "6.1.0-9-test-amd64", "xz")
		writeKernelDeb(t, pkgs, "6.1.0-10-test-amd64", "xz")
		k, err := Default(ctx, Options{CacheDir: cache})
		if err != nil {
			t.Fatal(err)
		}
		assertKernel(t, k, "6.1.0-10-test-amd64")
	})
	t.Run("per arch", func(t *testing.T) {
		t.Setenv(EnvKernel, "")
		cache := t.TempDir()
		pkgs := filepath.Join(cache, "kernel")
		if err := os.MkdirAll(pkgs, 0o755); err != nil {
			t.Fatal(err)
		}
		writeKernelDeb(t, pkgs, "6.1.0-10-test-amd64", "xz")
		writeKernelDeb(t, pkgs, "6.1.0-10-test-arm64", "xz")
		for _, arch := range []string{"amd64", "arm64"} {
			k, err := Default(ctx, Options{CacheDir: cache, Arch: arch})
			if err != nil {
				t.Fatal(err)
			}
			assertKernel(t, k, "6.1.0-10-test-"+arch)
		}
		_, err := Default(ctx, Options{CacheDir: cache, Arch: "riscv64"})
		if !errors.Is(err, ErrNoKernel) || !strings.Contains(err.Error(), "apt-get download linux-image-cloud-riscv64:riscv64") {
			t.Errorf("riscv64: got %v, want ErrNoKernel naming the riscv64 package", err)
		}
	})
}

func TestCompareNatural(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"6.1.0-9", "6.1.0-10", -1},
		{"6.10", "6.9", 1},
		{"6.1.0-56-cloud", "6.1.0-56-cloud", 0},
		{"a", "ab", -1},
		{"linux-image-6.1.0-007", "linux-image-6.1.0-7", 0},
	}
	for _, tt := range tests {
		if got := compareNatural(tt.a, tt.b); got != tt.want {
			t.Errorf("compareNatural(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
		if got := compareNatural(tt.b, tt.a); got != -tt.want {
			t.Errorf("compareNatural(%q, %q) = %d, want %d", tt.b, tt.a, got, -tt.want)
		}
	}
}

func TestArch(t *testing.T) {
	dir := t.TempDir()
	bz := make([]byte, 0x400)
	copy(bz[0x202:], "HdrS")
	arm := make([]byte, 0x100)
	copy(arm[0x38:], "ARM\x64")
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(arm)
	zw.Close()
	for name, tc := range map[string]struct {
		data []byte
		want string
	}{"bzImage": {bz, "amd64"}, "Image": {arm, "arm64"}, "Image.gz": {gz.Bytes(), "arm64"}, "junk": {[]byte("not a kernel"), ""}} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, tc.data, 0o644)
		got, err := Arch(p)
		if got != tc.want || (tc.want == "") != (err != nil) {
			t.Errorf("Arch(%s) = %q, %v; want %q", name, got, err, tc.want)
		}
	}
}
