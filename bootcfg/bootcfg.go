// Package bootcfg is the one contract between the converter (host) and the guest init (PID 1 in the
// VM): a versioned JSON document that says what to mount, which kernel modules to load, which files to
// write, which binfmt_misc entries to register, how to set up the network and where the container's
// rootfs and runtime spec are. The host writes it into the initrd at Path; the guest reads, validates
// and carries it out. Everything the init does that depends on the image or the run is in here, so
// the init itself stays generic.
//
// See docs/guest-contract.md (this contract in prose) and docs/architecture.md.
package bootcfg

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Version is the contract version this package writes. An init refuses a document whose major
// version is newer than the one it was built with; minor versions only add optional fields.
const Version = "1.0"

// Well-known paths inside the initrd and the guest.
const (
	// Path is where the boot config lives in the initrd.
	Path = "/c2vm/boot.json"
	// SpecPath is where the OCI runtime spec lives in the initrd.
	SpecPath = "/c2vm/config.json"
	// StatusPortName is the virtio-serial port name the init reports the exit status on.
	StatusPortName = "c2vm.status"
	// StdoutPortName, StderrPortName and StdinPortName carry the workload's stdio when present.
	StdoutPortName = "c2vm.stdout"
	StderrPortName = "c2vm.stderr"
	StdinPortName  = "c2vm.stdin"
	// AgentPortName carries the agent (package agent: exec, signals, stats) when present: the
	// init serves it for the VM's whole life beside the workload.
	AgentPortName = "c2vm.agent"
	// StatusLinePrefix starts the line the init prints on the console with the exit status, for
	// VMMs that have no virtio-serial (e.g. Firecracker): "c2vm-exit-status: N".
	StatusLinePrefix = "c2vm-exit-status: "
	// WinsizeRequest starts the line the host writes on the status port to set the workload's
	// terminal size: "winsize ROWS COLS". ("stop" on its own line asks the init to stop the workload.)
	WinsizeRequest = "winsize"
	// ReadyLine is the first line the init writes on the status port, as soon as it has opened it:
	// the host's sign that the guest kernel booted and the init runs (c2vm run falls back from KVM
	// to TCG only before it).
	ReadyLine = "c2vm-init-ready"
)

// Rootfs formats.
const (
	FormatSquashfs = "squashfs"
	FormatErofs    = "erofs"
	FormatInitrd   = "initrd"
)

// Config is the boot configuration document.
type Config struct {
	Version   string    `json:"version"`
	Debug     bool      `json:"debug,omitempty"`
	Hostname  string    `json:"hostname,omitempty"`
	Mounts    []Mount   `json:"mounts,omitempty"`
	Modules   []string  `json:"modules,omitempty"`
	Files     []File    `json:"files,omitempty"`
	Binfmt    []Binfmt  `json:"binfmt,omitempty"`
	Sysctls   []Sysctl  `json:"sysctls,omitempty"`
	Network   Network   `json:"network"`
	Container Container `json:"container"`
	// ReadyPoint makes the init stop at its ready point (see ReadyPointLine) once the container
	// is created, for the host to save the VM, and start it only on the host's go line.
	ReadyPoint bool `json:"readyPoint,omitempty"`
}

// Mount is one filesystem the init mounts before it starts the container.
type Mount struct {
	Source string   `json:"source"`
	Target string   `json:"target"`
	FSType string   `json:"fstype"`
	Flags  []string `json:"flags,omitempty"` // ro, nosuid, nodev, noexec, relatime, ...
	Data   string   `json:"data,omitempty"`
	// Optional mounts may fail without failing the boot (e.g. cgroup2 on a kernel without it).
	Optional bool `json:"optional,omitempty"`
	// Mkdir lists directories to create (mode 0755) below Target once it is mounted.
	Mkdir []string `json:"mkdir,omitempty"`
}

// File is a file the init writes into the guest before it starts the container.
type File struct {
	Path    string `json:"path"`
	Mode    uint32 `json:"mode"`
	Content string `json:"content"`
}

// Binfmt is one binfmt_misc registration, in the kernel's format
// ":name:type:offset:magic:mask:interpreter:flags".
type Binfmt struct {
	Registration string `json:"registration"`
}

