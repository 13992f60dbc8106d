package launch

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/c2vm/c2vm/bootcfg"
	"github.com/c2vm/c2vm/internal/share"
	"github.com/c2vm/c2vm/internal/vm"
)

// Volume types: how a Volume's Source is read. The names are docker's --mount types, plus block.
const (
	TypeVolume = "volume" // a named volume: an ext4 image c2vm makes in VolumesDir
	TypeBind   = "bind"   // a host directory or file, shared with the VM (virtio-fs or 9p)
	TypeBlock  = "block"  // c2vm's own: an existing raw ext4 disk image attached as a virtio disk
	TypeTmpfs  = "tmpfs"  // a fresh, empty tmpfs (--mount type=tmpfs; Options.Tmpfs)
)

// ShareFSEnv picks how host directories reach the guest: virtiofs (default) or 9p (QEMU serves the
// directory itself: no daemon and no root needed, but the guest kernel must have 9p, which only
// the c2vm kernel has).
const ShareFSEnv = "C2VM_SHARE_FS"

// sourceType returns the type of a -v source: an absolute or ./ path is a host path, a name a
// named volume; a source ending in .img stays a disk image, as c2vm had it before host
// directories (--mount type=bind binds an .img file).
func sourceType(src string) string {
	switch {
	case strings.HasSuffix(src, ".img"):
		return TypeBlock
	case path.IsAbs(src) || src == "." || strings.HasPrefix(src, "./"):
		return TypeBind
	}
	return TypeVolume // checked by ParseVolume: "x/y" and "~/x" are refused, as docker does
}

// hostPath makes a bind source absolute as docker does: "." and "./x" are taken from the working
// directory; anything else must already be absolute (docker refuses "x/y" and "~/x" as volume
// names; an unquoted ~ is the shell's to expand).
func hostPath(src string) (string, error) {
	if src == "." || strings.HasPrefix(src, "./") {
		return filepath.Abs(src)
	}
	if !filepath.IsAbs(src) {
		return "", fmt.Errorf("source %q is not an absolute path: give /abs/path or ./relative for a host directory (the shell expands ~ only unquoted, at the start of a word)", src)
	}
	return filepath.Clean(src), nil
}

// ParseMount parses docker's --mount: comma-separated key=value pairs, type=bind|volume|tmpfs
// (default volume) or c2vm's type=block; source (src), target (destination, dst), readonly (ro).
func ParseMount(s string) (Volume, error) {
	r := csv.NewReader(strings.NewReader(s))
	fields, err := r.Read()
	if err != nil {
		return Volume{}, fmt.Errorf("mount %q: %w", s, err)
	}
	v := Volume{Type: TypeVolume}
	for _, f := range fields {
		key, val, hasVal := strings.Cut(f, "=")
		switch strings.ToLower(key) {
		case "type":
			v.Type = val
		case "source", "src":
			v.Source = val
		case "target", "destination", "dst":
			v.Target = val
		case "readonly", "ro":
			if !hasVal {
				v.ReadOnly = true
				break
			}
			b, err := strconv.ParseBool(val)
			if err != nil {
				return Volume{}, fmt.Errorf("mount %q: readonly=%q: want true or false", s, val)
			}
			v.ReadOnly = b
		default:
			return Volume{}, fmt.Errorf("mount %q: option %q is not supported (type, source, target, readonly)", s, key)
		}
	}
	if !path.IsAbs(v.Target) || path.Clean(v.Target) == "/" {
		return Volume{}, fmt.Errorf("mount %q: target %q must be an absolute path below /", s, v.Target)
	}
	v.Target = path.Clean(v.Target)
	switch v.Type {
	case TypeBind:
		if v.Source == "" {
			return Volume{}, fmt.Errorf("mount %q: type=bind needs source=HOST_PATH", s)
		}
		if v.Source, err = hostPath(v.Source); err != nil {
			return Volume{}, fmt.Errorf("mount %q: %w", s, err)
		}
	case TypeVolume:
		if !volumeName.MatchString(v.Source) {
			return Volume{}, fmt.Errorf("mount %q: type=volume needs source=NAME (letters, digits, _ . -)", s)
		}
	case TypeBlock:
		if v.Source == "" {
			return Volume{}, fmt.Errorf("mount %q: type=block needs source=DISK_IMAGE (a raw ext4 image)", s)
		}
	case TypeTmpfs:
		if v.Source != "" || v.ReadOnly {
			return Volume{}, fmt.Errorf("mount %q: type=tmpfs takes only a target", s)
		}
	default:
		return Volume{}, fmt.Errorf("mount %q: type %q: want bind, volume, tmpfs or block (c2vm's: a raw ext4 disk image)", s, v.Type)
	}
	return v, nil
}

