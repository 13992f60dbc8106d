package vm

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/c2vm/c2vm/bootcfg"
)

// Saved VMs (warm start). A guest whose boot config asks for a ready point (bootcfg.ReadyPoint)
// stops there, with its container created, and reports it on the status port; the Machine then
// calls Config.OnReadyPoint, which may Save the VM, and writes the go line (fresh entropy and the
// host's clock) that lets the guest start the container. A Config with Incoming restores such a
// saved VM (QEMU's -incoming) instead of booting it: the guest resumes at its ready point, and the
// go line follows once QEMU runs it. The restoring Config must describe the same machine and
// devices as the saving one (see MachineArgs); socket paths, the kernel's and disks' paths and
// port forwards may differ.
//
// QEMU 7.2 saves with `migrate` to an exec: URI (a pipe to cat) and restores with
// `-incoming exec:cat FILE`; QEMU 8.1+ adds the file: URI and 9.0 the mapped-ram format
// (fixed offsets per page: parallel, O_DIRECT, restorable without reading zero pages).

// ErrRestore means a saved VM could not be restored (QEMU rejected or could not read the
// state): the run never reached its workload, and may boot cold instead.
var ErrRestore = errors.New("the saved VM could not be restored")

// saveBandwidth lifts QEMU's migration bandwidth cap (128 MiB/s by default) for a save to a file.
const saveBandwidth = 1 << 40

// restorePoll is how often a restoring Machine asks QEMU whether the guest runs again.
const restorePoll = 5 * time.Millisecond

// incomingArgs are QEMU's arguments to restore cfg.Incoming.
func incomingArgs(cfg Config) []string {
	if cfg.Incoming == "" {
		return nil
	}
	return []string{"-incoming", "exec:cat " + shellQuote(cfg.Incoming)}
}

// MachineArgs returns the QEMU command line of cfg with everything a saved VM does not depend on
// replaced by fixed placeholders: socket paths, the kernel's, initrd's and disks' paths (the caller
// keys their contents), port forwards and Incoming. Two Configs with equal MachineArgs (and equal
// file contents) describe machines one can restore the other's saved state.
func MachineArgs(cfg Config) ([]string, error) {
	cfg.Incoming = ""
	cfg.Kernel, cfg.Initrd = "KERNEL", "INITRD"
	disks := make([]Disk, len(cfg.Disks))
	for i, d := range cfg.Disks {
		d.Path = "DISK" + strconv.Itoa(i)
		disks[i] = d
	}
	cfg.Disks = disks
	if cfg.Network != nil {
		cfg.Network = &Network{} // forwards live in QEMU's user network stack, not in the guest
	}
	acc, err := ChooseAccel(cfg.Accel, cfg.Arch, cfg.Host)
	if err != nil {
		return nil, err
	}
	cfg.Accel = acc.Name
	socks := map[string]string{portQMP: "QMP", portConsole: "CONSOLE"}
	if cfg.Channels != ChannelsVsock {
		for _, n := range []string{portStdout, portStderr, portStatus} {
			socks[n] = strings.ToUpper(n)
		}
		if cfg.Stdin != nil {
			socks[portStdin] = "STDIN"
		}
		if cfg.Agent {
			socks[portAgent] = "AGENT"
		}
	}
	return Argv(cfg, socks)
}

// SaveStats says what a save cost.
type SaveStats struct {
	Duration time.Duration // the guest's pause, from stop to cont
	Bytes    int64         // QEMU's count of bytes written
	QEMU     string        // QEMU's version, "7.2.22" style
}

// Save writes the VM's state to path (created or replaced by `cat`) and lets the guest run on. The
// guest is paused for the save, so the state is one consistent pass; call it from
// Config.OnReadyPoint, where the guest waits for the go line and nothing in it changes.
func (m *Machine) Save(ctx context.Context, path string) (st SaveStats, err error) {
	q, err := m.QMP(ctx)
	if err != nil {
		return st, fmt.Errorf("save vm: %w", err)
	}
	st.QEMU = q.Version
	began := time.Now()
	if err := q.Pause(ctx); err != nil {
		return st, fmt.Errorf("save vm: %w", err)
	}
	defer func() {
		if cerr := q.Resume(ctx); cerr != nil && err == nil {
			err = fmt.Errorf("save vm: %w", cerr)
		}
		st.Duration = time.Since(began)
	}()
	if err := q.Execute(ctx, "migrate-set-parameters", map[string]any{"max-bandwidth": int64(saveBandwidth)}, nil); err != nil {
		return st, fmt.Errorf("save vm: %w", err)
	}
	if err := q.Execute(ctx, "migrate", map[string]any{"uri": "exec:cat > " + shellQuote(path)}, nil); err != nil {
		return st, fmt.Errorf("save vm: %w", err)
	}
	for {
		var mi struct {
			Status    string `json:"status"`
			ErrorDesc string `json:"error-desc"`
			RAM       struct {
				Transferred int64 `json:"transferred"`
			} `json:"ram"`
		}
		if err := q.Execute(ctx, "query-migrate", nil, &mi); err != nil {
			return st, fmt.Errorf("save vm: %w", err)
		}
		switch mi.Status {
		case "completed":
			st.Bytes = mi.RAM.Transferred
			return st, nil
		case "failed", "cancelled":
			return st, fmt.Errorf("save vm to %s: migration %s: %s", path, mi.Status, mi.ErrorDesc)
		}
		select {
		case <-ctx.Done():
			q.Execute(context.Background(), "migrate_cancel", nil, nil)
			return st, fmt.Errorf("save vm: %w", ctx.Err())
		case <-m.done:
			return st, fmt.Errorf("save vm: %w", errEnded)
		case <-time.After(restorePoll):
		}
	}
}

