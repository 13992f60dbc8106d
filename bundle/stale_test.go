package bundle

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// deadPID returns the PID of a process that has exited and been reaped.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

func TestNewStageRemovesStaleStages(t *testing.T) {
	parent := t.TempDir()
	target := filepath.Join(parent, "b")
	live, dead := strconv.Itoa(os.Getpid()), strconv.Itoa(deadPID(t))
	old := time.Now().Add(-StaleAge - time.Hour)
	dirs := []struct {
		name  string
		mtime time.Time // zero: now
		kept  bool
	}{
		{".b.c2vm-tmp-" + live + "-123", time.Time{}, true},      // a running convert
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
	if err := os.WriteFile(filepath.Join(parent, ".b.c2vm-tmp-"+dead+"-file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(parent, filepath.Join(parent, ".b.c2vm-tmp-"+dead+"-link")); err != nil {
		t.Fatal(err)
	}
	s, err := NewStage(target)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Abort()
	if want := ".b.c2vm-tmp-" + live + "-"; !strings.HasPrefix(filepath.Base(s.Dir), want) {
		t.Errorf("stage %s, want a name starting %s", s.Dir, want)
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
