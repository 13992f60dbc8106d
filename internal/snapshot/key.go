// Package snapshot keeps c2vm's saved VMs for warm starts: a VM saved at its guest init's ready
// point (container created, waiting for the host's go; see bootcfg.ReadyPointLine and
// vm.Machine.Save) and restored by later runs instead of booting.
//
// A saved VM is found by its Key, the digest of everything the saved state depends on: the
// bundle, kernel and run initrd (which carries the run's boot config and runtime spec, so every
// per-run setting that is fixed once the container is created), the QEMU binary, and the machine
// (accelerator, CPU model, memory, CPUs, devices) as vm.MachineArgs describes it. A restore thus
// needs nothing per run that is not in the key, and everything per run in the key is fixed by the
// saved VM; what differs per run outside the key (port forwards, stdio, the clock, the RNG) is
// host-side or sent in the go line after the restore.
//
// Saved VMs live in the user's cache (cachedir.Dir.Snapshots), one folder per key digest with the
// state (mode 0600) and a meta.json that holds the key, the state's size and SHA-256. A state
// whose size or digest does not match, or a file that is not the user's, is not used. Concurrent
// first runs make one saved VM: the maker holds an exclusive lock, the others run without saving.
package snapshot

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/c2vm/c2vm/bundle"
	"github.com/c2vm/c2vm/internal/vm"
)

// keyVersion changes when what a saved VM depends on changes (the guest contract at the ready
// point, the key's own fields).
const keyVersion = 1

// Key is what a saved VM depends on. Two runs with equal keys can share one saved VM.
type Key struct {
	Version int `json:"version"`
	UID     int `json:"uid"` // never shared between users
	// Bundle is the SHA-256 of the bundle's manifest (which names every file's digest).
	Bundle string `json:"bundle"`
	Kernel string `json:"kernel"` // SHA-256 of the kernel
	// Initrd is the SHA-256 of the run's initrd: the bundle's, with the run's boot config and
	// runtime spec appended (command, env, user, workdir, hostname, network, tty, limits).
	Initrd string   `json:"initrd"`
	Disks  []string `json:"disks"` // the read-only disks' identities (device, inode, size, mtime)
	QEMU   string   `json:"qemu"`  // the QEMU binary's identity (path, size, mtime)
	// Accel, CPU, MemoryMiB and CPUs are read from Machine, for people (cache ls).
	Accel     string `json:"accel"`
	CPU       string `json:"cpu"`
	MemoryMiB int    `json:"memoryMiB"`
	CPUs      int    `json:"cpus"`
	// Machine is vm.MachineArgs: the QEMU command line without paths, sockets or port forwards.
	Machine []string `json:"machine"`
}

// Digest is the key's SHA-256, the saved VM's folder name.
func (k Key) Digest() string {
	b, _ := json.Marshal(k) // a struct of strings and ints
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// KeyFor computes the key of a run of the bundle in bundleDir with cfg, the VM configuration the
// run would boot (its Initrd the run's own). Disks must be read-only: a writable disk changes
// between runs, and a saved VM that mounted it would see stale contents.
func KeyFor(bundleDir string, cfg vm.Config) (Key, error) {
	k := Key{Version: keyVersion, UID: os.Getuid()}
	for _, d := range cfg.Disks {
		if !d.ReadOnly {
			return Key{}, fmt.Errorf("snapshot key: disk %s is writable: a saved VM cannot hold it", d.Path)
		}
	}
	var err error
	if k.Bundle, err = fileSHA256(filepath.Join(bundleDir, bundle.ManifestFile)); err != nil {
		return Key{}, err
	}
	if k.Kernel, err = fileSHA256(cfg.Kernel); err != nil {
		return Key{}, err
	}
	if k.Initrd, err = fileSHA256(cfg.Initrd); err != nil {
		return Key{}, err
	}
	for _, d := range cfg.Disks {
		id, err := fileIdentity(d.Path)
		if err != nil {
			return Key{}, err
		}
		k.Disks = append(k.Disks, id)
	}
	bin := cfg.QEMU
	if bin == "" {
		if bin, err = vm.Binary(cfg.Arch); err != nil {
			return Key{}, err
		}
	}
	if k.QEMU, err = fileIdentity(bin); err != nil {
		return Key{}, err
	}
	if k.Machine, err = vm.MachineArgs(cfg); err != nil {
		return Key{}, err
	}
	k.Machine[0] = bin
	k.Accel, k.CPU = argAfter(k.Machine, "-accel"), argAfter(k.Machine, "-cpu")
	if k.CPU == "" {
		k.CPU = "default"
	}
	k.MemoryMiB, _ = strconv.Atoi(argAfter(k.Machine, "-m"))
	k.CPUs, _ = strconv.Atoi(argAfter(k.Machine, "-smp"))
	return k, nil
}

// argAfter returns the argument after flag in argv, or "".
func argAfter(argv []string, flag string) string {
	for i := 0; i+1 < len(argv); i++ {
		if argv[i] == flag {
			return argv[i+1]
		}
	}
	return ""
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("snapshot key: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("snapshot key: %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// fileIdentity names a file's current version without reading it: the rootfs and the QEMU
// binary are large and change only by being replaced.
func fileIdentity(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("snapshot key: %w", err)
	}
	id := fmt.Sprintf("%s size=%d mtime=%d", filepath.Clean(path), fi.Size(), fi.ModTime().UnixNano())
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id += fmt.Sprintf(" dev=%d ino=%d", st.Dev, st.Ino)
	}
	return id, nil
}
