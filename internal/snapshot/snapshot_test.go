package snapshot

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/c2vm/c2vm/bundle"
	"github.com/c2vm/c2vm/internal/vm"
)

// fakeRun writes a bundle manifest, kernel, initrd and rootfs into a temporary directory and
// returns it with a VM config that boots them.
func fakeRun(t *testing.T) (string, vm.Config) {
	t.Helper()
	dir := t.TempDir()
	for name, data := range map[string]string{
		bundle.ManifestFile: `{"schemaVersion":1}`, "kernel": "kernel", "initrd.img": "initrd", "rootfs.img": "rootfs", "qemu": "qemu",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir, vm.Config{
		QEMU: filepath.Join(dir, "qemu"), Arch: "amd64", Accel: vm.AccelTCG,
		Kernel: filepath.Join(dir, "kernel"), Initrd: filepath.Join(dir, "initrd.img"),
		Disks:   []vm.Disk{{Path: filepath.Join(dir, "rootfs.img"), ReadOnly: true, Serial: "c2vm-rootfs"}},
		Network: &vm.Network{Forwards: []vm.Forward{{Proto: "tcp", HostPort: 8080, GuestPort: 80}}},
	}
}

func TestKeyFor(t *testing.T) {
	dir, base := fakeRun(t)
	baseKey, err := KeyFor(dir, base)
	if err != nil {
		t.Fatal(err)
	}
	if baseKey.Accel != "tcg" || baseKey.MemoryMiB != 512 || baseKey.CPUs != 1 {
		t.Errorf("key = %+v, want tcg, 512 MiB, 1 CPU read from the machine", baseKey)
	}
	tests := []struct {
		name   string
		change func(t *testing.T, cfg *vm.Config)
		same   bool
	}{
		{name: "memory", change: func(_ *testing.T, c *vm.Config) { c.MemoryMiB = 1024 }},
		{name: "cpus", change: func(_ *testing.T, c *vm.Config) { c.CPUs = 2 }},
		{name: "stdin port", change: func(_ *testing.T, c *vm.Config) { c.Stdin = os.Stdin }},
		{name: "no network", change: func(_ *testing.T, c *vm.Config) { c.Network = nil }},
		{name: "kernel contents", change: func(t *testing.T, c *vm.Config) { rewrite(t, c.Kernel, "kernel2") }},
		{name: "run initrd (per-run settings)", change: func(t *testing.T, c *vm.Config) { rewrite(t, c.Initrd, "initrd2") }},
		{name: "rootfs replaced", change: func(t *testing.T, c *vm.Config) { replace(t, c.Disks[0].Path, "rootfs") }},
		{name: "port forwards", same: true, change: func(_ *testing.T, c *vm.Config) {
			c.Network = &vm.Network{Forwards: []vm.Forward{{Proto: "udp", HostPort: 53, GuestPort: 53}}}
		}},
		{name: "initrd path, same contents", same: true, change: func(t *testing.T, c *vm.Config) {
			p := filepath.Join(t.TempDir(), "other.img")
			if err := os.WriteFile(p, []byte("initrd"), 0o600); err != nil {
				t.Fatal(err)
			}
			c.Initrd = p
		}},
		{name: "incoming", same: true, change: func(_ *testing.T, c *vm.Config) { c.Incoming = "/x/state" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, cfg := fakeRun(t)
			k1, err := KeyFor(dir, cfg)
			if err != nil {
				t.Fatal(err)
			}
			tt.change(t, &cfg)
			k2, err := KeyFor(dir, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if got := k1.Digest() == k2.Digest(); got != tt.same {
				t.Errorf("same key = %v, want %v\n%+v\n%+v", got, tt.same, k1, k2)
			}
		})
	}
	t.Run("writable disk", func(t *testing.T) {
		dir, cfg := fakeRun(t)
		cfg.Disks = append(cfg.Disks, vm.Disk{Path: cfg.Disks[0].Path})
		if _, err := KeyFor(dir, cfg); err == nil {
			t.Error("KeyFor accepted a writable disk")
		}
	})
}

func rewrite(t *testing.T, p, data string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// replace puts a new file with the same contents in place of p, as a new conversion does.
func replace(t *testing.T, p, data string) {
	t.Helper()
	tmp := p + ".new"
	rewrite(t, tmp, data)
	if err := os.Chtimes(tmp, time.Now(), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
}

// save makes a saved VM of key in s holding data.
func save(t *testing.T, s Store, key Key, data string) Saved {
	t.Helper()
	m, err := s.Begin(key)
	if err != nil || m == nil {
		t.Fatalf("Begin = %v, %v", m, err)
	}
	if err := os.WriteFile(m.Path(), []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Commit("7.2.22", time.Second); err != nil {
		t.Fatal(err)
	}
	got, ok, err := s.Lookup(key)
	if err != nil || !ok {
		t.Fatalf("Lookup after Commit = %v, %v", ok, err)
	}
	return got
}

func TestStore(t *testing.T) {
	key := Key{Version: keyVersion, UID: os.Getuid(), Bundle: "b", MemoryMiB: 512}
	s := Store{Dir: filepath.Join(t.TempDir(), "snapshots")}
	if _, ok, err := s.Lookup(key); ok || err != nil {
		t.Fatalf("Lookup in an empty store = %v, %v", ok, err)
	}
	saved := save(t, s, key, "state")
	for _, p := range []string{saved.State, filepath.Join(saved.Dir, metaFile)} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, %v; want 0600", p, fi.Mode().Perm(), err)
		}
	}
	if fi, err := os.Stat(s.Dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("%s: mode %v, %v; want 0700", s.Dir, fi.Mode().Perm(), err)
	}
	if m, err := s.Begin(key); m != nil || err != nil {
		t.Errorf("Begin with a saved VM = %v, %v; want nothing to make", m, err)
	}
	other := key
	other.MemoryMiB = 1024
	if _, ok, _ := s.Lookup(other); ok {
		t.Error("Lookup found a saved VM made with other memory")
	}
	if list, err := s.List(); err != nil || len(list) != 1 || list[0].Meta.Size != 5 {
		t.Errorf("List = %+v, %v", list, err)
	}
}

func TestStoreOneMaker(t *testing.T) {
	key := Key{Version: keyVersion, Bundle: "b"}
	s := Store{Dir: t.TempDir()}
	first, err := s.Begin(key)
	if err != nil || first == nil {
		t.Fatalf("first Begin = %v, %v", first, err)
	}
	if second, err := s.Begin(key); second != nil || err != nil {
		t.Fatalf("second Begin while the first makes it = %v, %v; want nothing to make", second, err)
	}
	first.Abort()
	third, err := s.Begin(key)
	if err != nil || third == nil {
		t.Fatalf("Begin after Abort = %v, %v", third, err)
	}
	third.Abort()
}

func TestStoreDamaged(t *testing.T) {
	tests := []struct {
		name   string
		damage func(t *testing.T, sv Saved)
	}{
		{"truncated", func(t *testing.T, sv Saved) {
			if err := os.Truncate(sv.State, 3); err != nil {
				t.Fatal(err)
			}
		}},
		{"changed", func(t *testing.T, sv Saved) { rewrite(t, sv.State, "STATE") }},
		{"readable by others", func(t *testing.T, sv Saved) {
			if err := os.Chmod(sv.State, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"state is a symlink", func(t *testing.T, sv Saved) {
			other := filepath.Join(t.TempDir(), "x")
			rewrite(t, other, "state")
			os.Remove(sv.State)
			if err := os.Symlink(other, sv.State); err != nil {
				t.Fatal(err)
			}
		}},
		{"record unreadable", func(t *testing.T, sv Saved) { rewrite(t, filepath.Join(sv.Dir, metaFile), "{") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := Key{Version: keyVersion, Bundle: tt.name}
			s := Store{Dir: t.TempDir()}
			sv := save(t, s, key, "state")
			tt.damage(t, sv)
			_, ok, err := s.Lookup(key)
			if ok || !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Lookup = %v, %v; want ErrCorrupt", ok, err)
			}
			if _, ok, err := s.Lookup(key); ok || err != nil {
				t.Errorf("second Lookup = %v, %v; want the damaged VM gone", ok, err)
			}
		})
	}
}
