package guestinit

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/c2vm/c2vm/agent/shuttle"
	"github.com/c2vm/c2vm/bootcfg"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/encoding/protowire"
)

func TestParseShuttlePort(t *testing.T) {
	for _, tt := range []struct {
		cmdline string
		port    uint32
		ok      bool
	}{
		{"console=hvc0 shuttle.vsock_port=10240", 10240, true},
		{"shuttle.vsock_port=1 quiet shuttle.vsock_port=7", 7, true},
		{"console=hvc0", 0, false},
		{"shuttle.vsock_port=x", 0, false},
		{"shuttle.vsock_port=0", 0, false},
	} {
		if port, ok := ParseShuttlePort(tt.cmdline); port != tt.port || ok != tt.ok {
			t.Errorf("ParseShuttlePort(%q) = %d, %v; want %d, %v", tt.cmdline, port, ok, tt.port, tt.ok)
		}
	}
}

// TestShuttleDialRetries: the guest dials host CID 2 on spindle's port, once a second until the
// host answers (the seam stands in for AF_VSOCK, exercised end to end only with /dev/vhost-vsock).
func TestShuttleDialRetries(t *testing.T) {
	f := newFake(t)
	f.file(t, "/proc/cmdline", "console=hvc0 shuttle.vsock_port=4321\n")
	clock := newClock()
	st := &State{Sys: f, Clock: clock, Ports: map[string]string{}}
	port, vport, on := shuttleMode(st)
	if !on || port != "" || vport != 4321 {
		t.Fatalf("shuttleMode = %q, %d, %v", port, vport, on)
	}
	host, guest := net.Pipe()
	defer host.Close()
	var dials []string
	old := shuttleDial
	shuttleDial = func(cid, p uint32) (io.ReadWriteCloser, error) {
		dials = append(dials, clock.Now().Format(time.TimeOnly)+" "+fmt.Sprintf("%d:%d", cid, p))
		if len(dials) < 3 {
			return nil, errors.New("connection reset")
		}
		return guest, nil
	}
	t.Cleanup(func() { shuttleDial = old })
	c, err := dialRetry(t.Context(), st, shuttle.HostCID, vport)
	if err != nil || c != guest {
		t.Fatalf("dialRetry = %v, %v", c, err)
	}
	start := time.Unix(1e9, 0)
	want := []string{}
	for i := range 3 {
		want = append(want, start.Add(time.Duration(i)*time.Second).Format(time.TimeOnly)+" 2:4321")
	}
	if !reflect.DeepEqual(dials, want) {
		t.Errorf("dials %q, want %q", dials, want)
	}
	// A port named c2vm.shuttle wins over vsock.
	st.Ports[ShuttlePortName] = "/dev/vport0p3"
	if port, _, on := shuttleMode(st); !on || port != "/dev/vport0p3" {
		t.Errorf("with the port: shuttleMode = %q, %v", port, on)
	}
}

