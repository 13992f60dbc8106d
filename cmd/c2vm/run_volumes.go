package main

import (
	"github.com/urfave/cli/v2"

	"github.com/c2vm/c2vm/internal/launch"
)

// volumeOptions reads -v/--volume, --persist and --volume-size into o.
func volumeOptions(c *cli.Context, o *launch.Options) error {
	for _, s := range c.StringSlice("volume") {
		v, err := launch.ParseVolume(s)
		if err != nil {
			return usageError("run: %v", err)
		}
		for _, prev := range o.Volumes {
			if prev.Target == v.Target {
				return usageError("run: --volume %q: target %s is already a volume", s, v.Target)
			}
		}
		o.Volumes = append(o.Volumes, v)
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
