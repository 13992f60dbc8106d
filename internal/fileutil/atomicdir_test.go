package fileutil

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// entries lists dir's names (sorted).
func entries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestAtomicDir(t *testing.T) {
	errFill := errors.New("fill failed")
	tests := []struct {
		name     string
		existing string // content of target/old before, "" = no target
		opts     AtomicDirOptions
		fillErr  error
		want     string // content of the file found at the target afterwards, "" = no target
		wantFile string // its name
		wantErr  error
	}{
		{"new target", "", AtomicDirOptions{}, nil, "new", "f", nil},
		{"new target, synced", "", AtomicDirOptions{Sync: true}, nil, "new", "f", nil},
		{"fill fails: nothing appears", "", AtomicDirOptions{}, errFill, "", "", errFill},
		{"fill fails: existing target untouched", "old", AtomicDirOptions{}, errFill, "old", "old", errFill},
		{"existing target replaced (nil Keep)", "old", AtomicDirOptions{Sync: true}, nil, "new", "f", nil},
		{"Keep true keeps the target", "old", AtomicDirOptions{Keep: func(string) bool { return true }}, nil, "old", "old", nil},
		{"Keep false replaces it", "old", AtomicDirOptions{Keep: func(string) bool { return false }}, nil, "new", "f", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent := t.TempDir()
			target := filepath.Join(parent, "out")
			if tt.existing != "" {
				os.MkdirAll(target, 0o755)
				os.WriteFile(filepath.Join(target, "old"), []byte(tt.existing), 0o644)
			}
			err := AtomicDir(target, tt.opts, func(dir string) error {
				if !strings.HasPrefix(filepath.Base(dir), ".out.c2vm-tmp-"+strconv.Itoa(os.Getpid())+"-") || filepath.Dir(dir) != parent {
					t.Errorf("stage %s is not a hidden sibling of %s", dir, target)
				}
				if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
					return err
				}
				if err := os.WriteFile(filepath.Join(dir, "f"), []byte("new"), 0o644); err != nil {
					return err
				}
				return tt.fillErr
			})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if tt.want == "" {
				if _, err := os.Lstat(target); !os.IsNotExist(err) {
					t.Errorf("target exists after a failure: %v", err)
				}
			} else if b, err := os.ReadFile(filepath.Join(target, tt.wantFile)); err != nil || string(b) != tt.want {
				t.Errorf("target's %s = %q, %v; want %q", tt.wantFile, b, err, tt.want)
			}
			if got := entries(t, parent); !slices.Equal(got, []string{"out"}) && !(tt.want == "" && len(got) == 0) {
				t.Errorf("parent holds %v: stages left behind", got)
			}
			if fi, err := os.Stat(target); err == nil && tt.existing == "" && fi.Mode().Perm() != 0o755 {
				t.Errorf("mode %v, want 0755", fi.Mode().Perm())
			}
		})
	}
}

func TestCommitStagePerm(t *testing.T) {
	target := filepath.Join(t.TempDir(), "out")
	if err := AtomicDir(target, AtomicDirOptions{Perm: 0o700}, func(string) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(target); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("stat %v, %v; want mode 0700", fi, err)
	}
}

func TestReplaceDirPutsBack(t *testing.T) {
	parent := t.TempDir()
	target := filepath.Join(parent, "out")
	os.MkdirAll(target, 0o755)
	os.WriteFile(filepath.Join(target, "old"), nil, 0o644)
	// The new directory is missing: the rename fails and the target must be back in place.
	if err := ReplaceDir(filepath.Join(parent, "missing"), target); err == nil {
		t.Fatal("ReplaceDir of a missing directory succeeded")
	}
	if _, err := os.Stat(filepath.Join(target, "old")); err != nil {
		t.Fatalf("target not put back: %v", err)
	}
}

func TestReplaceSymlink(t *testing.T) {
	parent := t.TempDir()
	link := filepath.Join(parent, "amd64")
	for _, dest := range []string{"build-a", "build-b"} {
		if err := ReplaceSymlink(dest, link); err != nil {
			t.Fatal(err)
		}
		if got, err := os.Readlink(link); err != nil || got != dest {
			t.Fatalf("link -> %q, %v; want %s", got, err, dest)
		}
	}
	if got := entries(t, parent); !slices.Equal(got, []string{"amd64"}) {
		t.Errorf("parent holds %v, want only the link", got)
	}
}

// deadPID returns the PID of a process that has exited and been reaped.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

func TestMkdirStageRemovesStaleStages(t *testing.T) {
	parent := t.TempDir()
	target := filepath.Join(parent, "b")
	live, dead := strconv.Itoa(os.Getpid()), strconv.Itoa(deadPID(t))
	old := time.Now().Add(-StaleAge - time.Hour)
	dirs := []struct {
		name  string
		mtime time.Time // zero: now
		kept  bool
	}{
		{".b.c2vm-tmp-" + live + "-123", time.Time{}, true},      // a running process's
		{".b.c2vm-tmp-" + dead + "-456", time.Time{}, false},     // killed
		{".b.c2vm-tmp-" + dead + "-456.old", time.Time{}, false}, // killed while replacing
		{".b.c2vm-tmp-" + live + "-789", old, false},             // too old, whatever the PID
		{".b.c2vm-tmp-987654", time.Time{}, true},                // no PID: only the age counts
		{".b.c2vm-tmp-987654x", old, false},                      // no PID, old
		{".bb.c2vm-tmp-" + dead + "-1", time.Time{}, true},       // another target
		{".other.c2vm-tmp-" + dead + "-1", old, true},            // another target
		{"b.c2vm-tmp-" + dead + "-1", time.Time{}, true},         // not hidden: not ours
	}
	for _, d := range dirs {
		p := filepath.Join(parent, d.name)
		if err := os.MkdirAll(filepath.Join(p, "sub"), 0o755); err != nil {
			t.Fatal(err)
		}
		if !d.mtime.IsZero() {
			if err := os.Chtimes(p, d.mtime, d.mtime); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A file and a symlink with a stage name are never touched.
	for _, n := range []string{"-file", "-link"} {
		p := filepath.Join(parent, ".b.c2vm-tmp-"+dead+n)
		if n == "-file" {
			os.WriteFile(p, nil, 0o644)
		} else {
			os.Symlink(parent, p)
		}
	}
	stage, err := MkdirStage(target)
	if err != nil {
		t.Fatal(err)
	}
	if want := ".b.c2vm-tmp-" + live + "-"; !strings.HasPrefix(filepath.Base(stage), want) {
		t.Errorf("stage %s, want a name starting %s", stage, want)
	}
	for _, d := range dirs {
		_, err := os.Stat(filepath.Join(parent, d.name))
		if kept := err == nil; kept != d.kept {
			t.Errorf("%s: kept = %v, want %v", d.name, kept, d.kept)
		}
	}
	for _, n := range []string{"-file", "-link"} {
		if _, err := os.Lstat(filepath.Join(parent, ".b.c2vm-tmp-"+dead+n)); err != nil {
			t.Errorf("%s: %v", n, err)
		}
	}
}
