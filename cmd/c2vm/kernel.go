package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/c2vm/c2vm/internal/artifact"
	"github.com/c2vm/c2vm/internal/cachedir"
	"github.com/c2vm/c2vm/kernel"
)

func kernelCommand() *cli.Command {
	return &cli.Command{
		Name:  "kernel",
		Usage: "share the c2vm kernel through a registry, so that converters need not build it",
		Subcommands: []*cli.Command{
			{
				Name:      "push",
				Usage:     "store the c2vm kernels of this machine (make kernel-c2vm) in a registry as one OCI artifact index",
				ArgsUsage: "[docker://]HOST/REPO[:TAG]",
				Flags: append(registryFlags(),
					&cli.StringSliceFlag{Name: "arch", Usage: "push only the kernel of this architecture (repeatable)", DefaultText: "every one built"},
					&cli.StringFlag{Name: "dir", Usage: "push the c2vm kernel in DIR (boot/vmlinuz-V, boot/config-V, lib/modules/V/modules.builtin) for --arch (default: its image's)", DefaultText: "the cache's"},
					&cli.BoolFlag{Name: "json", Usage: "print the result as JSON"}),
				Action: runKernelPush,
			},
			{
				Name:      "pull",
				Usage:     "download a c2vm kernel, verified, and make it the one --kernel c2vm boots",
				ArgsUsage: "[docker://]HOST/REPO[:TAG|@DIGEST]",
				Flags:     append(registryFlags(), &cli.StringFlag{Name: "platform", Usage: "platform of the kernel to pick", DefaultText: "the host's"}),
				Action:    runKernelPull,
			},
		},
	}
}

func runKernelPush(c *cli.Context) error {
	if c.NArg() != 1 {
		return usageError("kernel push: want one registry reference (flags go before it), got %d arguments", c.NArg())
	}
	cache, err := cachedir.Default()
	if err != nil {
		return err
	}
	var kernels []artifact.KernelDir
	if dir := c.String("dir"); dir != "" {
		kernels, err = dirKernel(dir, c.StringSlice("arch"))
	} else {
		kernels, err = localKernels(cache.Path(), c.StringSlice("arch"))
	}
	if err != nil {
		return err
	}
	rc, err := registryClient(c)
	if err != nil {
		return err
	}
	defer rc.Close()
	res, err := artifact.PushKernel(c.Context, rc, kernels, c.Args().Get(0))
	if err != nil {
		return err
	}
	return printPushed(c, c.Args().Get(0), res)
}

// localKernels are the c2vm kernels in the cache, by architecture (only those of archs, if any).
func localKernels(cache string, archs []string) ([]artifact.KernelDir, error) {
	var out []artifact.KernelDir
	for _, a := range kernelArches(archs) {
		dir := kernel.C2VMKernelDir(cache, a)
		if _, err := os.Stat(dir); err != nil {
			if len(archs) == 0 {
				continue
			}
			return nil, fmt.Errorf("kernel push: no c2vm kernel for %s in %s: run `make kernel-c2vm` or `c2vm kernel pull`", a, dir)
		}
		out = append(out, artifact.KernelDir{Dir: dir, Arch: a})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("kernel push: no c2vm kernel in %s: run `make kernel-c2vm` first", filepath.Dir(kernel.C2VMKernelDir(cache, "amd64")))
	}
	return out, nil
}

// dirKernel is the kernel in dir, for the one architecture of archs (its image's when empty).
func dirKernel(dir string, archs []string) ([]artifact.KernelDir, error) {
	switch len(archs) {
	case 0:
		return []artifact.KernelDir{{Dir: dir}}, nil
	case 1:
		return []artifact.KernelDir{{Dir: dir, Arch: archs[0]}}, nil
	}
	return nil, usageError("kernel push: --dir takes one --arch, got %d", len(archs))
}

// kernelArches is archs, or every architecture a c2vm kernel exists for when archs is empty.
func kernelArches(archs []string) []string {
	if len(archs) > 0 {
		return archs
	}
	return kernel.TreeArches
}

func runKernelPull(c *cli.Context) error {
	if c.NArg() != 1 {
		return usageError("kernel pull: want one registry reference (flags go before it), got %d arguments", c.NArg())
	}
	rc, err := registryClient(c)
	if err != nil {
		return err
	}
	defer rc.Close()
	t, dir, err := artifact.PullKernel(c.Context, rc, c.Args().Get(0), rc.CacheDir(), c.String("platform"))
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "c2vm kernel %s for %s: %s\n", t.Version, t.Architecture, dir)
	return nil
}
