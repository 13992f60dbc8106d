package launch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/docker/go-units"

	"github.com/c2vm/c2vm/bootcfg"
	"github.com/c2vm/c2vm/internal/vm"
)

// Volumes: a named volume or disk image is an ext4 disk image attached as a virtio disk (found by
// the guest through its virtio serial); an image VOLUME without -v is a fresh tmpfs; a host
// directory is a share (binds.go).

// DefaultVolumeSize is the size of a new named volume or --persist disk: sparse, so it costs only
// what is written.
const DefaultVolumeSize = 1 << 30

// VolumesEnv overrides the named volumes directory.
const VolumesEnv = "C2VM_VOLUMES"

// Virtio serials of the run's extra disks.
const (
	volumeSerialPrefix = "c2vm-vol"
	upperSerial        = "c2vm-upper"
	upperImage         = "upper.img"
)

// Volume is one -v SOURCE:TARGET[:ro|rw] or --mount.
type Volume struct {
	// Source is a volume name, a disk image path or a host path (absolute), as Type says.
	Source   string
	Target   string // absolute path in the container
	ReadOnly bool
	// Type is TypeVolume, TypeBind, TypeBlock or TypeTmpfs (see binds.go); "" = by the source's
	// spelling, as ParseVolume reads it.
	Type string
	// create makes a missing bind source directory, as docker's -v does (--mount does not).
	create bool
}

var volumeName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// Named reports whether the source is a volume name rather than a disk image or host path.
func (v Volume) Named() bool {
	if v.Type != "" {
		return v.Type == TypeVolume
	}
	return !strings.Contains(v.Source, "/") && !strings.HasSuffix(v.Source, ".img")
}

// ParseVolume parses docker's -v SOURCE:TARGET[:ro|rw]: SOURCE is a volume name, a host path
// (absolute, or ./relative; a missing directory is made) or a disk image (ending in .img).
func ParseVolume(s string) (Volume, error) {
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return Volume{}, fmt.Errorf("volume %q: want SOURCE:TARGET[:ro|rw]", s)
	}
	v := Volume{Source: parts[0], Target: parts[1], Type: sourceType(parts[0])}
	if len(parts) == 3 {
		switch parts[2] {
		case "ro":
			v.ReadOnly = true
		case "rw":
		default:
			return Volume{}, fmt.Errorf("volume %q: option %q: want ro or rw", s, parts[2])
		}
	}
	switch {
	case v.Source == "":
		return Volume{}, fmt.Errorf("volume %q: empty source", s)
	case v.Named() && !volumeName.MatchString(v.Source):
		return Volume{}, fmt.Errorf("volume %q: %q is not a volume name (letters, digits, _ . -), a host path (absolute, or ./relative: the shell expands ~ only unquoted) nor a disk image (ending in .img)", s, v.Source)
	case !path.IsAbs(v.Target) || path.Clean(v.Target) == "/":
		return Volume{}, fmt.Errorf("volume %q: target %q must be an absolute path below /", s, v.Target)
	}
	v.Target = path.Clean(v.Target)
	if v.Type == TypeBind {
		var err error
		if v.Source, err = hostPath(v.Source); err != nil {
			return Volume{}, fmt.Errorf("volume %q: %w", s, err)
		}
		v.create = true
	}
	return v, nil
}

// ParseSize parses a size in bytes with an optional K, M, G or T suffix (powers of 1024; "MiB" and
// "MB" are read as "M").
func ParseSize(s string) (int64, error) {
	n, err := units.RAMInBytes(strings.TrimSpace(s))
	if err != nil || n <= 0 || n > 1<<50 {
		return 0, fmt.Errorf("size %q: want a positive number of bytes, or with K, M, G or T (at most 1P)", s)
	}
	return n, nil
}

// VolumesDir returns the directory of named volumes: $C2VM_VOLUMES, else
// $XDG_DATA_HOME/c2vm/volumes, else ~/.local/share/c2vm/volumes.
func VolumesDir() (string, error) {
	if d := os.Getenv(VolumesEnv); d != "" {
		return d, nil
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "c2vm", "volumes"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("volumes directory: %w (set %s)", err, VolumesEnv)
	}
	return filepath.Join(home, ".local", "share", "c2vm", "volumes"), nil
}

