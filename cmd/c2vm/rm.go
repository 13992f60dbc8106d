package main

import (
	"fmt"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
)

func rmCommand() *cli.Command {
	return &cli.Command{
		Name:      "rm",
		Usage:     "remove detached VMs (their record and log)",
		ArgsUsage: "NAME|ID...",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "kill a running VM first"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return usageError("rm: want at least one NAME or ID")
			}
			st := stateStore()
			for _, ref := range c.Args().Slice() {
				r, err := st.Get(ref)
				if err != nil {
					return fmt.Errorf("rm: %w", err)
				}
				if r.Running() {
					if !c.Bool("force") {
						return fmt.Errorf("rm: VM %s is running: stop it first, or use rm -f", ref)
					}
					syscall.Kill(r.Pid, syscall.SIGKILL) // QEMU dies with its supervisor
					waitExited(st, r.ID, 10*time.Second)
				}
				if err := st.Remove(r.ID); err != nil {
					return fmt.Errorf("rm: %w", err)
				}
				fmt.Fprintln(c.App.Writer, ref)
			}
			return nil
		},
	}
}