// Sysctl is one kernel parameter the init sets before it starts the container, e.g.
// net.ipv4.ip_unprivileged_port_start = 0 (written to /proc/sys/net/ipv4/ip_unprivileged_port_start).
type Sysctl struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// DockerSysctls are the kernel parameters docker gives every container, which the guest kernel's
// defaults differ from: any user may bind ports below 1024 and send ICMP echo (ping) sockets. The
// container shares the guest's network, so the init sets them in the guest (runc refuses net.*
// sysctls outside a network namespace). vm.overcommit_memory goes back to the kernel's heuristic
// default: the command line sets 1 only so that the Go init starts in small guests (see
// BaseBootArgs in package convert); the workload gets what docker's host gives it.
var DockerSysctls = []Sysctl{
	{Key: "net.ipv4.ip_unprivileged_port_start", Value: "0"},
	{Key: "net.ipv4.ping_group_range", Value: "0 2147483647"},
	{Key: "vm.overcommit_memory", Value: "0"},
}

// Path returns the sysctl's file below /proc/sys.
func (s Sysctl) Path() string { return "/proc/sys/" + strings.ReplaceAll(s.Key, ".", "/") }

// Network modes.
const (
	NetworkNone   = "none"
	NetworkStatic = "static"
)

// Network says how the init configures the guest network. Loopback is always brought up.
type Network struct {
	Mode      string   `json:"mode"`                // none | static
	Interface string   `json:"interface,omitempty"` // e.g. eth0
	Address   string   `json:"address,omitempty"`   // CIDR, e.g. 10.0.2.15/24
	Gateway   string   `json:"gateway,omitempty"`
	DNS       []string `json:"dns,omitempty"`
}

// Container says where the workload's rootfs and runtime spec are and how to run it.
type Container struct {
	ID        string  `json:"id"`
	BundleDir string  `json:"bundleDir"` // runc bundle dir in the guest; rootfs is BundleDir/rootfs
	SpecPath  string  `json:"specPath"`  // runtime spec in the initrd, copied to BundleDir/config.json
	Rootfs    Rootfs  `json:"rootfs"`
	Overlay   Overlay `json:"overlay"`
	// StopSignal is sent to the workload when the host asks the VM to stop (default SIGTERM).
	StopSignal string `json:"stopSignal,omitempty"`
	// StopTimeout is how many seconds the workload has after StopSignal before SIGKILL.
	StopTimeout int `json:"stopTimeout,omitempty"`
	// Volumes are filesystems bound into the container (see Volume).
	Volumes []Volume `json:"volumes,omitempty"`
}

// Volume is a filesystem the container sees at Target. A disk volume (FSType ext4, found by
// Serial or Device) is mounted by the init at VolumesDir/<index> and bound into the container; a
// tmpfs volume is a fresh, empty tmpfs mounted by the runtime (mode 1777); a share (FSType
// virtiofs or 9p, found by Tag) is a host directory, mounted and bound the same way.
type Volume struct {
	Target   string `json:"target"`           // absolute path in the container
	FSType   string `json:"fstype"`           // ext4 (a disk) or tmpfs
	Serial   string `json:"serial,omitempty"` // virtio-blk serial of the disk (/sys/block/*/serial)
	Device   string `json:"device,omitempty"` // block device of the disk when no Serial, e.g. /dev/vdb
	ReadOnly bool   `json:"readOnly,omitempty"`
	// CopyUp fills the volume from the image, as docker does on every run: before the container
	// starts, the init copies what the container's rootfs has at Target into the volume when the
	// volume is empty, then gives the volume's root the directory's owner and permissions. Set
	// for image VOLUMEs and read-write named volumes.
	CopyUp bool `json:"copyUp,omitempty"`
	// Tag names the host directory a share volume (FSType virtiofs or 9p) mounts: the device's
	// mount tag (see shares.go).
	Tag string `json:"tag,omitempty"`
	// Path, for a share, is a file in the shared directory that the container sees at Target
	// instead of the whole directory (docker's bind mount of a single file).
	Path string `json:"path,omitempty"`
}

// VolumesDir is where the init mounts volumes in the guest: VolumesDir/<index in Volumes>.
const VolumesDir = "/run/c2vm/volumes"

// FSTypeTmpfs is Volume.FSType for a fresh tmpfs.
const FSTypeTmpfs = "tmpfs"

