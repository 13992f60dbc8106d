package guestinit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/ttrpc"
	"github.com/moby/sys/user"
	"golang.org/x/sys/unix"

	"github.com/c2vm/c2vm/agent"
	"github.com/c2vm/c2vm/bootcfg"
)

// The agent (package agent) is served on the virtio-serial port bootcfg.AgentPortName for the VM's
// whole life, beside the workload. Exec runs `runc exec` in the workload's container, so a process
// gets the container's namespaces, cgroup, rootfs, seccomp profile and capabilities, and its
// environment, user and working directory unless the request replaces them (docker exec's
// semantics). Nothing the agent does can end the workload: the step is optional, the server runs
// in goroutines that recover from panics, and its children are reaped by the run step's loop,
// which hands their statuses over (children).

// execDir holds each exec's runc log and pid file.
const execDir = "/run/c2vm/exec"

// runcExecFailedStatus is runc exec's exit status when it fails itself (runc run's is
// runcFailedStatus).
const runcExecFailedStatus = 255

// agentRetry is the pause before the port is opened again after the host end went away.
const agentRetry = 250 * time.Millisecond

// stepAgent starts serving the agent when the VM has an agent port, or over vsock when the host
// serves the channels there (the agent's vsock port is then always listened on: the guest cannot
// tell whether the host will dial); otherwise it does nothing.
func stepAgent(ctx context.Context, st *State) error {
	var l net.Listener
	if p, ok := st.Ports[bootcfg.AgentPortName]; ok {
		l = &portListener{st: st, path: p}
	} else if channelsOverVsock(st) {
		port, _ := bootcfg.VsockPort(bootcfg.AgentPortName)
		var err error
		if l, err = vsockListen(port); err != nil {
			return fmt.Errorf("agent: %w", err)
		}
	} else {
		return nil
	}
	if err := st.Sys.MkdirAll(execDir, 0o700); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	srv, err := ttrpc.NewServer(ttrpc.WithUnaryServerInterceptor(recoverPanics))
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	agent.RegisterAgentService(srv, newAgentServer(st))
	goSafe(st, "agent", func() {
		err := srv.Serve(ctx, l)
		st.Debugf("agent: %v", err)
	})
	return nil
}

// recoverPanics turns a panic in a handler (a bug) into that call's error: PID 1 must not die.
func recoverPanics(ctx context.Context, u ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo, m ttrpc.Method) (resp interface{}, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("agent: %s: panic: %v", info.FullMethod, r)
		}
	}()
	return m(ctx, u)
}

// agentServer implements agent.AgentService in the guest.
type agentServer struct {
	st *State

	mu    sync.Mutex
	procs map[string]*execProc
}

// execProc is one process started by Exec.
type execProc struct {
	pid     int    // runc exec's
	pidFile string // the process's own pid, written by runc
	log     string // runc's log
	stdin   *os.File
	stdout  *os.File // the terminal's master with a tty
	stderr  *os.File // nil with a tty
	tty     bool
	stdinMu sync.Mutex
	exited  chan struct{}
	status  int
}

func newAgentServer(st *State) *agentServer {
	return &agentServer{st: st, procs: map[string]*execProc{}}
}

func (a *agentServer) proc(id string) (*execProc, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	p, ok := a.procs[id]
	if !ok {
		return nil, fmt.Errorf("no process %q", id)
	}
	return p, nil
}

