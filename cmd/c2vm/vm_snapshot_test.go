package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/c2vm/c2vm/internal/cachedir"
	"github.com/c2vm/c2vm/internal/snapshot"
)

// snapshotScript is the workload of the warm-start tests: its stdout and stderr, fresh random
// bytes, the guest's wall clock in seconds and a status of its own.
const snapshotScript = `echo out; echo err >&2; head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n'; echo; date +%s; exit 3`

// savedVMs lists the saved VMs in the test's cache.
func savedVMs(t *testing.T) []snapshot.Saved {
	t.Helper()
	cache, err := cachedir.Default()
	if err != nil {
		t.Fatal(err)
	}
	list, err := snapshot.Open(cache).List()
	if err != nil {
		t.Fatal(err)
	}
	return list
}

// stampedWriter records when each line arrived.
type stampedWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	times []time.Time
}

func (w *stampedWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for range bytes.Count(b, []byte("\n")) {
		w.times = append(w.times, time.Now())
	}
	return w.buf.Write(b)
}

// warmOutput splits snapshotScript's stdout into the lines that must be the same in every run,
// the random bytes and the guest's clock.
func warmOutput(t *testing.T, stdout string) (fixed, random string, clock int64) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if len(lines) != 3 || len(lines[1]) != 32 {
		t.Fatalf("stdout %q: want out, 16 random bytes in hex, the clock", stdout)
	}
	clock, err := strconv.ParseInt(lines[2], 10, 64)
	if err != nil {
		t.Fatalf("stdout %q: the clock: %v", stdout, err)
	}
	return lines[0], lines[1], clock
}

