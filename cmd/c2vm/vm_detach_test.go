package main

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/c2vm/c2vm/internal/supervise"
)

// Detached VMs in tests: run -d re-executes the test binary, which TestMain turns into `c2vm
// supervise ID`; the state root is a temporary directory (isolateState), and every supervisor
// still alive at the end is killed, its QEMU with it (cleanupDetached).

// isolateState points the state root at a fresh temporary directory for this test binary and the
// supervisors it starts. The directory is short: control sockets must fit in sun_path.
func isolateState() string {
	dir, err := os.MkdirTemp("", "c2vm-st-")
	if err != nil {
		panic(err)
	}
	os.Setenv(EnvStateDir, dir)
	return dir
}

// cleanupDetached kills every supervisor still alive in the state root and removes it.
func cleanupDetached(dir string) {
	st := supervise.Store{Root: dir}
	recs, _ := st.List()
	for _, r := range recs {
		if r.Alive() {
			syscall.Kill(r.Pid, syscall.SIGKILL)
			waitGone(r.Pid, 10*time.Second)
		}
	}
	os.RemoveAll(dir)
}

// waitGone waits until no process has pid (or it is a zombie), up to d; it reports whether so.
func waitGone(pid int, d time.Duration) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil || procState(string(data)) == "Z" {
			return true
		}
	}
	return false
}

// procState is the state field of a /proc/PID/stat line.
func procState(stat string) string {
	if i := strings.LastIndexByte(stat, ')'); i >= 0 {
		if f := strings.Fields(stat[i+1:]); len(f) > 0 {
			return f[0]
		}
	}
	return ""
}

// childrenNamed returns the pids of pid's children whose command name starts with prefix.
func childrenNamed(t *testing.T, pid int, prefix string) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(data)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < 0 {
			continue
		}
		f := strings.Fields(s[end+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) && strings.HasPrefix(s[open+1:end], prefix) {
			out = append(out, n)
		}
	}
	return out
}

// c2vmOK runs c2vm and fails the test unless it exits with want.
func c2vmOK(t *testing.T, want int, stdin string, args ...string) (string, string) {
	t.Helper()
	code, stdout, stderr := c2vm(t, stdin, args...)
	if code != want {
		t.Fatalf("c2vm %s: exit %d, want %d\nstdout: %.300q\nstderr: %q", strings.Join(args, " "), code, want, stdout, stderr)
	}
	return stdout, stderr
}

var idLine = regexp.MustCompile(`^[0-9a-f]{64}\n$`)

