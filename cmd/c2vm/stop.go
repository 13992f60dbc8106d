package main

import (
	"context"
	"fmt"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/c2vm/c2vm/agent"
	"github.com/c2vm/c2vm/internal/supervise"
)

func stopCommand() *cli.Command {
	return &cli.Command{
		Name:      "stop",
		Usage:     "stop detached VMs: the workload's stop signal, then SIGKILL after the timeout",
		ArgsUsage: "NAME|ID...",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "time", Aliases: []string{"t"}, Value: 10, Usage: "seconds to wait before killing the VM"},
		},
		Action: runStop,
	}
}

// runStop stops each VM as docker stop does: the workload's stop signal (the image's STOPSIGNAL
// or --stop-signal), then SIGKILL after -t seconds (-t 0: SIGKILL at once), sent by the guest's
// agent through the VM's control socket; the supervisor kills QEMU if the VM still runs
// supervise.StopGrace later. Without a control socket (a supervisor that did not start one) the
// supervisor gets SIGTERM, which asks the guest over the status channel, and a second one after
// -t seconds, which kills the VM. It waits for each VM to end and prints its name.
func runStop(c *cli.Context) error {
	if c.NArg() == 0 {
		return usageError("stop: want at least one NAME or ID")
	}
	t := c.Int("time")
	if t < 0 {
		return usageError("stop: -t %d: want seconds >= 0", t)
	}
	timeout := time.Duration(t) * time.Second
	st := stateStore()
	for _, ref := range c.Args().Slice() {
		r, err := st.Get(ref)
		if err != nil {
			return fmt.Errorf("stop: %w", err)
		}
		if r.Running() {
			if err := stopThroughAgent(c.Context, st, r, t); err == nil {
				if !waitExited(st, r.ID, timeout+supervise.StopGrace+5*time.Second) {
					syscall.Kill(r.Pid, syscall.SIGKILL) // QEMU dies with it (PDEATHSIG)
				}
			} else {
				syscall.Kill(r.Pid, syscall.SIGTERM)
				if !waitExited(st, r.ID, timeout) {
					syscall.Kill(r.Pid, syscall.SIGTERM) // the second: the VM is killed
					if !waitExited(st, r.ID, 10*time.Second) {
						syscall.Kill(r.Pid, syscall.SIGKILL)
					}
				}
			}
		}
		fmt.Fprintln(c.App.Writer, ref)
	}
	return nil
}

// stopThroughAgent asks the VM's supervisor to stop the workload within t seconds.
func stopThroughAgent(ctx context.Context, st supervise.Store, r *supervise.Record, t int) error {
	if t == 0 {
		return signalWorkload(ctx, st, r, uint32(syscall.SIGKILL))
	}
	return callControl(ctx, st, r, func(ctx context.Context, svc agent.AgentService) error {
		_, err := svc.Shutdown(ctx, &agent.ShutdownRequest{TimeoutSeconds: uint32(t)})
		return err
	})
}

// waitExited waits up to d (d < 0: for ever) until the VM's supervisor has ended; it reports
// whether it did.
func waitExited(st supervise.Store, id string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		r, err := st.Get(id)
		if err != nil || !r.Running() {
			return true
		}
		if d >= 0 && time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func waitCommand() *cli.Command {
	return &cli.Command{
		Name:      "wait",
		Usage:     "wait for detached VMs to end and print their exit statuses",
		ArgsUsage: "NAME|ID...",
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return usageError("wait: want at least one NAME or ID")
			}
			st := stateStore()
			for _, ref := range c.Args().Slice() {
				r, err := st.Get(ref)
				if err != nil {
					return fmt.Errorf("wait: %w", err)
				}
				waitExited(st, r.ID, -1)
				if r, err = st.Get(r.ID); err != nil {
					return fmt.Errorf("wait: %w", err)
				}
				fmt.Fprintln(c.App.Writer, r.ExitCode)
			}
			return nil
		},
	}
}