// Exec starts `runc exec` in the workload's container with the request's process.
func (a *agentServer) Exec(_ context.Context, r *agent.ExecRequest) (*agent.ExecResponse, error) {
	st := a.st
	c := st.Cfg.Container
	if r.Id == "" || strings.ContainsAny(r.Id, "/\x00") || len(r.Args) == 0 {
		return nil, errors.New("exec: want an id (no '/') and a command")
	}
	if _, err := st.Sys.Stat(path.Join(runcRoot, c.ID, "state.json")); err != nil {
		return nil, errors.New("exec: the workload's container is not running")
	}
	p := &execProc{
		pidFile: path.Join(execDir, r.Id+".pid"), log: path.Join(execDir, r.Id+".log"),
		tty: r.Tty, exited: make(chan struct{}),
	}
	argv := []string{runcPath, "--root", runcRoot, "--log", p.log, "--log-format", "json", "exec", "--pid-file", p.pidFile}
	if r.Tty {
		argv = append(argv, "--tty")
	}
	if r.Cwd != "" {
		argv = append(argv, "--cwd", r.Cwd)
	}
	for _, e := range r.Env {
		argv = append(argv, "--env", e)
	}
	if r.User != "" {
		u, err := a.resolveUser(r.User)
		if err != nil {
			return nil, fmt.Errorf("exec: %w", err)
		}
		argv = append(argv, "--user", fmt.Sprintf("%d:%d", u.Uid, u.Gid))
		for _, g := range u.Sgids {
			argv = append(argv, "--additional-gids", strconv.Itoa(g))
		}
	}
	argv = append(append(argv, c.ID), r.Args...)

	a.mu.Lock()
	defer a.mu.Unlock()
	if _, dup := a.procs[r.Id]; dup {
		return nil, fmt.Errorf("exec: process %q exists", r.Id)
	}
	child, err := p.openStdio(st.Sys, r)
	defer closeAll(child)
	if err != nil {
		p.close()
		return nil, fmt.Errorf("exec: %w", err)
	}
	pid, exited, err := st.children().start(func() (int, error) { return st.Sys.StartProcess(argv, child) })
	if err != nil {
		p.close()
		return nil, fmt.Errorf("exec: start runc: %w", err)
	}
	p.pid = pid
	a.procs[r.Id] = p
	goSafe(st, "exec "+r.Id, func() {
		ws := <-exited
		status := ExitCode(ws)
		if status == runcExecFailedStatus || status == runcFailedStatus {
			if data, err := st.Sys.ReadFile(p.log); err == nil {
				if code := classifyRuncLog(data); code != 0 {
					status = code
				}
			}
		}
		p.status = status
		close(p.exited)
	})
	return &agent.ExecResponse{Pid: uint32(pid)}, nil
}

// openStdio makes the process's stdio: pipes (stdin only when asked, else /dev/null), or a
// terminal. It returns the child's ends, which the caller closes once runc has them.
func (p *execProc) openStdio(sys System, r *agent.ExecRequest) ([]*os.File, error) {
	if r.Tty {
		m, s, err := sys.OpenPTY()
		if err != nil {
			return nil, fmt.Errorf("terminal: %w", err)
		}
		p.stdout = m
		if r.Rows > 0 && r.Cols > 0 {
			sys.SetWinsize(m, uint16(r.Rows), uint16(r.Cols))
		}
		if r.Stdin {
			p.stdin = m
		}
		return []*os.File{s, s, s}, nil
	}
	var child []*os.File
	if r.Stdin {
		cr, w, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		p.stdin, child = w, append(child, cr)
	} else {
		null, err := sys.OpenFile("/dev/null", os.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, err
		}
		child = append(child, null)
	}
	for _, out := range []**os.File{&p.stdout, &p.stderr} {
		pr, cw, err := os.Pipe()
		if err != nil {
			return child, err
		}
		*out, child = pr, append(child, cw)
	}
	return child, nil
}

func (p *execProc) close() {
	for _, f := range []*os.File{p.stdin, p.stdout, p.stderr} {
		if f != nil {
			f.Close()
		}
	}
}

// resolveUser resolves a user as docker exec does, against the container's /etc/passwd and
// /etc/group.
func (a *agentServer) resolveUser(spec string) (*user.ExecUser, error) {
	root := path.Join(a.st.Cfg.Container.BundleDir, "rootfs")
	read := func(name string) io.Reader {
		data, err := a.st.Sys.ReadFile(path.Join(root, name))
		if err != nil {
			return nil
		}
		return bytes.NewReader(data)
	}
	u, err := user.GetExecUser(spec, &user.ExecUser{Home: "/"}, read("etc/passwd"), read("etc/group"))
	if err != nil {
		return nil, fmt.Errorf("unable to find user %s: %w", spec, err)
	}
	return u, nil
}

