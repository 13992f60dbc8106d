package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/c2vm/c2vm/internal/export"
)

func exportCommand() *cli.Command {
	return &cli.Command{
		Name:      "export",
		Usage:     "write what another VMM needs to boot a bundle: a QEMU script, a spindle image, a Firecracker or Cloud Hypervisor config",
		ArgsUsage: "BUNDLE",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "runner", Usage: "the VMM: " + strings.Join(export.Runners(), ", ")},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "directory to write (new or empty; the bundle's files are hard-linked in)"},
			&cli.BoolFlag{Name: "tcg", Usage: "spindle: a machine for hosts without KVM (accel=tcg); run spindle with SPINDLE_MICROVM_PIPELINES_ENABLE_KVM=false"},
			&cli.IntFlag{Name: "workspace-size", Value: export.DefaultWorkspaceMiB, Usage: "spindle: size in MiB of the /workspace volume spindle creates for each job"},
		},
		Action: runExport,
	}
}

func runExport(c *cli.Context) error {
	if c.NArg() != 1 {
		return usageError("export: want exactly one BUNDLE argument (flags go before it), got %d", c.NArg())
	}
	if c.String("runner") == "" || c.String("output") == "" {
		return usageError("export: --runner (%s) and -o DIR are required", strings.Join(export.Runners(), ", "))
	}
	res, err := export.Write(c.Context, c.Args().First(), c.String("output"), export.Options{Runner: c.String("runner"), TCG: c.Bool("tcg"), WorkspaceMiB: c.Int("workspace-size")})
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "%s: %s (%s)\n", c.String("runner"), res.Dir+"/"+res.Entry, strings.Join(res.Files, ", "))
	return nil
}
