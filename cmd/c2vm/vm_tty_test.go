package main

import (
	"github.com/c2vm/c2vm/internal/fileutil"

	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal pair of size rows x cols for driving `c2vm run -t` in-process.
func openPTY(t *testing.T, rows, cols uint16) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		require(t, "terminal", []string{"/dev/ptmx: " + err.Error()})
	}
	t.Cleanup(func() { m.Close() })
	var n int
	err = fileutil.Control(m, func(fd int) error {
		if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
			return err
		}
		var err error
		n, err = unix.IoctlGetInt(fd, unix.TIOCGPTN)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := fileutil.Control(s, func(fd int) error {
		return unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
	}); err != nil {
		t.Fatal(err)
	}
	return m, s
}

func termios(t *testing.T, f *os.File) unix.Termios {
	t.Helper()
	var tio *unix.Termios
	if err := fileutil.Control(f, func(fd int) (err error) { tio, err = unix.IoctlGetTermios(fd, unix.TCGETS); return err }); err != nil {
		t.Fatal(err)
	}
	return *tio
}

// syncBuffer collects output and signals each write.
type syncBuffer struct {
	mu    sync.Mutex
	b     strings.Builder
	wrote chan struct{}
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	s.b.Write(p)
	s.mu.Unlock()
	select {
	case s.wrote <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor waits until out contains want or the run ends.
func (s *syncBuffer) waitFor(t *testing.T, want string, done <-chan int) {
	t.Helper()
	timeout := time.After(120 * time.Second)
	for !strings.Contains(s.String(), want) {
		select {
		case <-s.wrote:
		case code := <-done:
			t.Fatalf("run ended (exit %d) before %q appeared; terminal: %q", code, want, s.String())
		case <-timeout:
			t.Fatalf("no %q on the terminal after 120s: %q", want, s.String())
		}
	}
}

// TestVMTerminal drives `c2vm run -it BUNDLE -- sh` through a pseudo-terminal as a person would:
// the shell must see the terminal's size, run a command, exit with the status typed, and c2vm must
// give the terminal back in its original mode.
func TestVMTerminal(t *testing.T) {
	dir := testBundle(t, "squashfs")
	master, slave := openPTY(t, 33, 77)
	before := termios(t, slave)
	out := &syncBuffer{wrote: make(chan struct{}, 1)}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			out.Write(buf[:n])
			if err != nil {
				return
			}
		}
	}()
	done := make(chan int, 1)
	go func() {
		done <- Main([]string{"c2vm", "run", "--timeout", "120s", "-it", "--entrypoint", "", dir, "--", "sh"}, slave, slave, slave)
	}()
	out.waitFor(t, "# ", done) // the shell's prompt
	if _, err := master.Write([]byte("stty size; echo $((6*7)); exit 5\r")); err != nil {
		t.Fatal(err)
	}
	var code int
	select {
	case code = <-done:
	case <-time.After(120 * time.Second):
		t.Fatalf("c2vm run -it did not end; terminal: %q", out.String())
	}
	got := strings.ReplaceAll(out.String(), "\r", "")
	if code != 5 || !strings.Contains(got, "\n33 77\n") || !strings.Contains(got, "\n42\n") {
		t.Errorf("exit %d, terminal %q; want exit 5 and lines \"33 77\" (stty size) and \"42\"", code, got)
	}
	if after := termios(t, slave); after != before {
		t.Errorf("terminal mode not restored:\nbefore %+v\nafter  %+v", before, after)
	}
}

// TestVMStdin checks that -i connects c2vm's stdin to the workload's (EOF included) and that without
// -i the workload's stdin is empty.
func TestVMStdin(t *testing.T) {
	dir := testBundle(t, "squashfs")
	tests := []struct {
		name  string
		flags []string
		want  string
	}{
		{"-i", []string{"-i"}, "line 1\nline 2\ncat: 0\n"},
		{"without -i", nil, "cat: 0\n"},
		{"-t without -i", []string{"-t"}, "tty\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			script := "cat; echo cat: $?"
			if tt.name == "-t without -i" {
				script = "test -t 0 && test -t 1 && echo tty"
			}
			args := append([]string{"run", "--timeout", "120s"}, tt.flags...)
			args = append(args, dir, "--", script)
			code, stdout, stderr := c2vm(t, "line 1\nline 2\n", args...)
			if code != 0 || stdout != tt.want {
				t.Errorf("exit %d stdout %q (stderr %q), want exit 0 stdout %q", code, stdout, stderr, tt.want)
			}
		})
	}
}

// TestVMExitContract checks docker's statuses for a workload that cannot start (127 not found, 126
// not executable, runc's message kept on stderr) and for one the OOM killer ends (137).
func TestVMExitContract(t *testing.T) {
	dir := testBundle(t, "squashfs")
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"not found", []string{"--entrypoint", "no-such-command", dir}, ExitNotFound, `exec: "no-such-command": executable file not found`},
		{"not executable", []string{"--entrypoint", "/etc/passwd", dir}, ExitCannotRun, `exec: "/etc/passwd": permission denied`},
		{"out of memory", []string{"--memory", "256", dir, "--", `exec awk 'BEGIN { s = "0123456789abcdef"; while (1) s = s s }'`},
			137, "killed by the kernel's OOM killer: it reached its memory limit"},
		// The workload fills its tmpfs upper (109 MB), then grows one buffer by small steps: its
		// cgroup's limit makes the OOM killer act within seconds (without it the whole guest reclaimed
		// for ~2 minutes, 3 runs of 3; alone it ends in ~12-15 s, beside another TCG VM it once took
		// over 60 s); --timeout 100 still ends the old hang first.
		{"upper full, then out of memory", []string{"--memory", "256", "--timeout", "100", dir, "--",
			`dd if=/dev/zero of=/fill bs=1M 2>/dev/null; head -c 150000000 /dev/zero | tr '\0' a | sort >/dev/null`},
			137, "killed by the kernel's OOM killer: it reached its memory limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel() // one TCG vCPU per VM: two cores run two
			_, stderr := runVM(t, tt.code, tt.args...)
			if !strings.Contains(stderr, tt.stderr) {
				t.Errorf("stderr = %q, want it to contain %q", stderr, tt.stderr)
			}
		})
	}
}

// TestVMStopSignal stops a workload with --stop-signal USR1: its PID 1 (a shell acting as a tiny
// init, since the PID 1 of a PID namespace cannot be killed from outside by any signal but SIGKILL)
// passes USR1 on to the real program, which dies of it, and c2vm exits 128+10.
func TestVMStopSignal(t *testing.T) {
	dir := testBundle(t, "squashfs")
	script := `sleep 1000 & child=$!; trap 'kill -USR1 $child' USR1; echo ready; wait $child; wait $child; s=$?; echo child $s; exit $s`
	code, stdout, stderr := stopWhenReady(t, "--stop-signal", "usr1", dir, "--", script)
	want := 128 + int(syscall.SIGUSR1)
	if code != want || stdout != "ready\nchild 138\n" {
		t.Fatalf("exit %d stdout %q (stderr %q), want exit %d stdout \"ready\\nchild 138\\n\"", code, stdout, stderr, want)
	}
}
