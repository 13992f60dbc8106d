package main

import (
	"fmt"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

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

// runStop sends the supervisor SIGTERM, which asks the guest to stop the workload (its stop
// signal), and a second one after -t seconds, which kills the VM; then waits for the record to
// say exited. It prints each name as docker stop does.
func runStop(c *cli.Context) error {
	if c.NArg() == 0 {
		return usageError("stop: want at least one NAME or ID")
	}
	st := stateStore()
	for _, ref := range c.Args().Slice() {
		r, err := st.Get(ref)
		if err != nil {
			return fmt.Errorf("stop: %w", err)
		}
		if r.Running() {
			syscall.Kill(r.Pid, syscall.SIGTERM)
			if !waitExited(st, r.ID, time.Duration(c.Int("time"))*time.Second) {
				syscall.Kill(r.Pid, syscall.SIGTERM) // the second: the VM is killed
				if !waitExited(st, r.ID, 10*time.Second) {
					syscall.Kill(r.Pid, syscall.SIGKILL) // QEMU dies with it (PDEATHSIG)
				}
			}
		}
		fmt.Fprintln(c.App.Writer, ref)
	}
	return nil
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
