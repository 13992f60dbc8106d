package supervise

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/containerd/ttrpc"

	"github.com/c2vm/c2vm/agent"
)

// The control socket (control.sock in the VM's state directory) is how c2vm's commands reach a
// running detached VM. Its supervisor serves package agent's own service there and passes each
// call on to the guest over the one agent connection it holds, so `c2vm exec` speaks the same
// contract to the supervisor that the supervisor speaks to the guest (and agent.Copy/Feed serve
// both). Why through the supervisor and not straight to the VM's agent socket: QEMU serves a
// virtio-serial chardev to one client at a time (a second exec would wait for the first to end),
// and over vsock only the supervisor's process knows the guest's CID; ttrpc multiplexes every
// caller on the supervisor's one connection instead. The supervisor adds what only the host can
// do: Shutdown (c2vm stop) also kills QEMU when the guest has not ended the VM in time.
//
// The socket is a file in the VM's state directory (mode 0700), so only its owner reaches it.

// ControlName is the control socket's file name in a VM's state directory.
const ControlName = "control.sock"

// ControlPath is the VM's control socket.
func (s Store) ControlPath(id string) string { return filepath.Join(s.Dir(id), ControlName) }

// VM is the supervisor's handle on its VM (a *vm.Machine).
type VM interface {
	// Stop asks the guest to stop the workload over the status channel (no agent needed).
	Stop()
	// Kill ends QEMU at once.
	Kill()
	// Done is closed when the VM has ended.
	Done() <-chan struct{}
}

// StopGrace is how long after a stop's timeout the supervisor waits for the guest to end the VM
// before it kills QEMU: the guest's SIGKILL, the workload's exit and the power-off take a moment,
// longer under TCG.
const StopGrace = 10 * time.Second

// Control is a supervisor's control socket and its connection to the guest's agent.
type Control struct {
	vm    VM
	dial  func(context.Context) (net.Conn, error)
	srv   *ttrpc.Server
	l     net.Listener
	path  string
	grace time.Duration

	mu      sync.Mutex
	client  *ttrpc.Client
	closed  chan struct{} // closed when client has closed
	stopped bool          // a Shutdown armed the kill timer
}

// ServeControl listens on the control socket at path and serves the agent's service there,
// passing calls on to the guest's agent, which dial connects to (vm.Machine.Agent). It connects
// at once, so that the guest's agent sees its host from the start. Close stops serving.
func ServeControl(ctx context.Context, path string, vm VM, dial func(context.Context) (net.Conn, error)) (*Control, error) {
	if len(path) >= 108 { // sun_path
		return nil, fmt.Errorf("control socket %s: the path is too long for a unix socket (%d bytes, at most 107): choose a shorter state directory", path, len(path))
	}
	os.Remove(path) // left by a supervisor that was killed
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	srv, err := ttrpc.NewServer()
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	c := &Control{vm: vm, dial: dial, srv: srv, l: l, path: path, grace: StopGrace}
	agent.RegisterAgentService(srv, c)
	go srv.Serve(ctx, l)
	go c.guest(ctx) // an error shows on the first call
	return c, nil
}

// Close stops serving, removes the socket and closes the agent connection.
func (c *Control) Close() error {
	err := c.srv.Close()
	os.Remove(c.path)
	c.mu.Lock()
	if c.client != nil {
		c.client.Close()
	}
	c.mu.Unlock()
	return err
}

// guest returns the agent's client, connecting (again, after the last connection broke) first.
func (c *Control) guest(ctx context.Context) (agent.AgentService, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.client != nil {
		select {
		case <-c.closed:
			c.client = nil
		default:
			return agent.NewAgentClient(c.client), nil
		}
	}
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("connect to the VM's agent: %w", err)
	}
	closed := make(chan struct{})
	c.client = ttrpc.NewClient(conn, ttrpc.WithOnClose(func() { close(closed) }))
	c.closed = closed
	return agent.NewAgentClient(c.client), nil
}

