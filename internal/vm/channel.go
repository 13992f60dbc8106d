package vm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/c2vm/c2vm/bootcfg"
	"golang.org/x/sys/unix"
)

// The named channels between host and guest (status, stdout, stderr, stdin; later the agent) are
// byte streams that travel one of two ways, the Config's Channels:
//
//   - virtio-serial (the default): one virtserialport per channel, named as bootcfg names it; the
//     guest opens /dev/vportNpM by its name, QEMU connects each to a unix socket of c2vm's.
//   - vsock: one vsock port per channel (bootcfg.VsockPort); the guest listens on it, c2vm dials
//     the guest's CID through /dev/vhost-vsock. The host says so on the kernel command line
//     (bootcfg.ChannelsArg), so a VM with a vsock device but channels on virtio-serial (or none)
//     never waits for a host that will not dial.
//
// The kernel console is always the first serial port: it is where the kernel writes before any
// driver is up.

// Channel transports, as Config.Channels takes them.
const (
	ChannelsVirtioSerial = "virtio-serial"
	ChannelsVsock        = "vsock"
)

// DefaultGuestCID is the guest's vsock address when Config.GuestCID is 0.
const DefaultGuestCID = 3

// Channel is the host end of one named byte stream to the guest.
type Channel interface {
	io.ReadWriteCloser
	// CloseWrite ends the host's direction only: the guest reads EOF after what was written.
	CloseWrite() error
}

// channelNames maps the relay's channel keys (also the QEMU chardev ids) to bootcfg's names.
var channelNames = map[string]string{
	portStdout: bootcfg.StdoutPortName, portStderr: bootcfg.StderrPortName,
	portStatus: bootcfg.StatusPortName, portStdin: bootcfg.StdinPortName,
	portAgent: bootcfg.AgentPortName,
}

// channels connects the host ends of one boot's named channels.
type channels interface {
	// connect returns the host end of the channel with the given key once the guest's end is
	// there; it fails once closed.
	connect(key string) (Channel, error)
}

// connect on virtio-serial: QEMU connects to c2vm's listener, except for stdin, where QEMU
// listens and c2vm dials (see feedStdin).
func (p *ports) connect(key string) (Channel, error) {
	if key == portStdin {
		return dialRetry(p.closed, func() (Channel, error) {
			return net.DialUnix("unix", nil, &net.UnixAddr{Name: p.stdin, Net: "unix"})
		})
	}
	l, ok := p.listeners[key]
	if !ok {
		return nil, fmt.Errorf("no %s channel", key)
	}
	c, err := l.Accept()
	if err != nil {
		return nil, err
	}
	return c.(*net.UnixConn), nil
}

// dialRetry calls dial every stdinDialInterval until it succeeds or closed closes.
func dialRetry(closed <-chan struct{}, dial func() (Channel, error)) (Channel, error) {
	for {
		c, err := dial()
		if err == nil {
			return c, nil
		}
		select {
		case <-closed:
			return nil, fmt.Errorf("%w (last attempt: %v)", net.ErrClosed, err)
		case <-time.After(stdinDialInterval):
		}
	}
}

// vsockChannels dials each channel's vsock port on the guest, retrying until the guest listens.
type vsockChannels struct {
	cid    uint32
	dial   func(ctx context.Context, cid, port uint32) (Channel, error)
	closed <-chan struct{}
}

func (v *vsockChannels) connect(key string) (Channel, error) {
	port, ok := bootcfg.VsockPort(channelNames[key])
	if !ok {
		return nil, fmt.Errorf("no vsock port for channel %s", key)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-v.closed:
			cancel()
		case <-ctx.Done():
		}
	}()
	return dialRetry(v.closed, func() (Channel, error) { return v.dial(ctx, v.cid, port) })
}

// dialVsock connects to a vsock port of a guest (AF_VSOCK through the host's vhost-vsock).
func dialVsock(_ context.Context, cid, port uint32) (Channel, error) {
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("vsock socket: %w", err)
	}
	if err := unix.Connect(fd, &unix.SockaddrVM{CID: cid, Port: port}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("vsock connect %d:%d: %w", cid, port, err)
	}
	if err := unix.SetNonblock(fd, true); err != nil { // so that Close interrupts a blocked Read
		unix.Close(fd)
		return nil, fmt.Errorf("vsock %d:%d: %w", cid, port, err)
	}
	return &streamFile{File: os.NewFile(uintptr(fd), fmt.Sprintf("vsock:%d:%d", cid, port))}, nil
}

// streamFile is a connected stream socket held as a file (the net package has no AF_VSOCK).
type streamFile struct{ *os.File }

func (s *streamFile) CloseWrite() error {
	rc, err := s.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Shutdown(int(fd), unix.SHUT_WR) }); err != nil {
		return err
	}
	return serr
}

// ports are the host ends of the guest's serial channels: QEMU connects to each as a client.
type ports struct {
	dir       string
	listeners map[string]net.Listener
	stdin     string        // the stdin port's socket, where QEMU listens (see feedStdin); "" = none
	agent     string        // the agent port's socket, where QEMU listens (see Machine.Agent); "" = none
	closed    chan struct{} // closed by close
	once      sync.Once
}

const (
	portConsole = "console"
	portStdout  = "stdout"
	portStderr  = "stderr"
	portStdin   = "stdin"
	portStatus  = "status"
	portQMP     = "qmp"
	portAgent   = "agent"
)

// listenPorts listens for the console and, on virtio-serial, the named channels.
func listenPorts(dir string, serial, stdin bool) (*ports, error) {
	p := &ports{dir: dir, listeners: map[string]net.Listener{}, closed: make(chan struct{})}
	keys := []string{portConsole}
	if serial {
		keys = append(keys, portStdout, portStderr, portStatus)
		if stdin {
			p.stdin = filepath.Join(dir, portStdin+".sock")
		}
	}
	for _, n := range keys {
		l, err := net.Listen("unix", filepath.Join(dir, n+".sock"))
		if err != nil {
			p.close()
			return nil, fmt.Errorf("start vm: listen %s: %w", n, err)
		}
		p.listeners[n] = l
	}
	return p, nil
}

// paths are the socket paths Argv takes: every listener's, stdin's and QMP's.
func (p *ports) paths() map[string]string {
	m := map[string]string{portQMP: filepath.Join(p.dir, portQMP+".sock")}
	for n := range p.listeners {
		m[n] = filepath.Join(p.dir, n+".sock")
	}
	if p.stdin != "" {
		m[portStdin] = p.stdin
	}
	if p.agent != "" {
		m[portAgent] = p.agent
	}
	return m
}

func (p *ports) close() {
	p.once.Do(func() {
		close(p.closed)
		for _, l := range p.listeners {
			l.Close()
		}
	})
}

// vsockDialer dials a guest's vsock port: dialVsock, or a fake in tests.
var vsockDialer = dialVsock

// vhostVsock says why the host cannot give a VM a vsock device, or nil when it can; a variable
// so that tests of the vsock path run on hosts without one.
var vhostVsock = func() error {
	f, err := os.OpenFile("/dev/vhost-vsock", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("%w: %w", errNoVsock, err)
	}
	return f.Close()
}

// errNoVsock is the host without vhost-vsock.
var errNoVsock = errors.New("vsock channels need /dev/vhost-vsock on the host (modprobe vhost_vsock)")
