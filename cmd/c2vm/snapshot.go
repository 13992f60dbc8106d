package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/docker/go-units"
	"github.com/urfave/cli/v2"

	"github.com/c2vm/c2vm/bundle"
	"github.com/c2vm/c2vm/internal/cachedir"
	"github.com/c2vm/c2vm/internal/launch"
	"github.com/c2vm/c2vm/internal/snapshot"
	"github.com/c2vm/c2vm/internal/vm"
)

// Warm starts (internal/snapshot): run --snapshot and the snapshot command.
const (
	snapshotAuto  = "auto"  // restore a saved VM that matches; else boot and save one
	snapshotNever = "never" // always boot
	snapshotOnly  = "only"  // restore a saved VM, or fail
	// defaultSnapshot is run's --snapshot when neither the flag nor C2VM_SNAPSHOT says.
	defaultSnapshot = snapshotNever
)

func snapshotFlag() cli.Flag {
	return &cli.StringFlag{Name: "snapshot", Value: defaultSnapshot, EnvVars: []string{"C2VM_SNAPSHOT"},
		Usage: "warm start: auto (restore a saved VM of this bundle and run settings, else boot and save one), never, or only (restore, or fail)"}
}

// snapshotMode reads --snapshot (or C2VM_SNAPSHOT) and says whether this run can use a saved VM at
// all: a run with writable disks or host directories (their contents change between runs), a
// terminal, or under run -d's supervisor boots.
func snapshotMode(c *cli.Context, opts launch.Options) (string, error) {
	mode := c.String("snapshot")
	switch mode {
	case snapshotAuto, snapshotNever, snapshotOnly:
	default:
		return "", usageError("run: --snapshot (or C2VM_SNAPSHOT) %q: want auto, never or only", mode)
	}
	if mode == snapshotNever || c.Bool("dry-run") {
		return snapshotNever, nil
	}
	why := ""
	switch {
	case len(opts.Volumes) > 0:
		why = "volumes and bind mounts"
	case opts.Persist != "":
		why = "--persist"
	case opts.Overrides.Terminal:
		why = "a terminal (-t)"
	case c.Context.Value(supervisorKey{}) != nil:
		why = "a detached VM (-d)"
	}
	if why == "" {
		return mode, nil
	}
	if mode == snapshotOnly {
		return "", usageError("run: --snapshot only: a saved VM cannot hold a run with %s: use --snapshot auto or never", why)
	}
	return snapshotNever, nil
}

// warmStart is one run's use of the saved VMs.
type warmStart struct {
	c     *cli.Context
	mode  string
	store snapshot.Store
	key   snapshot.Key
	debug bool
}

// prepareWarm finds the saved VM for the run cfg describes, and sets cfg to restore it or, in
// auto mode, to save one at the guest's ready point. A saved VM that is damaged is reported once
// and the run boots.
func prepareWarm(c *cli.Context, mode, dir string, cfg *vm.Config) (*warmStart, error) {
	if mode == snapshotNever {
		return nil, nil
	}
	if cfg.Channels == vm.ChannelsVsock || len(cfg.Shares) > 0 {
		if mode == snapshotOnly {
			return nil, usageError("run: --snapshot only: a saved VM cannot hold vsock channels or shared directories")
		}
		return nil, nil
	}
	cache, err := cachedir.Default()
	if err != nil {
		return nil, err
	}
	w := &warmStart{c: c, mode: mode, store: snapshot.Open(cache), debug: c.Bool("debug")}
	if w.key, err = snapshot.KeyFor(dir, *cfg); err != nil {
		return nil, fmt.Errorf("run: %w", err)
	}
	saved, ok, err := w.store.Lookup(w.key)
	switch {
	case err != nil && mode == snapshotOnly:
		return nil, fmt.Errorf("run: --snapshot only: %w", err)
	case err != nil:
		w.warn(err)
	case ok:
		cfg.Incoming = saved.State
		w.debugf("restoring the saved VM %s", saved.Dir)
		return w, nil
	case mode == snapshotOnly:
		return nil, fmt.Errorf("run: --snapshot only: no saved VM matches this bundle and run settings: make one with `c2vm snapshot` (same flags) or a run with --snapshot auto")
	}
	cfg.OnReadyPoint = w.save
	return w, nil
}

// save saves the VM at its ready point (unless another run is saving the same one).
func (w *warmStart) save(ctx context.Context, m *vm.Machine) {
	mk, err := w.store.Begin(w.key)
	if err != nil || mk == nil {
		if err != nil {
			w.warn(err)
		}
		return
	}
	st, err := m.Save(ctx, mk.Path())
	if err != nil {
		mk.Abort()
		w.warn(err)
		return
	}
	meta, err := mk.Commit(st.QEMU, st.Duration)
	if err != nil {
		w.warn(err)
		return
	}
	w.debugf("saved the VM (%s) in %v", units.HumanSize(float64(meta.Size)), st.Duration.Round(time.Millisecond))
}

