package initgen

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"os"
	"path"
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

// elfMachines are the ELF machines of the VM architectures an emulator may be built for.
var elfMachines = map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}

// FindEmulator returns the static qemu-user emulator for image architecture arch, built for the
// VM's architecture vmArch, from dir ("" = /usr/bin, where Debian's qemu-user-static of the host's
// architecture installs them). hint ends the error when it is missing (how to get it).
func FindEmulator(arch, vmArch, dir, hint string) (Emulator, error) {
	a, ok := binfmtArches[arch]
	if !ok {
		return Emulator{}, fmt.Errorf("no emulator known for %s images (c2vm emulates arm64, arm, s390x, ppc64le, riscv64, amd64 and 386)", arch)
	}
	if dir == "" {
		dir = "/usr/bin"
	}
	if hint == "" {
		hint = "install Debian package qemu-user-static"
	}
	e := Emulator{Arch: arch, Name: "qemu-" + a.qemu + "-static"}
	e.Source = path.Join(dir, e.Name)
	data, err := os.ReadFile(e.Source)
	if err != nil {
		return e, fmt.Errorf("%s images run under emulation in the %s VM and need %s: %s (%w)", arch, vmArch, e.Source, hint, err)
	}
	if err := checkStaticELF(e.Source, data, vmArch); err != nil {
		return e, fmt.Errorf("%w: %s", err, hint)
	}
	sum := sha256.Sum256(data)
	e.SHA256 = hex.EncodeToString(sum[:])
	e.Version = emulatorVersion(data, a.qemu)
	return e, nil
}

// checkStaticELF fails unless data (the file's bytes) is a static ELF executable for vmArch: a
// dynamic emulator cannot run inside the container's root, one for another machine not at all.
func checkStaticELF(file string, data []byte, vmArch string) error {
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("%s is not an ELF emulator", file)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is not a static ELF emulator", file)
		}
	}
	if want, ok := elfMachines[vmArch]; ok && f.Machine != want {
		return fmt.Errorf("%s is built for %s, not for the %s VM", file, f.Machine, vmArch)
	}
	return nil
}

// emulatorVersion finds the emulator's --version line ("qemu-aarch64 version 7.2.22 (Debian …)")
// in its bytes, without running it (it may be built for another machine).
func emulatorVersion(bin []byte, qemu string) string {
	prefix := []byte("qemu-" + qemu + " version ")
	i := bytes.Index(bin, prefix)
	if i < 0 {
		return ""
	}
	end := i
	for end < len(bin) && end-i < 200 && bin[end] >= 0x20 && bin[end] < 0x7f {
		end++
	}
	return string(bin[i:end])
}
