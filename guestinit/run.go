package guestinit

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	"github.com/c2vm/c2vm/bootcfg"
	"golang.org/x/sys/unix"
)

const (
	runcRoot           = "/run/runc"
	defaultStopSignal  = "SIGTERM"
	defaultStopTimeout = 10 * time.Second
	portWriteTimeout   = 2 * time.Second
	// StopRequest is the line (on the status port) or message (Options.Stop) that asks the init
	// to stop the workload.
	StopRequest = bootcfg.StopLine
)

// stepRun runs the container with runc, reaps every child until runc exits, forwards stop
// requests, and records runc's exit status (the workload's, 128+N when it died of signal N).
func stepRun(_ context.Context, st *State) error {
	c := st.Cfg.Container
	files, err := openStdio(st)
	if err != nil {
		return err
	}
	defer closeAll(files)
	term, err := startTerminal(st, files)
	if err != nil {
		return err
	}
	protectFromOOM(st)
	argv := []string{runcPath, "--root", runcRoot, "--log", runcLog, "--log-format", "json", "run", "--bundle", c.BundleDir, c.ID}
	var pid int
	var early []string // requests the host sent before a ready point's go line
	if st.Cfg.ReadyPoint && term == nil {
		var status int
		if pid, early, status, err = startAtReadyPoint(st, files); err == nil && pid == 0 {
			st.ExitStatus = status // runc create failed
			return nil
		}
	} else {
		pid, err = st.Sys.StartProcess(argv, term.stdio(files))
	}
	term.started(pid)
	if err != nil {
		term.finish(st.Clock)
		return fmt.Errorf("start runc: %w", err)
	}
	st.Debugf("runc started, pid %d", pid)

	requests := make(chan string, 4)
	goSafe(st, "early requests", func() {
		for _, r := range early {
			requests <- r
		}
	})
	goSafe(st, "stop requests", func() { forward(st.Stop, requests) })
	if st.statusPort != nil {
		goSafe(st, "status port", func() { readStopRequests(st, st.statusPort, requests) })
	}
	done := make(chan struct{})
	defer close(done)
	s := stopper{
		clock:   st.Clock,
		signal:  c.StopSignal,
		timeout: time.Duration(c.StopTimeout) * time.Second,
		kill:    func(sig string) { runcKill(st, sig) },
		other:   term.request,
	}
	goSafe(st, "stopper", func() { s.run(requests, done) })

	ws, err := reap(st.Sys, pid, st.children().deliver)
	term.finish(st.Clock)
	if err != nil {
		return err
	}
	st.ExitStatus = execFailureStatus(st, ExitCode(ws))
	reportOOM(st)
	st.Debugf("runc exited: %d", st.ExitStatus)
	return nil
}

// ExitCode maps a wait status to the reported status: the exit code, or 128+N for signal N.
func ExitCode(ws unix.WaitStatus) int {
	switch {
	case ws.Exited():
		return ws.ExitStatus()
	case ws.Signaled():
		return 128 + int(ws.Signal())
	}
	return FailureStatus
}

// reap waits for every child (PID 1 inherits orphans) until pid exits, and passes the statuses of
// the others to other (the agent's processes).
func reap(sys System, pid int, other func(int, unix.WaitStatus)) (unix.WaitStatus, error) {
	for {
		wpid, ws, err := sys.Wait4()
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("wait for runc: %w", err)
		}
		if !ws.Exited() && !ws.Signaled() {
			continue
		}
		if wpid == pid {
			return ws, nil
		}
		other(wpid, ws)
	}
}

