// Package vm boots a c2vm bundle under QEMU and relays the workload's stdio and exit status. The
// workload's stdout, stderr and stdin travel on their own virtio-serial ports, so the host's stdout
// holds exactly what the workload wrote; the kernel and firmware console goes to a separate log; the
// guest init reports the exit status on a status port that also carries stop requests to the guest.
//
// See docs/usage.md (accelerator, memory, networking), docs/guest-contract.md (ports) and
// docs/architecture.md.
package vm

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Config describes one VM run. Zero values pick sensible defaults.
type Config struct {
	QEMU      string // QEMU binary; "" = qemu-system-<arch> from PATH
	Arch      string // guest GOARCH; "" = host
	Kernel    string
	Initrd    string
	Cmdline   string
	Disks     []Disk // virtio block devices in order: /dev/vda, /dev/vdb, ...
	MemoryMiB int    // 0 = 512
	CPUs      int    // 0 = 1
	// Accel is AccelAuto (or ""), AccelKVM or AccelTCG; see ChooseAccel.
	Accel string
	// Host is where the accelerator probe looks; the zero value is the real host.
	Host Host
	// KVMStartTimeout bounds an automatic KVM boot's wait for the guest init (0 =
	// DefaultKVMStartTimeout); past it the boot is retried under TCG.
	KVMStartTimeout time.Duration
	Network         *Network // nil = no network interface

	Stdin   io.Reader // nil = the workload's stdin is /dev/null
	Stdout  io.Writer // nil = discard
	Stderr  io.Writer // nil = discard
	Console io.Writer // kernel/firmware console as it happens; nil = only kept for error messages
	// Messages receives the init's own lines from the status port (c2vm-init: ...); nil = Stderr.
	Messages io.Writer
	// Stop asks the guest to stop the workload (its stop signal, then SIGKILL after the timeout) each
	// time it receives. Cancel ctx to kill the VM at once.
	Stop <-chan struct{}
	// Resize carries the host terminal's size to the guest (a "winsize ROWS COLS" line on the status
	// port) for a workload with a terminal; the latest size is sent once the port connects.
	Resize <-chan WindowSize
	// OnStart, when set, is called with the QEMU command line before it starts.
	OnStart func(argv []string)
	// OnAccel, when set, is called with the accelerator before each boot: once, or twice when an
	// automatic KVM boot fell back to TCG (then Accel.Fallback says why).
	OnAccel func(Accel)
}

// Disk is a raw disk image attached as a virtio block device.
type Disk struct {
	Path     string
	ReadOnly bool
	Serial   string // virtio-blk serial the guest sees in /sys/block/vdX/serial (at most 20 bytes)
}

// Network is QEMU user-mode networking with optional port forwards.
type Network struct {
	Forwards []Forward
}

// Forward publishes a guest port on the host.
type Forward struct {
	Proto     string // tcp | udp
	HostIP    string // "" = 127.0.0.1
	HostPort  int
	GuestPort int
}

// Result is how the VM ended.
type Result struct {
	// ExitCode is the workload's exit status as reported by the guest init, or -1 when the guest
	// ended without reporting one (then Run returns an error saying why).
	ExitCode int
	// ConsoleTail is the end of the kernel console, for error messages.
	ConsoleTail string
}

// ErrNoStatus means the VM ended without the guest init reporting an exit status.
var ErrNoStatus = errors.New("the VM ended without reporting the workload's exit status")

const consoleTailLines = 30

// DefaultKVMStartTimeout bounds how long an automatic KVM boot may take to show the guest init
// before c2vm gives up on KVM and boots under TCG (under KVM the init is up in a second or two).
const DefaultKVMStartTimeout = 30 * time.Second

