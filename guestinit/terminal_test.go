package guestinit

import (
	"github.com/c2vm/c2vm/bootcfg"
	"github.com/c2vm/c2vm/internal/fileutil"

	"io"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestParseWinsize(t *testing.T) {
	tests := []struct {
		line       string
		rows, cols uint16
		ok         bool
	}{
		{"winsize 33 77", 33, 77, true},
		{"winsize  1 65535 ", 1, 65535, true},
		{"winsize 33", 0, 0, false},
		{"winsize 33 77 1", 0, 0, false},
		{"winsize -1 77", 0, 0, false},
		{"winsize 33 65536", 0, 0, false},
		{"stop", 0, 0, false},
	}
	for _, tt := range tests {
		r, c, ok := bootcfg.ParseWinsize(tt.line)
		if r != tt.rows || c != tt.cols || ok != tt.ok {
			t.Errorf("ParseWinsize(%q) = %d, %d, %v; want %d, %d, %v", tt.line, r, c, ok, tt.rows, tt.cols, tt.ok)
		}
	}
}

func TestPtsDir(t *testing.T) {
	for ptmx, want := range map[string]string{"/dev/pts/ptmx": "/dev/pts", "/dev/ptmx": "/dev/pts"} {
		if got := ptsDir(ptmx); got != want {
			t.Errorf("ptsDir(%s) = %s, want %s", ptmx, got, want)
		}
	}
}

func TestSpecTerminal(t *testing.T) {
	tests := []struct {
		spec string
		want bool
		err  bool
	}{
		{`{"process":{"terminal":true,"args":["sh"]}}`, true, false},
		{`{"process":{"args":["sh"]}}`, false, false},
		{`{}`, false, true},                            // no process: nothing to run
		{`{"process":{"terminal":true}}`, false, true}, // an image without a command, none given
		{`[`, false, true},
	}
	for _, tt := range tests {
		got, err := specTerminal([]byte(tt.spec))
		if got != tt.want || (err != nil) != tt.err {
			t.Errorf("specTerminal(%s) = %v, %v; want %v, error %v", tt.spec, got, err, tt.want, tt.err)
		}
	}
}

func TestScanStopRequestsWinsize(t *testing.T) {
	to := make(chan string, 4)
	if err := scanStopRequests(strings.NewReader("winsize 24 80\r\nwinsizes 1 2\nstop\n"), to); err != nil {
		t.Fatal(err)
	}
	close(to)
	var got []string
	for r := range to {
		got = append(got, r)
	}
	if strings.Join(got, "|") != "winsize 24 80|stop" {
		t.Errorf("requests %q, want the winsize line and stop", got)
	}
}

// TestTerminalRelay runs the init's side of a workload terminal on a real pseudo-terminal: what is
// written to the slave (runc's side) reaches the stdout port, the stdin port reaches the slave, a
// winsize request sets the slave's size, and finish returns once the slave is closed.
func TestTerminalRelay(t *testing.T) {
	master, slave, err := openPTYAt("/dev/ptmx")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no pseudo-terminals: %v", err)
		}
		t.Skipf("no pseudo-terminals: %v", err) // locally only: CI fails above
	}
	stdinR, stdinW, _ := os.Pipe()
	stdoutR, stdoutW, _ := os.Pipe()
	defer stdinW.Close()
	term := &terminal{sys: &Linux{}, master: master, slave: slave, out: make(chan struct{})}
	term.relay([]*os.File{stdinR, stdoutW})
	files := term.stdio(nil)
	if len(files) != 3 || files[0] != slave || files[2] != slave {
		t.Fatalf("runc stdio %v, want the slave three times", files)
	}
	// The slave in raw mode, as runc sets it, so that bytes pass unchanged.
	if err := fileutil.Control(slave, func(fd int) error {
		tio, err := unix.IoctlGetTermios(fd, unix.TCGETS)
		if err != nil {
			return err
		}
		tio.Lflag &^= unix.ECHO | unix.ICANON
		tio.Oflag &^= unix.OPOST
		return unix.IoctlSetTermios(fd, unix.TCSETS, tio)
	}); err != nil {
		t.Fatal(err)
	}
	stdinW.Write([]byte("typed\n"))
	buf := make([]byte, 6)
	if _, err := io.ReadFull(slave, buf); err != nil || string(buf) != "typed\n" {
		t.Fatalf("slave read %q, %v; want the stdin port's bytes", buf, err)
	}
	term.request("winsize 33 77")
	var ws *unix.Winsize
	fileutil.Control(slave, func(fd int) (err error) { ws, err = unix.IoctlGetWinsize(fd, unix.TIOCGWINSZ); return err })
	if ws == nil || ws.Row != 33 || ws.Col != 77 {
		t.Errorf("slave size %+v, want 33x77", ws)
	}
	slave.Write([]byte("output"))
	term.started(0) // closes the init's slave: the last holder here
	done := make(chan struct{})
	go func() { term.finish(realClock{}); stdoutW.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("finish did not return after the slave closed")
	}
	got, _ := io.ReadAll(stdoutR)
	if string(got) != "output" {
		t.Errorf("stdout port got %q, want %q", got, "output")
	}
}