// openStdio opens the workload's stdin, stdout and stderr: their channels when present (see
// openChannel), else /dev/null for stdin and /dev/console for output.
func openStdio(st *State) ([]*os.File, error) {
	type spec struct {
		port, fallback string
		flag           int
	}
	var files []*os.File
	for _, s := range []spec{
		{bootcfg.StdinPortName, "/dev/null", os.O_RDONLY},
		{bootcfg.StdoutPortName, consolePath, os.O_WRONLY},
		{bootcfg.StderrPortName, consolePath, os.O_WRONLY},
	} {
		f, err := openChannel(st, s.port, s.fallback, s.flag)
		if err != nil {
			closeAll(files)
			return nil, fmt.Errorf("open workload stdio: %w", err)
		}
		files = append(files, f)
	}
	return files, nil
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

func forward(from <-chan string, to chan<- string) {
	if from == nil {
		return
	}
	for r := range from {
		to <- r
	}
}

// goSafe runs fn in a goroutine that cannot take PID 1 down: a panic there (a bug) is logged on the
// console instead of ending the init, which would panic the kernel and lose the exit status.
func goSafe(st *State, name string, fn func()) {
	go func() {
		defer func() {
			if r := recover(); r != nil {
				st.Console("c2vm-init: %s: panic: %v", name, r)
			}
		}()
		fn()
	}()
}

// readStopRequests reads lines from the status port and forwards them as stop requests. A read
// at EOF (the host end is not connected) is retried after a pause.
func readStopRequests(st *State, f io.Reader, to chan<- string) {
	for {
		if err := scanStopRequests(f, to); err != nil {
			st.Debugf("status port: %v", err)
			return
		}
		st.Clock.Sleep(250 * time.Millisecond)
	}
}

// scanStopRequests forwards each "stop" and "winsize ROWS COLS" line of r until EOF.
func scanStopRequests(r io.Reader, to chan<- string) error {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == StopRequest || strings.HasPrefix(line, bootcfg.WinsizeRequest+" ") {
			to <- line
		}
	}
	return sc.Err()
}

// runcKill asks runc to signal the container. The child is reaped by the run step's reap loop. A
// stop that comes while the container is still being created (the host may ask during boot) waits,
// bounded, for runc's state file: `runc kill` on a container that does not exist yet does nothing.
func runcKill(st *State, sig string) {
	state := path.Join(runcRoot, st.Cfg.Container.ID, "state.json")
	_ = st.poll(containerWait, func() (bool, error) { _, err := st.Sys.Stat(state); return err == nil, nil }) // kill anyway
	files, err := openStdio(&State{Sys: st.Sys})                                                              // no ports: /dev/null and the console
	if err != nil {
		st.Console("c2vm-init: stop: %v", err)
		return
	}
	defer closeAll(files)
	argv := []string{runcPath, "--root", runcRoot, "kill", st.Cfg.Container.ID, sig}
	if _, err := st.Sys.StartProcess(argv, files); err != nil {
		st.Console("c2vm-init: stop: runc kill %s: %v", sig, err)
	}
}

// containerWait bounds how long a stop request waits for the container to exist.
const containerWait = 5 * time.Second

// stopper turns stop requests into signals: the stop signal first, SIGKILL after the timeout or on
// a second request.
type stopper struct {
	clock   Clock
	signal  string
	timeout time.Duration
	kill    func(sig string)
	other   func(request string) // requests other than stop (terminal size); nil = ignored
}

func (s stopper) run(requests <-chan string, done <-chan struct{}) {
	sig, timeout := s.signal, s.timeout
	if sig == "" {
		sig = defaultStopSignal
	}
	if timeout <= 0 {
		timeout = defaultStopTimeout
	}
	var timer <-chan time.Time
	stopping := false
	for {
		select {
		case <-done:
			return
		case r := <-requests:
			if r != StopRequest {
				if s.other != nil {
					s.other(r)
				}
				continue
			}
			if stopping {
				s.kill("KILL")
				continue
			}
			stopping = true
			s.kill(sig)
			timer = s.clock.After(timeout)
		case <-timer:
			timer = nil
			s.kill("KILL")
		}
	}
}

// writeStatus writes to the status port, if any, with a time limit: a write blocks while the host
// end is not connected, and the init must never hang.
func (st *State) writeStatus(data []byte) error {
	f := st.statusPort
	if f == nil {
		return nil
	}
	errc := make(chan error, 1)
	go func() {
		_, err := f.Write(data)
		errc <- err
	}()
	select {
	case err := <-errc:
		return err
	case <-st.Clock.After(portWriteTimeout):
		return fmt.Errorf("write %s: timed out after %v", f.Name(), portWriteTimeout)
	}
}
