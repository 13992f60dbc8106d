package main

import (
	"context"
	"fmt"
	"time"

	"github.com/moby/sys/signal"
	"github.com/urfave/cli/v2"

	"github.com/c2vm/c2vm/agent"
	"github.com/c2vm/c2vm/internal/supervise"
)

func killCommand() *cli.Command {
	return &cli.Command{
		Name:      "kill",
		Usage:     "send a signal to detached VMs' workloads",
		ArgsUsage: "NAME|ID...",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "signal", Aliases: []string{"s"}, Value: "KILL", Usage: "signal to send: a name (TERM, SIGTERM) or a number"},
		},
		Action: runKill,
	}
}

// runKill signals each VM's workload through its control socket (runc kill in the guest), as
// docker kill signals the container's main process; it prints each name.
func runKill(c *cli.Context) error {
	if c.NArg() == 0 {
		return usageError("kill: want at least one NAME or ID")
	}
	sig, err := signal.ParseSignal(c.String("signal"))
	if err != nil || sig < 1 || sig > 64 {
		return usageError("kill: --signal %q: no such signal (want a name such as SIGTERM, or 1-64)", c.String("signal"))
	}
	st := stateStore()
	for _, ref := range c.Args().Slice() {
		r, err := st.Get(ref)
		if err != nil {
			return fmt.Errorf("kill: %w", err)
		}
		if !r.Running() {
			return fmt.Errorf("kill: VM %s is not running", ref)
		}
		if err := signalWorkload(c.Context, st, r, uint32(sig)); err != nil {
			return fmt.Errorf("kill %s: %w", ref, err)
		}
		fmt.Fprintln(c.App.Writer, ref)
	}
	return nil
}

// signalWorkload sends sig to the VM's workload through its control socket.
func signalWorkload(ctx context.Context, st supervise.Store, r *supervise.Record, sig uint32) error {
	err := callControl(ctx, st, r, func(ctx context.Context, svc agent.AgentService) error {
		_, err := svc.SignalWorkload(ctx, &agent.SignalWorkloadRequest{Signal: sig})
		return err
	})
	if err != nil {
		return fmt.Errorf("%s", errorText(err))
	}
	return nil
}

// callControl makes one call on a VM's control socket, within 10 s.
func callControl(ctx context.Context, st supervise.Store, r *supervise.Record, call func(context.Context, agent.AgentService) error) error {
	svc, cl, err := supervise.DialControl(st.ControlPath(r.ID))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return call(ctx, svc)
}
