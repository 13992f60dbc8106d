package vm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/c2vm/c2vm/bootcfg"
)

// The agent channel (Config.Agent) carries package agent's ttrpc service for the VM's whole life.
// It is the one channel both ends may leave and come back to, so on virtio-serial QEMU is its
// server (server=on,wait=off, as for stdin: the guest reads from it, and only a host connection
// made after QEMU started shows the guest a connected port) and the host dials; over vsock the
// guest listens on bootcfg.VsockPort(bootcfg.AgentPortName) and the host dials the guest's CID.
// Either way one connection at a time is served: its holder (the detached VM's supervisor)
// multiplexes every call on it.

// Agent connects to the running boot's agent channel and returns the connection, for a ttrpc
// client (agent.NewAgentClient). It waits until QEMU (or, over vsock, the guest) accepts, and
// fails when ctx ends, when the boot ends, or when the VM was started without Config.Agent. After
// a KVM→TCG fallback the old connection breaks: call Agent again.
func (m *Machine) Agent(ctx context.Context) (net.Conn, error) {
	if !m.cfg.Agent {
		return nil, errors.New("agent: the VM was started without an agent channel")
	}
	m.mu.Lock()
	b := m.cur
	m.mu.Unlock()
	if b == nil {
		return nil, fmt.Errorf("agent: %w", errEnded)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := make(chan struct{})
	go func() { // stop trying when this boot ends or ctx does
		select {
		case <-b.ended:
		case <-b.ports.closed:
		case <-ctx.Done():
		}
		close(stop)
	}()
	var dial func() (Channel, error)
	if m.cfg.Channels == ChannelsVsock {
		port, _ := bootcfg.VsockPort(bootcfg.AgentPortName)
		cid := m.cfg.GuestCID
		if cid == 0 {
			cid = DefaultGuestCID
		}
		dial = func() (Channel, error) { return vsockDialer(ctx, cid, port) }
	} else {
		path := b.ports.agent
		dial = func() (Channel, error) {
			return net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
		}
	}
	c, err := dialRetry(stop, dial)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("agent: %w", context.Cause(ctx))
		}
		return nil, fmt.Errorf("agent: %w", err)
	}
	if nc, ok := c.(net.Conn); ok {
		return nc, nil
	}
	return channelConn{c}, nil
}

// channelConn is a Channel that is no net.Conn (a vsock stream held as a file) as one.
type channelConn struct{ Channel }

type deadliner interface {
	SetDeadline(time.Time) error
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
}

var errNoDeadline = errors.New("agent channel: deadlines not supported")

func (c channelConn) LocalAddr() net.Addr  { return channelAddr("host") }
func (c channelConn) RemoteAddr() net.Addr { return channelAddr(bootcfg.AgentPortName) }
func (c channelConn) SetDeadline(t time.Time) error {
	if d, ok := c.Channel.(deadliner); ok {
		return d.SetDeadline(t)
	}
	return errNoDeadline
}
func (c channelConn) SetReadDeadline(t time.Time) error {
	if d, ok := c.Channel.(deadliner); ok {
		return d.SetReadDeadline(t)
	}
	return errNoDeadline
}
func (c channelConn) SetWriteDeadline(t time.Time) error {
	if d, ok := c.Channel.(deadliner); ok {
		return d.SetWriteDeadline(t)
	}
	return errNoDeadline
}

type channelAddr string

func (a channelAddr) Network() string { return "c2vm-channel" }
func (a channelAddr) String() string  { return string(a) }
