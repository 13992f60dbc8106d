package bootcfg

import (
	"errors"
	"fmt"
	"net/netip"
	"path"
	"strings"
)

// Validate rejects a config the init could not carry out. The error names the offending field.
func (c *Config) Validate() error {
	major, _, err := ParseVersion(c.Version)
	if err != nil {
		return fmt.Errorf("version: %w", err)
	}
	wantMajor, _, _ := ParseVersion(Version)
	if major > wantMajor {
		return fmt.Errorf("version: boot config version %s is newer than this init understands (%s): rebuild the bundle with a matching c2vm", c.Version, Version)
	}
	if major < 1 {
		return fmt.Errorf("version: %q is not a supported boot config version", c.Version)
	}
	var errs []error
	for i, m := range c.Mounts {
		if err := m.validate(); err != nil {
			errs = append(errs, fmt.Errorf("mounts[%d]: %w", i, err))
		}
	}
	for i, m := range c.Modules {
		if m == "" || strings.ContainsAny(m, "/ \t\n") {
			errs = append(errs, fmt.Errorf("modules[%d]: %q is not a module name", i, m))
		}
	}
	for i, f := range c.Files {
		if err := checkAbs(f.Path); err != nil {
			errs = append(errs, fmt.Errorf("files[%d].path: %w", i, err))
		}
		if f.Mode&^0o7777 != 0 {
			errs = append(errs, fmt.Errorf("files[%d].mode: %#o has bits beyond permissions", i, f.Mode))
		}
	}
	for i, b := range c.Binfmt {
		if err := validateBinfmt(b.Registration); err != nil {
			errs = append(errs, fmt.Errorf("binfmt[%d].registration: %w", i, err))
		}
	}
	for i, sc := range c.Sysctls {
		if err := sc.validate(); err != nil {
			errs = append(errs, fmt.Errorf("sysctls[%d]: %w", i, err))
		}
	}
	if err := c.Network.validate(); err != nil {
		errs = append(errs, fmt.Errorf("network.%w", err))
	}
	if err := c.Container.validate(); err != nil {
		errs = append(errs, fmt.Errorf("container.%w", err))
	}
	if strings.ContainsAny(c.Hostname, " /\t\n\x00") || len(c.Hostname) > 64 {
		errs = append(errs, fmt.Errorf("hostname: %q is not a valid host name", c.Hostname))
	}
	return errors.Join(errs...)
}

func checkAbs(p string) error {
	switch {
	case p == "":
		return errors.New("empty path")
	case !path.IsAbs(p):
		return fmt.Errorf("%q is not absolute", p)
	case path.Clean(p) != p:
		return fmt.Errorf("%q is not clean (want %q)", p, path.Clean(p))
	case strings.ContainsRune(p, 0):
		return fmt.Errorf("%q contains a NUL byte", p)
	}
	return nil
}

func (m Mount) validate() error {
	if err := checkAbs(m.Target); err != nil {
		return fmt.Errorf("target: %w", err)
	}
	if m.FSType == "" {
		return errors.New("fstype: empty")
	}
	for _, f := range m.Flags {
		if _, ok := MountFlags[f]; !ok {
			return fmt.Errorf("flags: unknown mount flag %q", f)
		}
	}
	for _, d := range m.Mkdir {
		if d == "" || path.IsAbs(d) || strings.HasPrefix(path.Clean(d), "..") {
			return fmt.Errorf("mkdir: %q must be a relative path below the target", d)
		}
	}
	return nil
}

func (n Network) validate() error {
	switch n.Mode {
	case NetworkNone, "":
		return nil
	case NetworkStatic:
	default:
		return fmt.Errorf("mode: unknown network mode %q (want none or static)", n.Mode)
	}
	if n.Interface == "" {
		return errors.New("interface: empty for static network")
	}
	if _, err := netip.ParsePrefix(n.Address); err != nil {
		return fmt.Errorf("address: %w", err)
	}
	if n.Gateway != "" {
		if _, err := netip.ParseAddr(n.Gateway); err != nil {
			return fmt.Errorf("gateway: %w", err)
		}
	}
	for i, d := range n.DNS {
		if _, err := netip.ParseAddr(d); err != nil {
			return fmt.Errorf("dns[%d]: %w", i, err)
		}
	}
	return nil
}

