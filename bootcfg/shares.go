package bootcfg

import (
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
)

// Shares are host directories the container sees as docker's bind mounts: a Volume whose FSType
// is FSTypeVirtiofs (a vhost-user-fs device served by virtiofsd on the host) or FSType9p (QEMU's
// virtio-9p device), found by its mount tag. The init mounts the share at VolumesDir/<index> and
// binds it, or the file Path in it, into the container. Owners are the host's numeric ids, as in
// a bind mount; ReadOnly mounts it read-only (writes fail with EROFS).
const (
	FSTypeVirtiofs = "virtiofs"
	FSType9p       = "9p"
)

// ShareTagPrefix starts the mount tag of the Nth share: ShareTag(n).
const ShareTagPrefix = "c2vm-fs"

// maxShareTag is the longest virtio-fs mount tag (the device's tag field is 36 bytes); 9p allows more.
const maxShareTag = 36

// ShareTag returns the mount tag c2vm gives the nth share of a run.
func ShareTag(n int) string { return ShareTagPrefix + strconv.Itoa(n) }

// Options9p are the 9p mount options the init uses: the Linux dialect over virtio, 512 KiB
// messages (QEMU's maximum in 7.2 is 500 KiB of payload), and the page cache for file data so
// that reads are not one round trip each; permission checks use the guest's credentials.
const Options9p = "trans=virtio,version=9p2000.L,msize=512000,cache=mmap,access=client"

// Share reports whether v is a host directory share.
func (v Volume) Share() bool { return v.FSType == FSTypeVirtiofs || v.FSType == FSType9p }

func (v Volume) validateShare() error {
	switch {
	case v.Serial != "" || v.Device != "":
		return errors.New("fstype: a share has no disk (serial, device)")
	case v.CopyUp:
		return errors.New("copyUp: a share shows the host directory as it is (no copy-up)")
	case v.Tag == "" || len(v.Tag) > maxShareTag || strings.ContainsAny(v.Tag, " ,/=\t\n\x00"):
		return fmt.Errorf("tag: %q is not a mount tag (1 to %d characters, no spaces, commas, slashes)", v.Tag, maxShareTag)
	case v.Path != "" && (v.Path != path.Base(v.Path) || v.Path == "." || v.Path == ".." || strings.ContainsRune(v.Path, 0)):
		return fmt.Errorf("path: %q must name a file in the shared directory", v.Path)
	}
	return nil
}
