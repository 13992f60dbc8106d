package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/urfave/cli/v2"

	"github.com/c2vm/c2vm/convert"
	"github.com/c2vm/c2vm/convert/spec"
)

func convertCommand() *cli.Command {
	return &cli.Command{
		Name:      "convert",
		Usage:     "convert a container image into a VM bundle",
		ArgsUsage: "IMAGE  (oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:NAME:TAG], [docker://]HOST/REPO[:TAG|@DIGEST], rootfs:DIR|FILE.tar or a path)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "bundle directory to write (required)"},
			&cli.StringFlag{Name: "platform", Usage: "image platform os/arch[/variant]", DefaultText: "the host's"},
			&cli.StringFlag{Name: "kernel", Usage: "kernel: c2vm (built by make kernel-c2vm), a linux-image .deb, a directory with boot/ and lib/modules/, or a vmlinuz", DefaultText: "the kernel for the image's arch cached by make kernel", EnvVars: []string{"C2VM_KERNEL"}},
			&cli.StringFlag{Name: "modules", Usage: "lib/modules/<version> directory to use with a bare vmlinuz --kernel"},
			&cli.StringFlag{Name: "rootfs-format", Value: convert.DefaultFormat, Usage: "squashfs, erofs or initrd"},
			&cli.StringFlag{Name: "compression", Usage: "rootfs compression: squashfs zstd:1-22, lz4, gzip, xz or none; initrd zstd, gzip or none", DefaultText: "zstd level 3"},
			&cli.StringFlag{Name: "memory", Usage: "default guest memory recorded in the bundle: MiB (512) or a size (1g)", DefaultText: strconv.Itoa(convert.DefaultMemoryMiB)},
			&cli.StringFlag{Name: "cpus", Usage: "default guest CPUs recorded in the bundle", DefaultText: strconv.Itoa(convert.DefaultCPUs)},
			&cli.StringFlag{Name: "entrypoint", Usage: "override the image's ENTRYPOINT (a single executable; \"\" clears it)"},
			&cli.StringSliceFlag{Name: "env", Aliases: []string{"e"}, Usage: "set KEY=VAL in the workload's environment"},
			&cli.StringFlag{Name: "user", Aliases: []string{"u"}, Usage: "run as name, uid, uid:gid or user:group"},
			&cli.StringFlag{Name: "workdir", Aliases: []string{"w"}, Usage: "working directory of the workload"},
			&cli.Int64Flag{Name: "max-size", Usage: "bound on the total uncompressed layer content and metadata in bytes", DefaultText: "64 GiB"},
			&cli.StringSliceFlag{Name: "change", Aliases: []string{"c"}, Usage: "apply a Dockerfile instruction to the image config (CMD, ENTRYPOINT, ENV, USER, WORKDIR, EXPOSE, VOLUME, STOPSIGNAL, LABEL), as docker import --change"},
			&cli.StringFlag{Name: "config", Usage: "OCI image config JSON for a rootfs: input"},
			&cli.StringSliceFlag{Name: "insecure-registry", Usage: "registry HOST[:PORT] to reach over plain HTTP or unverified TLS"},
			&cli.BoolFlag{Name: "debug", Usage: "make the guest init log each boot step"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print nothing on success"},
			&cli.BoolFlag{Name: "json", Usage: "print the bundle manifest as JSON"},
		},
		Action: runConvert,
	}
}

func runConvert(c *cli.Context) error {
	for _, a := range c.Args().Tail() {
		if strings.HasPrefix(a, "-") {
			return usageError("convert: %q after the image: flags go before IMAGE (c2vm convert -o DIR [flags] IMAGE)", a)
		}
	}
	if c.NArg() != 1 {
		return usageError("convert: want exactly one IMAGE argument (flags go before it), got %d", c.NArg())
	}
	if c.String("output") == "" {
		return usageError("convert: --output (-o) DIR is required")
	}
	mem, err := parseMemory("convert: --memory", c.String("memory"))
	if err != nil {
		return err
	}
	cpus, err := parseCPUs("convert: --cpus", c.String("cpus"))
	if err != nil {
		return err
	}
	if c.Int64("max-size") < 0 {
		return usageError("convert: --max-size %d: want a positive number of bytes (0 = the default 64 GiB)", c.Int64("max-size"))
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts := convert.Options{
		Image:        c.Args().First(),
		Output:       c.String("output"),
		Platform:     c.String("platform"),
		Kernel:       c.String("kernel"),
		ModulesDir:   c.String("modules"),
		RootfsFormat: c.String("rootfs-format"),
		MemoryMiB:    mem,
		CPUs:         cpus,
		Debug:        c.Bool("debug"),
		MaxSize:      c.Int64("max-size"),
		Insecure:     c.StringSlice("insecure-registry"),
		Changes:      c.StringSlice("change"),
		Compression:  c.String("compression"),
		ConfigFile:   c.String("config"),
		Overrides: spec.Overrides{
			Env: c.StringSlice("env"), User: c.String("user"), WorkingDir: c.String("workdir"),
		},
		Warn: func(msg string) { fmt.Fprintln(c.App.ErrWriter, "c2vm: warning: "+msg) },
	}
	opts.Overrides.Entrypoint = entrypointFlag(c)
	if !c.Bool("quiet") && !c.Bool("json") {
		p := newProgress(c.App.ErrWriter)
		defer p.Wait()
		opts.Progress, opts.Step = p.Layer, p.Step
	}
	if p := opts.Platform; strings.Contains(p, ",") || p == "all" {
		return convertSet(c, ctx, opts, strings.Split(p, ","))
	}
	m, err := convert.Convert(ctx, opts)
	if err != nil {
		return err
	}
	switch {
	case c.Bool("json"):
		b, _ := json.MarshalIndent(m, "", "  ")
		fmt.Fprintln(c.App.Writer, string(b))
	case !c.Bool("quiet"):
		fmt.Fprintf(c.App.Writer, "%s: %s bundle of %s (%s) for %s, kernel %s\n", opts.Output, m.RootfsFormat,
			opts.Image, short(m.Source.ManifestDigest), platformString(m.Platform.OS, m.Platform.Architecture, m.Platform.Variant), m.Kernel.Version)
	}
	return nil
}

// convertSet writes a bundle set, one bundle per platform.
func convertSet(c *cli.Context, ctx context.Context, opts convert.Options, plats []string) error {
	set, err := convert.ConvertSet(ctx, opts, plats)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return json.NewEncoder(c.App.Writer).Encode(set)
	}
	if !c.Bool("quiet") {
		for _, b := range set.Bundles {
			fmt.Fprintf(c.App.Writer, "%s/%s: bundle of %s for %s\n", opts.Output, b.Path, opts.Image, platforms.Format(b.Platform))
		}
	}
	return nil
}

func short(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}

func platformString(os, arch, variant string) string {
	return platforms.Format(ocispec.Platform{OS: os, Architecture: arch, Variant: variant})
}

// entrypointFlag reads --entrypoint as docker does: one executable, "" clears the image's; nil when
// not given.
func entrypointFlag(c *cli.Context) *[]string {
	if !c.IsSet("entrypoint") {
		return nil
	}
	ep := []string{}
	if e := c.String("entrypoint"); e != "" {
		ep = []string{e}
	}
	return &ep
}
