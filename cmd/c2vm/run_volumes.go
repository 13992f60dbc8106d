package main

import (
	"github.com/urfave/cli/v2"

	"github.com/c2vm/c2vm/internal/launch"
)

// volumeOptions reads -v/--volume, --mount, --persist and --volume-size into o.
func volumeOptions(c *cli.Context, o *launch.Options) error {
	add := func(flag, s string, v launch.Volume) error {
		for _, prev := range o.Volumes {
			if prev.Target == v.Target {
				return usageError("run: %s %q: target %s is already a volume", flag, s, v.Target)
			}
		}
		if v.Type == launch.TypeTmpfs {
			o.Tmpfs = append(o.Tmpfs, v.Target)
			return nil
		}
		o.Volumes = append(o.Volumes, v)
		return nil
	}
	for _, s := range c.StringSlice("volume") {
		v, err := launch.ParseVolume(s)
		if err != nil {
			return usageError("run: %v", err)
		}
		if err := add("--volume", s, v); err != nil {
			return err
		}
	}
	for _, s := range c.StringSlice("mount") {
		v, err := launch.ParseMount(s)
		if err != nil {
			return usageError("run: --%v", err)
		}
		if err := add("--mount", s, v); err != nil {
			return err
		}
	}
	size, err := launch.ParseSize(c.String("volume-size"))
	if err != nil {
		return usageError("run: --volume-size: %v", err)
	}
	o.VolumeSize = size
	o.Persist = c.String("persist")
	if c.IsSet("persist") && o.Persist == "" {
		return usageError("run: --persist: want a directory")
	}
	return nil
}
