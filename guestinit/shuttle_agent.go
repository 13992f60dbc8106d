package guestinit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/c2vm/c2vm/agent"
	"github.com/c2vm/c2vm/agent/shuttle"
)

// shuttleAgentVersion is Hello.AgentVersion.
const shuttleAgentVersion = "c2vm"

const (
	// shuttleDialRetry is the pause between dials of the host (spindle's agent retries each second).
	shuttleDialRetry = time.Second
	// shuttlePoweroffDelay is the pause between PoweroffResult and the power off (spindle's agent's).
	shuttlePoweroffDelay = 100 * time.Millisecond
	// shuttleKillAfter is how long the idle process has after SIGTERM before SIGKILL.
	shuttleKillAfter = 3 * time.Second
	// shuttleDrain bounds how long output is read after a step's process ended: a background
	// process that inherited the pipes would otherwise hold the step open.
	shuttleDrain = 2 * time.Second
	// shuttleContainerWait bounds how long a step waits for the container to exist.
	shuttleContainerWait = 2 * time.Minute
)

// shuttleDial connects to the host's vsock port; a variable so that unit tests run without
// AF_VSOCK.
var shuttleDial = dialVsock

// stepShuttle starts spindle's agent in shuttle mode (see shuttle.go); otherwise it does nothing.
// It runs beside the workload, before the run step starts the container.
func stepShuttle(ctx context.Context, st *State) error {
	port, vport, on := shuttleMode(st)
	if !on {
		return nil
	}
	if err := st.Sys.MkdirAll(execDir, 0o700); err != nil {
		return fmt.Errorf("shuttle: %w", err)
	}
	s := &shuttleAgent{st: st, exec: newAgentServer(st), bootID: bootID(st)}
	goSafe(st, "shuttle", func() {
		conn, err := s.connect(ctx, port, vport)
		if err != nil {
			st.Console("c2vm-init: shuttle: %v", err)
			return
		}
		defer conn.Close()
		err = s.serve(ctx, conn, port != "")
		st.Console("c2vm-init: shuttle: %v", err)
	})
	return nil
}

// connect opens the virtio-serial port, or dials the host's vsock port every second until it
// answers.
func (s *shuttleAgent) connect(ctx context.Context, port string, vport uint32) (io.ReadWriteCloser, error) {
	if port != "" {
		f, err := s.st.Sys.OpenFile(port, os.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", port, err)
		}
		return f, nil
	}
	return dialRetry(ctx, s.st, shuttle.HostCID, vport)
}

// dialRetry dials vsock cid:port until it connects or ctx ends, pausing shuttleDialRetry between
// tries; the first failure is logged in debug mode.
func dialRetry(ctx context.Context, st *State, cid, port uint32) (io.ReadWriteCloser, error) {
	for i := 0; ; i++ {
		c, err := shuttleDial(cid, port)
		if err == nil {
			return c, nil
		}
		if i == 0 {
			st.Debugf("shuttle: dial vsock %d:%d: %v (retrying every %v)", cid, port, err, shuttleDialRetry)
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("dial vsock %d:%d: %w", cid, port, ctx.Err())
		}
		st.Clock.Sleep(shuttleDialRetry)
	}
}

// dialVsock is shuttleDial on AF_VSOCK.
func dialVsock(cid, port uint32) (io.ReadWriteCloser, error) {
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("vsock socket: %w", err)
	}
	if err := unix.Connect(fd, &unix.SockaddrVM{CID: cid, Port: port}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("vsock connect %d:%d: %w", cid, port, err)
	}
	return os.NewFile(uintptr(fd), fmt.Sprintf("vsock:%d:%d", cid, port)), nil
}

// bootID is the kernel's boot id, for Hello.
func bootID(st *State) string {
	data, _ := st.Sys.ReadFile("/proc/sys/kernel/random/boot_id")
	return strings.TrimSpace(string(data))
}

// shuttleAgent serves spindle's protocol on one connection.
type shuttleAgent struct {
	st     *State
	exec   *agentServer
	bootID string
	w      *shuttle.Writer
	seq    atomic.Uint64
	// poweroff is the power off after Poweroff (a variable for unit tests).
	poweroff func()
}

