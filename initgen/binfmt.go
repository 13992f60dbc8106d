package initgen

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"strings"
)

// EmulatorDir is where the initrd carries qemu-user emulators for foreign-architecture images.
const EmulatorDir = "/c2vm/qemu"

// binfmtArch is how binfmt_misc recognises one architecture's ELF binaries (magic and mask as
// QEMU's scripts/qemu-binfmt-conf.sh and Debian's /usr/share/binfmts give them) and the name of
// its qemu-user emulator.
type binfmtArch struct{ qemu, magic, mask string }

var binfmtArches = map[string]binfmtArch{ // by GOARCH
	"arm64":   {"aarch64", `\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00`, `\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff`},
	"arm":     {"arm", `\x7fELF\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x28\x00`, `\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff`},
	"s390x":   {"s390x", `\x7fELF\x02\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x16`, `\xff\xff\xff\xff\xff\xff\xff\xfc\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff`},
	"ppc64le": {"ppc64le", `\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x15\x00`, `\xff\xff\xff\xff\xff\xff\xff\xfc\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\x00`},
	"riscv64": {"riscv64", `\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xf3\x00`, `\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff`},
	"amd64":   {"x86_64", `\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x3e\x00`, `\xff\xff\xff\xff\xff\xfe\xfe\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff`},
	"386":     {"i386", `\x7fELF\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x03\x00`, `\xff\xff\xff\xff\xff\xfe\xfe\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff`},
}

// Emulator is a static qemu-user binary for one image architecture, run by the guest kernel for
// that architecture's binaries.
type Emulator struct {
	Arch    string // the image's GOARCH
	Name    string // qemu-aarch64-static
	Source  string // on the host
	Version string // its --version line
	SHA256  string
}

// Path is where the emulator is in the initrd.
func (e Emulator) Path() string { return path.Join(EmulatorDir, e.Name) }

// Registration is the binfmt_misc line for the emulator, with flag F (the kernel opens the
// interpreter at registration, so it works in the container's mount namespace after the initramfs
// is gone) and C (credentials from the binary: setuid binaries keep working; implies O).
func (e Emulator) Registration() string {
	a := binfmtArches[e.Arch]
	return fmt.Sprintf(":qemu-%s:M:0:%s:%s:%s:FC", a.qemu, a.magic, a.mask, e.Path())
}

// FindEmulator returns the static qemu-user emulator for image architecture arch, from dir (""
// = /usr/bin, where Debian's qemu-user-static of the VM's architecture installs them).
func FindEmulator(arch, dir string) (Emulator, error) {
	a, ok := binfmtArches[arch]
	if !ok {
		return Emulator{}, fmt.Errorf("no emulator known for %s images (c2vm emulates arm64, arm, s390x, ppc64le, riscv64, amd64 and 386)", arch)
	}
	if dir == "" {
		dir = "/usr/bin"
	}
	e := Emulator{Arch: arch, Name: "qemu-" + a.qemu + "-static"}
	e.Source = path.Join(dir, e.Name)
	f, err := os.Open(e.Source)
	if err != nil {
		return e, fmt.Errorf("%s images run under emulation and need %s: install Debian package qemu-user-static (%w)", arch, e.Source, err)
	}
	defer f.Close()
	if isDynamic(e.Source) {
		return e, fmt.Errorf("%s is not a static ELF emulator: install Debian package qemu-user-static", e.Source)
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return e, err
	}
	e.SHA256 = hex.EncodeToString(h.Sum(nil))
	e.Version = emulatorVersion(e.Source)
	return e, nil
}

// isDynamic reports whether file is not an ELF or has an interpreter (PT_INTERP): a dynamic
// emulator cannot run inside the container's root.
func isDynamic(file string) bool {
	f, err := elf.Open(file)
	if err != nil {
		return true
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return true
		}
	}
	return false
}

func emulatorVersion(bin string) string {
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return ""
	}
	line, _ := bufio.NewReader(bytes.NewReader(out)).ReadString('\n')
	return strings.TrimSpace(line)
}
