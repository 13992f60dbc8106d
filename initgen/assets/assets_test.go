package assets

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/c2vm/c2vm/initgen"
)

func writeAssets(t *testing.T, dir string, names ...string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(n), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// The lib-dir tests call fromLibDirs, which Find uses when nothing is embedded, so that they run
// in the c2vm_embed test run too.

func TestFindLibDir(t *testing.T) {
	dir := t.TempDir()
	writeAssets(t, dir, InitName, RuncName)
	t.Setenv(EnvLibDir, dir)
	a, err := fromLibDirs(runtime.GOARCH)
	if err != nil {
		t.Fatal(err)
	}
	if a.Where != dir || a.Init.Source != filepath.Join(dir, InitName) || a.Runc.Source != filepath.Join(dir, RuncName) ||
		a.Init.Data != nil || a.Runc.Data != nil {
		t.Errorf("Find = %+v", a)
	}
}

// TestFindLibDirGuest: the guest archive beside the binaries is used unless either binary is newer.
func TestFindLibDirGuest(t *testing.T) {
	dir := t.TempDir()
	writeAssets(t, dir, InitName, RuncName, GuestName)
	t.Setenv(EnvLibDir, dir)
	old := time.Now().Add(-time.Hour)
	for _, n := range []string{InitName, RuncName} {
		if err := os.Chtimes(filepath.Join(dir, n), old, old); err != nil {
			t.Fatal(err)
		}
	}
	a, err := fromLibDirs(runtime.GOARCH)
	if err != nil || a.Guest.Source != filepath.Join(dir, GuestName) {
		t.Fatalf("Find = %+v, %v; want the guest archive", a, err)
	}
	var o initgen.Options
	a.Use(&o)
	if o.Guest.Source != a.Guest.Source || o.Init.Source != "" || o.Runc.Source != "" {
		t.Errorf("Use set %+v; want the guest archive only", o)
	}
	if err := os.Chtimes(filepath.Join(dir, RuncName), time.Now().Add(time.Hour), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if a, err := fromLibDirs(runtime.GOARCH); err != nil || a.Guest.Source != "" || a.Runc.Source == "" {
		t.Errorf("with runc rebuilt after the archive: Find = %+v, %v; want the binaries", a, err)
	}
}

func TestFindMissing(t *testing.T) {
	dir := t.TempDir()
	writeAssets(t, dir, InitName) // runc missing
	t.Setenv(EnvLibDir, dir)
	_, err := fromLibDirs(runtime.GOARCH)
	if err == nil {
		t.Fatal("no error")
	}
	for _, w := range []string{"make build", EnvLibDir, dir} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error is not one line: %q", err)
	}
}

// TestFindNextToExecutable puts the assets in ../lib/c2vm relative to the test binary.
func TestFindNextToExecutable(t *testing.T) {
	t.Setenv(EnvLibDir, "")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	exe, _ = filepath.EvalSymlinks(exe)
	lib := filepath.Join(filepath.Dir(exe), "..", "lib", "c2vm")
	if _, err := os.Stat(lib); err == nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s exists: a fresh checkout's test binary has no lib dir beside it", lib)
		}
		t.Skipf("%s exists already; not touching it", lib)
	}
	writeAssets(t, lib, InitName, RuncName)
	t.Cleanup(func() { os.RemoveAll(filepath.Join(filepath.Dir(exe), "..", "lib")) })
	a, err := fromLibDirs(runtime.GOARCH)
	if err != nil {
		t.Fatal(err)
	}
	if a.Where != lib || a.Runc.Source != filepath.Join(lib, RuncName) {
		t.Errorf("Find = %+v, want assets from %s", a, lib)
	}
}

// TestFindPerArch: <dir>/<arch>/ serves any architecture, <dir> itself only the host's.
func TestFindPerArch(t *testing.T) {
	dir := t.TempDir()
	other := "arm64"
	if runtime.GOARCH == "arm64" {
		other = "amd64"
	}
	writeAssets(t, dir, InitName, RuncName)
	t.Setenv(EnvLibDir, dir)
	if _, err := fromLibDirs(other); err == nil || !strings.Contains(err.Error(), other) {
		t.Errorf("Find(%s) with only host assets: got %v, want an error naming %s", other, err, other)
	}
	writeAssets(t, filepath.Join(dir, other), InitName, RuncName)
	a, err := fromLibDirs(other)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, other, InitName); a.Init.Source != want {
		t.Errorf("Find(%s).Init = %q, want %q", other, a.Init.Source, want)
	}
	if a, err := fromLibDirs(runtime.GOARCH); err != nil || a.Init.Source != filepath.Join(dir, InitName) {
		t.Errorf("Find(host) = %+v, %v; want the flat directory", a, err)
	}
}
