package vm

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"

	"github.com/c2vm/c2vm/bootcfg"
)

// MachineType is how QEMU boots one guest architecture (its machine type, CPU and firmware).
type MachineType struct {
	Binary  string // qemu-system-x86_64
	Package string // the Debian package that has it
	Machine string // -M
	// TCGCPU is -cpu under TCG, "" for QEMU's default; under KVM it is always "host".
	TCGCPU string
	// QBoot: qboot may stand in for SeaBIOS (x86 only).
	QBoot bool
}

// machines are the QEMU machines per guest GOARCH: q35 on x86; virt on arm64 with the newest GIC
// the accelerator offers (KVM on an arm64 host without GICv2 emulation needs v3), and under TCG
// "max" (virt's default is a 32-bit Cortex-A15) with QEMU's own pointer-authentication hash, which
// boots in about half the time of the architected QARMA one.
var machines = map[string]MachineType{
	"amd64": {Binary: "qemu-system-x86_64", Package: "qemu-system-x86", Machine: "q35", QBoot: true},
	"arm64": {Binary: "qemu-system-aarch64", Package: "qemu-system-arm", Machine: "virt,gic-version=max", TCGCPU: "max,pauth-impdef=on"},
}

// MachineFor returns the QEMU machine for a guest GOARCH ("" = the host's).
func MachineFor(arch string) (MachineType, error) {
	if arch == "" {
		arch = runtime.GOARCH
	}
	m, ok := machines[arch]
	if !ok {
		return m, fmt.Errorf("no QEMU machine known for guest architecture %q", arch)
	}
	return m, nil
}

// Binary returns the QEMU system emulator for a guest GOARCH.
func Binary(arch string) (string, error) {
	m, err := MachineFor(arch)
	if err != nil {
		return "", err
	}
	p, err := exec.LookPath(m.Binary)
	if err != nil {
		return "", fmt.Errorf("%s not found: install Debian package %s", m.Binary, m.Package)
	}
	return p, nil
}

// defaultMemoryMiB is the guest's memory when Config.MemoryMiB is 0.
const defaultMemoryMiB = 512

// Argv returns the QEMU command line for cfg, with the host ends of the serial channels at the given
// socket paths (keys: console, stdout, stderr, status, stdin; qmp for QEMU's QMP socket). With
// Channels = ChannelsVsock the named channels are a vhost-vsock device instead of serial ports.
func Argv(cfg Config, socks map[string]string) ([]string, error) {
	bin := cfg.QEMU
	if bin == "" {
		var err error
		if bin, err = Binary(cfg.Arch); err != nil {
			return nil, err
		}
	}
	mem, cpus := cfg.MemoryMiB, cfg.CPUs
	if mem <= 0 {
		mem = defaultMemoryMiB
	}
	if cpus <= 0 {
		cpus = 1
	}
	machine, err := MachineFor(cfg.Arch)
	if err != nil {
		return nil, err
	}
	a := []string{bin, "-M", machine.Machine, "-m", strconv.Itoa(mem), "-smp", strconv.Itoa(cpus),
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot"}
	acc := Accel{Name: cfg.Accel}
	if acc.Name != AccelKVM && acc.Name != AccelTCG {
		var err error
		if acc, err = ChooseAccel(cfg.Accel, cfg.Arch, cfg.Host); err != nil {
			return nil, err
		}
	}
	a = append(a, accelArgs(acc)...)
	if acc.Name == AccelTCG && machine.TCGCPU != "" {
		a = append(a, "-cpu", machine.TCGCPU)
	}
	if _, err := os.Stat("/usr/share/qemu/qboot.rom"); err == nil && machine.QBoot {
		a = append(a, "-bios", "/usr/share/qemu/qboot.rom")
	}
	cmdline := cfg.Cmdline
	if cfg.Channels == ChannelsVsock {
		cmdline = strings.TrimSpace(cmdline + " " + bootcfg.FormatChannels(bootcfg.ChannelsVsock))
	}
	a = append(a, "-kernel", cfg.Kernel, "-initrd", cfg.Initrd, "-append", cmdline)
	if q := socks[portQMP]; q != "" {
		a = append(a, "-qmp", "unix:"+qemuOptValue(q)+",server=on,wait=off")
	}
	a = append(a, "-chardev", "socket,id=con,path="+socks[portConsole], "-serial", "chardev:con")
	a = append(a, "-device", "virtio-serial-pci,id=vser")
	if cfg.Channels == ChannelsVsock {
		cid := cfg.GuestCID
		if cid == 0 {
			cid = DefaultGuestCID
		}
		a = append(a, "-device", "vhost-vsock-pci,guest-cid="+strconv.FormatUint(uint64(cid), 10))
	}
	for _, p := range []struct{ key, name string }{
		{portStdout, bootcfg.StdoutPortName}, {portStderr, bootcfg.StderrPortName},
		{portStatus, bootcfg.StatusPortName}, {portStdin, bootcfg.StdinPortName},
		{portAgent, bootcfg.AgentPortName},
	} {
		if socks[p.key] == "" || cfg.Channels == ChannelsVsock {
			continue
		}
		server := ""
		if p.key == portStdin || p.key == portAgent {
			server = ",server=on,wait=off" // see feedStdin and Machine.Agent
		}
		a = append(a, "-chardev", "socket,id="+p.key+",path="+socks[p.key]+server,
			"-device", "virtserialport,bus=vser.0,chardev="+p.key+",name="+p.name)
	}
	for i, d := range cfg.Disks {
		ro := ""
		if d.ReadOnly {
			ro = ",readonly=on"
		}
		id := "disk" + strconv.Itoa(i)
		dev := "virtio-blk-pci,drive=" + id
		if d.Serial != "" {
			dev += ",serial=" + d.Serial
		}
		a = append(a, "-drive", "id="+id+",file="+qemuOptValue(d.Path)+",format=raw,if=none"+ro, "-device", dev)
	}
	a = append(a, shareArgs(cfg.Shares, mem)...)
	a = append(a, netArgs(cfg.Network)...)
	a = append(a, "-device", "virtio-rng-pci")
	a = append(a, incomingArgs(cfg)...)
	return a, nil
}

func netArgs(n *Network) []string {
	if n == nil {
		return nil
	}
	var b strings.Builder
	b.WriteString("user,id=net0")
	for _, f := range n.Forwards {
		ip := f.HostIP
		if ip == "" {
			ip = "127.0.0.1"
		}
		proto := f.Proto
		if proto == "" {
			proto = "tcp"
		}
		fmt.Fprintf(&b, ",hostfwd=%s:%s:%d-:%d", proto, ip, f.HostPort, f.GuestPort)
	}
	return []string{"-netdev", b.String(), "-device", "virtio-net-pci,netdev=net0,romfile="}
}

// qemuOptValue escapes a value for a QEMU -drive option list, where a comma is written ",,".
func qemuOptValue(s string) string { return strings.ReplaceAll(s, ",", ",,") }