// warmup answers the guest's ready point for one boot: for a restore, once QEMU runs the guest
// again; else once the guest reports the ready point, after Config.OnReadyPoint.
func (m *Machine) warmup(b *bootRun, incoming bool) {
	if incoming {
		if err := m.awaitRestore(b); err != nil {
			return // QEMU ends on its own: run reports ErrRestore
		}
		b.relay.sendGo()
		return
	}
	select {
	case <-b.relay.readyPointC():
	case <-b.ended:
		return
	}
	if m.cfg.OnReadyPoint != nil {
		m.cfg.OnReadyPoint(m.ctx, m)
	}
	b.relay.sendGo()
}

// awaitRestore waits until QEMU has loaded the saved state ("inmigrate" until then) and runs the
// guest.
func (m *Machine) awaitRestore(b *bootRun) error {
	ctx, cancel := context.WithCancel(m.ctx)
	defer cancel()
	go func() {
		select {
		case <-b.ended:
			cancel()
		case <-ctx.Done():
		}
	}()
	q, err := m.QMP(ctx)
	if err != nil {
		return err
	}
	for {
		s, err := q.QueryStatus(ctx)
		if err != nil {
			return err
		}
		if s.Running {
			return nil
		}
		if s.Status == "paused" {
			// Loaded: a VM saved paused (as Save does) stays paused after the restore.
			return q.Resume(ctx)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(restorePoll):
		}
	}
}

// stdinGate is what the stdin feed waits for: the init's first line, or for a guest that stops at
// its ready point (or is restored there) the go line, so that no input is in a saved VM.
func (r *relay) stdinGate() <-chan struct{} {
	if !r.cfg.ReadyPoint && r.cfg.Incoming == "" {
		return r.ready
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.warm.went == nil {
		r.warm.went = make(chan struct{})
	}
	return r.warm.went
}

// readyPointC is closed when the guest has reported its ready point.
func (r *relay) readyPointC() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.warm.point == nil {
		r.warm.point = make(chan struct{})
	}
	return r.warm.point
}

// warmState is the relay's part of the ready point.
type warmState struct {
	point     chan struct{} // closed at bootcfg.ReadyPointLine; made on first use
	pointDone bool
	pending   bool          // the go line is due once the status port connects
	sent      bool          // the go line was written
	went      chan struct{} // closed when it is; made on first use
}

// atReadyPoint records the guest's ready point line.
func (r *relay) atReadyPoint() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.warm.point == nil {
		r.warm.point = make(chan struct{})
	}
	if !r.warm.pointDone {
		r.warm.pointDone = true
		close(r.warm.point)
	}
}

// sendGo writes the go line with fresh entropy and the clock now, or once the status port
// connects; a restored guest has written nothing yet, so this is also its sign of life.
func (r *relay) sendGo() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.status == nil {
		r.warm.pending = true
		return
	}
	r.writeGoLocked()
}

// flushGoLocked writes a go line that was due before the status port connected; r.mu is held.
func (r *relay) flushGoLocked() {
	if r.warm.pending {
		r.writeGoLocked()
	}
}

func (r *relay) writeGoLocked() {
	if r.warm.sent {
		return
	}
	r.warm.pending = false
	r.warm.sent = true
	if r.warm.went == nil {
		r.warm.went = make(chan struct{})
	}
	close(r.warm.went)
	r.readyOnce.Do(func() { close(r.ready) })
	e := make([]byte, bootcfg.GoEntropyBytes)
	rand.Read(e)
	r.status.Write([]byte(bootcfg.FormatGo(e, time.Now())))
}

// wentGo reports whether the go line was written.
func (r *relay) wentGo() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.warm.sent
}

// shellQuote quotes s for /bin/sh, which runs QEMU's exec: URIs.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// restoreFailure says why a restore failed: QEMU's last line (load of migration failed: ...)
// when it said something.
func restoreFailure(err error, qemuStderr string) string {
	if s := strings.TrimSpace(qemuStderr); s != "" {
		return "qemu: " + LastLine(s)
	}
	return err.Error()
}