// boot runs the VM; a restore that QEMU rejects is reported once and the run boots instead.
func (w *warmStart) boot(ctx context.Context, cfg vm.Config) (*vm.Result, error) {
	res, err := bootVM(ctx, cfg)
	if w == nil || cfg.Incoming == "" || !errors.Is(err, vm.ErrRestore) || w.mode == snapshotOnly {
		return res, err
	}
	w.warn(err)
	os.RemoveAll(w.dirOf(cfg.Incoming))
	cfg.Incoming = ""
	cfg.OnReadyPoint = w.save
	return bootVM(ctx, cfg)
}

func (w *warmStart) dirOf(state string) string {
	if saved, ok, _ := w.store.Lookup(w.key); ok && saved.State == state {
		return saved.Dir
	}
	return ""
}

func (w *warmStart) warn(err error) {
	fmt.Fprintf(w.c.App.ErrWriter, "c2vm: warning: not using a saved VM: %v; booting instead\n", err)
}

func (w *warmStart) debugf(format string, a ...any) {
	if w.debug {
		fmt.Fprintf(w.c.App.ErrWriter, "c2vm: snapshot: "+format+"\n", a...)
	}
}

// snapshotCommand is `c2vm snapshot BUNDLE [-- COMMAND]`: boot the bundle with run's settings,
// save the VM at the guest's ready point, and stop, so that the first `c2vm run` with the same
// settings is warm (in CI, or a docker build stage).
func snapshotCommand() *cli.Command {
	run := runCommand()
	return &cli.Command{
		Name:                   "snapshot",
		Usage:                  "boot a bundle once and save the VM, for warm starts of `c2vm run` with the same flags",
		ArgsUsage:              "DIR [-- COMMAND ARGS...]",
		UseShortOptionHandling: true,
		Flags:                  run.Flags,
		Action:                 runSnapshot,
	}
}

func runSnapshot(c *cli.Context) error {
	args := c.Args().Slice()
	if len(args) == 0 {
		return usageError("snapshot: want a bundle DIR argument")
	}
	if c.Bool("detach") || c.Bool("dry-run") {
		return usageError("snapshot: -d and --dry-run are run's")
	}
	dir, cmd := args[0], args[1:]
	if len(cmd) > 0 && cmd[0] == "--" {
		cmd = cmd[1:]
	}
	opts, err := runOptions(c, cmd)
	if err != nil {
		return err
	}
	if _, err := snapshotModeFor(c, opts); err != nil {
		return err
	}
	if dir, err = runBundleDir(c, dir); err != nil {
		return err
	}
	if dir, err = bundle.Resolve(dir, c.String("platform")); err != nil {
		return err
	}
	opts.ReadyPoint = true
	plan, err := launch.Prepare(c.Context, dir, opts)
	if err != nil {
		return err
	}
	defer plan.Close()
	cfg := plan.VM
	if c.Bool("interactive") {
		cfg.Stdin = c.App.Reader // the stdin channel is part of the machine
	}
	cache, err := cachedir.Default()
	if err != nil {
		return err
	}
	store := snapshot.Open(cache)
	key, err := snapshot.KeyFor(dir, cfg)
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	if saved, ok, _ := store.Lookup(key); ok {
		fmt.Fprintf(c.App.Writer, "%s (already saved)\n", saved.Dir)
		return nil
	}
	var saveErr error
	saved := make(chan struct{})
	cfg.OnReadyPoint = func(ctx context.Context, m *vm.Machine) {
		defer close(saved)
		mk, err := store.Begin(key)
		if err != nil || mk == nil {
			saveErr = err
			return
		}
		st, err := m.Save(ctx, mk.Path())
		if err != nil {
			mk.Abort()
			saveErr = err
			return
		}
		_, saveErr = mk.Commit(st.QEMU, st.Duration)
	}
	if c.Bool("debug") {
		cfg.Console = c.App.ErrWriter
	}
	cfg.Stderr = c.App.ErrWriter
	m, err := vm.Start(c.Context, cfg)
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	defer m.Close()
	select {
	case <-saved:
	case <-m.Done():
		_, err := m.Wait()
		return fmt.Errorf("snapshot: the VM ended before its ready point: %v", err)
	}
	m.Kill() // the workload never starts
	if saveErr != nil {
		return fmt.Errorf("snapshot: %w", saveErr)
	}
	got, ok, err := store.Lookup(key)
	if err != nil || !ok {
		return fmt.Errorf("snapshot: another run is saving this VM now; try again")
	}
	fmt.Fprintf(c.App.Writer, "%s (%s, paused %v)\n", got.Dir, units.HumanSize(float64(got.Meta.Size)), got.Meta.SaveTime.Round(time.Millisecond))
	return nil
}

// snapshotModeFor checks that c's run settings can be saved at all.
func snapshotModeFor(c *cli.Context, opts launch.Options) (string, error) {
	if len(opts.Volumes) > 0 || opts.Persist != "" || opts.Overrides.Terminal {
		return "", usageError("snapshot: a saved VM cannot hold volumes, bind mounts, --persist or a terminal (-t)")
	}
	return snapshotOnly, nil
}