// Read returns the next bytes of one output, waiting for some.
func (a *agentServer) Read(_ context.Context, r *agent.ReadRequest) (*agent.ReadResponse, error) {
	p, err := a.proc(r.Id)
	if err != nil {
		return nil, err
	}
	f := p.stdout
	if r.Stream == agent.Stream_STDERR {
		f = p.stderr
	}
	if f == nil {
		return &agent.ReadResponse{Eof: true}, nil
	}
	n := int(r.Max)
	if n <= 0 || n > agent.MaxChunk {
		n = agent.MaxChunk
	}
	buf := make([]byte, n)
	n, err = f.Read(buf)
	if n > 0 {
		return &agent.ReadResponse{Data: buf[:n]}, nil
	}
	// A terminal's master reads EIO once the last holder of the slave closed it.
	if errors.Is(err, io.EOF) || errors.Is(err, unix.EIO) || errors.Is(err, os.ErrClosed) {
		return &agent.ReadResponse{Eof: true}, nil
	}
	return nil, fmt.Errorf("read %s: %w", r.Id, err)
}

// Write writes to the process's stdin.
func (a *agentServer) Write(_ context.Context, r *agent.WriteRequest) (*agent.WriteResponse, error) {
	p, err := a.proc(r.Id)
	if err != nil {
		return nil, err
	}
	p.stdinMu.Lock()
	defer p.stdinMu.Unlock()
	if p.stdin == nil {
		return nil, fmt.Errorf("write %s: no stdin", r.Id)
	}
	if _, err := p.stdin.Write(r.Data); err != nil {
		return nil, fmt.Errorf("write %s: %w", r.Id, err)
	}
	return &agent.WriteResponse{}, nil
}

// CloseStdin closes the process's stdin; with a terminal it sends the terminal's EOF (^D).
func (a *agentServer) CloseStdin(_ context.Context, r *agent.CloseStdinRequest) (*agent.CloseStdinResponse, error) {
	p, err := a.proc(r.Id)
	if err != nil {
		return nil, err
	}
	p.stdinMu.Lock()
	defer p.stdinMu.Unlock()
	if p.stdin != nil && p.tty {
		p.stdin.Write([]byte{4})
		p.stdin = nil
	} else if p.stdin != nil {
		p.stdin.Close()
		p.stdin = nil
	}
	return &agent.CloseStdinResponse{}, nil
}

// Resize sets the terminal's size and tells runc, which copies it to the container's terminal.
func (a *agentServer) Resize(_ context.Context, r *agent.ResizeRequest) (*agent.ResizeResponse, error) {
	p, err := a.proc(r.Id)
	if err != nil {
		return nil, err
	}
	if !p.tty {
		return nil, fmt.Errorf("resize %s: no terminal", r.Id)
	}
	if err := a.st.Sys.SetWinsize(p.stdout, uint16(r.Rows), uint16(r.Cols)); err != nil {
		return nil, fmt.Errorf("resize %s: %w", r.Id, err)
	}
	a.st.Sys.Kill(p.pid, unix.SIGWINCH)
	return &agent.ResizeResponse{}, nil
}

// Signal signals the process itself (its pid from runc's pid file), or runc exec, which forwards
// every signal but SIGKILL and SIGSTOP, before runc wrote the file.
func (a *agentServer) Signal(_ context.Context, r *agent.SignalRequest) (*agent.SignalResponse, error) {
	p, err := a.proc(r.Id)
	if err != nil {
		return nil, err
	}
	select {
	case <-p.exited:
		return nil, fmt.Errorf("signal %s: the process has exited", r.Id)
	default:
	}
	if err := a.st.Sys.Kill(p.mainPID(a.st.Sys), unix.Signal(r.Signal)); err != nil {
		return nil, fmt.Errorf("signal %s: %w", r.Id, err)
	}
	return &agent.SignalResponse{}, nil
}

