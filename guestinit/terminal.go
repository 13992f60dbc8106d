package guestinit

import (
	"errors"

	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/c2vm/c2vm/bootcfg"
	"golang.org/x/sys/unix"
)

// A workload whose runtime spec asks for a terminal (process.terminal, `c2vm run -t`) gets one in
// two stages: the init opens a pseudo-terminal and gives its slave to runc as stdin, stdout and
// stderr; runc, running in the foreground, sees a terminal, makes it raw and relays it to the
// container's own pty (runc's documented foreground mode, no --console-socket needed). The init
// copies the master to the stdout port and the stdin port to the master, and sets the window size
// the host sends ("winsize ROWS COLS" on the status port), then signals runc with SIGWINCH, which
// makes runc copy the size to the container's pty.

const terminalDrain = 2 * time.Second

// specTerminal reports whether a runtime spec asks for a terminal.
func specTerminal(data []byte) (bool, error) {
	var s struct {
		Process *struct {
			Terminal bool     `json:"terminal"`
			Args     []string `json:"args"`
		} `json:"process"`
	}
	if err := json.Unmarshal(data, &s); err != nil {
		return false, fmt.Errorf("runtime spec: %w", err)
	}
	if s.Process == nil || len(s.Process.Args) == 0 {
		return false, errNoCommand
	}
	return s.Process.Terminal, nil
}

// errNoCommand: a bundle of an image without CMD or ENTRYPOINT, booted without a command.
var errNoCommand = errors.New("the image has no command and none was given: pass one (c2vm run BUNDLE -- COMMAND)")

// terminal is the init's side of the workload's terminal. A nil *terminal is no terminal: every
// method is then a no-op, so the run step reads the same either way.
type terminal struct {
	sys           System
	master, slave *os.File
	out           chan struct{} // closed when the master → stdout copy ended

	mu  sync.Mutex
	pid int // runc, once started
}

// startTerminal opens the workload's terminal when its runtime spec asks for one and starts
// copying between it and stdio (stdin, stdout; stderr is unused: a terminal has one output).
func startTerminal(st *State, stdio []*os.File) (*terminal, error) {
	if !st.Terminal {
		return nil, nil
	}
	m, s, err := st.Sys.OpenPTY()
	if err != nil {
		return nil, fmt.Errorf("terminal: %w", err)
	}
	t := &terminal{sys: st.Sys, master: m, slave: s, out: make(chan struct{})}
	t.relay(stdio)
	return t, nil
}

// relay starts copying the master to stdout (stdio[1]) and stdin (stdio[0]) to the master.
func (t *terminal) relay(stdio []*os.File) {
	go func() {
		defer close(t.out)
		io.Copy(stdio[1], t.master) // ends with EIO once runc, the last holder of the slave, exited
	}()
	go io.Copy(t.master, stdio[0]) // the host's keystrokes; /dev/null without -i
}

// stdio returns the files runc gets as fds 0, 1, 2: the terminal's slave, or files unchanged.
func (t *terminal) stdio(files []*os.File) []*os.File {
	if t == nil {
		return files
	}
	return []*os.File{t.slave, t.slave, t.slave}
}

// started records runc's pid and closes the init's copy of the slave, so that the master reads
// EOF (EIO) when runc ends.
func (t *terminal) started(pid int) {
	if t == nil {
		return
	}
	t.mu.Lock()
	t.pid = pid
	t.mu.Unlock()
	t.slave.Close()
}

// request handles a status-port line other than "stop": "winsize ROWS COLS" resizes the terminal.
func (t *terminal) request(line string) {
	if t == nil {
		return
	}
	rows, cols, ok := bootcfg.ParseWinsize(line)
	if !ok {
		return
	}
	if t.sys.SetWinsize(t.master, rows, cols) != nil {
		return
	}
	t.mu.Lock()
	pid := t.pid
	t.mu.Unlock()
	if pid > 0 {
		t.sys.Kill(pid, unix.SIGWINCH) // runc copies the new size to the container's pty
	}
}

// finish waits, bounded, until everything runc wrote reached the stdout port, then closes the
// master.
func (t *terminal) finish(clock Clock) {
	if t == nil {
		return
	}
	select {
	case <-t.out:
	case <-clock.After(terminalDrain):
	}
	t.master.Close()
}
