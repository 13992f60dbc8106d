package supervise

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/ttrpc"

	"github.com/c2vm/c2vm/agent"
)

// fakeGuest is the guest's agent: Exec echoes its args back on Read, Stats reports pids, Shutdown
// records its timeout or fails.
type fakeGuest struct {
	agent.AgentService // nil: calls not faked panic (and the server turns that into an error)
	mu                 sync.Mutex
	shutdowns          []uint32
	shutdownErr        error
	pids               uint64
}

func (g *fakeGuest) Exec(_ context.Context, r *agent.ExecRequest) (*agent.ExecResponse, error) {
	return &agent.ExecResponse{Pid: uint32(len(r.Args))}, nil
}

func (g *fakeGuest) Stats(context.Context, *agent.StatsRequest) (*agent.StatsResponse, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.pids++
	return &agent.StatsResponse{Pids: g.pids / 3}, nil // the workload shows on the third call
}

func (g *fakeGuest) Shutdown(_ context.Context, r *agent.ShutdownRequest) (*agent.ShutdownResponse, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.shutdowns = append(g.shutdowns, r.TimeoutSeconds)
	return &agent.ShutdownResponse{}, g.shutdownErr
}

type fakeVM struct {
	mu          sync.Mutex
	stops       int
	done        chan struct{}
	killed      chan struct{}
	killOnce    sync.Once
	killedAfter time.Duration
	start       time.Time
}

func newFakeVM() *fakeVM {
	return &fakeVM{done: make(chan struct{}), killed: make(chan struct{}), start: time.Now()}
}
func (v *fakeVM) Stop()                 { v.mu.Lock(); v.stops++; v.mu.Unlock() }
func (v *fakeVM) Done() <-chan struct{} { return v.done }
func (v *fakeVM) Kill() {
	v.killOnce.Do(func() { v.killedAfter = time.Since(v.start); close(v.killed); close(v.done) })
}

// serveGuest serves g as the guest's agent and returns the dialer of the supervisor's side.
func serveGuest(t *testing.T, g agent.AgentService) func(context.Context) (net.Conn, error) {
	t.Helper()
	srv, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	agent.RegisterAgentService(srv, g)
	path := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(context.Background(), l)
	t.Cleanup(func() { srv.Close() })
	return func(ctx context.Context) (net.Conn, error) { return (&net.Dialer{}).DialContext(ctx, "unix", path) }
}

func startControl(t *testing.T, g agent.AgentService, vm VM) (*Control, agent.AgentService) {
	t.Helper()
	path := filepath.Join(t.TempDir(), ControlName)
	c, err := ServeControl(t.Context(), path, vm, serveGuest(t, g))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	svc, cl, err := DialControl(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return c, svc
}

// TestControlPassesOn: calls on the control socket reach the guest's agent; WaitWorkload waits
// for the workload's processes.
func TestControlPassesOn(t *testing.T) {
	g := &fakeGuest{}
	c, svc := startControl(t, g, newFakeVM())
	r, err := svc.Exec(t.Context(), &agent.ExecRequest{Id: "x", Args: []string{"a", "b", "c"}})
	if err != nil || r.Pid != 3 {
		t.Fatalf("Exec = %+v, %v", r, err)
	}
	if !c.WaitWorkload(t.Context(), 10*time.Second, time.Millisecond) {
		t.Error("WaitWorkload: the workload never showed")
	}
}

// TestControlShutdown: a stop goes to the guest's agent with its timeout, and the supervisor kills
// the VM once the timeout and the grace have passed; when the agent fails the stop goes over the
// status channel, and the kill still follows.
func TestControlShutdown(t *testing.T) {
	for _, tt := range []struct {
		name      string
		agentErr  error
		wantStops int
	}{
		{"agent", nil, 0},
		{"agent fails", errors.New("agent broke"), 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g, vm := &fakeGuest{shutdownErr: tt.agentErr}, newFakeVM()
			c, svc := startControl(t, g, vm)
			c.grace = 50 * time.Millisecond
			if _, err := svc.Shutdown(t.Context(), &agent.ShutdownRequest{TimeoutSeconds: 1}); err != nil {
				t.Fatal(err)
			}
			select {
			case <-vm.killed:
			case <-time.After(10 * time.Second):
				t.Fatal("the VM was not killed after the stop timeout")
			}
			if vm.killedAfter < time.Second {
				t.Errorf("killed after %v, before the 1 s stop timeout", vm.killedAfter)
			}
			g.mu.Lock()
			defer g.mu.Unlock()
			if len(g.shutdowns) != 1 || g.shutdowns[0] != 1 || vm.stops != tt.wantStops {
				t.Errorf("guest shutdowns %v, status-channel stops %d; want [1] and %d", g.shutdowns, vm.stops, tt.wantStops)
			}
		})
	}
}

func TestControlPathTooLong(t *testing.T) {
	long := "/tmp/" + strings.Repeat("x", 115)
	if _, err := ServeControl(t.Context(), long, newFakeVM(), nil); err == nil {
		t.Error("a 120-byte socket path: no error")
	}
}
