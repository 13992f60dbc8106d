package bundle

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeStage(t *testing.T, s *Stage, files map[string]string) {
	t.Helper()
	for name, body := range files {
		if err := os.WriteFile(s.Path(name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCommitWritesManifestWithDigests(t *testing.T) {
	target := filepath.Join(t.TempDir(), "b")
	s, err := NewStage(target)
	if err != nil {
		t.Fatal(err)
	}
	writeStage(t, s, map[string]string{KernelFile: "k", InitrdFile: "initrd", "rootfs.squashfs": "fs"})
	if err := s.Commit(&Manifest{RootfsFormat: "squashfs"}); err != nil {
		t.Fatal(err)
	}
	m, err := Read(target)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Files) != 3 || m.Files[0].Name != InitrdFile || m.Files[1].Name != "rootfs.squashfs" || m.Files[2].Name != KernelFile {
		t.Fatalf("files = %+v, want initrd.img, rootfs.squashfs, vmlinuz", m.Files)
	}
	// sha256("k")
	if m.Files[2].SHA256 != "8254c329a92850f6d539dd376f4816ee2764517da5e0235514af433164480d7a" || m.Files[2].Size != 1 {
		t.Errorf("vmlinuz = %+v", m.Files[2])
	}
	if err := m.Verify(target); err != nil {
		t.Fatalf("verify: %v", err)
	}
	if err := os.WriteFile(filepath.Join(target, KernelFile), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := m.Verify(target); err == nil || !strings.Contains(err.Error(), "vmlinuz does not match") {
		t.Fatalf("verify after tampering: %v", err)
	}
	assertNoTemp(t, filepath.Dir(target))
}

func TestAbortLeavesExistingBundle(t *testing.T) {
	target := filepath.Join(t.TempDir(), "b")
	s, _ := NewStage(target)
	writeStage(t, s, map[string]string{KernelFile: "old"})
	if err := s.Commit(&Manifest{}); err != nil {
		t.Fatal(err)
	}
	s2, err := NewStage(target)
	if err != nil {
		t.Fatal(err)
	}
	writeStage(t, s2, map[string]string{KernelFile: "new, half written"})
	if err := s2.Abort(); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(filepath.Join(target, KernelFile))
	if string(got) != "old" {
		t.Fatalf("existing bundle changed: %q", got)
	}
	assertNoTemp(t, filepath.Dir(target))
}

func TestReplaceExistingBundle(t *testing.T) {
	target := filepath.Join(t.TempDir(), "b")
	for _, body := range []string{"one", "two"} {
		s, err := NewStage(target)
		if err != nil {
			t.Fatal(err)
		}
		writeStage(t, s, map[string]string{KernelFile: body})
		if err := s.Commit(&Manifest{}); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := os.ReadFile(filepath.Join(target, KernelFile))
	if string(got) != "two" {
		t.Fatalf("vmlinuz = %q, want the second bundle", got)
	}
	assertNoTemp(t, filepath.Dir(target))
}

func TestRefusesToReplaceNonBundle(t *testing.T) {
	parent := t.TempDir()
	target := filepath.Join(parent, "precious")
	os.Mkdir(target, 0o755)
	os.WriteFile(filepath.Join(target, "data"), []byte("keep"), 0o644)
	_, err := NewStage(target)
	if err == nil || !strings.Contains(err.Error(), "not a c2vm bundle") {
		t.Fatalf("stage over a non-bundle dir: %v (want the refusal before any work)", err)
	}
	if b, _ := os.ReadFile(filepath.Join(target, "data")); string(b) != "keep" {
		t.Fatal("non-bundle directory was changed")
	}
	assertNoTemp(t, parent)
}

func TestNewStageErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := NewStage(filepath.Join(dir, "missing", "b")); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing parent: %v", err)
	}
	f := filepath.Join(dir, "file")
	os.WriteFile(f, nil, 0o644)
	if _, err := NewStage(f); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("file target: %v", err)
	}
}

func TestReadErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Read(dir); err == nil || !strings.Contains(err.Error(), "not a c2vm bundle") {
		t.Errorf("empty dir: %v", err)
	}
	os.WriteFile(filepath.Join(dir, ManifestFile), []byte(`{"schemaVersion": 99}`), 0o644)
	if _, err := Read(dir); err == nil || !strings.Contains(err.Error(), "schema version 99") {
		t.Errorf("future schema: %v", err)
	}
}

// assertNoTemp checks that no staging directory is left in dir.
func assertNoTemp(t *testing.T, dir string) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".c2vm-tmp-") {
			t.Errorf("staging directory left behind: %s", e.Name())
		}
	}
}

func TestCheckFiles(t *testing.T) {
	valid := func(t *testing.T) (string, *Manifest) {
		dir := t.TempDir()
		for _, n := range []string{KernelFile, InitrdFile, "rootfs.squashfs"} {
			os.WriteFile(filepath.Join(dir, n), []byte(n), 0o644)
		}
		m := &Manifest{RootfsFormat: "squashfs"}
		m.Boot.Container.Rootfs.Format = "squashfs"
		return dir, m
	}
	tests := []struct {
		name string
		edit func(dir string, m *Manifest)
		want string
	}{
		{"valid", func(string, *Manifest) {}, ""},
		{"traversing format", func(_ string, m *Manifest) { m.RootfsFormat = "squashfs/../../etc/passwd" }, "unknown rootfs format"},
		{"format mismatch", func(_ string, m *Manifest) { m.RootfsFormat = "erofs" }, "boot config mounts"},
		{"symlinked rootfs", func(dir string, _ *Manifest) {
			os.Remove(filepath.Join(dir, "rootfs.squashfs"))
			os.Symlink("/etc/passwd", filepath.Join(dir, "rootfs.squashfs"))
		}, "rootfs.squashfs is not a regular file"},
		{"symlinked kernel", func(dir string, _ *Manifest) {
			os.Remove(filepath.Join(dir, KernelFile))
			os.Symlink("/etc/passwd", filepath.Join(dir, KernelFile))
		}, "vmlinuz is not a regular file"},
		{"missing initrd", func(dir string, _ *Manifest) { os.Remove(filepath.Join(dir, InitrdFile)) }, "initrd.img"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, m := valid(t)
			tt.edit(dir, m)
			err := m.CheckFiles(dir)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestEmptyDirectoryIsReplaced(t *testing.T) {
	target := filepath.Join(t.TempDir(), "b")
	os.Mkdir(target, 0o755)
	s, err := NewStage(target)
	if err != nil {
		t.Fatal(err)
	}
	writeStage(t, s, map[string]string{KernelFile: "k"})
	if err := s.Commit(&Manifest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(target); err != nil {
		t.Fatal(err)
	}
}
