// Package cachedir owns c2vm's cache directory: where it is ($XDG_CACHE_HOME/c2vm, else
// ~/.cache/c2vm) and what each folder in it holds. Every Go user names a folder through one
// accessor here; the Makefile (CACHE, KERNEL_DIR, DEBS_DIR, KCACHE) writes the same names.
//
//	kernel/         kernel packages `make kernel` downloads (linux-image-*_<arch>.deb)
//	kernels/        kernel packages unpacked once, by the SHA-256 of the .deb
//	kernel-c2vm/    c2vm kernels: builds (`make kernel-c2vm`), pulls, and one link per arch
//	debs/           other packages the Makefile downloads (busybox-static for foreign VMs)
//	emulators/      qemu-user-static unpacked per VM arch (`make foreign`)
//	blobs/, ingest/ the registry client's content store (containerd's layout)
//	refs/           references last resolved, for an unreachable registry
//	bundles/        bundles pulled by `c2vm run REF`, by manifest digest
//	parity/         the parity tier's base images
//	snapshots/      saved VMs for warm starts, one folder per key digest (internal/snapshot)
//
// See docs/registries.md (the cache) and docs/architecture.md.
package cachedir

import (
	"fmt"
	"os"
	"path/filepath"
)

// Dir is a cache root: the default one (Default) or one given instead (a --cache-dir style option,
// a test's temporary directory).
type Dir string

// Default returns $XDG_CACHE_HOME/c2vm, or $HOME/.cache/c2vm when XDG_CACHE_HOME is unset.
func Default() (Dir, error) {
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("find the cache directory: %w (set XDG_CACHE_HOME or HOME)", err)
	}
	return Dir(filepath.Join(d, "c2vm")), nil
}

// Or returns path as a Dir, or Default() when path is "": the rule of every CacheDir option.
func Or(path string) (Dir, error) {
	if path != "" {
		return Dir(path), nil
	}
	return Default()
}

// Path is the root itself.
func (d Dir) Path() string { return string(d) }

// KernelPackages holds the kernel packages `make kernel` downloads, linux-image-*_<arch>.deb.
func (d Dir) KernelPackages() string { return d.join("kernel") }

// UnpackedKernels holds kernel packages unpacked once, each in a folder named by the SHA-256 of
// its .deb.
func (d Dir) UnpackedKernels() string { return d.join("kernels") }

// C2VMKernels holds the c2vm kernels: `make kernel-c2vm` builds, pulled artifacts and, per
// architecture, the link to the one --kernel c2vm boots.
func (d Dir) C2VMKernels() string { return d.join("kernel-c2vm") }

// Debs holds the other Debian packages the Makefile downloads (busybox-static for foreign VMs).
func (d Dir) Debs() string { return d.join("debs") }

// Emulators holds Debian's qemu-user-static of one VM architecture, unpacked by `make foreign`,
// in Emulators()/<arch>.
func (d Dir) Emulators() string { return d.join("emulators") }

// Blobs is the registry client's content store (containerd's local store: blobs/sha256/...).
func (d Dir) Blobs() string { return d.join("blobs") }

// Ingest holds the registry client's partial downloads (containerd's local store).
func (d Dir) Ingest() string { return d.join("ingest") }

// Refs holds the references last resolved, read when a registry is unreachable.
func (d Dir) Refs() string { return d.join("refs") }

// PulledBundles holds the bundles `c2vm run REF` pulled, one folder per manifest digest.
func (d Dir) PulledBundles() string { return d.join("bundles") }

// Snapshots holds the saved VMs of warm starts, one folder per key digest (internal/snapshot).
func (d Dir) Snapshots() string { return d.join("snapshots") }

// Parity holds the parity tier's base images.
func (d Dir) Parity() string { return d.join("parity") }

func (d Dir) join(name string) string { return filepath.Join(string(d), name) }