// Rootfs is the container's read-only lower layer. A squashfs or erofs rootfs is a disk the init
// finds by identity, not position: the disk whose virtio serial is Serial (c2vm run sets it), else
// the disk whose leading bytes match Identity (any VMM); Device, when set, names it outright.
type Rootfs struct {
	Format   string    `json:"format"`             // squashfs | erofs | initrd
	Device   string    `json:"device,omitempty"`   // a fixed block device, e.g. /dev/vda
	Serial   string    `json:"serial,omitempty"`   // virtio-blk serial of the rootfs disk
	Identity *Identity `json:"identity,omitempty"` // the image's identity, to find it on any disk
	Path     string    `json:"path,omitempty"`     // directory in the initrd for the initrd format
}

// Overlay upper kinds.
const (
	UpperTmpfs = "tmpfs"
	UpperDisk  = "disk"
)

// Overlay is the writable upper layer over the rootfs.
type Overlay struct {
	Upper  string `json:"upper"`            // tmpfs | disk
	Size   string `json:"size,omitempty"`   // tmpfs size option, e.g. "50%" or "256m"
	Device string `json:"device,omitempty"` // ext4 block device for a disk upper
	Serial string `json:"serial,omitempty"` // or the virtio-blk serial of that disk
}

// Default returns a boot config with the standard guest mounts and the given container settings
// left for the caller to fill in.
func Default() Config {
	return Config{
		Version: Version,
		Mounts: []Mount{
			{Source: "proc", Target: "/proc", FSType: "proc", Flags: []string{"nosuid", "nodev", "noexec"}},
			{Source: "sysfs", Target: "/sys", FSType: "sysfs", Flags: []string{"nosuid", "nodev", "noexec"}},
			{Source: "devtmpfs", Target: "/dev", FSType: "devtmpfs", Flags: []string{"nosuid"}, Data: "mode=0755"},
			{Source: "devpts", Target: "/dev/pts", FSType: "devpts", Flags: []string{"nosuid", "noexec"}, Data: "newinstance,ptmxmode=0666,mode=0620", Optional: true},
			{Source: "shm", Target: "/dev/shm", FSType: "tmpfs", Flags: []string{"nosuid", "nodev"}, Data: "mode=1777", Optional: true},
			{Source: "run", Target: "/run", FSType: "tmpfs", Flags: []string{"nosuid", "nodev"}, Data: "mode=0755"},
			{Source: "tmp", Target: "/tmp", FSType: "tmpfs", Flags: []string{"nosuid", "nodev"}, Data: "mode=1777"},
			{Source: "cgroup2", Target: "/sys/fs/cgroup", FSType: "cgroup2", Flags: []string{"nosuid", "nodev", "noexec"}, Optional: true},
		},
		Sysctls: append([]Sysctl(nil), DockerSysctls...),
		Network: Network{Mode: NetworkNone},
		Container: Container{
			ID:        "c2vm",
			BundleDir: "/run/c2vm/bundle",
			SpecPath:  SpecPath,
			Overlay:   Overlay{Upper: UpperTmpfs, Size: "50%"},
		},
	}
}

// Decode reads a boot config, rejecting unknown fields of the same major version's document only
// where they would change behaviour: unknown fields are allowed so that minor versions can add
// optional ones. It does not validate; call Validate.
func Decode(r io.Reader) (*Config, error) {
	var c Config
	dec := json.NewDecoder(r)
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("decode boot config: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("decode boot config: trailing data after the JSON document")
	}
	return &c, nil
}

// Encode writes the config as indented JSON with a trailing newline; output is deterministic.
func (c *Config) Encode(w io.Writer) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(c); err != nil {
		return fmt.Errorf("encode boot config: %w", err)
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// Marshal returns Encode's output as bytes.
func (c *Config) Marshal() ([]byte, error) {
	var buf bytes.Buffer
	err := c.Encode(&buf)
	return buf.Bytes(), err
}

// ParseVersion splits "MAJOR.MINOR" into numbers.
func ParseVersion(v string) (major, minor int, err error) {
	maj, min, ok := strings.Cut(v, ".")
	if !ok {
		return 0, 0, fmt.Errorf("version %q: want MAJOR.MINOR", v)
	}
	if major, err = strconv.Atoi(maj); err != nil || major < 0 {
		return 0, 0, fmt.Errorf("version %q: bad major number", v)
	}
	if minor, err = strconv.Atoi(min); err != nil || minor < 0 {
		return 0, 0, fmt.Errorf("version %q: bad minor number", v)
	}
	return major, minor, nil
}
