package guestinit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"strings"
	"time"

	"github.com/c2vm/c2vm/bootcfg"
	"golang.org/x/sys/unix"
)

const (
	lowerDir   = "/run/c2vm/lower"
	upperMount = "/run/c2vm/upper"
	deviceWait = 5 * time.Second
)

// stepRootfs mounts the container's read-only lower layer and the writable overlay at
// <BundleDir>/rootfs.
func stepRootfs(_ context.Context, st *State) error {
	c := st.Cfg.Container
	root := path.Join(c.BundleDir, "rootfs")
	for _, d := range []string{lowerDir, upperMount, root} {
		if err := st.Sys.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := mountLower(st, c.Rootfs); err != nil {
		return err
	}
	if err := mountUpper(st, c.Overlay); err != nil {
		return err
	}
	upper, work := path.Join(upperMount, "upper"), path.Join(upperMount, "work")
	for _, d := range []string{upper, work} {
		if err := st.Sys.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	data := "lowerdir=" + lowerDir + ",upperdir=" + upper + ",workdir=" + work
	if err := st.Sys.Mount("overlay", root, "overlay", 0, data); err != nil {
		return fmt.Errorf("mount overlay on %s: %w", root, err)
	}
	st.Mounted = append(st.Mounted, root)
	return initLayer(st, root)
}

// initLinks are the links docker's init layer gives every container whose image lacks them.
var initLinks = []struct{ path, target string }{
	{"etc/mtab", "/proc/mounts"},
}

// initLayer adds docker's init-layer links to the container's root (in the overlay's upper layer,
// so the image is unchanged); what the image has stays.
func initLayer(st *State, root string) error {
	for _, l := range initLinks {
		p := path.Join(root, l.path)
		if err := st.Sys.MkdirAll(path.Dir(p), 0o755); err != nil {
			return fmt.Errorf("init layer: %w", err)
		}
		if err := st.Sys.Symlink(l.target, p); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("init layer: %s: %w", l.path, err)
		}
	}
	return nil
}

// applyXattrs sets the extended attributes of an initrd-format rootfs (newc cpio has none) from
// the file beside it, if any.
func applyXattrs(st *State, root string) error {
	data, err := st.Sys.ReadFile(root + bootcfg.XattrsSuffix)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("rootfs xattrs: %w", err)
	}
	xs, err := bootcfg.DecodeXattrs(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("rootfs %w", err)
	}
	for _, x := range xs {
		err := st.Sys.Lsetxattr(path.Join(root, x.Path), x.Name, x.Value)
		if errors.Is(err, unix.EOPNOTSUPP) { // e.g. user.* on the tmpfs of kernels before 6.6
			st.Debugf("rootfs xattrs: %s: %s: not supported by the initramfs, skipped", x.Path, x.Name)
			continue
		}
		if err != nil {
			return fmt.Errorf("rootfs xattrs: %s: %w", x.Path, err)
		}
	}
	return nil
}

func mountLower(st *State, rf bootcfg.Rootfs) error {
	if rf.Format == bootcfg.FormatInitrd {
		if err := applyXattrs(st, rf.Path); err != nil {
			return err
		}
		if err := st.Sys.Mount(rf.Path, lowerDir, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind initrd rootfs %s: %w", rf.Path, err)
		}
		// A read-only bind needs a remount.
		if err := st.Sys.Mount("", lowerDir, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			return fmt.Errorf("remount %s read-only: %w", lowerDir, err)
		}
		st.Mounted = append(st.Mounted, lowerDir)
		return nil
	}
	dev, err := findRootfs(st, rf)
	if err != nil {
		return err
	}
	st.Debugf("rootfs: %s", dev)
	if err := st.Sys.Mount(dev, lowerDir, rf.Format, unix.MS_RDONLY, ""); err != nil {
		return fmt.Errorf("mount %s rootfs %s: %w", rf.Format, dev, err)
	}
	st.Mounted = append(st.Mounted, lowerDir)
	return nil
}

func mountUpper(st *State, ov bootcfg.Overlay) error {
	if ov.Upper == bootcfg.UpperDisk {
		dev, err := findDisk(st, ov.Device, ov.Serial)
		if err != nil {
			return fmt.Errorf("overlay upper: %w", err)
		}
		if err := st.Sys.Mount(dev, upperMount, "ext4", 0, ""); err != nil {
			return fmt.Errorf("mount overlay upper disk %s: %w", dev, err)
		}
	} else {
		data := "mode=0755"
		if ov.Size != "" {
			data += ",size=" + ov.Size
		}
		if err := st.Sys.Mount("c2vm-upper", upperMount, "tmpfs", 0, data); err != nil {
			return fmt.Errorf("mount overlay upper tmpfs: %w", err)
		}
	}
	st.Mounted = append(st.Mounted, upperMount)
	return nil
}

// waitDevice polls for a device node until it exists or deviceWait has passed: virtio disks are
// probed asynchronously after their module loads.
// findRootfs returns the rootfs disk: Device as given, else the disk with the rootfs serial, else
// the disk whose leading bytes match the identity, waiting up to deviceWait for it to appear.
func findRootfs(st *State, rf bootcfg.Rootfs) (string, error) {
	if rf.Device != "" {
		return rf.Device, waitDevice(st, rf.Device)
	}
	var dev string
	bySerial := false
	err := st.poll(deviceWait, func() (bool, error) {
		if rf.Serial != "" {
			dev, bySerial = diskBySerial(st, rf.Serial), true
		}
		if dev == "" && rf.Identity != nil {
			dev, bySerial = diskByIdentity(st, *rf.Identity), false
		}
		return dev != "", nil
	})
	if err != nil {
		return "", fmt.Errorf("no disk with serial %q or the rootfs image's identity appeared within %v (disks: %s): attach rootfs.%s as a virtio block device",
			rf.Serial, deviceWait, strings.Join(disks(st), ", "), rf.Format)
	}
	if bySerial {
		return dev, waitDevice(st, dev) // the sysfs entry can precede the device node
	}
	return dev, nil
}

// diskByIdentity returns /dev/<name> for the first block device that holds the identified image.
func diskByIdentity(st *State, id bootcfg.Identity) string {
	for _, name := range disks(st) {
		f, err := st.Sys.OpenFile("/dev/"+name, os.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			continue
		}
		ok := id.Matches(f)
		f.Close()
		if ok {
			return "/dev/" + name
		}
	}
	return ""
}

func waitDevice(st *State, dev string) error {
	err := st.poll(deviceWait, func() (bool, error) {
		_, err := st.Sys.Stat(dev)
		if err != nil && !os.IsNotExist(err) {
			return false, fmt.Errorf("device %s: %w", dev, err)
		}
		return err == nil, nil
	})
	if errors.Is(err, errTimedOut) {
		return fmt.Errorf("device %s did not appear within %v", dev, deviceWait)
	}
	return err
}