// serve sends Hello and answers requests until the connection ends. On a virtio-serial port
// (retryEOF), a read at EOF means the host end is not connected (yet): it is retried.
func (s *shuttleAgent) serve(ctx context.Context, conn io.ReadWriter, retryEOF bool) error {
	s.w = shuttle.NewWriter(conn)
	if err := s.w.Write(&shuttle.Message{ID: "hello", Hello: &shuttle.Hello{
		ProtocolVersion: shuttle.ProtocolVersion, AgentVersion: shuttleAgentVersion, BootID: s.bootID,
	}}); err != nil {
		return err
	}
	r := bufio.NewReader(conn)
	for {
		m, err := shuttle.ReadMessage(r)
		if err == io.EOF && retryEOF {
			s.st.Clock.Sleep(agentRetry)
			continue
		}
		if err == io.EOF {
			return errors.New("the host closed the connection")
		}
		if err != nil {
			return err // a framing error: the stream cannot be resynchronised
		}
		s.handle(ctx, m)
	}
}

// handle answers one request; steps run in their own goroutines (the host may run them
// concurrently, and Poweroff must be answered during one).
func (s *shuttleAgent) handle(ctx context.Context, m *shuttle.Message) {
	st := s.st
	switch {
	case m.Init != nil:
		st.Debugf("shuttle: init: job %q", m.Init.JobID)
	case m.ExecStart != nil:
		goSafe(st, "shuttle step "+m.ID, func() {
			exit := s.step(ctx, m.ID, m.ExecStart)
			s.send(&shuttle.Message{ID: m.ID, ExecExit: exit})
		})
	case m.CacheDrain != nil:
		s.send(&shuttle.Message{ID: m.ID, CacheDrainResult: &shuttle.CacheDrainResult{}})
	case m.Poweroff != nil:
		s.send(&shuttle.Message{ID: m.ID, PoweroffResult: &shuttle.PoweroffResult{}})
		goSafe(st, "shuttle poweroff", func() {
			st.Clock.Sleep(shuttlePoweroffDelay)
			if s.poweroff != nil {
				s.poweroff()
				return
			}
			stopIdle(st)
		})
	default:
		st.Console("c2vm-init: shuttle: warning: ignoring message %q (%s)", m.ID, m.Kind())
	}
}

// stopIdle ends the container's idle process (SIGTERM, then SIGKILL): the run step then reports
// its status and powers the VM off.
func stopIdle(st *State) {
	runcKill(st, "TERM")
	st.Clock.Sleep(shuttleKillAfter)
	runcKill(st, "KILL")
}

func (s *shuttleAgent) send(m *shuttle.Message) {
	if err := s.w.Write(m); err != nil {
		s.st.Debugf("shuttle: %v", err)
	}
}

// step runs one ExecStart in the container and returns its ExecExit; output is streamed as it
// comes.
func (s *shuttleAgent) step(ctx context.Context, id string, e *shuttle.ExecStart) *shuttle.ExecExit {
	st := s.st
	cannot := func(err error) *shuttle.ExecExit {
		return &shuttle.ExecExit{ExitCode: NotFoundStatus, Error: err.Error()}
	}
	if len(e.Argv) == 0 {
		return cannot(errors.New("exec: no command"))
	}
	u, err := s.exec.resolveUser(e.User)
	if err != nil {
		return cannot(fmt.Errorf("exec: %w", err))
	}
	if u.Uid == 0 || u.Gid == 0 {
		return cannot(fmt.Errorf("exec: refusing to run a step as root (user %q is uid %d gid %d)", e.User, u.Uid, u.Gid))
	}
	if err := s.waitContainer(); err != nil {
		return cannot(err)
	}
	pid := "shuttle-" + strconv.FormatUint(s.seq.Add(1), 10)
	req := &agent.ExecRequest{Id: pid, Args: e.Argv, Env: withImagePath(e.Env, s.imageEnv()), Cwd: e.Cwd, User: e.User}
	if _, err := s.exec.Exec(ctx, req); err != nil {
		return cannot(err)
	}
	p, err := s.exec.proc(pid)
	if err != nil {
		return cannot(err)
	}
	var wg sync.WaitGroup
	for _, out := range []agent.Stream{agent.Stream_STDOUT, agent.Stream_STDERR} {
		wg.Add(1)
		goSafe(st, "shuttle output "+id, func() {
			defer wg.Done()
			s.stream(ctx, id, pid, out)
		})
	}
	timedOut := false
	var deadline <-chan time.Time
	if e.TimeoutSeconds > 0 {
		deadline = st.Clock.After(time.Duration(e.TimeoutSeconds) * time.Second)
	}
	select {
	case <-p.exited:
	case <-deadline:
		timedOut = true
		if err := s.exec.killTree(pid); err != nil {
			st.Debugf("shuttle: step %s: %v", id, err)
		}
		// runc exec ends once every holder of its output pipes is gone; one that escaped the kill
		// (a new session, reparented) must not hold the step open.
		select {
		case <-p.exited:
		case <-st.Clock.After(shuttleDrain):
			st.Debugf("shuttle: step %s: runc exec still running after its tree was killed", id)
			s.exec.forget(pid) // closes the outputs: the readers end
			wg.Wait()
			return &shuttle.ExecExit{ExitCode: 128 + int32(unix.SIGKILL), TimedOut: true}
		}
	}
	drained := make(chan struct{})
	go func() { wg.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-st.Clock.After(shuttleDrain):
	}
	res, err := s.exec.Wait(ctx, &agent.WaitRequest{Id: pid}) // closes the outputs: the readers end
	wg.Wait()
	if err != nil {
		return cannot(err)
	}
	exit := &shuttle.ExecExit{ExitCode: int32(res.ExitStatus), TimedOut: timedOut}
	if msg := runcError(st, p.log); msg != "" && !timedOut {
		exit.Error = msg
		if exit.ExitCode == runcExecFailedStatus {
			exit.ExitCode = NotFoundStatus // runc could not start the process: spindle's agent's 127
		}
	}
	return exit
}

