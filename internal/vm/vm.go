// Package vm boots a c2vm bundle under QEMU and relays the workload's stdio and exit status.
// Start returns a Machine: a handle to wait for, stop, kill and control through QEMU's machine
// protocol (QMP: pause, resume, status; later migrate for snapshots and device_add for hotplug);
// Run is Start and Wait. The workload's stdout, stderr and stdin travel on their own named
// channels (virtio-serial ports, or vsock ports: see Channel), so the host's stdout holds exactly
// what the workload wrote; the kernel and firmware console goes to a separate log; the guest init
// reports the exit status on a status channel that also carries stop requests to the guest.
package vm

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
	Shares          []Share  // host directories (see Share)

	Stdin   io.Reader // nil = the workload's stdin is /dev/null
	Stdout  io.Writer // nil = discard
	Stderr  io.Writer // nil = discard
	Console io.Writer // kernel/firmware console as it happens; nil = only kept for error messages
	// Messages receives the init's own lines from the status port (c2vm-init: ...); nil = Stderr.
	Messages io.Writer
	// Stop asks the guest to stop the workload (its stop signal, then SIGKILL after the timeout) each
	// time it receives, as Machine.Stop does. Cancel ctx to kill the VM at once.
	Stop <-chan struct{}
	// Resize carries the host terminal's size to the guest (a "winsize ROWS COLS" line on the status
	// port) for a workload with a terminal; the latest size is sent once the port connects.
	Resize <-chan WindowSize
	// Channels is how the named host↔guest channels travel: ChannelsVirtioSerial (or "") or
	// ChannelsVsock (needs /dev/vhost-vsock; the guest is then GuestCID, 0 = DefaultGuestCID).
	Channels string
	GuestCID uint32
	// Agent gives the VM the agent channel (bootcfg.AgentPortName, package agent), which
	// Machine.Agent connects to; without it the guest serves no agent.
	Agent bool
	// Incoming restores the VM from the state file Machine.Save wrote instead of booting it (QEMU's
	// -incoming); the rest of the Config must describe the same machine (see MachineArgs). When the
	// restore fails before the guest runs again, Wait's error wraps ErrRestore.
	Incoming string
	// ReadyPoint says the guest stops at its ready point (its boot config's ReadyPoint): the
	// host's stdin then reaches the guest only after the go line, so that a VM saved there holds
	// none of this run's input.
	ReadyPoint bool
	// OnReadyPoint, when set, is called when the guest init reports its ready point, before the
	// guest goes on: the place to Save the VM.
	OnReadyPoint func(ctx context.Context, m *Machine)
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

// DryRun returns the QEMU command line Start would run first (the accelerator chosen as Start
// chooses it), with placeholder socket paths in $TMPDIR/c2vm-vm-XXXX.
func DryRun(cfg Config) ([]string, error) {
	acc, err := ChooseAccel(cfg.Accel, cfg.Arch, cfg.Host)
	if err != nil {
		return nil, err
	}
	cfg.Accel = acc.Name
	dir := filepath.Join(os.TempDir(), "c2vm-vm-XXXX")
	socks := map[string]string{portQMP: filepath.Join(dir, portQMP+".sock"), portConsole: filepath.Join(dir, portConsole+".sock")}
	if cfg.Channels != ChannelsVsock {
		for _, n := range []string{portStdout, portStderr, portStatus} {
			socks[n] = filepath.Join(dir, n+".sock")
		}
		if cfg.Stdin != nil {
			socks[portStdin] = filepath.Join(dir, portStdin+".sock")
		}
		if cfg.Agent {
			socks[portAgent] = filepath.Join(dir, portAgent+".sock")
		}
	}
	return Argv(cfg, socks)
}

// notStartedError is a KVM boot that ended before the guest init reported in.
type notStartedError struct{ reason string }

func (e *notStartedError) Error() string { return e.reason }

// bootRun is one QEMU process booting the VM under one accelerator.
type bootRun struct {
	acc     Accel
	dir     string
	ports   *ports
	relay   *relay
	cmd     *exec.Cmd
	qemuErr *strings.Builder
	waitErr chan error
	qmpPath string
	ended   chan struct{} // closed when QEMU has exited
}

// carryOver is what a failed KVM boot hands to the TCG boot that replaces it: requests the
// guest never received.
type carryOver struct {
	stops   int
	winsize *WindowSize
}

