package vm

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// Accelerators, as --accel and C2VM_ACCEL take them.
const (
	AccelAuto = "auto" // KVM when hardware virtualization backs /dev/kvm for the guest, else TCG
	AccelKVM  = "kvm"
	AccelTCG  = "tcg"
)

// ParseAccel checks an accelerator name; "" is AccelAuto.
func ParseAccel(s string) (string, error) {
	switch s {
	case "", AccelAuto:
		return AccelAuto, nil
	case AccelKVM, AccelTCG:
		return s, nil
	}
	return "", fmt.Errorf("accelerator %q: want auto, kvm or tcg", s)
}

// Host is where the accelerator probe looks at the host: procfs, sysfs and /dev/kvm below Root.
// The zero value is the real host.
type Host struct {
	Root string // "" = "/"
	Arch string // host GOARCH; "" = runtime.GOARCH
}

// Accel is the accelerator picked for one boot, and why.
type Accel struct {
	Name   string // AccelKVM or AccelTCG
	Auto   bool   // picked by AccelAuto (so a KVM failure may fall back to TCG)
	Reason string
	// Fallback is set on a TCG boot that replaces a failed automatic KVM boot: why KVM failed.
	Fallback string
}

// ErrKVM means KVM was asked for but cannot run a guest on this host.
var ErrKVM = errors.New("KVM cannot run this guest here")

// ChooseAccel resolves the requested accelerator for a guest of guestArch ("" = the host's). An
// explicit kvm that the host cannot serve is an error wrapping ErrKVM.
func ChooseAccel(requested, guestArch string, h Host) (Accel, error) {
	req, err := ParseAccel(requested)
	if err != nil {
		return Accel{}, err
	}
	if req == AccelTCG {
		return Accel{Name: AccelTCG, Reason: "asked for (--accel tcg)"}, nil
	}
	ok, why := h.KVM(guestArch)
	switch {
	case ok && req == AccelKVM:
		return Accel{Name: AccelKVM, Reason: "asked for (--accel kvm); " + why}, nil
	case ok:
		return Accel{Name: AccelKVM, Auto: true, Reason: why}, nil
	case req == AccelKVM:
		return Accel{}, fmt.Errorf("%w (%s): use --accel tcg, or --accel auto to pick by what the host can run", ErrKVM, why)
	}
	return Accel{Name: AccelTCG, Auto: true, Reason: why}, nil
}

// KVM reports whether KVM can run a guest of guestArch on this host, and why (or why not).
// x86 needs hardware virtualization behind /dev/kvm: kvm_intel or kvm_amd loaded, or vmx/svm in
// /proc/cpuinfo. A /dev/kvm served only by kvm_pvm (nested, paravirtual) cannot run an ordinary
// guest kernel.
func (h Host) KVM(guestArch string) (bool, string) {
	host := h.Arch
	if host == "" {
		host = runtime.GOARCH
	}
	if guestArch != "" && guestArch != host {
		return false, fmt.Sprintf("the guest is %s, the host %s: KVM runs only the host's architecture", guestArch, host)
	}
	if err := h.openKVM(); err != nil {
		return false, err.Error()
	}
	if host != "amd64" && host != "386" {
		return true, "/dev/kvm opens read-write"
	}
	if hw := h.hardwareVirt(); hw != "" {
		return true, "/dev/kvm opens read-write and " + hw
	}
	why := "/dev/kvm has no hardware virtualization behind it (no kvm_intel or kvm_amd module, no vmx or svm CPU flag)"
	if h.exists("sys/module/kvm_pvm") {
		why = "/dev/kvm is served by kvm_pvm, a nested paravirtual KVM that cannot run an ordinary guest (no vmx or svm CPU flag)"
	}
	return false, why
}

func (h Host) path(rel string) string {
	root := h.Root
	if root == "" {
		root = "/"
	}
	return filepath.Join(root, rel)
}

func (h Host) exists(rel string) bool {
	_, err := os.Stat(h.path(rel))
	return err == nil
}

func (h Host) openKVM() error {
	f, err := os.OpenFile(h.path("dev/kvm"), os.O_RDWR, 0)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return errors.New("no /dev/kvm")
	case err != nil:
		return fmt.Errorf("/dev/kvm cannot be opened read-write: %w", errors.Unwrap(err))
	}
	return f.Close()
}

// hardwareVirt names what provides hardware virtualization on an x86 host, or "".
func (h Host) hardwareVirt() string {
	for _, m := range []string{"kvm_intel", "kvm_amd"} {
		if h.exists("sys/module/" + m) {
			return m + " is loaded"
		}
	}
	if flag := cpuFlag(h.path("proc/cpuinfo"), "vmx", "svm"); flag != "" {
		return "the CPU has " + flag
	}
	return ""
}

// cpuFlag returns the first of want found in a cpuinfo "flags" line, or "".
func cpuFlag(cpuinfo string, want ...string) string {
	f, err := os.Open(cpuinfo)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(key) != "flags" {
			continue
		}
		for _, fl := range strings.Fields(val) {
			for _, w := range want {
				if fl == w {
					return w
				}
			}
		}
		return "" // every CPU lists the same flags
	}
	return ""
}

func accelArgs(a Accel) []string {
	if a.Name == AccelKVM {
		return []string{"-accel", "kvm", "-cpu", "host"}
	}
	return []string{"-accel", "tcg"}
}
