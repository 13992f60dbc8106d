package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
)

func psCommand() *cli.Command {
	return &cli.Command{
		Name:  "ps",
		Usage: "list detached VMs (c2vm run -d)",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "all", Aliases: []string{"a"}, Usage: "show all VMs (default shows just running)"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "only display IDs"},
		},
		UseShortOptionHandling: true,
		Action:                 runPs,
	}
}

func runPs(c *cli.Context) error {
	recs, err := stateStore().List()
	if err != nil {
		return fmt.Errorf("ps: %w", err)
	}
	now := time.Now()
	w := tabwriter.NewWriter(c.App.Writer, 0, 8, 3, ' ', 0)
	if !c.Bool("quiet") {
		fmt.Fprintln(w, "VM ID\tBUNDLE\tCOMMAND\tCREATED\tSTATUS\tNAMES")
	}
	for _, r := range recs {
		if !c.Bool("all") && !r.Running() {
			continue
		}
		if c.Bool("quiet") {
			fmt.Fprintln(w, r.ID[:12])
			continue
		}
		cmd := strings.Join(r.Command, " ")
		if len(cmd) > 20 {
			cmd = cmd[:19] + "…"
		}
		fmt.Fprintf(w, "%s\t%s\t%q\t%s ago\t%s\t%s\n", r.ID[:12], r.Bundle, cmd, humanAge(now.Sub(r.Created)), r.Status(now), r.Name)
	}
	return w.Flush()
}

func humanAge(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%d seconds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%d minutes", int(d.Minutes()))
	}
	return fmt.Sprintf("%d hours", int(d.Hours()))
}