// Run boots the VM and waits for it to end. It returns the workload's exit status; an error means
// c2vm or the VM failed (the Result still carries the console tail for diagnosis). When the
// accelerator was picked automatically and a KVM boot dies before the guest init reports in (QEMU
// exits, or no sign of the init within KVMStartTimeout), the same boot runs once more under TCG.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	acc, err := ChooseAccel(cfg.Accel, cfg.Arch, cfg.Host)
	if err != nil {
		return nil, fmt.Errorf("start vm: %w", err)
	}
	res, err := boot(ctx, cfg, acc)
	var ns *notStartedError
	if !errors.As(err, &ns) || acc.Name != AccelKVM {
		return res, err
	}
	if !acc.Auto {
		return res, fmt.Errorf("start vm: %w (%s): use --accel tcg", ErrKVM, ns.reason)
	}
	return boot(ctx, cfg, Accel{Name: AccelTCG, Auto: true, Reason: "KVM failed", Fallback: ns.reason})
}

// DryRun returns the QEMU command line Run would start first (the accelerator chosen as Run
// chooses it), with placeholder socket paths in $TMPDIR/c2vm-vm-XXXX.
func DryRun(cfg Config) ([]string, error) {
	acc, err := ChooseAccel(cfg.Accel, cfg.Arch, cfg.Host)
	if err != nil {
		return nil, err
	}
	cfg.Accel = acc.Name
	dir := filepath.Join(os.TempDir(), "c2vm-vm-XXXX")
	socks := map[string]string{}
	for _, n := range []string{portConsole, portStdout, portStderr, portStatus} {
		socks[n] = filepath.Join(dir, n+".sock")
	}
	if cfg.Stdin != nil {
		socks[portStdin] = filepath.Join(dir, portStdin+".sock")
	}
	return Argv(cfg, socks)
}

// notStartedError is a KVM boot that ended before the guest init reported in.
type notStartedError struct{ reason string }

func (e *notStartedError) Error() string { return e.reason }

// boot runs one VM under the given accelerator.
func boot(ctx context.Context, cfg Config, acc Accel) (*Result, error) {
	cfg.Accel = acc.Name
	if cfg.OnAccel != nil {
		cfg.OnAccel(acc)
	}
	dir, err := os.MkdirTemp("", "c2vm-vm-")
	if err != nil {
		return nil, fmt.Errorf("start vm: %w", err)
	}
	defer os.RemoveAll(dir)
	ports, err := listenPorts(dir, cfg.Stdin != nil)
	if err != nil {
		return nil, err
	}
	defer ports.close()
	argv, err := Argv(cfg, ports.paths())
	if err != nil {
		return nil, err
	}
	res := &Result{ExitCode: -1}
	if cfg.OnStart != nil {
		cfg.OnStart(argv)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var qemuErr strings.Builder
	cmd.Stderr = &limitedWriter{w: &qemuErr, n: 8192}
	if err := cmd.Start(); err != nil {
		return res, fmt.Errorf("start %s: %w", argv[0], err)
	}
	relay := newRelay(cfg, ports)
	waitErr := make(chan error, 1)
	go func() { waitErr <- cmd.Wait() }()
	err = waitVM(ctx, cmd, waitErr, cfg, relay, startDeadline(cfg, acc))
	ports.close()
	relay.wait()
	res.ConsoleTail = relay.console.String()
	if code, ok := relay.exitCode(); ok && !relay.isUnpackFailed() {
		res.ExitCode = code
		return res, nil
	}
	if acc.Name == AccelKVM && !relay.isReady() && !relay.isUnpackFailed() && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return res, &notStartedError{reason: notStartedReason(err, qemuErr.String())}
	}
	if err != nil {
		return res, err
	}
	return res, describeFailure(res.ConsoleTail, qemuErr.String())
}

// startDeadline is when a KVM boot that has not shown the init is given up on; nil = never.
func startDeadline(cfg Config, acc Accel) <-chan time.Time {
	if acc.Name != AccelKVM {
		return nil
	}
	d := cfg.KVMStartTimeout
	if d <= 0 {
		d = DefaultKVMStartTimeout
	}
	return time.After(d)
}

