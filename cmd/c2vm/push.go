package main

import (
	"encoding/json"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/c2vm/c2vm/internal/artifact"
	"github.com/c2vm/c2vm/internal/registry"
)

func registryFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "insecure-registry", Usage: "registry HOST[:PORT] to reach over plain HTTP or unverified TLS"},
	}
}

func registryClient(c *cli.Context) (*registry.Client, error) {
	return registry.New(registry.Options{
		Insecure: c.StringSlice("insecure-registry"),
		Warn:     func(msg string) { fmt.Fprintln(c.App.ErrWriter, "c2vm: warning: "+msg) },
	})
}

func pushCommand() *cli.Command {
	return &cli.Command{
		Name:      "push",
		Usage:     "store a bundle in a registry as an OCI artifact",
		ArgsUsage: "BUNDLE [docker://]HOST/REPO[:TAG]",
		Flags:     append(registryFlags(), &cli.BoolFlag{Name: "json", Usage: "print the result as JSON"}),
		Action:    runPush,
	}
}

func runPush(c *cli.Context) error {
	if c.NArg() != 2 {
		return usageError("push: want BUNDLE and a registry reference (flags go before them), got %d arguments", c.NArg())
	}
	rc, err := registryClient(c)
	if err != nil {
		return err
	}
	defer rc.Close()
	res, err := artifact.Push(c.Context, rc, c.Args().Get(0), c.Args().Get(1))
	if err != nil {
		return err
	}
	return printPushed(c, c.Args().Get(1), res)
}

// printPushed says what a push did: REF@DIGEST and the blobs uploaded, or that as JSON (--json).
func printPushed(c *cli.Context, ref string, res *artifact.PushResult) error {
	if c.Bool("json") {
		return json.NewEncoder(c.App.Writer).Encode(map[string]any{"digest": res.Digest, "uploaded": res.Uploaded, "blobs": res.Blobs})
	}
	fmt.Fprintf(c.App.Writer, "%s@%s (%d of %d blobs uploaded)\n", ref, res.Digest, res.Uploaded, res.Blobs)
	return nil
}

func pullCommand() *cli.Command {
	return &cli.Command{
		Name:      "pull",
		Usage:     "download a bundle from a registry, verified",
		ArgsUsage: "[docker://]HOST/REPO[:TAG|@DIGEST] DIR",
		Flags:     append(registryFlags(), &cli.StringFlag{Name: "platform", Usage: "platform to pick from a bundle set", DefaultText: "the host's"}),
		Action:    runPull,
	}
}

func runPull(c *cli.Context) error {
	if c.NArg() != 2 {
		return usageError("pull: want a registry reference and DIR (flags go before them), got %d arguments", c.NArg())
	}
	rc, err := registryClient(c)
	if err != nil {
		return err
	}
	defer rc.Close()
	m, err := artifact.Pull(c.Context, rc, c.Args().Get(0), c.Args().Get(1), c.String("platform"))
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "%s: %s bundle of %s\n", c.Args().Get(1), m.RootfsFormat, m.Source.Ref)
	return nil
}
