package bootcfg

import (
	"errors"
	"fmt"
	"strings"
)

// maxSerial is the longest serial a virtio-blk device reports (VIRTIO_BLK_ID_BYTES).
const maxSerial = 20

// validateVolumes checks each volume and that no two share a target.
func validateVolumes(vols []Volume) error {
	seen, tags := map[string]bool{}, map[string]bool{}
	for i, v := range vols {
		if err := v.validate(); err != nil {
			return fmt.Errorf("volumes[%d].%w", i, err)
		}
		if seen[v.Target] {
			return fmt.Errorf("volumes[%d].target: %q is used by another volume", i, v.Target)
		}
		seen[v.Target] = true
		if v.Share() && tags[v.Tag] {
			return fmt.Errorf("volumes[%d].tag: %q is used by another share", i, v.Tag)
		}
		tags[v.Tag] = true
	}
	return nil
}

func (v Volume) validate() error {
	if err := checkAbs(v.Target); err != nil {
		return fmt.Errorf("target: %w", err)
	}
	if v.Target == "/" {
		return errors.New("target: a volume cannot replace the container's root")
	}
	if v.Share() {
		return v.validateShare()
	}
	if v.Tag != "" || v.Path != "" {
		return errors.New("tag: only a share (fstype virtiofs or 9p) has a tag and path")
	}
	switch {
	case v.FSType == FSTypeTmpfs:
		if v.Serial != "" || v.Device != "" {
			return errors.New("fstype: a tmpfs volume has no disk (serial, device)")
		}
		return nil
	case v.FSType == "" || strings.ContainsAny(v.FSType, " ,/\t\n"):
		return fmt.Errorf("fstype: %q is not a filesystem type", v.FSType)
	}
	return checkDisk(v.Device, v.Serial)
}

// checkDisk requires exactly one way to find a disk: a device path or a virtio serial.
func checkDisk(device, serial string) error {
	switch {
	case device != "" && serial != "":
		return errors.New("device: give a device or a serial, not both")
	case serial != "":
		if len(serial) > maxSerial || strings.ContainsAny(serial, " ,/=\t\n\x00") {
			return fmt.Errorf("serial: %q is not a virtio-blk serial (at most %d characters, no spaces, commas, slashes)", serial, maxSerial)
		}
		return nil
	}
	if err := checkAbs(device); err != nil {
		return fmt.Errorf("device: %w", err)
	}
	return nil
}
