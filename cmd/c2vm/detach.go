package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/c2vm/c2vm/bundle"
	"github.com/c2vm/c2vm/internal/supervise"
	"github.com/c2vm/c2vm/internal/vm"
)

// run -d: the VM runs under a supervisor process, c2vm itself (`c2vm supervise ID`, in a session
// of its own so that it survives the shell), which runs the same `c2vm run` in-process with the
// workload's stdout and stderr going to the VM's log, and records how it ended. QEMU dies with
// its supervisor (PR_SET_PDEATHSIG, set by package vm), so a killed supervisor leaves no QEMU.
// The supervisor boots the VM with the agent channel and serves the control socket (package
// supervise) through which exec, kill and stop reach the guest; run -d returns once the workload
// runs, as docker run -d returns once the container has started.

// detachStart bounds how long the supervisor waits for the workload to run (a boot under TCG on
// a busy host takes tens of seconds) before it calls the VM running anyway.
const detachStart = 2 * time.Minute

// EnvStateDir names the environment variable that moves the state root (tests, several users of
// one account); unset, it is supervise.DefaultRoot.
const EnvStateDir = "C2VM_STATE_DIR"

func stateStore() supervise.Store {
	if d := os.Getenv(EnvStateDir); d != "" {
		return supervise.Store{Root: d}
	}
	return supervise.Store{Root: supervise.DefaultRoot()}
}

// supervisorKey carries, in run's context, the supervisor's hook that takes the started VM over.
type supervisorKey struct{}

// bootVM boots the VM and waits for it: vm.Run in the foreground; under a supervisor (run -d) the
// VM gets the agent channel and the supervisor's hook gets the Machine.
func bootVM(ctx context.Context, cfg vm.Config) (*vm.Result, error) {
	hook, ok := ctx.Value(supervisorKey{}).(func(*vm.Machine))
	if !ok {
		return vm.Run(ctx, cfg)
	}
	cfg.Agent = true
	m, err := vm.Start(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	hook(m)
	return m.Wait()
}

// runDetached starts the supervisor for the run c describes and prints the VM's ID.
func runDetached(c *cli.Context) error {
	args, err := runArgs(c)
	if err != nil {
		return err
	}
	// A DIR that is no bundle fails here, in one line, as it does in the foreground.
	dir, err := runBundleDir(c, c.Args().First())
	if err != nil {
		return err
	}
	if dir, err = bundle.Resolve(dir, c.String("platform")); err != nil {
		return err
	}
	if _, err := bundle.Read(dir); err != nil {
		return err
	}
	st := stateStore()
	rec, err := st.Create(supervise.Record{Name: c.String("name"), Bundle: c.Args().First(), Command: c.Args().Tail(), Args: args, Created: time.Now()})
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}
	cmd := exec.Command(self, "supervise", rec.ID)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil { // stdio: /dev/null
		st.Remove(rec.ID)
		return fmt.Errorf("run: start supervisor: %w", err)
	}
	go cmd.Wait()
	for deadline := time.Now().Add(detachStart + 10*time.Second); ; time.Sleep(20 * time.Millisecond) {
		r, err := st.Get(rec.ID)
		if err != nil {
			return fmt.Errorf("run: %w", err)
		}
		if r.State != supervise.StateCreated {
			if r.State == supervise.StateExited && r.Error != "" {
				return fmt.Errorf("run: %s", r.Error)
			}
			break
		}
		if cmd.ProcessState != nil || time.Now().After(deadline) {
			return fmt.Errorf("run: the supervisor of %s did not start (see c2vm logs %s)", rec.Name, rec.Name)
		}
	}
	fmt.Fprintln(c.App.Writer, rec.ID)
	return nil
}

// runArgs rebuilds run's flags and arguments without -d and --name, for the supervisor.
func runArgs(c *cli.Context) ([]string, error) {
	var args []string
	for _, f := range c.Command.Flags {
		name := f.Names()[0]
		if name == "detach" || name == "name" || !c.IsSet(name) {
			continue
		}
		switch f := f.(type) {
		case *cli.BoolFlag:
			args = append(args, "--"+name+"="+strconv.FormatBool(c.Bool(name)))
		case *cli.StringSliceFlag:
			for _, v := range c.StringSlice(name) {
				args = append(args, "--"+name+"="+v)
			}
		case *cli.StringFlag:
			args = append(args, "--"+name+"="+c.String(name))
		case *cli.IntFlag:
			args = append(args, "--"+name+"="+strconv.Itoa(c.Int(name)))
		default:
			return nil, fmt.Errorf("run -d: flag --%s (%T) cannot be passed on", name, f)
		}
	}
	if c.Bool("interactive") || c.Bool("tty") {
		return nil, usageError("run: -d with -i or -t is not supported yet: use c2vm exec -it NAME sh on the detached VM")
	}
	return append(append(args, c.Args().First(), "--"), c.Args().Tail()...), nil
}

func superviseCommand() *cli.Command {
	return &cli.Command{
		Name:      "supervise",
		Hidden:    true,
		Usage:     "run a detached VM (started by run -d)",
		ArgsUsage: "ID",
		Action:    runSupervise,
	}
}

// runSupervise is the supervisor: it runs the VM in-process, its output to the log, serves the
// control socket while the VM runs, and records its state and exit status.
func runSupervise(c *cli.Context) error {
	st := stateStore()
	id := c.Args().First()
	rec, err := st.Get(id)
	if err != nil {
		return err
	}
	log, err := supervise.OpenLog(st.LogPath(rec.ID))
	if err != nil {
		return err
	}
	defer log.Close()
	if _, err := st.Update(rec.ID, func(r *supervise.Record) { r.Pid = os.Getpid() }); err != nil {
		return err
	}
	stderr := log.Writer("stderr")
	setRunning := func() {
		st.Update(rec.ID, func(r *supervise.Record) {
			if r.State == supervise.StateCreated {
				r.State, r.Started = supervise.StateRunning, time.Now()
			}
		})
	}
	ctx := context.WithValue(c.Context, supervisorKey{}, func(m *vm.Machine) {
		ctl, err := supervise.ServeControl(c.Context, st.ControlPath(rec.ID), m, m.Agent)
		if err != nil { // the VM runs on, without exec
			fmt.Fprintf(stderr, "c2vm: supervisor: %v\n", err)
			setRunning()
			return
		}
		go func() { <-m.Done(); ctl.Close() }()
		go func() { ctl.WaitWorkload(c.Context, detachStart, 50*time.Millisecond); setRunning() }()
	})
	runErr := NewApp(eofReader{}, log.Writer("stdout"), stderr).RunContext(ctx, append([]string{"c2vm", "run"}, rec.Args...))
	code := exitStatus(runErr, stderr)
	_, err = st.Update(rec.ID, func(r *supervise.Record) {
		var ee exitError
		if runErr != nil && !errors.As(runErr, &ee) && !errors.Is(runErr, context.Canceled) { // c2vm or the VM failed
			r.Error = oneLine(runErr.Error())
		}
		r.State, r.ExitCode, r.Finished = supervise.StateExited, code, time.Now()
	})
	return err
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }
