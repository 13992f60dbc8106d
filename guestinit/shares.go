package guestinit

import (
	"context"
	"errors"
	"fmt"
	"path"

	"github.com/c2vm/c2vm/bootcfg"
	"golang.org/x/sys/unix"
)

// stepShares mounts the boot config's shares (host directories: virtio-fs or 9p, by mount tag) at
// bootcfg.VolumesDir/<index>, as stepVolumes mounts disks; the spec step binds them, or the one
// file a share is for, into the container.
func stepShares(_ context.Context, st *State) error {
	for i, v := range st.Cfg.Container.Volumes {
		if v.Share() {
			if err := mountShare(st, i, v); err != nil {
				return err
			}
		}
	}
	return nil
}

func mountShare(st *State, i int, v bootcfg.Volume) error {
	dir := volumeDir(i)
	if err := st.Sys.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	flags := uintptr(unix.MS_NOSUID | unix.MS_NODEV)
	if v.ReadOnly {
		flags |= unix.MS_RDONLY
	}
	data := ""
	if v.FSType == bootcfg.FSType9p {
		data = bootcfg.Options9p
	}
	if err := st.Sys.Mount(v.Tag, dir, v.FSType, flags, data); err != nil {
		if errors.Is(err, unix.ENODEV) {
			return fmt.Errorf("host directory for %s: the guest kernel has no %s filesystem (convert the bundle again with this c2vm: it loads the fuse and virtiofs modules): %w", v.Target, v.FSType, err)
		}
		return fmt.Errorf("host directory for %s: mount %s tag %s on %s: %w", v.Target, v.FSType, v.Tag, dir, err)
	}
	st.Mounted = append(st.Mounted, dir)
	st.Debugf("share %s: %s tag %s on %s", v.Target, v.FSType, v.Tag, dir)
	return nil
}

// volumeSource is where the container's bind of volume i comes from in the guest: the volume's
// mount point, or the one file of a single-file share in it.
func volumeSource(i int, v bootcfg.Volume) string {
	if v.Path != "" {
		return path.Join(volumeDir(i), v.Path)
	}
	return volumeDir(i)
}