func notStartedReason(err error, qemuStderr string) string {
	if errors.Is(err, errStartTimeout) {
		return err.Error()
	}
	if s := strings.TrimSpace(qemuStderr); s != "" {
		return "qemu: " + LastLine(s)
	}
	return "qemu exited before the guest init started"
}

var errStartTimeout = errors.New("no sign of the guest init")

// waitVM waits for QEMU to exit, forwarding stop requests and killing it when ctx ends or when
// start fires before the init is ready.
func waitVM(ctx context.Context, cmd *exec.Cmd, waitErr <-chan error, cfg Config, r *relay, start <-chan time.Time) error {
	began := time.Now()
	ready := r.ready
	for {
		select {
		case <-start:
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-waitErr
			return fmt.Errorf("%w within %v", errStartTimeout, time.Since(began).Round(time.Second))
		case <-ready:
			ready, start = nil, nil // the init is up: no start deadline any more
		case <-r.unpackFailed:
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-waitErr
			return fmt.Errorf("%w: the guest kernel could not unpack the initrd (%s): it does not fit in the guest's memory; give the VM more --memory, or convert with --rootfs-format squashfs", ErrNoStatus, lineFrom(r.console.String(), initramfsFailure))
		case err := <-waitErr:
			var ee *exec.ExitError
			if err != nil && !errors.As(err, &ee) {
				return fmt.Errorf("qemu: %w", err)
			}
			return nil
		case <-cfg.Stop:
			r.requestStop()
		case ws := <-cfg.Resize:
			r.requestResize(ws)
		case <-ctx.Done():
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-waitErr
			return ctx.Err()
		}
	}
}

func describeFailure(console, qemuStderr string) error {
	switch {
	case strings.Contains(console, "Kernel panic"):
		return fmt.Errorf("%w: the guest kernel panicked: %s", ErrNoStatus, firstMatching(console, "Kernel panic"))
	case strings.TrimSpace(qemuStderr) != "":
		return fmt.Errorf("%w: qemu: %s", ErrNoStatus, LastLine(qemuStderr))
	}
	return ErrNoStatus
}

// LastLine returns the last non-empty line of s, trimmed.
func LastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// lineFrom returns the rest of the first line holding sub, from sub on.
func lineFrom(s, sub string) string {
	l := firstMatching(s, sub)
	if i := strings.Index(l, sub); i >= 0 {
		return l[i:]
	}
	return sub // scrolled out of the console tail

}

func firstMatching(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

// ports are the host ends of the guest's serial channels: QEMU connects to each as a client.
type ports struct {
	dir       string
	listeners map[string]net.Listener
	stdin     string        // the stdin port's socket, where QEMU listens (see feedStdin); "" = none
	closed    chan struct{} // closed by close
	once      sync.Once
}

const (
	portConsole = "console"
	portStdout  = "stdout"
	portStderr  = "stderr"
	portStdin   = "stdin"
	portStatus  = "status"
)

func listenPorts(dir string, stdin bool) (*ports, error) {
	p := &ports{dir: dir, listeners: map[string]net.Listener{}, closed: make(chan struct{})}
	if stdin {
		p.stdin = filepath.Join(dir, portStdin+".sock")
	}
	for _, n := range []string{portConsole, portStdout, portStderr, portStatus} {
		l, err := net.Listen("unix", filepath.Join(dir, n+".sock"))
		if err != nil {
			p.close()
			return nil, fmt.Errorf("start vm: listen %s: %w", n, err)
		}
		p.listeners[n] = l
	}
	return p, nil
}

func (p *ports) paths() map[string]string {
	m := map[string]string{}
	for n := range p.listeners {
		m[n] = filepath.Join(p.dir, n+".sock")
	}
	if p.stdin != "" {
		m[portStdin] = p.stdin
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

type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(b []byte) (int, error) {
	if l.n > 0 {
		k := min(len(b), l.n)
		l.w.Write(b[:k])
		l.n -= k
	}
	return len(b), nil
}

// scanLines calls fn for each line read from r.
func scanLines(r io.Reader, fn func(string)) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		fn(sc.Text())
	}
}
