package vm

import (
	"io"
	"time"
)

// The stdin port is the one port the guest reads data from, so it needs the guest to see the host
// end as connected: the virtio console driver returns EOF from a read while the host is
// disconnected. QEMU 7.2 tells the guest "connected" only on a chardev open event that happens
// after the port device is realized, which a client socket (connected while QEMU starts) never
// delivers. So for stdin QEMU is the server (server=on,wait=off) and c2vm connects once QEMU runs.
// At the end of the host's stdin c2vm shuts down its write side only: QEMU reads the rest, then
// EOF, and only then tells the guest the host is gone, which the workload sees as EOF after the
// last byte. (Closing the socket would make QEMU see a hang-up at once and drop unread input.)

const stdinDialInterval = 10 * time.Millisecond

// feedStdin connects the stdin channel (on virtio-serial: dials QEMU's stdin socket), copies r
// into it and half-closes it at EOF. It gives up when closed closes (the VM ended).
func feedStdin(ch channels, closed <-chan struct{}, ready <-chan struct{}, r io.Reader) {
	c, err := ch.connect(portStdin)
	if err != nil {
		return
	}
	go func() { <-closed; c.Close() }()
	select { // nothing is read from r before the init is up: a failed KVM boot must not eat input
	case <-ready:
	case <-closed:
		return
	}
	io.Copy(c, r)
	c.CloseWrite()
}
