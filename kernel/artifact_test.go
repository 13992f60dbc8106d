package kernel

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/c2vm/c2vm/internal/testkit/fakekernel"
)

// c2vmTree writes a fake c2vm kernel tree (no modules, a config) and returns its directory.
func c2vmTree(t *testing.T, version string) string {
	dir := t.TempDir()
	files := fakekernel.Files(version, nil, []string{"kernel/fs/overlayfs/overlay.ko"})
	files["boot/config-"+version] = []byte("CONFIG_MODULES=n\n")
	fakekernel.WriteTree(t, dir, files)
	return dir
}

func TestDescribeTree(t *testing.T) {
	dir := c2vmTree(t, "6.1.192-c2vm")
	tr, err := DescribeTree(dir, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	if tr.Version != "6.1.192-c2vm" || tr.Architecture != "amd64" || len(tr.Files) != 3 {
		t.Fatalf("tree %+v", tr)
	}
	if err := tr.Check("amd64"); err != nil {
		t.Errorf("a described tree fails its own check: %v", err)
	}
	if tr.Files[2].Name != "lib/modules/6.1.192-c2vm/modules.builtin" || tr.Files[2].Size != int64(len("kernel/fs/overlayfs/overlay.ko\n")) {
		t.Errorf("modules.builtin: %+v", tr.Files[2])
	}
	os.Remove(filepath.Join(dir, "boot", "config-6.1.192-c2vm"))
	if _, err := DescribeTree(dir, "amd64"); err == nil || !strings.Contains(err.Error(), "boot/config-6.1.192-c2vm") {
		t.Errorf("a tree without its config: %v", err)
	}
}

func TestTreeCheck(t *testing.T) {
	dir := c2vmTree(t, "6.1.0-c2vm")
	fakekernel.WriteTree(t, dir, map[string][]byte{"boot/vmlinuz-6.1.0-c2vm": fakekernel.ImageArm64()})
	good, err := DescribeTree(dir, "")
	if err != nil || good.Architecture != "arm64" {
		t.Fatalf("DescribeTree: %+v, %v; want the image's arm64", good, err)
	}
	if _, err := DescribeTree(dir, "amd64"); err == nil || !strings.Contains(err.Error(), "for arm64, not amd64") {
		t.Errorf("DescribeTree of an arm64 kernel as amd64: %v", err)
	}
	for _, tc := range []struct {
		name   string
		change func(*Tree)
		arch   string
		want   string
	}{
		{"other arch", func(*Tree) {}, "amd64", "for arm64, not amd64"},
		{"path as arch", func(tr *Tree) { tr.Architecture = "../../.bashrc" }, "", "architecture"},
		{"unknown arch", func(tr *Tree) { tr.Architecture = "s390x" }, "", "architecture"},
		{"schema", func(tr *Tree) { tr.SchemaVersion = 2 }, "", "schema version 2"},
		{"path in version", func(tr *Tree) { tr.Version = "../../etc" }, "", "not a plain release name"},
		{"slash in version", func(tr *Tree) { tr.Version = "6.1/x" }, "", "not a plain release name"},
		{"file outside the tree", func(tr *Tree) { tr.Files[1].Name = "../evil" }, "", "not a c2vm kernel's"},
		{"file missing", func(tr *Tree) { tr.Files = tr.Files[:2] }, "", "not a c2vm kernel's"},
		{"bad digest", func(tr *Tree) { tr.Files[0].SHA256 = "zz" }, "", "bad sha256"},
		{"huge", func(tr *Tree) { tr.Files[0].Size = 1 << 40 }, "", "size"},
		{"media type", func(tr *Tree) { tr.Files[0].MediaType = ConfigMediaType }, "", "media type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := *good
			tr.Files = append([]TreeFile(nil), good.Files...)
			tc.change(&tr)
			if err := tr.Check(tc.arch); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Check: %v, want %q", err, tc.want)
			}
		})
	}
}

func TestActivate(t *testing.T) {
	cache := t.TempDir()
	for _, d := range []string{"a", "b"} {
		dir := PulledDir(cache, d)
		fakekernel.WriteTree(t, dir, map[string][]byte{"boot/vmlinuz-6.1-" + d: fakekernel.Image("6.1-" + d), "lib/modules/6.1-" + d + "/modules.builtin": nil})
		if err := Activate(cache, "amd64", dir); err != nil {
			t.Fatal(err)
		}
		k, err := Load(t.Context(), C2VM, Options{CacheDir: cache, Arch: "amd64"})
		if err != nil || k.Version != "6.1-"+d {
			t.Fatalf("after activating %s: %+v, %v", d, k, err)
		}
	}
	if err := Activate(cache, "amd64", t.TempDir()); err == nil {
		t.Error("activated a directory outside the cache")
	}
	if err := Activate(cache, "../../evil", PulledDir(cache, "a")); err == nil {
		t.Error("activated a kernel under a path for an architecture")
	}
	if ents, _ := filepath.Glob(filepath.Join(cache, "kernel-c2vm", ".*")); len(ents) != 0 {
		t.Errorf("Activate left %v", ents)
	}
}
