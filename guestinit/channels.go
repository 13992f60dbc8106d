package guestinit

import (
	"fmt"
	"os"
	"time"

	"github.com/c2vm/c2vm/bootcfg"
	"golang.org/x/sys/unix"
)

// The named channels to the host (bootcfg's port names: status, stdout, stderr, stdin) are byte
// streams the init finds by name, whichever way the host attached them:
//
//   - a virtio-serial port of that name (/sys/class/virtio-ports/*/name → /dev/vportNpM), which
//     stepPorts maps into State.Ports;
//   - else, when the kernel command line says the host serves the channels over vsock
//     (bootcfg.ChannelsArg), a vsock connection: the init listens on the name's port
//     (bootcfg.VsockPort) and the host, which knows the guest's CID, dials it.
//
// Either way the init gets an *os.File, which runc can take as the workload's stdio.

// channelWait bounds how long the init waits for the host to connect a vsock channel: the host
// dials from the moment QEMU starts, so it is there as soon as the init listens.
const channelWait = portWait

// vsockAccept listens on a vsock port, accepts one connection within timeout and closes the
// listener; a variable so that unit tests run without AF_VSOCK.
var vsockAccept = acceptVsock

// channelsOverVsock reports whether the host serves the named channels over vsock.
func channelsOverVsock(st *State) bool {
	data, err := st.Sys.ReadFile("/proc/cmdline")
	return err == nil && bootcfg.ParseChannels(string(data)) == bootcfg.ChannelsVsock
}

// openChannel opens the named channel with flag (os.O_RDONLY, os.O_WRONLY or os.O_RDWR): the
// virtio-serial port of that name, or over vsock the host's connection to it. Without either it
// opens fallback ("" = none: an error wrapping os.ErrNotExist).
func openChannel(st *State, name, fallback string, flag int) (*os.File, error) {
	if p, ok := st.Ports[name]; ok {
		return st.Sys.OpenFile(p, flag|unix.O_CLOEXEC, 0)
	}
	if port, ok := bootcfg.VsockPort(name); ok && channelsOverVsock(st) {
		f, err := vsockAccept(port, channelWait)
		if err != nil {
			return nil, fmt.Errorf("channel %s: %w", name, err)
		}
		return f, nil
	}
	if fallback == "" {
		return nil, fmt.Errorf("channel %s: %w", name, os.ErrNotExist)
	}
	return st.Sys.OpenFile(fallback, flag|unix.O_CLOEXEC, 0)
}

// acceptVsock is vsockAccept on AF_VSOCK.
func acceptVsock(port uint32, timeout time.Duration) (*os.File, error) {
	lfd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("vsock socket: %w", err)
	}
	defer unix.Close(lfd)
	if err := unix.Bind(lfd, &unix.SockaddrVM{CID: unix.VMADDR_CID_ANY, Port: port}); err != nil {
		return nil, fmt.Errorf("vsock bind port %d: %w", port, err)
	}
	if err := unix.Listen(lfd, 1); err != nil {
		return nil, fmt.Errorf("vsock listen port %d: %w", port, err)
	}
	fds := []unix.PollFd{{Fd: int32(lfd), Events: unix.POLLIN}}
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return nil, fmt.Errorf("vsock port %d: the host did not connect within %v", port, timeout)
		}
		n, err := unix.Poll(fds, int(left.Milliseconds())+1)
		if err == unix.EINTR || (err == nil && n == 0) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("vsock port %d: %w", port, err)
		}
		break
	}
	fd, _, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("vsock accept port %d: %w", port, err)
	}
	return os.NewFile(uintptr(fd), fmt.Sprintf("vsock:%d", port)), nil
}