// mainPID is the process's own pid from runc's pid file, or runc exec's before runc wrote it.
func (p *execProc) mainPID(sys System) int {
	if data, err := sys.ReadFile(p.pidFile); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && n > 1 {
			return n
		}
	}
	return p.pid
}

// killRounds bounds how often killTree looks for processes again (one may fork during a look).
const killRounds = 5

// killTree sends SIGKILL to an exec's whole process tree: its process group (runc makes the
// process a session and group leader), then every descendant and every process of its group or
// session found in /proc (the init is the VM's PID 1 and sees every process), again until none
// is left. Killing the process alone is not enough: runc exec copies the outputs until every
// holder of its pipes closed them, so a child (`sh -c 'sleep 100; ...'`) would hold the exec open.
func (a *agentServer) killTree(id string) error {
	p, err := a.proc(id)
	if err != nil {
		return err
	}
	sys := a.st.Sys
	root := p.mainPID(sys)
	sys.Kill(-root, unix.SIGKILL) // ESRCH when root leads no group
	for range killRounds {
		pids := processTree(readProcs(sys), root)
		if len(pids) == 0 {
			return nil
		}
		for _, pid := range pids {
			sys.Kill(pid, unix.SIGKILL)
		}
	}
	return fmt.Errorf("kill %s: processes still alive after %d rounds", id, killRounds)
}

// procStat is a process's line of /proc/PID/stat, the fields killTree needs.
type procStat struct {
	pid, ppid, pgrp, sid int
	zombie               bool
}

// readProcs reads every process's stat from /proc; processes that vanish meanwhile are skipped.
func readProcs(sys System) []procStat {
	ents, err := sys.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []procStat
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := sys.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// "pid (comm) state ppid pgrp session ...": comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(data, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(data[i+1:]))
		if len(f) < 4 {
			continue
		}
		s := procStat{pid: pid, zombie: f[0] == "Z" || f[0] == "X"}
		s.ppid, _ = strconv.Atoi(f[1])
		s.pgrp, _ = strconv.Atoi(f[2])
		s.sid, _ = strconv.Atoi(f[3])
		out = append(out, s)
	}
	return out
}

// processTree returns root and its live descendants, and the live processes of root's process
// group or session (those whose parent ended before: reparented, they are no longer
// descendants), sorted; never PID 1 or the caller.
func processTree(procs []procStat, root int) []int {
	kids := map[int][]int{}
	for _, p := range procs {
		kids[p.ppid] = append(kids[p.ppid], p.pid)
	}
	in := map[int]bool{}
	for todo := []int{root}; len(todo) > 0; {
		pid := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		if !in[pid] {
			in[pid] = true
			todo = append(todo, kids[pid]...)
		}
	}
	self := os.Getpid()
	var out []int
	for _, p := range procs {
		if (in[p.pid] || p.pgrp == root || p.sid == root) && !p.zombie && p.pid > 1 && p.pid != self {
			out = append(out, p.pid)
		}
	}
	slices.Sort(out)
	return out
}

// forget drops a process whose runc exec has not ended and closes the outputs, which ends
// their reads.
func (a *agentServer) forget(id string) {
	a.mu.Lock()
	p, ok := a.procs[id]
	delete(a.procs, id)
	a.mu.Unlock()
	if ok {
		p.close()
	}
}

