package vm

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
)

// Machine is a running VM: it can be waited for, asked to stop its workload, killed, and
// controlled through QEMU's machine protocol (QMP). When the accelerator was picked automatically
// and a KVM boot dies before the guest init reports in, the Machine boots the same VM once more
// under TCG; stop requests and the terminal size not yet delivered carry over to that boot.
type Machine struct {
	cfg    Config
	ctx    context.Context
	cancel context.CancelCauseFunc
	stopc  chan struct{} // Stop's requests, to the boot's wait loop
	done   chan struct{} // closed when the VM has ended and its files are gone

	mu  sync.Mutex
	cur *bootRun // the boot running now; nil before the first and after the last
	qmp *QMP     // connected to cur's QMP socket; nil until QMP is first called

	res *Result
	err error
}

// ErrKilled means the VM was ended by Kill (or Close) before it finished.
var ErrKilled = errors.New("the VM was killed")

// errEnded is QMP's error once the VM has ended.
var errEnded = errors.New("the VM has ended")

// Start boots the VM and returns once QEMU runs; Wait reports how it ended. Cancelling ctx kills
// the VM. Close must be called to release it.
func Start(ctx context.Context, cfg Config) (*Machine, error) {
	acc, err := ChooseAccel(cfg.Accel, cfg.Arch, cfg.Host)
	if err != nil {
		return nil, fmt.Errorf("start vm: %w", err)
	}
	m := &Machine{cfg: cfg, stopc: make(chan struct{}, 1), done: make(chan struct{})}
	m.ctx, m.cancel = context.WithCancelCause(ctx)
	b, err := m.startBoot(acc, carryOver{})
	if err != nil {
		m.cancel(err)
		return nil, err
	}
	go m.run(b, acc)
	return m, nil
}

// Run boots the VM and waits for it to end. It returns the workload's exit status; an error means
// c2vm or the VM failed (the Result still carries the console tail for diagnosis). When the
// accelerator was picked automatically and a KVM boot dies before the guest init reports in (QEMU
// exits, or no sign of the init within KVMStartTimeout), the same boot runs once more under TCG.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	m, err := Start(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	return m.Wait()
}

// run waits for the first boot and, when it was an automatic KVM boot that never reached the
// init, boots once more under TCG.
func (m *Machine) run(b *bootRun, acc Accel) {
	defer close(m.done)
	res, err := b.wait(m.ctx, m.cfg, m.stopc)
	var ns *notStartedError
	if err != nil && m.cfg.Incoming != "" && !b.relay.wentGo() && m.ctx.Err() == nil {
		err = fmt.Errorf("%w: %s", ErrRestore, restoreFailure(err, b.qemuErr.String()))
	} else if errors.As(err, &ns) && acc.Name == AccelKVM {
		if !acc.Auto {
			err = fmt.Errorf("start vm: %w (%s): use --accel tcg", ErrKVM, ns.reason)
		} else {
			carry := b.relay.undelivered()
			b2, err2 := m.startBoot(Accel{Name: AccelTCG, Auto: true, Reason: "KVM failed", Fallback: ns.reason}, carry)
			err = err2
			if err2 == nil {
				res, err = b2.wait(m.ctx, m.cfg, m.stopc)
			}
		}
	}
	m.mu.Lock()
	m.cur = nil
	if m.qmp != nil {
		m.qmp.Close()
		m.qmp = nil
	}
	m.res, m.err = res, err
	m.mu.Unlock()
}

// startBoot starts QEMU under acc and makes it the current boot.
func (m *Machine) startBoot(acc Accel, carry carryOver) (*bootRun, error) {
	b, err := startBoot(m.cfg, acc, carry)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	old := m.qmp
	m.cur, m.qmp = b, nil
	m.mu.Unlock()
	if old != nil {
		old.Close()
	}
	go m.warmup(b, m.cfg.Incoming != "")
	return b, nil
}

// Wait waits for the VM to end and returns the workload's exit status, as Run does. It may be
// called more than once.
func (m *Machine) Wait() (*Result, error) {
	<-m.done
	return m.res, m.err
}

// Done is closed when the VM has ended.
func (m *Machine) Done() <-chan struct{} { return m.done }

// Stop asks the guest to stop the workload: its stop signal, then SIGKILL after its stop timeout
// (what c2vm run does on the first Ctrl-C or SIGTERM). A request made before the guest init is up
// is delivered once it is.
func (m *Machine) Stop() {
	select {
	case m.stopc <- struct{}{}:
	default: // one request is already on its way
	}
}

// Kill ends QEMU at once (SIGKILL to its process group); Wait then returns an error wrapping
// ErrKilled.
func (m *Machine) Kill() { m.cancel(ErrKilled) }

// Close kills the VM if it still runs, waits for it to end and removes its files.
func (m *Machine) Close() error {
	m.cancel(ErrKilled)
	<-m.done
	return nil
}

// QMP returns a client of the running boot's QMP socket, connecting on first use; the Machine
// owns it (do not Close it). After a KVM→TCG fallback it is a new connection to the new QEMU.
func (m *Machine) QMP(ctx context.Context) (*QMP, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cur == nil {
		return nil, errEnded
	}
	if m.qmp != nil {
		select {
		case <-m.qmp.done: // the connection broke: connect again
		default:
			return m.qmp, nil
		}
	}
	b := m.cur
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { // stop trying when this boot ends
		select {
		case <-b.ended:
			cancel()
		case <-ctx.Done():
		}
	}()
	q, err := DialQMP(ctx, b.qmpPath)
	if err != nil {
		return nil, err
	}
	m.qmp = q
	return q, nil
}

// Pause stops the guest's CPUs.
func (m *Machine) Pause(ctx context.Context) error {
	q, err := m.QMP(ctx)
	if err != nil {
		return err
	}
	return q.Pause(ctx)
}

// Resume restarts the guest's CPUs.
func (m *Machine) Resume(ctx context.Context) error {
	q, err := m.QMP(ctx)
	if err != nil {
		return err
	}
	return q.Resume(ctx)
}

// QueryStatus returns QEMU's run state of the VM.
func (m *Machine) QueryStatus(ctx context.Context) (Status, error) {
	q, err := m.QMP(ctx)
	if err != nil {
		return Status{}, err
	}
	return q.QueryStatus(ctx)
}

// pgKill sends SIGKILL to QEMU's process group.
func pgKill(pid int) { _ = syscall.Kill(-pid, syscall.SIGKILL) }