// TestVMSnapshot covers warm starts on the busybox bundle: a run with --snapshot auto boots and
// saves the VM; runs with --snapshot only restore it, with the same output and status, fresh
// random bytes each and the host's clock; a run with other memory has no saved VM; a damaged saved
// VM is reported once and the run boots; concurrent first runs save one VM.
func TestVMSnapshot(t *testing.T) {
	dir := testBundle(t, "squashfs")
	t.Setenv("XDG_CACHE_HOME", t.TempDir()) // the bundle is converted: the run needs no kernel cache
	args := []string{"--snapshot", "auto", dir, "--", snapshotScript}

	coldOut, coldErr := runVM(t, 3, args...)
	fixed, coldRandom, _ := warmOutput(t, coldOut)
	saved := savedVMs(t)
	if len(saved) != 1 {
		t.Fatalf("after the first run with --snapshot auto: %d saved VMs, want 1", len(saved))
	}
	state := saved[0].State
	fi, err := os.Stat(state)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("saved VM %s: %v, mode %v; want 0600", state, err, fi.Mode().Perm())
	}
	t.Logf("saved VM: %d MB, guest paused %v", saved[0].Meta.Size>>20, saved[0].Meta.SaveTime)

	t.Run("other memory is not used", func(t *testing.T) {
		code, _, stderr := c2vm(t, "", "run", "--snapshot", "only", "--memory", "600", dir, "--", snapshotScript)
		if code == 0 || code == 3 || !strings.Contains(stderr, "no saved VM matches") {
			t.Errorf("--snapshot only with other --memory: exit %d, stderr %q; want no saved VM", code, stderr)
		}
	})

	var randoms []string
	for i := range 2 {
		var out stampedWriter
		var errb bytes.Buffer
		code := Main([]string{"c2vm", "run", "--timeout", "120s", "--snapshot", "only", dir, "--", snapshotScript}, strings.NewReader(""), &out, &errb)
		if code != 3 || errb.String() != coldErr {
			t.Fatalf("warm run %d: exit %d, stderr %q; want 3 and %q as cold", i, code, errb.String(), coldErr)
		}
		f, random, clock := warmOutput(t, out.buf.String())
		if f != fixed {
			t.Errorf("warm run %d: stdout %q, want %q as cold", i, f, fixed)
		}
		randoms = append(randoms, random)
		// The guest prints whole seconds: within 1 s of the host it is in (arrival-2 s, arrival+1 s).
		arrived := out.times[2]
		host := float64(arrived.UnixNano()) / 1e9
		gap := arrived.Sub(saved[0].Meta.Created)
		if d := host - float64(clock); d >= 2 || d <= -1 {
			t.Errorf("warm run %d: guest clock %d, host %.3f at arrival: off by more than 1 s (the save was %v earlier)", i, clock, host, gap.Round(time.Second))
		}
	}
	if randoms[0] == randoms[1] || randoms[0] == coldRandom {
		t.Errorf("random bytes of cold and warm runs %q, %q, %q: want all different", coldRandom, randoms[0], randoms[1])
	}

	t.Run("truncated falls back once", func(t *testing.T) {
		if err := os.Truncate(state, fi.Size()/2); err != nil {
			t.Fatal(err)
		}
		stdout, stderr := runVM(t, 3, args...)
		if f, _, _ := warmOutput(t, stdout); f != fixed {
			t.Errorf("stdout %q, want %q", f, fixed)
		}
		if n := strings.Count(stderr, "c2vm: warning: not using a saved VM"); n != 1 || !strings.HasSuffix(stderr, coldErr) {
			t.Errorf("stderr %q: want one warning, then %q", stderr, coldErr)
		}
		if got := savedVMs(t); len(got) != 1 || got[0].Meta.SHA256 == saved[0].Meta.SHA256 && got[0].Meta.Created.Equal(saved[0].Meta.Created) {
			t.Errorf("after the fallback: %d saved VMs; want the damaged one replaced", len(got))
		}
	})

	t.Run("state QEMU cannot load falls back once", func(t *testing.T) {
		sv := savedVMs(t)[0]
		garbage := bytes.Repeat([]byte("not a migration stream\n"), 4096)
		if err := os.WriteFile(sv.State, garbage, 0o600); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(garbage)
		sv.Meta.Size, sv.Meta.SHA256 = int64(len(garbage)), hex.EncodeToString(sum[:])
		meta, err := json.Marshal(sv.Meta)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(sv.Dir, "meta.json"), meta, 0o600); err != nil {
			t.Fatal(err)
		}
		stdout, stderr := runVM(t, 3, args...)
		if f, _, _ := warmOutput(t, stdout); f != fixed {
			t.Errorf("stdout %q, want %q", f, fixed)
		}
		if n := strings.Count(stderr, "c2vm: warning: not using a saved VM"); n != 1 || !strings.Contains(stderr, "could not be restored") {
			t.Errorf("stderr %q: want one warning that the restore failed", stderr)
		}
	})

	t.Run("input is not saved", func(t *testing.T) {
		in := []string{"run", "--timeout", "120s", "-i", "--snapshot", "auto", dir, "--", "cat"}
		for i, input := range []string{"first run's input\n", "second run's input\n"} {
			code, stdout, stderr := c2vm(t, input, in...)
			if code != 0 || stdout != input {
				t.Errorf("run %d with -i: exit %d, stdout %q (stderr %q); want %q", i, code, stdout, stderr, input)
			}
		}
	})

	t.Run("concurrent first runs save one", func(t *testing.T) {
		script := strings.Replace(snapshotScript, "echo out", "echo other", 1) // another key
		before := len(savedVMs(t))
		var wg sync.WaitGroup
		codes, outs := make([]int, 2), make([]string, 2)
		for i := range 2 {
			wg.Go(func() {
				codes[i], outs[i], _ = c2vm(t, "", "run", "--timeout", "240s", "--snapshot", "auto", dir, "--", script)
			})
		}
		wg.Wait()
		for i := range 2 {
			if f, _, _ := warmOutput(t, outs[i]); codes[i] != 3 || f != "other" {
				t.Errorf("run %d: exit %d, stdout %q", i, codes[i], outs[i])
			}
		}
		if after := len(savedVMs(t)); after != before+1 {
			t.Errorf("saved VMs: %d before, %d after two concurrent first runs; want one more", before, after)
		}
		entries, _ := filepath.Glob(filepath.Join(filepath.Dir(state), "..", "*", "state.tmp-*"))
		if len(entries) != 0 {
			t.Errorf("left behind: %v", entries)
		}
	})
}
