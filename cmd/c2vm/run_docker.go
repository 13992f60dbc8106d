package main

import (
	"math"
	"path"
	"strconv"
	"strings"

	"github.com/docker/go-units"
	"github.com/urfave/cli/v2"

	"github.com/c2vm/c2vm/internal/launch"
)

// dockerFlags are docker run flags a docker user types out of habit: the ones c2vm can honour, and
// the ones it cannot, which fail with one line saying what to do instead of a usage dump.
func dockerFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "rm", Usage: "accepted for docker habits: c2vm run never changes the bundle"},
		&cli.BoolFlag{Name: "read-only", Usage: "mount the root filesystem read-only (volumes stay writable)"},
		&cli.StringSliceFlag{Name: "tmpfs", Usage: "mount a fresh, empty tmpfs at this absolute path"},
		&cli.StringSliceFlag{Name: "cap-add", Usage: "add a capability (NET_ADMIN, ALL, ...)"},
		&cli.StringSliceFlag{Name: "cap-drop", Usage: "drop a capability (NET_RAW, ALL, ...)"},
		&cli.StringFlag{Name: "platform", Usage: "require the bundle to be of this platform (os/arch[/variant])"},
		&cli.BoolFlag{Name: "init", Hidden: true},
		&cli.BoolFlag{Name: "privileged", Hidden: true},
		&cli.StringSliceFlag{Name: "ulimit", Hidden: true},
	}
}

// unsupported says, for each docker flag c2vm cannot honour, why and what to do instead.
var unsupported = []struct{ flag, why string }{
	{"init", "there is no init to add yet: the workload is PID 1 of its container, as without --init"},
	{"privileged", "not supported: add what the workload needs with --cap-add (the VM is the sandbox either way)"},
	{"ulimit", "not supported yet: the workload gets RLIMIT_NOFILE 1048576 and the kernel's defaults otherwise"},
}

// dockerOptions reads the docker-habit flags into o.
func dockerOptions(c *cli.Context, o *launch.Options) error {
	for _, u := range unsupported {
		if c.IsSet(u.flag) {
			return usageError("run: --%s: %s", u.flag, u.why)
		}
	}
	o.Overrides.ReadOnly = c.Bool("read-only")
	o.Overrides.CapAdd, o.Overrides.CapDrop = c.StringSlice("cap-add"), c.StringSlice("cap-drop")
	o.Platform = c.String("platform")
	for _, t := range c.StringSlice("tmpfs") {
		if strings.Contains(t, ":") {
			return usageError("run: --tmpfs %q: mount options are not supported: give the path alone", t)
		}
		if !path.IsAbs(t) || path.Clean(t) == "/" {
			return usageError("run: --tmpfs %q: want an absolute path other than /", t)
		}
		o.Tmpfs = append(o.Tmpfs, path.Clean(t))
	}
	return nil
}

// parseMemory reads --memory: a bare number is MiB (c2vm's unit), a size with a unit is taken as
// docker writes it (512m, 1g, 1.5GiB) and rounded up to whole MiB; "" = the bundle's.
func parseMemory(flag, s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	if n, err := strconv.Atoi(s); err == nil && n > 0 {
		return n, nil
	}
	b, err := units.RAMInBytes(s)
	if err != nil || b <= 0 {
		return 0, usageError("%s %q: want MiB (512) or a size such as 512m or 1g", flag, s)
	}
	return int((b + 1<<20 - 1) >> 20), nil
}

// parseCPUs reads --cpus as docker writes it (0.5, 2): a VM has whole CPUs, so a fraction rounds up.
func parseCPUs(flag, s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f <= 0 || f > 1024 || math.IsNaN(f) {
		return 0, usageError("%s %q: want a number of CPUs such as 2 or 0.5", flag, s)
	}
	return int(math.Ceil(f)), nil
}
