package main

import (
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/c2vm/c2vm/internal/supervise"
)

func logsCommand() *cli.Command {
	return &cli.Command{
		Name:      "logs",
		Usage:     "show a detached VM's output (stdout and stderr apart)",
		ArgsUsage: "NAME|ID",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "follow the output until the VM ends"},
			&cli.IntFlag{Name: "tail", Aliases: []string{"n"}, Usage: "only the last N lines (0 = all)"},
			&cli.BoolFlag{Name: "timestamps", Aliases: []string{"t"}, Usage: "show timestamps"},
		},
		UseShortOptionHandling: true,
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageError("logs: want one NAME or ID")
			}
			st := stateStore()
			r, err := st.Get(c.Args().First())
			if err != nil {
				return fmt.Errorf("logs: %w", err)
			}
			id := r.ID
			opts := supervise.LogOptions{Tail: c.Int("tail"), Timestamps: c.Bool("timestamps")}
			off, err := supervise.ReadLog(st.LogPath(id), opts, 0, c.App.Writer, c.App.ErrWriter)
			if err != nil {
				return fmt.Errorf("logs: %w", err)
			}
			opts.Tail = 0
			for c.Bool("follow") {
				r, err := st.Get(id)
				running := err == nil && r.Running()
				if off, err = supervise.ReadLog(st.LogPath(id), opts, off, c.App.Writer, c.App.ErrWriter); err != nil {
					return fmt.Errorf("logs: %w", err)
				}
				if !running {
					return nil
				}
				time.Sleep(100 * time.Millisecond)
			}
			return nil
		},
	}
}