// Wait waits for the process to end, returns its status and forgets it.
func (a *agentServer) Wait(ctx context.Context, r *agent.WaitRequest) (*agent.WaitResponse, error) {
	p, err := a.proc(r.Id)
	if err != nil {
		return nil, err
	}
	select {
	case <-p.exited:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	a.mu.Lock()
	delete(a.procs, r.Id)
	a.mu.Unlock()
	p.close()
	return &agent.WaitResponse{ExitStatus: uint32(p.status)}, nil
}

// SignalWorkload signals the workload's container (runc kill); signal 0 is its stop signal.
func (a *agentServer) SignalWorkload(_ context.Context, r *agent.SignalWorkloadRequest) (*agent.SignalWorkloadResponse, error) {
	sig := a.st.Cfg.Container.StopSignal
	if sig == "" {
		sig = defaultStopSignal
	}
	if r.Signal != 0 {
		sig = strconv.Itoa(int(r.Signal))
	}
	runcKill(a.st, sig)
	return &agent.SignalWorkloadResponse{}, nil
}

// Shutdown stops the workload: its stop signal, then SIGKILL after the timeout. The VM powers off
// when the workload has ended, as always.
func (a *agentServer) Shutdown(_ context.Context, r *agent.ShutdownRequest) (*agent.ShutdownResponse, error) {
	c := a.st.Cfg.Container
	timeout := time.Duration(r.TimeoutSeconds) * time.Second
	if timeout == 0 {
		timeout = time.Duration(c.StopTimeout) * time.Second
	}
	if timeout <= 0 {
		timeout = defaultStopTimeout
	}
	a.SignalWorkload(context.Background(), &agent.SignalWorkloadRequest{})
	goSafe(a.st, "shutdown", func() {
		<-a.st.Clock.After(timeout)
		runcKill(a.st, "KILL")
	})
	return &agent.ShutdownResponse{}, nil
}

// Stats reads the guest's memory and uptime and the container cgroup's use.
func (a *agentServer) Stats(context.Context, *agent.StatsRequest) (*agent.StatsResponse, error) {
	sys := a.st.Sys
	s := &agent.StatsResponse{}
	if data, err := sys.ReadFile("/proc/meminfo"); err == nil {
		s.MemTotalBytes = meminfoBytes(data, "MemTotal:")
		s.MemAvailableBytes = meminfoBytes(data, "MemAvailable:")
	}
	if data, err := sys.ReadFile("/proc/uptime"); err == nil {
		if f := strings.Fields(string(data)); len(f) > 0 {
			s.UptimeSeconds, _ = strconv.ParseFloat(f[0], 64)
		}
	}
	cg := a.cgroupDir()
	if cg == "" {
		return s, nil
	}
	read := func(name string) string {
		data, _ := sys.ReadFile(path.Join(cg, name))
		return strings.TrimSpace(string(data))
	}
	s.MemoryBytes, _ = strconv.ParseUint(read("memory.current"), 10, 64)
	s.MemoryLimitBytes, _ = strconv.ParseUint(read("memory.max"), 10, 64) // "max": 0
	s.Pids, _ = strconv.ParseUint(read("pids.current"), 10, 64)
	for _, l := range strings.Split(read("cpu.stat"), "\n") {
		if v, ok := strings.CutPrefix(l, "usage_usec "); ok {
			s.CpuUsageUsec, _ = strconv.ParseUint(v, 10, 64)
		}
	}
	return s, nil
}

// cgroupDir is the container's cgroup v2 directory from runc's state, or "".
func (a *agentServer) cgroupDir() string {
	data, err := a.st.Sys.ReadFile(path.Join(runcRoot, a.st.Cfg.Container.ID, "state.json"))
	if err != nil {
		return ""
	}
	var s struct {
		CgroupPaths map[string]string `json:"cgroup_paths"`
	}
	if json.Unmarshal(data, &s) != nil {
		return ""
	}
	return s.CgroupPaths[""]
}

// meminfoBytes returns a /proc/meminfo field ("MemTotal:       1024 kB") in bytes.
func meminfoBytes(data []byte, key string) uint64 {
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, key); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, _ := strconv.ParseUint(f[0], 10, 64)
				return n << 10
			}
		}
	}
	return 0
}

// children hands the statuses of processes the agent started over from the run step's reap
// loop, which waits for every child of PID 1.
type children struct {
	mu      sync.Mutex
	waiters map[int]chan unix.WaitStatus
}

