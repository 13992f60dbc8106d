package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/c2vm/c2vm/bundle"
)

func inspectCommand() *cli.Command {
	return &cli.Command{
		Name:      "inspect",
		Usage:     "show what is in a VM bundle",
		ArgsUsage: "DIR",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "platform", Usage: "the bundle of a bundle set to show", DefaultText: "the host's"},
			&cli.BoolFlag{Name: "json", Usage: "print bundle.json"},
			&cli.BoolFlag{Name: "verify", Usage: "check every file against its recorded size and sha256"},
		},
		Action: runInspect,
	}
}

func runInspect(c *cli.Context) error {
	if c.NArg() != 1 {
		return usageError("inspect: want exactly one bundle DIR argument, got %d", c.NArg())
	}
	dir, err := bundle.Resolve(c.Args().First(), c.String("platform"))
	if err != nil {
		return err
	}
	m, err := bundle.Read(dir)
	if err != nil {
		return err
	}
	if c.Bool("verify") {
		if err := m.Verify(dir); err != nil {
			return err
		}
	}
	if c.Bool("json") {
		b, _ := json.MarshalIndent(m, "", "  ")
		fmt.Fprintln(c.App.Writer, string(b))
		return nil
	}
	printManifest(c.App.Writer, m)
	return nil
}

func printManifest(w io.Writer, m *bundle.Manifest) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	row("platform", platformString(m.Platform.OS, m.Platform.Architecture, m.Platform.Variant))
	row("vm arch", m.GuestArch())
	if e := m.Emulator; e != nil {
		row("emulator", fmt.Sprintf("%s (%s, sha256:%s)", e.Name, orDash(e.Version), e.SHA256))
	}
	row("source", m.Source.Ref)
	if m.Source.Name != "" {
		row("image", m.Source.Name)
	}
	row("manifest", m.Source.ManifestDigest)
	row("config", m.Source.ConfigDigest)
	row("kernel", m.Kernel.Version)
	row("rootfs", m.RootfsFormat)
	row("command", quoteArgs(m.Process.Args))
	row("user", fmt.Sprintf("%s (uid %d, gid %d)", orDash(m.Process.User), m.Process.UID, m.Process.GID))
	row("workdir", m.Process.WorkingDir)
	row("env", strings.Join(m.Process.Env, " "))
	row("memory", fmt.Sprintf("%d MiB", m.MemoryMiB))
	row("cpus", fmt.Sprint(m.CPUs))
	row("boot args", m.BootArgs)
	for _, f := range m.Files {
		row("file "+f.Name, fmt.Sprintf("%d bytes  sha256:%s", f.Size, f.SHA256))
	}
	tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func quoteArgs(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n'\"\\$") {
			a = fmt.Sprintf("%q", a)
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}
