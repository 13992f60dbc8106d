package bootcfg

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
)

// RootfsSerial is the virtio-blk serial c2vm run gives the rootfs disk (/sys/block/vdX/serial).
const RootfsSerial = "c2vm-rootfs"

// IdentityLength is how many leading bytes of a filesystem image an Identity hashes: the
// superblock and what follows it, which differ between any two images c2vm writes.
const IdentityLength = 4096

// Identity names a filesystem image by the sha256 of its first Length bytes, so that the init finds
// the rootfs on whichever disk a VMM attached it as (QEMU, spindle, Firecracker and Cloud
// Hypervisor order and name their disks differently).
type Identity struct {
	Length int    `json:"length"`
	SHA256 string `json:"sha256"`
}

// NewIdentity reads the identity of the image r (its first IdentityLength bytes, or all of a
// shorter one).
func NewIdentity(r io.Reader) (Identity, error) {
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(r, IdentityLength))
	if err != nil {
		return Identity{}, fmt.Errorf("rootfs identity: %w", err)
	}
	return Identity{Length: int(n), SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// Matches reports whether r (a block device, read from its start) holds the image.
func (id Identity) Matches(r io.Reader) bool {
	got, err := NewIdentity(io.LimitReader(r, int64(id.Length)))
	return err == nil && got.Length == id.Length && got.SHA256 == id.SHA256
}

func (id Identity) validate() error {
	if id.Length <= 0 || id.Length > IdentityLength {
		return fmt.Errorf("length %d: want 1-%d", id.Length, IdentityLength)
	}
	if b, err := hex.DecodeString(id.SHA256); err != nil || len(b) != sha256.Size {
		return fmt.Errorf("sha256 %q is not a hex sha256", id.SHA256)
	}
	return nil
}
