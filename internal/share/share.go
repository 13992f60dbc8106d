// Package share serves host directories to a VM over virtio-fs: one virtiofsd (QEMU's, Debian
// package qemu-system-common) per shared directory and boot, handed a listening socket that is
// connected and unlinked before QEMU starts, so no socket file outlives the call, and killed with
// c2vm (PR_SET_PDEATHSIG) as well as when the VM ends (it exits when QEMU disconnects).
//
// See docs/usage.md (host directories).
package share

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
)

// Virtiofsd is where Debian's QEMU keeps its virtiofsd.
const Virtiofsd = "/usr/lib/qemu/virtiofsd"

// Server serves one host directory; Connect starts a virtiofsd for each boot of the VM. The zero
// value is not usable: set Dir.
type Server struct {
	// Dir is the host directory to share (absolute).
	Dir string
	// Binary is the virtiofsd to run; "" = Find's.
	Binary string
	// Log receives virtiofsd's messages (errors only); nil = discarded.
	Log io.Writer

	mu     sync.Mutex
	procs  []*exec.Cmd
	closed bool
}

// Find returns the virtiofsd binary, or an error that says what to install or do. QEMU 7.2's
// virtiofsd sandboxes itself with namespaces and needs root.
func Find() (string, error) {
	bin := Virtiofsd
	if _, err := os.Stat(bin); err != nil {
		p, lerr := exec.LookPath("virtiofsd")
		if lerr != nil {
			return "", errors.New("host directories need virtiofsd: install Debian package qemu-system-common (it comes with qemu-system-x86)")
		}
		bin = p
	}
	if os.Geteuid() != 0 {
		return "", errors.New("host directories need root: QEMU's virtiofsd runs only as root; run c2vm as root, or use a disk image (--mount type=block,source=disk.img,target=/path) or a named volume")
	}
	return bin, nil
}

// Connect starts a virtiofsd serving s.Dir and returns QEMU's end of its vhost-user socket, already
// connected. The caller passes it to QEMU (vm.Share) and closes its copy once QEMU has started.
func (s *Server) Connect(ctx context.Context) (*os.File, error) {
	bin := s.Binary
	if bin == "" {
		var err error
		if bin, err = Find(); err != nil {
			return nil, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("share: server closed")
	}
	tmp, err := os.MkdirTemp("", "c2vm-fs-")
	if err != nil {
		return nil, fmt.Errorf("share %s: %w", s.Dir, err)
	}
	defer os.RemoveAll(tmp)
	sock := filepath.Join(tmp, "vhost-user.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("share %s: %w", s.Dir, err)
	}
	defer l.Close()
	lf, err := l.File()
	if err != nil {
		return nil, fmt.Errorf("share %s: %w", s.Dir, err)
	}
	defer lf.Close()
	cmd := exec.CommandContext(ctx, bin, args(s.Dir)...)
	cmd.ExtraFiles = []*os.File{lf}
	cmd.Stderr = s.Log
	// Its own process group, so a terminal's ^C goes to c2vm alone; killed if c2vm dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("share %s: start %s: %w", s.Dir, bin, err)
	}
	s.procs = append(s.procs, cmd)
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("share %s: connect to virtiofsd: %w", s.Dir, err)
	}
	defer c.Close()
	f, err := c.File()
	if err != nil {
		return nil, fmt.Errorf("share %s: %w", s.Dir, err)
	}
	return f, nil
}

// args is virtiofsd's command line: the listening socket as fd 3, in the foreground, the
// directory as the root of the share; the page cache keeps file data and attributes for a second
// (cache=auto, virtiofsd's default: changes on the host show in the guest within that).
func args(dir string) []string {
	return []string{"--fd=3", "-f", "-o", "source=" + dir, "-o", "cache=auto", "-o", "log_level=err"}
}

// Close stops every virtiofsd the server started and waits for them.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for _, cmd := range s.procs {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	s.procs = nil
	return nil
}
