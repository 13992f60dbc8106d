// Package bundle defines the c2vm VM bundle on disk — a directory with bundle.json, vmlinuz,
// initrd.img and rootfs.<format> — and writes it atomically: everything is built in a temporary
// directory beside the target and renamed into place at the end, so an interrupted or failed convert
// never leaves a partial bundle and never touches an existing one.
//
// See docs/bundle-format.md and docs/architecture.md.
package bundle

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/c2vm/c2vm/bootcfg"
)

// SchemaVersion is the bundle.json schema this package writes and reads.
const SchemaVersion = 1

// File names inside a bundle.
const (
	ManifestFile = "bundle.json"
	KernelFile   = "vmlinuz"
	InitrdFile   = "initrd.img"
)

// RootfsFile returns the rootfs file name for a format ("" for the initrd format, whose rootfs is
// inside initrd.img).
func RootfsFile(format string) string {
	if format == bootcfg.FormatInitrd {
		return ""
	}
	return "rootfs." + format
}

// Manifest is bundle.json.
type Manifest struct {
	SchemaVersion int              `json:"schemaVersion"`
	Platform      ocispec.Platform `json:"platform"` // the image's
	// VMArch is the guest's architecture (its kernel's); "" in older bundles means Platform's.
	VMArch string `json:"vmArch,omitempty"`
	// Emulator runs the image's binaries when Platform's architecture is not VMArch.
	Emulator     *Emulator `json:"emulator,omitempty"`
	Source       Source    `json:"source"`
	Kernel       Kernel    `json:"kernel"`
	RootfsFormat string    `json:"rootfsFormat"`
	Files        []File    `json:"files"`
	BootArgs     string    `json:"bootArgs"`
	MemoryMiB    int       `json:"memoryMiB"`
	CPUs         int       `json:"cpus"`
	Process      Process   `json:"process"`
	// Image is the effective image config (after convert-time overrides); `c2vm run` regenerates the
	// runtime spec from it when it is given overrides.
	Image ocispec.ImageConfig `json:"image"`
	// Passwd and Group are the image's /etc/passwd and /etc/group, for run-time user overrides.
	Passwd string `json:"passwd,omitempty"`
	Group  string `json:"group,omitempty"`
	// Boot is the boot config baked into initrd.img.
	Boot bootcfg.Config `json:"boot"`
}

// Emulator is the qemu-user emulator a bundle of a foreign-architecture image carries in its initrd.
type Emulator struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
	SHA256  string `json:"sha256"`
}

// GuestArch is the VM's architecture.
func (m *Manifest) GuestArch() string {
	if m.VMArch != "" {
		return m.VMArch
	}
	return m.Platform.Architecture
}

// Source says which image the bundle was made from.
type Source struct {
	Ref            string `json:"ref"`
	Name           string `json:"name,omitempty"`
	ManifestDigest string `json:"manifestDigest"`
	ConfigDigest   string `json:"configDigest"`
}

// Kernel says which kernel the bundle boots.
type Kernel struct {
	Version string `json:"version"`
	Package string `json:"package,omitempty"`
}

// File is one file of the bundle with its size and digest.
type File struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Process is the effective workload as baked into the bundle.
type Process struct {
	Args       []string `json:"args"`
	User       string   `json:"user,omitempty"`
	UID        uint32   `json:"uid"`
	GID        uint32   `json:"gid"`
	Env        []string `json:"env"`
	WorkingDir string   `json:"workingDir"`
	StopSignal string   `json:"stopSignal,omitempty"`
}

// MaxManifestSize bounds bundle.json.
const MaxManifestSize = 8 << 20

// Read loads and checks dir/bundle.json (a regular file of at most MaxManifestSize bytes).
func Read(dir string) (*Manifest, error) {
	b, err := readRegular(filepath.Join(dir, ManifestFile), MaxManifestSize)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s is not a c2vm bundle: no %s (make one with c2vm convert)", dir, ManifestFile)
		}
		return nil, fmt.Errorf("read bundle: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("read bundle %s: %w", filepath.Join(dir, ManifestFile), err)
	}
	if m.SchemaVersion != SchemaVersion {
		return nil, fmt.Errorf("bundle %s has schema version %d, this c2vm reads %d: convert the image again", dir, m.SchemaVersion, SchemaVersion)
	}
	return &m, nil
}