// WaitWorkload waits until the workload's container runs (the agent counts processes in its
// cgroup), the VM ends, ctx ends or timeout passes, polling every interval; it reports whether
// the workload was seen running. Run -d returns once it does, as docker run -d returns once the
// container has started, so that an exec right after it finds the container.
func (c *Control) WaitWorkload(ctx context.Context, timeout, interval time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		if g, err := c.guest(ctx); err == nil {
			if s, err := g.Stats(ctx, &agent.StatsRequest{}); err == nil && s.Pids > 0 {
				return true
			}
		}
		select {
		case <-ctx.Done():
			return false
		case <-c.vm.Done():
			return false
		case <-time.After(interval):
		}
	}
}

// The service: each call goes to the guest as it is, but Shutdown.

func (c *Control) Exec(ctx context.Context, r *agent.ExecRequest) (*agent.ExecResponse, error) {
	g, err := c.guest(ctx)
	if err != nil {
		return nil, err
	}
	return g.Exec(ctx, r)
}

func (c *Control) Read(ctx context.Context, r *agent.ReadRequest) (*agent.ReadResponse, error) {
	g, err := c.guest(ctx)
	if err != nil {
		return nil, err
	}
	return g.Read(ctx, r)
}

func (c *Control) Write(ctx context.Context, r *agent.WriteRequest) (*agent.WriteResponse, error) {
	g, err := c.guest(ctx)
	if err != nil {
		return nil, err
	}
	return g.Write(ctx, r)
}

func (c *Control) CloseStdin(ctx context.Context, r *agent.CloseStdinRequest) (*agent.CloseStdinResponse, error) {
	g, err := c.guest(ctx)
	if err != nil {
		return nil, err
	}
	return g.CloseStdin(ctx, r)
}

func (c *Control) Resize(ctx context.Context, r *agent.ResizeRequest) (*agent.ResizeResponse, error) {
	g, err := c.guest(ctx)
	if err != nil {
		return nil, err
	}
	return g.Resize(ctx, r)
}

func (c *Control) Signal(ctx context.Context, r *agent.SignalRequest) (*agent.SignalResponse, error) {
	g, err := c.guest(ctx)
	if err != nil {
		return nil, err
	}
	return g.Signal(ctx, r)
}

func (c *Control) Wait(ctx context.Context, r *agent.WaitRequest) (*agent.WaitResponse, error) {
	g, err := c.guest(ctx)
	if err != nil {
		return nil, err
	}
	return g.Wait(ctx, r)
}

func (c *Control) SignalWorkload(ctx context.Context, r *agent.SignalWorkloadRequest) (*agent.SignalWorkloadResponse, error) {
	g, err := c.guest(ctx)
	if err != nil {
		return nil, err
	}
	return g.SignalWorkload(ctx, r)
}

func (c *Control) Stats(ctx context.Context, r *agent.StatsRequest) (*agent.StatsResponse, error) {
	g, err := c.guest(ctx)
	if err != nil {
		return nil, err
	}
	return g.Stats(ctx, r)
}

// Shutdown stops the workload as c2vm stop does: the guest sends its stop signal and SIGKILL after
// the timeout (TimeoutSeconds; 0 = the workload's stop timeout, taken as 10 s here), and should
// the VM still run StopGrace after that, the supervisor kills QEMU. Without an agent that answers
// the stop goes over the status channel instead.
func (c *Control) Shutdown(ctx context.Context, r *agent.ShutdownRequest) (*agent.ShutdownResponse, error) {
	timeout := time.Duration(r.TimeoutSeconds) * time.Second
	if r.TimeoutSeconds == 0 {
		timeout = 10 * time.Second
	}
	ask, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	g, err := c.guest(ask)
	if err == nil {
		_, err = g.Shutdown(ask, r)
	}
	if err != nil {
		c.vm.Stop()
	}
	c.mu.Lock()
	armed := c.stopped
	c.stopped = true
	c.mu.Unlock()
	if !armed {
		go func() {
			select {
			case <-c.vm.Done():
			case <-time.After(timeout + c.grace):
				c.vm.Kill()
			}
		}()
	}
	return &agent.ShutdownResponse{}, nil
}

// DialControl connects to a VM's control socket; close the returned client when done.
func DialControl(path string) (agent.AgentService, *ttrpc.Client, error) {
	conn, err := net.Dial("unix", path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("no control socket at %s: the VM's supervisor has not started it, or has ended", path)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("control socket: %w", err)
	}
	cl := ttrpc.NewClient(conn)
	return agent.NewAgentClient(cl), cl, nil
}