// attachVolumes adds the run's volumes and --persist disk to boot and returns the extra disks, in
// -v order, then the persist disk. Named volumes and the persist disk are created on first use.
// Image VOLUMEs that no -v covers become tmpfs volumes.
func attachVolumes(ctx context.Context, boot *bootcfg.Config, imageVolumes map[string]struct{}, rs *specs.Spec, opts Options) ([]vm.Disk, error) {
	uid, gid := workloadOwner(rs)
	var disks []vm.Disk
	var vols []bootcfg.Volume
	for i, v := range opts.Volumes {
		if v.Type == TypeBind || v.Type == TypeTmpfs {
			continue // attachShares; Options.Tmpfs
		}
		file, err := volumeFile(ctx, v, opts.VolumeSize, uid, gid)
		if err != nil {
			return nil, err
		}
		serial := volumeSerialPrefix + strconv.Itoa(i)
		disks = append(disks, vm.Disk{Path: file, ReadOnly: v.ReadOnly, Serial: serial})
		// As docker does on every run with a named volume: the init fills it from the image when
		// it is empty and gives its root the owner and mode of the image's directory.
		vols = append(vols, bootcfg.Volume{Target: v.Target, FSType: "ext4", Serial: serial, ReadOnly: v.ReadOnly, CopyUp: v.Named() && !v.ReadOnly})
	}
	for _, t := range opts.Tmpfs {
		vols = append(vols, bootcfg.Volume{Target: t, FSType: bootcfg.FSTypeTmpfs})
	}
	vols = append(vols, tmpfsVolumes(imageVolumes, opts.Volumes, opts.Tmpfs)...)
	boot.Container.Volumes = vols
	if opts.Persist != "" {
		file, err := persistFile(ctx, opts.Persist, opts.VolumeSize)
		if err != nil {
			return nil, err
		}
		disks = append(disks, vm.Disk{Path: file, Serial: upperSerial})
		boot.Container.Overlay = bootcfg.Overlay{Upper: bootcfg.UpperDisk, Serial: upperSerial}
	}
	return disks, nil
}

// tmpfsVolumes returns a tmpfs volume for each image VOLUME that no -v or --tmpfs mounts, sorted.
func tmpfsVolumes(image map[string]struct{}, given []Volume, tmpfs []string) []bootcfg.Volume {
	var targets []string
	for t := range image {
		t = path.Clean("/" + t)
		if t != "/" && !slices.ContainsFunc(given, func(v Volume) bool { return v.Target == t }) && !slices.Contains(tmpfs, t) {
			targets = append(targets, t)
		}
	}
	slices.Sort(targets)
	var out []bootcfg.Volume
	for _, t := range slices.Compact(targets) {
		out = append(out, bootcfg.Volume{Target: t, FSType: bootcfg.FSTypeTmpfs, CopyUp: true})
	}
	return out
}

// workloadOwner returns the uid and gid the workload runs as (root when unknown).
func workloadOwner(rs *specs.Spec) (uint32, uint32) {
	if rs != nil && rs.Process != nil {
		return rs.Process.User.UID, rs.Process.User.GID
	}
	return 0, 0
}

// volumeFile returns the disk image for v: the given image, or the named volume's, created on first
// use, empty, with its root owned by uid:gid (the guest then gives it the owner and mode of the
// image's directory at the target, when the image has one).
func volumeFile(ctx context.Context, v Volume, size int64, uid, gid uint32) (string, error) {
	if !v.Named() {
		abs, err := filepath.Abs(v.Source)
		if err != nil {
			return "", fmt.Errorf("volume %s: %w", v.Source, err)
		}
		if err := checkImage(abs); err != nil {
			return "", fmt.Errorf("volume %s: %w", v.Source, err)
		}
		return abs, nil
	}
	dir, err := VolumesDir()
	if err != nil {
		return "", err
	}
	file := filepath.Join(dir, v.Source+".img")
	if _, err := ensureImage(ctx, file, size, uid, gid); err != nil {
		return "", fmt.Errorf("volume %s: %w", v.Source, err)
	}
	return file, nil
}

