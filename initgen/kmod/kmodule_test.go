package kmod

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/u-root/u-root/pkg/kmodule"
)

// probeOrder writes mods' modules.dep into a fake root and lets u-root's kmodule (what the guest
// init uses) probe each of names in dry-run mode; it returns the module paths in load order,
// relative to the modules dir.
func probeOrder(t *testing.T, modulesDir, kver string, mods []Module, names []string) []string {
	t.Helper()
	root := t.TempDir()
	dst := filepath.Join(root, "lib", "modules", kver)
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	var dep bytes.Buffer
	if err := WriteDep(&dep, mods); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dst, "modules.dep"), dep.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var order []string
	p, err := kmodule.NewProber(kmodule.ProbeOpts{
		RootDir:        root,
		KVer:           kver,
		IgnoreProcMods: true,
		DryRunCB: func(path string) {
			mu.Lock()
			defer mu.Unlock()
			order = append(order, strings.TrimPrefix(path, dst+"/"))
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if err := p.Probe(n, ""); err != nil {
			t.Fatalf("kmodule Probe(%s): %v", n, err)
		}
	}
	return order
}

// assertLoadOrder checks that kmodule loaded every module of mods exactly once, each after the
// modules it depends on.
func assertLoadOrder(t *testing.T, mods []Module, order []string) {
	t.Helper()
	pos := map[string]int{}
	for i, p := range order {
		if _, dup := pos[p]; dup {
			t.Errorf("%s loaded twice", p)
		}
		pos[p] = i
	}
	byName := map[string]Module{}
	for _, m := range mods {
		byName[m.Name] = m
	}
	for _, m := range mods {
		i, ok := pos[m.Path]
		if !ok {
			t.Errorf("%s never loaded (order %q)", m.Path, order)
			continue
		}
		for _, d := range m.Depends {
			if j, ok := pos[byName[d].Path]; !ok || j > i {
				t.Errorf("%s loaded at %d before its dependency %s (at %d, loaded %v)", m.Name, i, d, j, ok)
			}
		}
	}
	if len(order) != len(mods) {
		t.Errorf("kmodule loaded %d modules, want %d: %q", len(order), len(mods), order)
	}
}

func TestKmoduleReadsModulesDep(t *testing.T) {
	dir := fakeTree(t)
	names := []string{"virtio_net", "erofs", "overlay", "virtio-rng"}
	mods, err := Closure(dir, names)
	if err != nil {
		t.Fatal(err)
	}
	assertLoadOrder(t, mods, probeOrder(t, dir, fakeVer, mods, names))
}
