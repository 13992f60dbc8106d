package guestinit

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/c2vm/c2vm/bootcfg"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

const sysBlock = "/sys/block"

// stepVolumes mounts the boot config's volumes at bootcfg.VolumesDir/<index> (disks, and a fresh
// tmpfs for a tmpfs volume) and fills the new ones from the image; the spec step binds them into
// the container.
func stepVolumes(_ context.Context, st *State) error {
	for i, v := range st.Cfg.Container.Volumes {
		if v.Share() {
			continue // stepShares
		}
		if err := mountVolume(st, i, v); err != nil {
			return err
		}
		if v.CopyUp {
			if err := copyUp(st, i, v); err != nil {
				return fmt.Errorf("volume %s: fill from the image: %w", v.Target, err)
			}
		}
	}
	return nil
}

func mountVolume(st *State, i int, v bootcfg.Volume) error {
	dir := volumeDir(i)
	if err := st.Sys.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if v.FSType == bootcfg.FSTypeTmpfs {
		if err := st.Sys.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777"); err != nil {
			return fmt.Errorf("volume %s: mount tmpfs on %s: %w", v.Target, dir, err)
		}
		st.Mounted = append(st.Mounted, dir)
		return nil
	}
	dev, err := findDisk(st, v.Device, v.Serial)
	if err != nil {
		return fmt.Errorf("volume %s: %w", v.Target, err)
	}
	var flags uintptr
	if v.ReadOnly {
		flags = unix.MS_RDONLY
	}
	if err := st.Sys.Mount(dev, dir, v.FSType, flags|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("volume %s: mount %s (%s) on %s: %w", v.Target, dev, v.FSType, dir, err)
	}
	st.Mounted = append(st.Mounted, dir)
	st.Debugf("volume %s: %s on %s", v.Target, dev, dir)
	return nil
}

// copyUp fills the volume from the image as docker does on every run with a volume: the content
// of the image's directory at the target when the volume is empty, then the directory's owner and
// permissions for the volume's root (docker's copyExistingContents). A target the image does not
// have as a real directory (absent, or a symlink, which docker would resolve in the container)
// leaves the volume as it is.
func copyUp(st *State, i int, v bootcfg.Volume) error {
	root := path.Join(st.Cfg.Container.BundleDir, "rootfs")
	src, dst := root, volumeDir(i)
	for _, part := range strings.Split(strings.Trim(path.Clean(v.Target), "/"), "/") {
		src = path.Join(src, part)
		fi, err := st.Sys.Lstat(src)
		if err != nil || !fi.IsDir() {
			return nil
		}
	}
	content, err := st.Sys.ReadDir(src)
	if err != nil {
		return err
	}
	if len(content) > 0 {
		have, err := st.Sys.ReadDir(dst)
		if err != nil {
			return err
		}
		if len(have) == 0 {
			if err := st.Sys.CopyTree(src, dst); err != nil {
				return err
			}
		}
	}
	return st.Sys.CopyOwnership(src, dst)
}

func volumeDir(i int) string { return path.Join(bootcfg.VolumesDir, strconv.Itoa(i)) }

// findDisk returns the block device to use: device as given, or the virtio disk whose serial is
// serial. Either way it waits up to deviceWait for the disk to appear.
func findDisk(st *State, device, serial string) (string, error) {
	if serial == "" {
		return device, waitDevice(st, device)
	}
	var dev string
	if err := st.poll(deviceWait, func() (bool, error) { dev = diskBySerial(st, serial); return dev != "", nil }); err != nil {
		return "", fmt.Errorf("no disk with serial %q appeared within %v (disks: %s)", serial, deviceWait, strings.Join(disks(st), ", "))
	}
	return dev, waitDevice(st, dev)
}

// diskBySerial returns /dev/<name> for the block device whose /sys/block/<name>/serial is serial.
func diskBySerial(st *State, serial string) string {
	for _, name := range disks(st) {
		b, err := st.Sys.ReadFile(path.Join(sysBlock, name, "serial"))
		if err == nil && strings.TrimSpace(string(b)) == serial {
			return "/dev/" + name
		}
	}
	return ""
}

// disks lists the block devices in /sys/block, sorted.
func disks(st *State) []string {
	entries, err := st.Sys.ReadDir(sysBlock)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	slices.Sort(out)
	return out
}

// volumeMounts returns the runtime spec mounts for the volumes: binds of their mount points in the
// guest, parents before children (by path depth, then in order).
func volumeMounts(vols []bootcfg.Volume) []specs.Mount {
	var out []specs.Mount
	for i, v := range vols {
		m := specs.Mount{Destination: v.Target, Type: "bind", Source: volumeSource(i, v), Options: []string{"rbind", "rprivate"}}
		if v.ReadOnly {
			m.Options = append(m.Options, "ro")
		}
		out = append(out, m)
	}
	slices.SortStableFunc(out, func(a, b specs.Mount) int {
		return strings.Count(a.Destination, "/") - strings.Count(b.Destination, "/")
	})
	return out
}
