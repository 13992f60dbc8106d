package bundle

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestNewStageRemovesStaleStages: NewStage names its stage as fileutil does and removes a killed
// conversion's stage of the same target, not a live one's (the full rules are tested in
// internal/fileutil).
func TestNewStageRemovesStaleStages(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	parent := t.TempDir()
	live, dead := strconv.Itoa(os.Getpid()), strconv.Itoa(cmd.Process.Pid)
	kept := map[string]bool{".b.c2vm-tmp-" + live + "-1": true, ".b.c2vm-tmp-" + dead + "-2": false}
	for name := range kept {
		if err := os.Mkdir(filepath.Join(parent, name), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s, err := NewStage(filepath.Join(parent, "b"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Abort()
	if want := ".b.c2vm-tmp-" + live + "-"; !strings.HasPrefix(filepath.Base(s.Dir), want) {
		t.Errorf("stage %s, want a name starting %s", s.Dir, want)
	}
	for name, want := range kept {
		if _, err := os.Stat(filepath.Join(parent, name)); (err == nil) != want {
			t.Errorf("%s: kept = %v, want %v", name, err == nil, want)
		}
	}
}