// Marshal returns the manifest as deterministic, indented JSON.
func (m *Manifest) Marshal() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(m); err != nil {
		return nil, fmt.Errorf("encode bundle manifest: %w", err)
	}
	return buf.Bytes(), nil
}

// Verify checks that every file listed in the manifest is present with the recorded size and
// digest; the names are checked first (CheckFileName), so nothing outside dir is opened.
func (m *Manifest) Verify(dir string) error {
	for _, f := range m.Files {
		if err := CheckFileName(f.Name); err != nil {
			return fmt.Errorf("verify bundle %s: %w", dir, err)
		}
	}
	for _, f := range m.Files {
		got, err := Describe(filepath.Join(dir, f.Name))
		if err != nil {
			return fmt.Errorf("verify bundle %s: %w", dir, err)
		}
		if got.Size != f.Size || got.SHA256 != f.SHA256 {
			return fmt.Errorf("verify bundle %s: %s does not match bundle.json (size %d, sha256 %s; want %d, %s): the bundle was modified, convert again", dir, f.Name, got.Size, got.SHA256, f.Size, f.SHA256)
		}
	}
	return nil
}

// CheckFileName requires a file name from bundle.json to be a plain name of a file inside the
// bundle: not empty, ".", "..", bundle.json itself, nor anything with a slash or a NUL.
func CheckFileName(name string) error {
	if name == "" || name == "." || name == ".." || name == ManifestFile || strings.ContainsAny(name, "/\x00") || len(name) > 255 {
		return fmt.Errorf("%s lists the file %q: not a plain file name inside the bundle", ManifestFile, name)
	}
	return nil
}

// openRegular opens path for reading if it is a regular file, never following a final symbolic
// link nor blocking on a FIFO or device.
func openRegular(path string) (*os.File, os.FileInfo, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, syscall.ELOOP) {
		return nil, nil, fmt.Errorf("%s is a symbolic link, not a regular file", path)
	}
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%s is not a regular file (%s)", path, fi.Mode().Type())
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, fi, nil
}

// readRegular reads a regular file of at most max bytes.
func readRegular(path string, max int64) ([]byte, error) {
	f, fi, err := openRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi.Size() > max {
		return nil, fmt.Errorf("%s is %d bytes, over the %d MiB limit", path, fi.Size(), max>>20)
	}
	return io.ReadAll(io.LimitReader(f, max))
}

// Describe returns a File (name, size, sha256) for path, which must be a regular file.
func Describe(path string) (File, error) {
	f, _, err := openRegular(path)
	if err != nil {
		return File{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return File{}, fmt.Errorf("hash %s: %w", path, err)
	}
	return File{Name: filepath.Base(path), Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// CheckFiles checks what `c2vm run` hands to the VMM: the rootfs format is one c2vm writes and the
// one the boot config mounts, and the kernel, initrd and rootfs are regular files inside dir — not
// symlinks, which a hostile bundle could point at any host file the user can read.
func (m *Manifest) CheckFiles(dir string) error {
	switch m.RootfsFormat {
	case bootcfg.FormatSquashfs, bootcfg.FormatErofs, bootcfg.FormatInitrd:
	default:
		return fmt.Errorf("bundle %s: unknown rootfs format %q in %s", dir, m.RootfsFormat, ManifestFile)
	}
	if m.Boot.Container.Rootfs.Format != m.RootfsFormat {
		return fmt.Errorf("bundle %s: %s says rootfs format %q but its boot config mounts %q: convert the image again", dir, ManifestFile, m.RootfsFormat, m.Boot.Container.Rootfs.Format)
	}
	names := []string{KernelFile, InitrdFile}
	if f := RootfsFile(m.RootfsFormat); f != "" {
		names = append(names, f)
	}
	for _, n := range names {
		fi, err := os.Lstat(filepath.Join(dir, n))
		if err != nil {
			return fmt.Errorf("bundle %s: %w", dir, err)
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("bundle %s: %s is not a regular file (%s): refusing to hand it to the VM", dir, n, fi.Mode().Type())
		}
	}
	return nil
}
