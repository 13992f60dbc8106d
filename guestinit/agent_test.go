package guestinit

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	"golang.org/x/sys/unix"

	"github.com/c2vm/c2vm/agent"
	"github.com/c2vm/c2vm/bootcfg"
)

// procSystem is the fake System whose StartProcess also runs a simulated process on the files it
// was given (copies of them: the caller closes its own), which ends by handing its status to the
// State's child registry as the reap loop would.
type procSystem struct {
	*fakeSystem
	st  *State
	run func(stdio []*os.File) int // the process: returns its wait status
	wg  sync.WaitGroup
}

func (p *procSystem) StartProcess(argv []string, files []*os.File) (int, error) {
	pid, err := p.fakeSystem.StartProcess(argv, files)
	if err != nil || p.run == nil || !strings.Contains(strings.Join(argv, " "), " exec ") {
		return pid, err
	}
	var dup []*os.File
	for _, f := range files {
		fd, err := unix.Dup(int(f.Fd()))
		if err != nil {
			return 0, err
		}
		dup = append(dup, os.NewFile(uintptr(fd), f.Name()))
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		ws := p.run(dup)
		closeAll(dup)
		p.st.children().deliver(pid, unix.WaitStatus(ws))
	}()
	return pid, nil
}

const passwd = "root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1001:web:/home/web:/bin/sh\n"
const group = "root:x:0:\nweb:x:1001:\nextra:x:1002:web\n"

// newAgent returns an agent server on a fake whose workload's container exists.
func newAgent(t *testing.T, run func([]*os.File) int) (*agentServer, *procSystem) {
	t.Helper()
	f := newFake(t)
	f.file(t, "/run/runc/ctr/state.json", `{"cgroup_paths":{"":"/sys/fs/cgroup/ctr"}}`)
	f.file(t, "/bundle/rootfs/etc/passwd", passwd)
	f.file(t, "/bundle/rootfs/etc/group", group)
	ps := &procSystem{fakeSystem: f, run: run}
	st := &State{Sys: ps, Clock: newClock(), Cfg: &bootcfg.Config{Container: bootcfg.Container{ID: "ctr", BundleDir: "/bundle"}}}
	ps.st = st
	t.Cleanup(ps.wg.Wait)
	return newAgentServer(st), ps
}