// TestShuttleServe plays spindle's host over a pipe: Hello first, a step's output and status
// with its id, root refused, CacheDrain, an unknown message warned about, Poweroff answered
// before the power off.
func TestShuttleServe(t *testing.T) {
	a, ps := newAgent(t, func(stdio []*os.File) int {
		stdio[1].WriteString("out\n")
		stdio[2].WriteString("err\n")
		return 3 << 8
	})
	ps.file(t, "/bundle/rootfs/etc/passwd", passwd+ShuttleUser+":x:1000:1000::/workspace:/bin/sh\n")
	ps.file(t, "/bundle/config.json", `{"process":{"env":["PATH=/usr/bin:/bin"]}}`)
	ps.file(t, consolePath, "")
	powered := make(chan struct{})
	s := &shuttleAgent{st: a.st, exec: a, bootID: "b", poweroff: func() { close(powered) }}
	host, guest := net.Pipe()
	defer host.Close()
	go s.serve(t.Context(), guest, false)
	w := shuttle.NewWriter(host)
	read := func() *shuttle.Message {
		t.Helper()
		host.SetReadDeadline(time.Now().Add(10 * time.Second))
		m, err := shuttle.ReadMessage(host)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	if m := read(); m.ID != "hello" || m.Hello == nil || m.Hello.ProtocolVersion != 1 || m.Hello.BootID != "b" {
		t.Fatalf("first message %+v, want Hello", m)
	}
	send := func(m *shuttle.Message) {
		t.Helper()
		if err := w.Write(m); err != nil {
			t.Fatal(err)
		}
	}
	send(&shuttle.Message{ID: "init", Init: &shuttle.Init{JobID: "j"}})
	send(&shuttle.Message{ID: "wf-0", ExecStart: &shuttle.ExecStart{Argv: []string{"/bin/sh", "-lc", "x"},
		Env: []string{"HOME=/workspace", "PATH=/nix/bin"}, Cwd: "/workspace/repo", User: ShuttleUser, TimeoutSeconds: 60}})
	var out, errOut string
	for {
		m := read()
		if m.ID != "wf-0" {
			t.Fatalf("message %+v during the step", m)
		}
		if m.ExecStdout != nil {
			out += m.ExecStdout.Data
		} else if m.ExecStderr != nil {
			errOut += m.ExecStderr.Data
		} else if m.ExecExit != nil {
			if *m.ExecExit != (shuttle.ExecExit{ExitCode: 3}) {
				t.Errorf("ExecExit %+v, want status 3", m.ExecExit)
			}
			break
		}
	}
	if out != "out\n" || errOut != "err\n" {
		t.Errorf("stdout %q stderr %q", out, errOut)
	}
	start := ps.callsWith("start ")
	if len(start) != 1 || !strings.Contains(start[0], " --cwd /workspace/repo --env HOME=/workspace --env PATH=/nix/bin:/usr/bin:/bin --user 1000:1000 ctr /bin/sh -lc x") {
		t.Errorf("runc exec %q", start)
	}
	send(&shuttle.Message{ID: "wf-1", ExecStart: &shuttle.ExecStart{Argv: []string{"id"}, User: "root"}})
	if m := read(); m.ID != "wf-1" || m.ExecExit == nil || m.ExecExit.ExitCode != 127 || !strings.Contains(m.ExecExit.Error, "root") {
		t.Errorf("a step as root: %+v, want 127 and an error", m)
	}
	send(&shuttle.Message{ID: "drain", CacheDrain: &shuttle.CacheDrain{TimeoutSeconds: 300}})
	if m := read(); m.ID != "drain" || m.CacheDrainResult == nil || *m.CacheDrainResult != (shuttle.CacheDrainResult{}) {
		t.Errorf("CacheDrain answered %+v", m)
	}
	send(&shuttle.Message{ID: "dbg", Other: map[protowire.Number][]byte{15: nil}})
	send(&shuttle.Message{ID: "poweroff", Poweroff: &shuttle.Poweroff{}})
	if m := read(); m.ID != "poweroff" || m.PoweroffResult == nil {
		t.Errorf("Poweroff answered %+v", m)
	}
	select {
	case <-powered:
	case <-time.After(10 * time.Second):
		t.Fatal("no power off after Poweroff")
	}
	if warn := ps.read(t, consolePath); !strings.Contains(warn, `ignoring message "dbg" (open_debug_shell)`) {
		t.Errorf("console %q lacks the warning", warn)
	}
}

// TestShuttleImageContract: the user gets the first free id, /workspace and its repo are
// ShuttleUser's, and the container's process becomes the idle process.
func TestShuttleImageContract(t *testing.T) {
	f := newFake(t)
	f.file(t, "/proc/cmdline", "shuttle.vsock_port=10240")
	f.file(t, "/b/rootfs/etc/passwd", "root:x:0:0::/root:/bin/sh\nu:x:1000:1000::/:/bin/sh") // no final newline
	f.file(t, "/b/rootfs/etc/group", "root:x:0:\ng:x:1001:\n")
	f.file(t, "/b/config.json", `{"process":{"args":["bash"],"terminal":true,"env":["PATH=/bin"]},"mounts":[]}`)
	st := &State{Sys: f, Clock: newClock(), Ports: map[string]string{}, Terminal: true,
		Cfg: &bootcfg.Config{Container: bootcfg.Container{ID: "c", BundleDir: "/b"}}}
	if err := stepShuttleImage(t.Context(), st); err != nil {
		t.Fatal(err)
	}
	if got, want := f.read(t, "/b/rootfs/etc/passwd"), "root:x:0:0::/root:/bin/sh\nu:x:1000:1000::/:/bin/sh\nspindle-workflow:x:1002:1002:spindle workflow:/workspace:/bin/sh\n"; got != want {
		t.Errorf("passwd %q, want %q", got, want)
	}
	if got := f.read(t, "/b/rootfs/etc/group"); !strings.HasSuffix(got, "\nspindle-workflow:x:1002:\n") {
		t.Errorf("group %q", got)
	}
	if got, want := f.callsWith("lchown "), []string{"lchown /b/rootfs/workspace 1002:1002", "lchown /b/rootfs/workspace/repo 1002:1002"}; !reflect.DeepEqual(got, want) {
		t.Errorf("chowns %q, want %q", got, want)
	}
	spec := f.read(t, "/b/config.json")
	for _, want := range []string{`"args": [` + "\n\t\t\t\"/dev/c2vm-idle\"", `"terminal": false`, `"source": "/sbin/c2vm-idle"`, `"PATH=/bin"`} {
		if !strings.Contains(spec, want) {
			t.Errorf("spec lacks %q:\n%s", want, spec)
		}
	}
	if st.Terminal {
		t.Error("the idle process has a terminal")
	}
	// Again (the user exists now): the same ids, nothing added.
	if err := stepShuttleImage(t.Context(), st); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(f.read(t, "/b/rootfs/etc/passwd"), ShuttleUser); got != 1 {
		t.Errorf("%d users %s", got, ShuttleUser)
	}
}

// killSystem is procSystem with a fake /proc whose processes die when sent SIGKILL (their
// directories go; a group kill takes the group's).
type killSystem struct {
	*procSystem
	mu   sync.Mutex
	dead map[int]bool
	died chan struct{} // signalled on every death
}

func (k *killSystem) Kill(pid int, sig unix.Signal) error {
	k.procSystem.Kill(pid, sig)
	if sig != unix.SIGKILL {
		return nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, p := range readProcs(k.procSystem) {
		if p.pid == pid || (pid < 0 && p.pgrp == -pid) {
			os.RemoveAll(k.p(fmt.Sprintf("/proc/%d", p.pid)))
			k.dead[p.pid] = true
		}
	}
	select {
	case k.died <- struct{}{}:
	default:
	}
	return nil
}

func (k *killSystem) allDead(pids ...int) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, p := range pids {
		if !k.dead[p] {
			return false
		}
	}
	return true
}

// TestShuttleStepTimeout: a step that outlives its timeout_seconds is reported (137, timed_out)
// as soon as its whole process tree is killed — its shell and the shell's child, which holds
// runc exec's output pipes and so keeps runc exec running — and not when the child would have
// ended; even a process that escaped the kill (its own session, reparented to the container's
// init) does not hold the step past the drain bound.
func TestShuttleStepTimeout(t *testing.T) {
	for _, tt := range []struct {
		name    string
		escaped bool // a process outside the tree holds runc exec's outputs
	}{
		{name: "tree"},
		{name: "escaped", escaped: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			release := make(chan struct{})
			var k *killSystem
			a, ps := newAgent(t, func(stdio []*os.File) int { // runc exec: ends when its pipes' holders are gone
				stdio[1].WriteString("started\n")
				for tt.escaped || !k.allDead(4242, 4243) {
					select {
					case <-k.died:
					case <-release:
						return 0
					}
				}
				return 137 << 8
			})
			t.Cleanup(func() { close(release) })
			k = &killSystem{procSystem: ps, dead: map[int]bool{}, died: make(chan struct{}, 1)}
			a.st.Sys = k
			ps.file(t, "/bundle/rootfs/etc/passwd", passwd+ShuttleUser+":x:1000:1000::/workspace:/bin/sh\n")
			for pid, stat := range map[int]string{
				1:    "1 (c2vm-idle) S 0 1 1 0",
				4242: "4242 (sh) S 4200 4242 4242 0",     // the step's shell: runc made it a session leader
				4243: "4243 (sleep) S 4242 4242 4242 0",  // its child
				4300: "4300 (daemon) S 1 4300 4300 0",    // escaped: its own session, reparented
				77:   "77 (some (odd) name) S 1 77 77 0", // another exec's process
				78:   "78 (zombie) Z 4242 4242 4242 0",   // already dead
			} {
				ps.file(t, fmt.Sprintf("/proc/%d/stat", pid), stat)
			}
			ps.file(t, "/run/c2vm/exec/shuttle-1.pid", "4242")
			s := &shuttleAgent{st: a.st, exec: a}
			var out strings.Builder
			var outMu sync.Mutex
			s.w = shuttle.NewWriter(writerFunc(func(b []byte) (int, error) {
				outMu.Lock()
				defer outMu.Unlock()
				return out.Write(b)
			}))
			done := make(chan *shuttle.ExecExit, 1)
			go func() {
				done <- s.step(t.Context(), "wf-2", &shuttle.ExecStart{Argv: []string{"/bin/sh", "-lc", "echo started; sleep 100"}, User: ShuttleUser, TimeoutSeconds: 3})
			}()
			clock := a.st.Clock.(*fakeClock)
			afters := clock.waitAfters(t, 1)
			if afters[0].d != 3*time.Second {
				t.Fatalf("deadline %v, want 3s", afters[0].d)
			}
			afters[0].ch <- time.Time{}
			if tt.escaped {
				afters = clock.waitAfters(t, 2)
				afters[1].ch <- time.Time{} // the drain bound
			}
			var exit *shuttle.ExecExit
			select {
			case exit = <-done:
			case <-time.After(10 * time.Second):
				t.Fatalf("the step did not end after its deadline; kills %q", ps.callsWith("kill "))
			}
			if *exit != (shuttle.ExecExit{ExitCode: 137, TimedOut: true}) {
				t.Errorf("ExecExit %+v, want 137 timed out", exit)
			}
			if !k.allDead(4242, 4243) {
				t.Errorf("kills %q: the shell or its child survived", ps.callsWith("kill "))
			}
			if k.allDead(1) || k.allDead(77) {
				t.Errorf("kills %q: a process outside the step was killed", ps.callsWith("kill "))
			}
			outMu.Lock()
			defer outMu.Unlock()
			if !strings.Contains(out.String(), "started\n") {
				t.Errorf("output %q lacks the step's", out.String())
			}
		})
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

// TestIdleReaps: the idle process reaps a child that ended (else a zombie stays in the
// container, reparented to it, for the VM's life), and returns on SIGTERM.
func TestIdleReaps(t *testing.T) {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, unix.SIGCHLD)
	defer signal.Stop(sigs)
	ended := make(chan struct{})
	go func() { defer close(ended); idle(sigs, reapChildren) }()
	p, err := os.StartProcess("/bin/sh", []string{"sh", "-c", "exit 3"}, &os.ProcAttr{})
	if err != nil {
		t.Fatal(err)
	}
	pid := p.Pid
	p.Release() // as an orphan: nothing but the idle loop waits for it
	stat := fmt.Sprintf("/proc/%d/stat", pid)
	waitFor(t, func() bool { _, err := os.Stat(stat); return errors.Is(err, os.ErrNotExist) })
	sigs <- unix.SIGTERM
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the idle loop did not return on SIGTERM")
	}
}