// children returns the State's child registry, made on first use.
func (st *State) children() *children {
	st.childrenOnce.Do(func() { st.kids = &children{waiters: map[int]chan unix.WaitStatus{}} })
	return st.kids
}

// start runs startFn (which starts a child) and registers the child, both under the lock that
// deliver takes, so that a child that exits at once is not reaped before it is registered.
func (c *children) start(startFn func() (int, error)) (int, <-chan unix.WaitStatus, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	pid, err := startFn()
	if err != nil {
		return 0, nil, err
	}
	ch := make(chan unix.WaitStatus, 1)
	c.waiters[pid] = ch
	return pid, ch, nil
}

// deliver passes a reaped child's status to its waiter; other children's are dropped.
func (c *children) deliver(pid int, ws unix.WaitStatus) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if ch, ok := c.waiters[pid]; ok {
		ch <- ws
		delete(c.waiters, pid)
	}
}

// portListener hands ttrpc the agent port as a connection, again each time the last one ended
// (a virtio port reads EOF while the host end is not connected).
type portListener struct {
	st   *State
	path string

	mu  sync.Mutex
	cur chan struct{} // closed when the current connection is closed
}

func (l *portListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	cur := l.cur
	l.mu.Unlock()
	if cur != nil {
		<-cur
		l.st.Clock.Sleep(agentRetry)
	}
	f, err := l.st.Sys.OpenFile(l.path, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open agent port %s: %w", l.path, err)
	}
	done := make(chan struct{})
	l.mu.Lock()
	l.cur = done
	l.mu.Unlock()
	return &portConn{File: f, done: done}, nil
}

func (l *portListener) Close() error   { return nil }
func (l *portListener) Addr() net.Addr { return portAddr(l.path) }

// portConn is a virtio port as a net.Conn.
type portConn struct {
	*os.File
	done chan struct{}
	once sync.Once
}

func (c *portConn) Close() error {
	err := c.File.Close()
	c.once.Do(func() { close(c.done) })
	return err
}
func (c *portConn) LocalAddr() net.Addr  { return portAddr(c.Name()) }
func (c *portConn) RemoteAddr() net.Addr { return portAddr("host") }

type portAddr string

func (a portAddr) Network() string { return "virtio-serial" }
func (a portAddr) String() string  { return string(a) }

// vsockListen listens on a vsock port of the guest; a variable so that unit tests run without
// AF_VSOCK.
var vsockListen = listenVsock

// listenVsock is vsockListen on AF_VSOCK: a non-blocking socket held as a file, so that Accept
// waits in the runtime's poller and Close ends it.
func listenVsock(port uint32) (net.Listener, error) {
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("vsock socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrVM{CID: unix.VMADDR_CID_ANY, Port: port}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("vsock bind port %d: %w", port, err)
	}
	if err := unix.Listen(fd, 4); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("vsock listen port %d: %w", port, err)
	}
	return &vsockListener{f: os.NewFile(uintptr(fd), fmt.Sprintf("vsock:%d", port)), port: port}, nil
}

type vsockListener struct {
	f    *os.File
	port uint32
}

func (l *vsockListener) Accept() (net.Conn, error) {
	rc, err := l.f.SyscallConn()
	if err != nil {
		return nil, err
	}
	var nfd int
	var aerr error
	err = rc.Read(func(fd uintptr) bool {
		nfd, _, aerr = unix.Accept4(int(fd), unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK)
		return aerr != unix.EAGAIN
	})
	if err == nil {
		err = aerr
	}
	if err != nil {
		return nil, fmt.Errorf("vsock accept port %d: %w", l.port, err)
	}
	name := fmt.Sprintf("vsock:%d", l.port)
	return &portConn{File: os.NewFile(uintptr(nfd), name), done: make(chan struct{})}, nil
}

func (l *vsockListener) Close() error   { return l.f.Close() }
func (l *vsockListener) Addr() net.Addr { return portAddr(l.f.Name()) }