// startBoot starts QEMU for one boot under the given accelerator.
func startBoot(cfg Config, acc Accel, carry carryOver) (*bootRun, error) {
	cfg.Accel = acc.Name
	if cfg.OnAccel != nil {
		cfg.OnAccel(acc)
	}
	if cfg.Channels == ChannelsVsock && vhostVsock() != nil {
		return nil, fmt.Errorf("start vm: %w", vhostVsock())
	}
	dir, err := os.MkdirTemp("", "c2vm-vm-")
	if err != nil {
		return nil, fmt.Errorf("start vm: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(dir)
		}
	}()
	p, err := listenPorts(dir, cfg.Channels != ChannelsVsock, cfg.Stdin != nil)
	if err != nil {
		return nil, err
	}
	if cfg.Agent && cfg.Channels != ChannelsVsock {
		p.agent = filepath.Join(dir, portAgent+".sock") // QEMU listens there (see Machine.Agent)
	}
	defer func() {
		if !ok {
			p.close()
		}
	}()
	argv, err := Argv(cfg, p.paths())
	if err != nil {
		return nil, err
	}
	if cfg.OnStart != nil {
		cfg.OnStart(argv)
	}
	b := &bootRun{acc: acc, dir: dir, ports: p, qemuErr: &strings.Builder{}, waitErr: make(chan error, 1),
		qmpPath: p.paths()[portQMP], ended: make(chan struct{})}
	b.cmd = exec.Command(argv[0], argv[1:]...)
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	b.cmd.Stderr = &limitedWriter{w: b.qemuErr, n: 8192}
	if b.cmd.ExtraFiles, err = connectShares(cfg.Shares); err != nil {
		return nil, err
	}
	defer closeFiles(b.cmd.ExtraFiles)
	if err := b.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	ok = true
	var ch channels = p
	if cfg.Channels == ChannelsVsock {
		cid := cfg.GuestCID
		if cid == 0 {
			cid = DefaultGuestCID
		}
		ch = &vsockChannels{cid: cid, dial: vsockDialer, closed: p.closed}
	}
	b.relay = newRelay(cfg, p, ch, carry)
	go func() { b.waitErr <- b.cmd.Wait(); close(b.ended) }()
	return b, nil
}

// wait waits for the boot's QEMU to end, relaying stop requests from stops and cfg.Stop, and
// returns how the VM ended. The boot's files are gone when it returns.
func (b *bootRun) wait(ctx context.Context, cfg Config, stops <-chan struct{}) (*Result, error) {
	defer os.RemoveAll(b.dir)
	res := &Result{ExitCode: -1}
	err := waitVM(ctx, b.cmd, b.waitErr, cfg, stops, b.relay, startDeadline(cfg, b.acc))
	b.ports.close()
	b.relay.wait()
	res.ConsoleTail = b.relay.console.String()
	if code, ok := b.relay.exitCode(); ok && !b.relay.isUnpackFailed() {
		res.ExitCode = code
		return res, nil
	}
	if b.acc.Name == AccelKVM && !b.relay.isReady() && !b.relay.isUnpackFailed() && ctx.Err() == nil {
		return res, &notStartedError{reason: notStartedReason(err, b.qemuErr.String())}
	}
	if err != nil {
		return res, err
	}
	return res, describeFailure(b.relay.console.text(), b.qemuErr.String(), cfg.MemoryMiB, b.relay.isReady())
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
func waitVM(ctx context.Context, cmd *exec.Cmd, waitErr <-chan error, cfg Config, stops <-chan struct{}, r *relay, start <-chan time.Time) error {
	began := time.Now()
	ready := r.ready
	for {
		select {
		case <-start:
			pgKill(cmd.Process.Pid)
			<-waitErr
			return fmt.Errorf("%w within %v", errStartTimeout, time.Since(began).Round(time.Second))
		case <-ready:
			ready, start = nil, nil // the init is up: no start deadline any more
		case <-r.unpackFailed:
			pgKill(cmd.Process.Pid)
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
		case <-stops:
			r.requestStop()
		case ws := <-cfg.Resize:
			r.requestResize(ws)
		case <-ctx.Done():
			pgKill(cmd.Process.Pid)
			<-waitErr
			return context.Cause(ctx)
		}
	}
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