// bindSource checks a bind's host path: a directory, or a file (shared through its directory).
// A missing -v source becomes a new directory, as docker makes it; a missing --mount source is an
// error, as in docker.
func bindSource(v Volume) (dir, file string, err error) {
	fi, err := os.Stat(v.Source)
	if errors.Is(err, os.ErrNotExist) && v.create {
		if err := os.MkdirAll(v.Source, 0o755); err != nil {
			return "", "", fmt.Errorf("bind %s: %w", v.Source, err)
		}
		fi, err = os.Stat(v.Source)
	}
	if errors.Is(err, os.ErrNotExist) {
		return "", "", fmt.Errorf("bind source path does not exist: %s", v.Source)
	}
	if err != nil {
		return "", "", fmt.Errorf("bind %s: %w", v.Source, err)
	}
	real, err := filepath.EvalSymlinks(v.Source)
	if err != nil {
		return "", "", fmt.Errorf("bind %s: %w", v.Source, err)
	}
	switch {
	case fi.IsDir():
		return real, "", nil
	case fi.Mode().IsRegular():
		return filepath.Dir(real), filepath.Base(real), nil
	}
	return "", "", fmt.Errorf("bind %s: not a directory or a regular file", v.Source)
}

// attachShares adds the run's binds to boot as shares and returns the VM's share devices and the
// servers (virtio-fs daemons) to close after the run.
func attachShares(boot *bootcfg.Config, opts Options) ([]vm.Share, []*share.Server, error) {
	var shares []vm.Share
	var servers []*share.Server
	fs := os.Getenv(ShareFSEnv)
	switch fs {
	case "", bootcfg.FSTypeVirtiofs:
		fs = bootcfg.FSTypeVirtiofs
	case bootcfg.FSType9p:
	default:
		return nil, nil, fmt.Errorf("%s=%q: want virtiofs or 9p", ShareFSEnv, fs)
	}
	var bin string
	for _, v := range opts.Volumes {
		if v.Type != TypeBind {
			continue
		}
		dir, file, err := bindSource(v)
		if err != nil {
			return nil, nil, err
		}
		tag := bootcfg.ShareTag(len(shares))
		boot.Container.Volumes = append(boot.Container.Volumes, bootcfg.Volume{
			Target: v.Target, FSType: fs, Tag: tag, Path: file, ReadOnly: v.ReadOnly})
		s := vm.Share{Tag: tag, Dir: dir, ReadOnly: v.ReadOnly}
		if fs == bootcfg.FSTypeVirtiofs {
			if bin == "" {
				if bin, err = share.Find(); err != nil {
					return nil, nil, fmt.Errorf("-v %s: %w (or, without root: %s=9p with a bundle converted --kernel c2vm)", v.Source, err, ShareFSEnv)
				}
			}
			srv := &share.Server{Dir: dir, Binary: bin}
			servers = append(servers, srv)
			s.Connect = func() (*os.File, error) { return srv.Connect(context.Background()) }
		}
		shares = append(shares, s)
	}
	return shares, servers, nil
}
