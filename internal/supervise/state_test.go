package supervise

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestStoreNamesAndLookup(t *testing.T) {
	s := Store{Root: t.TempDir()}
	a, err := s.Create(Record{Name: "web", Created: time.Unix(1, 0)})
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Create(Record{Created: time.Unix(2, 0)})
	if err != nil {
		t.Fatal(err)
	}
	if b.Name != b.ID[:12] || len(a.ID) != 64 {
		t.Errorf("default name %q of %q", b.Name, b.ID)
	}
	if _, err := s.Create(Record{Name: "web"}); err == nil || !strings.Contains(err.Error(), "already in use") {
		t.Errorf("duplicate name: %v", err)
	}
	if _, err := s.Create(Record{Name: "-bad/name"}); err == nil {
		t.Error("invalid name accepted")
	}
	for _, tt := range []struct{ ref, want string }{
		{"web", a.ID}, {a.ID, a.ID}, {a.ID[:5], a.ID}, {b.Name, b.ID},
	} {
		r, err := s.Get(tt.ref)
		if err != nil || r.ID != tt.want {
			t.Errorf("Get(%q) = %v, %v; want %s", tt.ref, r, err, tt.want)
		}
	}
	if _, err := s.Get("zzz"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(zzz) = %v, want ErrNotFound", err)
	}
	all, _ := s.List()
	if len(all) != 2 || all[0].ID != b.ID {
		t.Errorf("List: %d records, newest first wanted", len(all))
	}
	if _, err := s.Update(a.ID, func(r *Record) { r.State, r.ExitCode = StateExited, 3 }); err != nil {
		t.Fatal(err)
	}
	if r, _ := s.Get("web"); r.State != StateExited || r.ExitCode != 3 {
		t.Errorf("after Update: %+v", r)
	}
	if err := s.Remove(a.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("web"); !errors.Is(err, ErrNotFound) {
		t.Errorf("after Remove: %v", err)
	}
}

func TestStatus(t *testing.T) {
	now := time.Unix(1000, 0)
	self := os.Getpid()
	for _, tt := range []struct {
		r    Record
		want string
	}{
		{Record{State: StateRunning, Pid: self, Started: now.Add(-5 * time.Second)}, "Up 5 seconds"},
		{Record{State: StateRunning, Pid: self, Started: now.Add(-3 * time.Minute)}, "Up 3 minutes"},
		{Record{State: StateExited, ExitCode: 137, Finished: now.Add(-time.Second)}, "Exited (137) 1 second ago"},
		{Record{State: StateRunning, Pid: 0}, "Dead (its supervisor process is gone)"},
	} {
		if got := tt.r.Status(now); got != tt.want {
			t.Errorf("Status(%+v) = %q, want %q", tt.r, got, tt.want)
		}
	}
}

// TestLogStreamsApart: stdout and stderr come back to their own writers, binary-safe, by line,
// with --tail and -t.
func TestLogStreamsApart(t *testing.T) {
	p := filepath.Join(t.TempDir(), "log.jsonl")
	l, err := OpenLog(p)
	if err != nil {
		t.Fatal(err)
	}
	l.now = func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }
	l.Writer("stdout").Write([]byte("one\ntwo\n\xff\x00bin"))
	l.Writer("stderr").Write([]byte("err\n"))
	l.Close()
	var out, errOut bytes.Buffer
	off, err := ReadLog(p, LogOptions{}, 0, &out, &errOut)
	if err != nil {
		t.Fatal(err)
	}
	if out.String() != "one\ntwo\n\xff\x00bin" || errOut.String() != "err\n" {
		t.Errorf("stdout %q stderr %q", out.String(), errOut.String())
	}
	if st, _ := os.Stat(p); off != st.Size() {
		t.Errorf("offset %d, file %d", off, st.Size())
	}
	out.Reset()
	errOut.Reset()
	ReadLog(p, LogOptions{Tail: 2, Timestamps: true}, 0, &out, &errOut)
	if out.String() != "2026-01-02T03:04:05Z \xff\x00bin" || errOut.String() != "2026-01-02T03:04:05Z err\n" {
		t.Errorf("tail 2 -t: stdout %q stderr %q", out.String(), errOut.String())
	}
}