func persistFile(ctx context.Context, dir string, size int64) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("--persist %s: %w", dir, err)
	}
	file := filepath.Join(abs, upperImage)
	if _, err := ensureImage(ctx, file, size, 0, 0); err != nil {
		return "", fmt.Errorf("--persist %s: %w", dir, err)
	}
	return file, nil
}

// checkImage requires an existing regular file or block device.
func checkImage(file string) error {
	fi, err := os.Stat(file)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("disk image %s does not exist (a source without / or .img names a volume c2vm creates)", file)
	}
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() && fi.Mode()&os.ModeDevice == 0 {
		return fmt.Errorf("%s is not a disk image file (a raw ext4 image; -v /dir:/path binds a host directory)", file)
	}
	return nil
}

// ensureImage creates file as a sparse ext4 image of size bytes whose root is empty (no
// lost+found: a docker volume starts empty, and postgres's initdb, mariadb-install-db and the like
// refuse a data directory that is not) and owned by uid:gid, unless it exists; created says
// whether this call made it. The image appears atomically: it is
// made under a temporary name and linked into place.
func ensureImage(ctx context.Context, file string, size int64, uid, gid uint32) (created bool, err error) {
	if _, err := os.Stat(file); err == nil {
		return false, checkImage(file)
	} else if !errors.Is(err, os.ErrNotExist) {
		return false, err
	}
	if size <= 0 {
		size = DefaultVolumeSize
	}
	mkfs, err := e2fsTool("mkfs.ext4")
	if err != nil {
		return false, err
	}
	debugfs, err := e2fsTool("debugfs")
	if err != nil {
		return false, err
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return false, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".*.tmp")
	if err != nil {
		return false, err
	}
	defer os.Remove(tmp.Name())
	err = tmp.Truncate(size)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return false, err
	}
	opts := fmt.Sprintf("root_owner=%d:%d,lazy_itable_init=1,lazy_journal_init=1", uid, gid)
	cmd := exec.CommandContext(ctx, mkfs, "-q", "-F", "-m", "0", "-E", opts, tmp.Name())
	if out, err := cmd.CombinedOutput(); err != nil {
		return false, fmt.Errorf("mkfs.ext4 %s: %w: %s", file, err, strings.TrimSpace(string(out)))
	}
	if err := removeLostFound(ctx, debugfs, tmp.Name()); err != nil {
		return false, fmt.Errorf("%s: %w", file, err)
	}
	// Link, not rename: when another run made the same volume meanwhile, keep (and use) its image
	// rather than replace a file a running VM may already have open.
	if err := os.Link(tmp.Name(), file); errors.Is(err, os.ErrExist) {
		return false, checkImage(file)
	} else if err != nil {
		return false, err
	}
	return true, checkImage(file)
}

// removeLostFound removes the empty lost+found that mkfs.ext4 puts in a new filesystem's root
// (e2fsck makes one again only when it has something to put there).
func removeLostFound(ctx context.Context, debugfs, img string) error {
	out, err := exec.CommandContext(ctx, debugfs, "-w", "-R", "rmdir lost+found", img).CombinedOutput()
	// debugfs exits 0 when its command fails; anything but its banner is an error.
	var msgs []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line != "" && !strings.HasPrefix(line, "debugfs ") {
			msgs = append(msgs, line)
		}
	}
	switch {
	case err != nil:
		return fmt.Errorf("debugfs rmdir lost+found: %w: %s", err, strings.Join(msgs, "; "))
	case len(msgs) > 0:
		return fmt.Errorf("debugfs rmdir lost+found: %s", strings.Join(msgs, "; "))
	}
	return nil
}

// e2fsTool finds an e2fsprogs tool, also in the sbin directories a non-root PATH may lack.
func e2fsTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/" + name, "/sbin/" + name} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found: install Debian package e2fsprogs", name)
}