// stream sends one output of a step as ExecStdout or ExecStderr messages until EOF, as UTF-8
// (invalid bytes replaced; a character split between reads is kept whole).
func (s *shuttleAgent) stream(ctx context.Context, id, pid string, which agent.Stream) {
	var carry []byte
	for {
		r, err := s.exec.Read(ctx, &agent.ReadRequest{Id: pid, Stream: which, Max: agent.MaxChunk})
		if err != nil || r.Eof {
			if len(carry) > 0 {
				s.sendOutput(id, which, strings.ToValidUTF8(string(carry), "\uFFFD"))
			}
			return
		}
		data := append(carry, r.Data...)
		cut := len(data)
		for i := 1; i < utf8.UTFMax && i <= len(data); i++ { // an incomplete last character
			if c := data[len(data)-i]; utf8.RuneStart(c) {
				if !utf8.FullRune(data[len(data)-i:]) {
					cut = len(data) - i
				}
				break
			}
		}
		carry = append([]byte(nil), data[cut:]...)
		if cut > 0 {
			s.sendOutput(id, which, strings.ToValidUTF8(string(data[:cut]), "\uFFFD"))
		}
	}
}

func (s *shuttleAgent) sendOutput(id string, which agent.Stream, data string) {
	o := &shuttle.ExecOutput{Data: data}
	if which == agent.Stream_STDERR {
		s.send(&shuttle.Message{ID: id, ExecStderr: o})
	} else {
		s.send(&shuttle.Message{ID: id, ExecStdout: o})
	}
}

// waitContainer waits, bounded, for the container's state: a step may come while it is being
// created.
func (s *shuttleAgent) waitContainer() error {
	state := path.Join(runcRoot, s.st.Cfg.Container.ID, "state.json")
	err := s.st.poll(shuttleContainerWait, func() (bool, error) { _, err := s.st.Sys.Stat(state); return err == nil, nil })
	if err != nil {
		return fmt.Errorf("exec: the container did not start within %v", shuttleContainerWait)
	}
	return nil
}

// imageEnv is the container's process environment from the runtime spec.
func (s *shuttleAgent) imageEnv() []string {
	data, err := s.st.Sys.ReadFile(path.Join(s.st.Cfg.Container.BundleDir, "config.json"))
	if err != nil {
		return nil
	}
	var spec struct {
		Process struct {
			Env []string `json:"env"`
		} `json:"process"`
	}
	if json.Unmarshal(data, &spec) != nil {
		return nil
	}
	return spec.Process.Env
}

// withImagePath returns a step's env with the image's PATH directories the step's PATH lacks
// appended to it: spindle sends the PATH of its own (NixOS) images, and a step must still find
// the image's tools.
func withImagePath(env, image []string) []string {
	var imagePath string
	for _, e := range image {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			imagePath = v
		}
	}
	out := append([]string(nil), env...)
	for i, e := range out {
		v, ok := strings.CutPrefix(e, "PATH=")
		if !ok {
			continue
		}
		have := map[string]bool{}
		dirs := strings.Split(v, ":")
		for _, d := range dirs {
			have[d] = true
		}
		for _, d := range strings.Split(imagePath, ":") {
			if d != "" && !have[d] {
				dirs, have[d] = append(dirs, d), true
			}
		}
		out[i] = "PATH=" + strings.Join(dirs, ":")
	}
	return out
}

// runcError is the last error runc logged when it could not start a process, or "".
func runcError(st *State, log string) string {
	data, err := st.Sys.ReadFile(log)
	if err != nil {
		return ""
	}
	var msg string
	for _, l := range bytes.Split(data, []byte("\n")) {
		var e struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if json.Unmarshal(l, &e) == nil && e.Level == "error" && e.Msg != "" {
			msg = e.Msg
		}
	}
	return msg
}
