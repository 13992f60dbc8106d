package guestinit

import (
	"strings"
	"testing"
)

func TestClassifyRuncLog(t *testing.T) {
	entry := func(level, msg string) string {
		return `{"level":"` + level + `","msg":"` + msg + `","time":"2026-11-23T00:00:00Z"}` + "\n"
	}
	const start = `runc run failed: unable to start container process: error during container init: `
	tests := []struct {
		name, log string
		want      int
	}{
		{"not in PATH", entry("error", start+`exec: \"nope\": executable file not found in $PATH`), NotFoundStatus},
		{"absolute path missing", entry("error", start+`exec: \"/nope\": stat /nope: no such file or directory`), NotFoundStatus},
		{"no permission", entry("error", start+`exec: \"/etc/passwd\": permission denied`), CannotRunStatus},
		{"execve format", entry("error", start+`exec /bin/app: exec format error`), CannotRunStatus},
		{"mount source missing", entry("error", start+`error mounting \"/x\" to rootfs at \"/y\": stat /x: no such file or directory`), 0},
		{"warning only", entry("warning", start+`exec: \"nope\": executable file not found in $PATH`), 0},
		{"other failure", entry("error", `runc run failed: container with id exists: c2vm`), 0},
		{"not json", "exec: \"nope\": executable file not found\n", 0},
		{"empty", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := classifyRuncLog([]byte(tt.log)); got != tt.want {
				t.Errorf("classifyRuncLog(%s) = %d, want %d", tt.log, got, tt.want)
			}
		})
	}
}

func TestExecFailureStatus(t *testing.T) {
	f := newFake(t)
	st := &State{Sys: f, Clock: newClock()}
	if got := execFailureStatus(st, 1); got != 1 {
		t.Errorf("without a runc log: %d, want 1", got)
	}
	f.file(t, runcLog, `{"level":"error","msg":"runc run failed: unable to start container process: error during container init: exec: \"x\": executable file not found in $PATH"}`+"\n")
	for in, want := range map[int]int{1: NotFoundStatus, 0: 0, 2: 2, 137: 137} {
		if got := execFailureStatus(st, in); got != want {
			t.Errorf("execFailureStatus(%d) = %d, want %d (only runc's own failure, 1, is reclassified)", in, got, want)
		}
	}
}

func TestPatchSpecOOMScore(t *testing.T) {
	tests := []struct {
		spec, want string
	}{
		{`{"process":{"args":["sh"]}}`, `"oomScoreAdj": 0`},
		{`{"process":{"args":["sh"],"oomScoreAdj":500}}`, `"oomScoreAdj": 500`},
	}
	for _, tt := range tests {
		out, err := PatchSpec([]byte(tt.spec), SpecPatch{EtcDir: "/run/c2vm/etc"})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(out), tt.want) {
			t.Errorf("PatchSpec(%s):\n%s\nwant %s", tt.spec, out, tt.want)
		}
	}
}

func TestOOMReport(t *testing.T) {
	tests := []struct {
		name   string
		status int
		vmstat string
		want   bool
	}{
		{"killed after an OOM kill", 137, "pgfault 5\noom_kill 1\n", true},
		{"killed, no OOM kill", 137, "pgfault 5\noom_kill 0\n", false},
		{"exit 1 after an OOM kill", 1, "oom_kill 2\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			f.file(t, "/proc/vmstat", tt.vmstat)
			f.file(t, consolePath, "")
			st := &State{Sys: f, Clock: newClock(), ExitStatus: tt.status}
			reportOOM(st)
			got := strings.Contains(f.read(t, consolePath), "OOM killer")
			if got != tt.want {
				t.Errorf("OOM line printed: %v, want %v (console %q)", got, tt.want, f.read(t, consolePath))
			}
		})
	}
}