func (c Container) validate() error {
	if c.ID == "" || strings.ContainsAny(c.ID, "/ \t\n") {
		return fmt.Errorf("id: %q is not a container id", c.ID)
	}
	if err := checkAbs(c.BundleDir); err != nil {
		return fmt.Errorf("bundleDir: %w", err)
	}
	if err := checkAbs(c.SpecPath); err != nil {
		return fmt.Errorf("specPath: %w", err)
	}
	switch c.Rootfs.Format {
	case FormatSquashfs, FormatErofs:
		if err := c.Rootfs.validateDisk(); err != nil {
			return fmt.Errorf("rootfs.%w", err)
		}
	case FormatInitrd:
		if err := checkAbs(c.Rootfs.Path); err != nil {
			return fmt.Errorf("rootfs.path: %w", err)
		}
	default:
		return fmt.Errorf("rootfs.format: unknown format %q (want squashfs, erofs or initrd)", c.Rootfs.Format)
	}
	switch c.Overlay.Upper {
	case UpperTmpfs:
	case UpperDisk:
		if err := checkDisk(c.Overlay.Device, c.Overlay.Serial); err != nil {
			return fmt.Errorf("overlay.%w", err)
		}
	default:
		return fmt.Errorf("overlay.upper: unknown upper %q (want tmpfs or disk)", c.Overlay.Upper)
	}
	if c.StopTimeout < 0 {
		return fmt.Errorf("stopTimeout: %d is negative", c.StopTimeout)
	}
	return validateVolumes(c.Volumes)
}

// validateBinfmt checks the kernel's ":name:type:offset:magic:mask:interpreter:flags" format.
func validateBinfmt(r string) error {
	if len(r) < 2 {
		return errors.New("too short")
	}
	parts := strings.Split(r[1:], r[:1])
	if len(parts) != 7 {
		return fmt.Errorf("want 7 fields separated by %q, got %d", r[:1], len(parts))
	}
	name, typ, interp := parts[0], parts[1], parts[5]
	if name == "" || strings.Contains(name, "/") || name == "." || name == ".." {
		return fmt.Errorf("bad name %q", name)
	}
	if typ != "M" && typ != "E" {
		return fmt.Errorf("type %q: want M or E", typ)
	}
	if !path.IsAbs(interp) {
		return fmt.Errorf("interpreter %q is not absolute", interp)
	}
	return nil
}

// validate accepts dotted keys of lowercase letters, digits, '_' and '-' (no empty or ".."
// component, so the path stays below /proc/sys) and single-line values.
func (s Sysctl) validate() error {
	parts := strings.Split(s.Key, ".")
	for _, p := range parts {
		if p == "" || strings.Trim(p, "abcdefghijklmnopqrstuvwxyz0123456789_-") != "" {
			return fmt.Errorf("key %q is not a sysctl name", s.Key)
		}
	}
	if len(parts) < 2 {
		return fmt.Errorf("key %q is not a sysctl name", s.Key)
	}
	if strings.ContainsAny(s.Value, "\n\x00") {
		return fmt.Errorf("%s: value %q has a newline or NUL", s.Key, s.Value)
	}
	return nil
}

// validateDisk checks how a disk rootfs is found: a device, or a serial and/or an identity.
func (r Rootfs) validateDisk() error {
	if r.Device != "" {
		if r.Serial != "" || r.Identity != nil {
			return errors.New("device: give a device, or a serial and an identity, not both")
		}
		return checkDisk(r.Device, "")
	}
	if r.Serial == "" && r.Identity == nil {
		return errors.New("device: the rootfs disk needs a device, a serial or an identity")
	}
	if r.Serial != "" {
		if err := checkDisk("", r.Serial); err != nil {
			return err
		}
	}
	if r.Identity != nil {
		if err := r.Identity.validate(); err != nil {
			return fmt.Errorf("identity: %w", err)
		}
	}
	return nil
}