// TestVMDetached boots two detached VMs at once from one bundle and drives docker's lifecycle
// through them: ps, exec (stdio bytes apart, exit statuses, -u, -w, -e, -i, -t, 8 MiB of binary
// output), logs, kill -s, stop -t of a workload that ignores its stop signal, rm; and a supervisor
// killed with SIGKILL, which must leave no QEMU behind and show as dead in ps.
func TestVMDetached(t *testing.T) {
	dir := testBundle(t, "squashfs")
	// The workload ignores SIGTERM: stop must end it with SIGKILL after -t.
	stubborn := `trap "" TERM; echo started; echo oops >&2; exec sleep 1000000`
	a, b := "web-"+strconv.Itoa(os.Getpid()), "doomed-"+strconv.Itoa(os.Getpid())
	started := make(chan string, 2)
	for _, name := range []string{a, b} {
		go func() {
			code, stdout, stderr := c2vm(t, "", "run", "-d", "--name", name, dir, "--", stubborn)
			if code != 0 || !idLine.MatchString(stdout) {
				started <- "run -d " + name + ": exit " + strconv.Itoa(code) + " " + stdout + stderr
				return
			}
			started <- ""
		}()
	}
	for range 2 {
		if msg := <-started; msg != "" {
			t.Fatal(msg)
		}
	}
	t.Run("ps shows both", func(t *testing.T) {
		out, _ := c2vmOK(t, 0, "", "ps")
		for _, name := range []string{a, b} {
			if !regexp.MustCompile(`Up [^\n]*` + name).MatchString(out) {
				t.Errorf("ps: no running %s:\n%s", name, out)
			}
		}
		if _, stderr := c2vmOK(t, 125, "", "run", "-d", "--name", a, dir); !strings.Contains(stderr, "already in use") {
			t.Errorf("a second VM named %s: %q", a, stderr)
		}
	})
	t.Run("exec", func(t *testing.T) {
		for _, tt := range []struct {
			name           string
			stdin          string
			args           []string
			code           int
			stdout, stderr string
		}{
			{"stdio apart and status", "", []string{a, "sh", "-c", "printf 'out\\000'; printf err >&2; exit 3"}, 3, "out\x00", "err"},
			{"user", "", []string{"-u", "app", a, "id", "-un"}, 0, "app\n", ""},
			{"workdir", "", []string{"-w", "/etc", a, "pwd"}, 0, "/etc\n", ""},
			{"env", "", []string{"-e", "FOO=bar", a, "sh", "-c", "echo $FOO $GREETING"}, 0, "bar hi\n", ""},
			{"stdin", "line\n\x00\xff\xfe end", []string{"-i", a, "cat"}, 0, "line\n\x00\xff\xfe end", ""},
			{"not found", "", []string{a, "no-such-command"}, 127, "", ""},
			{"tty", "", []string{"-t", a, "sh", "-c", "[ -t 0 ] && [ -t 1 ] && echo tty; echo err >&2"}, 0, "tty\r\nerr\r\n", ""},
		} {
			t.Run(tt.name, func(t *testing.T) {
				code, stdout, stderr := c2vm(t, tt.stdin, append([]string{"exec"}, tt.args...)...)
				if code != tt.code || stdout != tt.stdout || (tt.code != 127 && stderr != tt.stderr) {
					t.Errorf("exec %q: exit %d, stdout %q, stderr %q; want %d, %q, %q", tt.args, code, stdout, stderr, tt.code, tt.stdout, tt.stderr)
				}
			})
		}
		t.Run("8 MiB binary", func(t *testing.T) {
			out, _ := c2vmOK(t, 0, "", "exec", a, "sh", "-c", "head -c 8388608 /dev/urandom > /tmp/blob && sha256sum /tmp/blob")
			want, _, _ := strings.Cut(out, " ")
			blob, _ := c2vmOK(t, 0, "", "exec", a, "cat", "/tmp/blob")
			sum := sha256.Sum256([]byte(blob))
			if len(blob) != 8<<20 || hex.EncodeToString(sum[:]) != want {
				t.Errorf("cat /tmp/blob: %d bytes, sha256 %x; want %d bytes, %s", len(blob), sum, 8<<20, want)
			}
		})
	})
	t.Run("logs", func(t *testing.T) {
		stdout, stderr := c2vmOK(t, 0, "", "logs", a)
		if stdout != "started\n" || stderr != "oops\n" {
			t.Errorf("logs: stdout %q, stderr %q", stdout, stderr)
		}
	})
	t.Run("kill -s TERM is ignored", func(t *testing.T) {
		c2vmOK(t, 0, "", "kill", "-s", "TERM", a)
		c2vmOK(t, 0, "", "exec", a, "true") // still running
	})
	t.Run("stop", func(t *testing.T) {
		begin := time.Now()
		c2vmOK(t, 0, "", "stop", "-t", "1", a)
		took := time.Since(begin)
		if took < time.Second || took > time.Second+supervise.StopGrace {
			t.Errorf("stop -t 1 took %v; want the stop timeout, then SIGKILL from the guest", took)
		}
		if out, _ := c2vmOK(t, 0, "", "wait", a); out != "137\n" {
			t.Errorf("wait after stop: %q, want 137 (SIGKILL)", out)
		}
		if out, _ := c2vmOK(t, 0, "", "ps", "-a"); !regexp.MustCompile(`Exited \(137\)[^\n]*` + a).MatchString(out) {
			t.Errorf("ps -a after stop:\n%s", out)
		}
		c2vmOK(t, 0, "", "rm", a)
		if code, _, _ := c2vm(t, "", "logs", a); code == 0 {
			t.Errorf("logs %s after rm: exit 0", a)
		}
	})
	t.Run("supervisor SIGKILLed", func(t *testing.T) {
		r, err := stateStore().Get(b)
		if err != nil {
			t.Fatal(err)
		}
		qemu := childrenNamed(t, r.Pid, "qemu-system")
		if len(qemu) != 1 {
			t.Fatalf("supervisor %d: QEMU children %v, want one", r.Pid, qemu)
		}
		syscall.Kill(r.Pid, syscall.SIGKILL)
		if !waitGone(qemu[0], 10*time.Second) {
			t.Fatalf("QEMU %d outlived its supervisor %d", qemu[0], r.Pid)
		}
		waitGone(r.Pid, 10*time.Second)
		if out, _ := c2vmOK(t, 0, "", "ps", "-a"); !regexp.MustCompile(`Dead[^\n]*` + b).MatchString(out) {
			t.Errorf("ps -a after the supervisor died:\n%s", out)
		}
		if _, stderr := c2vmOK(t, 125, "", "exec", b, "true"); !strings.Contains(stderr, "not running") {
			t.Errorf("exec into a dead VM: %q", stderr)
		}
		c2vmOK(t, 0, "", "rm", b)
	})
}