func TestAgentExecArgv(t *testing.T) {
	const base = "start /sbin/runc --root /run/runc --log /run/c2vm/exec/e1.log --log-format json exec --pid-file /run/c2vm/exec/e1.pid"
	for _, tt := range []struct {
		name string
		req  *agent.ExecRequest
		want string
	}{
		{"plain", &agent.ExecRequest{Args: []string{"ls", "-l"}}, base + " ctr ls -l"},
		{"env cwd", &agent.ExecRequest{Args: []string{"env"}, Env: []string{"A=1", "B=2"}, Cwd: "/tmp"},
			base + " --cwd /tmp --env A=1 --env B=2 ctr env"},
		{"user name", &agent.ExecRequest{Args: []string{"id"}, User: "web"}, base + " --user 1000:1001 --additional-gids 1002 ctr id"},
		{"uid:gid", &agent.ExecRequest{Args: []string{"id"}, User: "5:6"}, base + " --user 5:6 ctr id"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a, ps := newAgent(t, func([]*os.File) int { return 0 })
			tt.req.Id = "e1"
			if _, err := a.Exec(context.Background(), tt.req); err != nil {
				t.Fatal(err)
			}
			if got := ps.callsWith("start "); len(got) != 1 || got[0] != tt.want {
				t.Errorf("calls %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestAgentExecRefused(t *testing.T) {
	for _, tt := range []struct {
		name, want string
		req        *agent.ExecRequest
		noCtr      bool
	}{
		{name: "no id", req: &agent.ExecRequest{Args: []string{"ls"}}, want: "want an id"},
		{name: "no command", req: &agent.ExecRequest{Id: "e1"}, want: "want an id"},
		{name: "unknown user", req: &agent.ExecRequest{Id: "e1", Args: []string{"id"}, User: "nobody2"}, want: "unable to find user nobody2"},
		{name: "not running", req: &agent.ExecRequest{Id: "e1", Args: []string{"ls"}}, noCtr: true, want: "container is not running"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a, ps := newAgent(t, nil)
			if tt.noCtr {
				os.Remove(ps.p("/run/runc/ctr/state.json"))
			}
			_, err := a.Exec(context.Background(), tt.req)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Exec = %v, want an error with %q", err, tt.want)
			}
			if calls := ps.callsWith("start "); len(calls) != 0 {
				t.Errorf("started %q", calls)
			}
		})
	}
}

// TestAgentExecStdio runs a process that echoes stdin to stdout, writes stderr apart, and exits
// with the table's status; the host side is package agent's Copy and Feed.
func TestAgentExecStdio(t *testing.T) {
	for _, tt := range []struct {
		name string
		ws   int
		log  string
		want uint32
	}{
		{name: "exit 3", ws: 3 << 8, want: 3},
		{name: "killed", ws: int(unix.SIGKILL), want: 137},
		{name: "not found", ws: 255 << 8, want: 127, // runc exec's own failure is 255
			log: `{"level":"error","msg":"exec failed: unable to start container process: exec: \"nope\": executable file not found in $PATH"}`},
		{name: "not found, status 1", ws: 1 << 8, want: 127,
			log: `{"level":"error","msg":"runc exec failed: unable to start container process: exec: \"nope\": executable file not found in $PATH"}`},
		{name: "runc failed otherwise", ws: 1 << 8, want: 1, log: `{"level":"error","msg":"something else"}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			a, ps := newAgent(t, func(stdio []*os.File) int {
				io.Copy(stdio[1], stdio[0])
				stdio[2].Write([]byte("to stderr\n"))
				return tt.ws
			})
			if tt.log != "" {
				ps.file(t, "/run/c2vm/exec/e1.log", tt.log+"\n")
			}
			if _, err := a.Exec(ctx, &agent.ExecRequest{Id: "e1", Args: []string{"cat"}, Stdin: true}); err != nil {
				t.Fatal(err)
			}
			if _, err := a.Exec(ctx, &agent.ExecRequest{Id: "e1", Args: []string{"cat"}}); err == nil {
				t.Error("a second exec with the same id: no error")
			}
			in := strings.Repeat("binary\x00\xff", 50000)
			var out, errOut strings.Builder
			errc := make(chan error, 3)
			go func() { errc <- agent.Feed(ctx, a, "e1", strings.NewReader(in)) }()
			go func() { errc <- agent.Copy(ctx, a, "e1", agent.Stream_STDOUT, &out) }()
			go func() { errc <- agent.Copy(ctx, a, "e1", agent.Stream_STDERR, &errOut) }()
			for range 3 {
				if err := <-errc; err != nil {
					t.Fatal(err)
				}
			}
			w, err := a.Wait(ctx, &agent.WaitRequest{Id: "e1"})
			if err != nil {
				t.Fatal(err)
			}
			if out.String() != in || errOut.String() != "to stderr\n" || w.ExitStatus != tt.want {
				t.Errorf("stdout %d bytes (same: %v), stderr %q, status %d; want %d bytes, \"to stderr\\n\", %d",
					out.Len(), out.String() == in, errOut.String(), w.ExitStatus, len(in), tt.want)
			}
			if _, err := a.Wait(ctx, &agent.WaitRequest{Id: "e1"}); err == nil {
				t.Error("Wait after Wait: the process was not forgotten")
			}
		})
	}
}

// TestAgentSignal: a signal goes to the process runc wrote in its pid file, else to runc exec.
func TestAgentSignal(t *testing.T) {
	release := make(chan struct{})
	a, ps := newAgent(t, func([]*os.File) int { <-release; return 0 })
	defer close(release)
	ctx := context.Background()
	r, err := a.Exec(ctx, &agent.ExecRequest{Id: "e1", Args: []string{"sleep", "9"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Signal(ctx, &agent.SignalRequest{Id: "e1", Signal: 15}); err != nil {
		t.Fatal(err)
	}
	ps.file(t, "/run/c2vm/exec/e1.pid", "4242")
	if _, err := a.Signal(ctx, &agent.SignalRequest{Id: "e1", Signal: 9}); err != nil {
		t.Fatal(err)
	}
	want := []string{"kill " + strconv.Itoa(int(r.Pid)) + " 15", "kill 4242 9"}
	if got := ps.callsWith("kill "); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("kills %q, want %q", got, want)
	}
	if _, err := a.Signal(ctx, &agent.SignalRequest{Id: "nope", Signal: 9}); err == nil {
		t.Error("signal of an unknown process: no error")
	}
}

// waitFor polls cond until it holds, for at most ten seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
	}
}

// TestAgentWorkloadSignals: runc kill with the stop signal, a number, and SIGKILL after a shutdown's
// timeout.
func TestAgentWorkloadSignals(t *testing.T) {
	a, ps := newAgent(t, nil)
	ps.file(t, "/dev/console", "")
	a.st.Cfg.Container.StopSignal = "SIGQUIT"
	clock := a.st.Clock.(*fakeClock)
	ctx := context.Background()
	a.SignalWorkload(ctx, &agent.SignalWorkloadRequest{})
	a.SignalWorkload(ctx, &agent.SignalWorkloadRequest{Signal: 10})
	a.Shutdown(ctx, &agent.ShutdownRequest{TimeoutSeconds: 3})
	timers := clock.waitAfters(t, 1)
	if timers[0].d.Seconds() != 3 {
		t.Errorf("shutdown timer %v, want 3s", timers[0].d)
	}
	timers[0].ch <- time.Time{}
	want := []string{"SIGQUIT", "10", "SIGQUIT", "KILL"}
	waitFor(t, func() bool { return len(ps.callsWith("start /sbin/runc --root /run/runc kill ")) == len(want) })
	for i, c := range ps.callsWith("start /sbin/runc --root /run/runc kill ") {
		if c != "start /sbin/runc --root /run/runc kill ctr "+want[i] {
			t.Errorf("call %d: %q, want kill ctr %s", i, c, want[i])
		}
	}
}

// TestAgentStats reads the fake's proc files and the container's cgroup.
func TestAgentStats(t *testing.T) {
	a, ps := newAgent(t, nil)
	ps.file(t, "/proc/meminfo", "MemTotal:       2048 kB\nMemAvailable:   1024 kB\n")
	ps.file(t, "/proc/uptime", "12.5 3.0\n")
	ps.file(t, "/sys/fs/cgroup/ctr/memory.current", "4096\n")
	ps.file(t, "/sys/fs/cgroup/ctr/memory.max", "max\n")
	ps.file(t, "/sys/fs/cgroup/ctr/pids.current", "3\n")
	ps.file(t, "/sys/fs/cgroup/ctr/cpu.stat", "usage_usec 777\nuser_usec 1\n")
	s, err := a.Stats(context.Background(), &agent.StatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if s.MemTotalBytes != 2048<<10 || s.MemAvailableBytes != 1024<<10 || s.UptimeSeconds != 12.5 ||
		s.MemoryBytes != 4096 || s.MemoryLimitBytes != 0 || s.Pids != 3 || s.CpuUsageUsec != 777 {
		t.Errorf("stats %+v", s)
	}
}

// TestReapHandsOver: the run step's reap loop passes other children's statuses on and returns
// runc's.
func TestReapHandsOver(t *testing.T) {
	f := newFake(t)
	f.waits = []fakeWait{{pid: 7, ws: 2 << 8}, {pid: 5, ws: unix.WaitStatus(0x7f)}, {pid: 5, ws: 1 << 8}}
	var got []int
	ws, err := reap(f, 5, func(pid int, ws unix.WaitStatus) { got = append(got, pid, ws.ExitStatus()) })
	if err != nil || ws.ExitStatus() != 1 || len(got) != 2 || got[0] != 7 || got[1] != 2 {
		t.Errorf("reap = %v, %v; others %v", ws.ExitStatus(), err, got)
	}
}

// TestAgentPanicRecovered: a panicking handler is that call's error, not the end of PID 1.
func TestAgentPanicRecovered(t *testing.T) {
	info := &ttrpc.UnaryServerInfo{FullMethod: "/c2vm.agent.v1.Agent/Exec"}
	_, err := recoverPanics(context.Background(), nil, info, func(context.Context, func(any) error) (any, error) { panic("bug") })
	if err == nil || !strings.Contains(err.Error(), "Exec: panic: bug") {
		t.Errorf("err = %v", err)
	}
}

// TestStepAgentListens: without an agent port the agent is served over vsock when the command line
// puts the channels there, and not at all otherwise.
func TestStepAgentListens(t *testing.T) {
	for _, tt := range []struct {
		name, cmdline string
		want          string // "vsock" or "none"
	}{
		{"vsock", "console=ttyS0 " + bootcfg.FormatChannels(bootcfg.ChannelsVsock), "vsock"},
		{"none", "console=ttyS0", "none"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			f.file(t, "/proc/cmdline", tt.cmdline)
			f.file(t, "/proc/uptime", "5.5 1.0\n")
			sock := filepath.Join(t.TempDir(), "agent.sock")
			var listened []uint32
			old := vsockListen
			vsockListen = func(port uint32) (net.Listener, error) {
				listened = append(listened, port)
				return net.Listen("unix", sock)
			}
			t.Cleanup(func() { vsockListen = old })
			st := &State{Sys: f, Clock: newClock(), Cfg: &bootcfg.Config{Container: bootcfg.Container{ID: "ctr"}}}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			if err := stepAgent(ctx, st); err != nil {
				t.Fatal(err)
			}
			if tt.want == "none" {
				if len(listened) != 0 {
					t.Errorf("listened on vsock %v without vsock channels", listened)
				}
				return
			}
			if want, _ := bootcfg.VsockPort(bootcfg.AgentPortName); len(listened) != 1 || listened[0] != want {
				t.Fatalf("listened on %v, want vsock port %d", listened, want)
			}
			for range 2 { // the host may come back after its connection ended
				conn, err := net.Dial("unix", sock)
				if err != nil {
					t.Fatal(err)
				}
				c := ttrpc.NewClient(conn)
				s, err := agent.NewAgentClient(c).Stats(ctx, &agent.StatsRequest{})
				c.Close()
				if err != nil || s.UptimeSeconds != 5.5 {
					t.Fatalf("Stats = %+v, %v", s, err)
				}
			}
		})
	}
}
