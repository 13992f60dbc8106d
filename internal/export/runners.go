package export

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/c2vm/c2vm/bootcfg"
	"github.com/c2vm/c2vm/bundle"
	"github.com/c2vm/c2vm/internal/vm"
)

// statusTail is the end of the scripts: the workload's status from the last status line of the
// console log, 125 (c2vm's own failure) when the guest reported none.
const statusTail = `status=$(tr -d '\r' < "$log" | sed -n 's/^` + bootcfg.StatusLinePrefix + `\([0-9][0-9]*\)$/\1/p' | tail -n 1)
exit "${status:-125}"
`

const scriptHead = `#!/bin/sh
# %s
# Written by c2vm export. The console (stdout) carries the workload's output and then the line
# "` + bootcfg.StatusLinePrefix + `N"; the script exits with N (125 when the guest reported none).
set -u
here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
log=$(mktemp) || exit 125
trap 'rm -f "$log"' EXIT
`

// writeQEMU writes run.sh: plain QEMU (q35 or virt, virtio-pci), the serial console on stdio.
func writeQEMU(e *exporter) (string, error) {
	q, err := vm.MachineFor(e.m.GuestArch())
	if err != nil {
		return "", fmt.Errorf("export: %w", err)
	}
	if err := e.linkBoot(true); err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, scriptHead, "Boots this c2vm bundle under plain QEMU. ACCEL=kvm uses KVM (default tcg).")
	b.WriteString("accel=${ACCEL:-tcg}\n")
	cpu := ""
	if q.TCGCPU != "" {
		cpu = "-cpu " + q.TCGCPU
	}
	fmt.Fprintf(&b, "cpu=%s; [ \"$accel\" = kvm ] && cpu=\"-cpu host\"\n", shellQuote(cpu))
	if q.QBoot {
		b.WriteString("bios=; [ -f /usr/share/qemu/qboot.rom ] && bios=\"-bios /usr/share/qemu/qboot.rom\"\n")
	} else {
		b.WriteString("bios=\n")
	}
	r := e.rootfs()
	if r != "" { // a comma in a -drive value is written twice
		fmt.Fprintf(&b, "rootfs=$(printf '%%s\\n' \"$here/%s\" | sed 's/,/,,/g')\n", r)
	}
	fmt.Fprintf(&b, "%s -M %s -m %d -smp %d -nodefaults -no-user-config -display none -no-reboot \\\n", q.Binary, q.Machine, e.m.MemoryMiB, e.m.CPUs)
	fmt.Fprintf(&b, "  -accel \"$accel\" $cpu $bios -kernel \"$here/%s\" -initrd \"$here/%s\" \\\n", bundle.KernelFile, bundle.InitrdFile)
	fmt.Fprintf(&b, "  -append %s \\\n  -serial stdio -device virtio-rng-pci", shellQuote(e.bootArgs(bootcfg.SerialConsole(e.m.GuestArch()))))
	if r != "" {
		b.WriteString(" \\\n  -drive id=rootfs,file=\"$rootfs\",format=raw,if=none,readonly=on -device virtio-blk-pci,drive=rootfs")
	}
	b.WriteString(" < /dev/null | tee \"$log\"\n" + statusTail)
	return "run.sh", e.write("run.sh", []byte(b.String()), 0o755)
}

// SpindleSpec is Tangled spindle's microvm image spec.json (the fields c2vm fills).
type SpindleSpec struct {
	Arch              string          `json:"arch"` // QEMU naming
	BootArgs          string          `json:"bootArgs"`
	Kernel            string          `json:"kernel"`
	Initrd            string          `json:"initrd"`
	StoreDisk         string          `json:"storeDisk"`
	StoreDiskType     string          `json:"storeDiskType"`
	RunnerType        string          `json:"runnerType"`
	RunnerConfig      SpindleRunner   `json:"runnerConfig"`
	MemoryMiB         int             `json:"memoryMiB"`
	VCPUs             int             `json:"vcpus"`
	Shell             string          `json:"shell"`
	Volumes           []SpindleVolume `json:"volumes"`
	NetworkInterfaces []any           `json:"networkInterfaces"`
}

// SpindleVolume is one of spec.json's volumes: a disk spindle creates and formats for each job
// and attaches after the store disk.
type SpindleVolume struct {
	FSType     string `json:"fsType"`
	Image      string `json:"image"`
	MountPoint string `json:"mountPoint"`
	SizeMiB    int    `json:"sizeMiB"`
}

// DefaultWorkspaceMiB is the size of the spindle workspace volume unless Options says otherwise.
const DefaultWorkspaceMiB = 4096

// SpindleRunner is spec.json's runnerConfig.
type SpindleRunner struct {
	Machine         string   `json:"machine"`
	CPU             string   `json:"cpu"`
	Console         string   `json:"console"`
	ExtraArgs       []string `json:"extraArgs"`
	VirtioTransport string   `json:"virtioTransport,omitempty"`
}

// Spindle's stock microvm machine and CPU (its default runner config).
const (
	spindleMachine    = "microvm,accel=kvm:tcg,acpi=on,mem-merge=on,pcie=off,pic=off,pit=off,rtc=on,usb=off"
	spindleMachineTCG = "microvm,accel=tcg,acpi=on,mem-merge=on,pcie=off,pic=off,pit=off,rtc=on,usb=off"
	spindleCPU        = "host,+x2apic,-sgx"
	// tscEarlyKHz lets Debian's kernel boot the microvm machine under TCG, where it cannot
	// calibrate the TSC against the (absent) PIT.
	tscEarlyKHz = "tsc_early_khz=2000000"
)

// spindleEarlyPrintk sends the kernel's earliest messages to the serial port, which spindle logs
// (and shows when a VM dies during boot).
const spindleEarlyPrintk = "earlyprintk=ttyS0"

// imageShell is the shell spindle runs steps with: root's login shell in the image's
// /etc/passwd, else /bin/sh (the OCI image config has no SHELL).
func imageShell(passwd string) string {
	for _, l := range strings.Split(passwd, "\n") {
		f := strings.Split(l, ":")
		if len(f) == 7 && f[0] == "root" && strings.HasPrefix(f[6], "/") && !strings.HasSuffix(f[6], "nologin") && !strings.HasSuffix(f[6], "/false") {
			return f[6]
		}
	}
	return "/bin/sh"
}

// writeSpindle writes spec.json for spindle's QEMU runner: console hvc0, the rootfs as the store
// disk (virtio-mmio), which the init finds by identity; the workspace volume spindle creates,
// formats and attaches for each job, mounted by the init at /workspace in shuttle mode.
func writeSpindle(e *exporter) (string, error) {
	r := e.rootfs()
	if r == "" {
		return "", fmt.Errorf("spindle needs a store disk: convert with --rootfs-format squashfs or erofs")
	}
	if err := e.linkBoot(true); err != nil {
		return "", err
	}
	size := e.opts.WorkspaceMiB
	if size <= 0 {
		size = DefaultWorkspaceMiB
	}
	s := SpindleSpec{
		Arch: "x86_64", BootArgs: e.bootArgs("hvc0", spindleEarlyPrintk), Kernel: bundle.KernelFile, Initrd: bundle.InitrdFile,
		StoreDisk: r, StoreDiskType: e.m.RootfsFormat, RunnerType: "qemu",
		RunnerConfig: SpindleRunner{Machine: spindleMachine, CPU: spindleCPU, Console: "hvc0", ExtraArgs: []string{"-device", "i8042"}},
		MemoryMiB:    e.m.MemoryMiB, VCPUs: e.m.CPUs, Shell: imageShell(e.m.Passwd),
		Volumes:           []SpindleVolume{{FSType: "ext4", Image: "workspace.img", MountPoint: "/workspace", SizeMiB: size}},
		NetworkInterfaces: []any{},
	}
	if e.opts.TCG {
		s.RunnerConfig.Machine = spindleMachineTCG
		s.BootArgs += " " + tscEarlyKHz
	}
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return "", err
	}
	return "spec.json", e.write("spec.json", append(data, '\n'), 0o644)
}

// FirecrackerConfig is the config file of `firecracker --no-api --config-file`.
type FirecrackerConfig struct {
	BootSource    FirecrackerBoot    `json:"boot-source"`
	Drives        []FirecrackerDrive `json:"drives"`
	MachineConfig FirecrackerMachine `json:"machine-config"`
}

// FirecrackerBoot is boot-source.
type FirecrackerBoot struct {
	KernelImagePath string `json:"kernel_image_path"`
	BootArgs        string `json:"boot_args"`
	InitrdPath      string `json:"initrd_path"`
}

// FirecrackerDrive is one of drives.
type FirecrackerDrive struct {
	DriveID      string `json:"drive_id"`
	PathOnHost   string `json:"path_on_host"`
	IsRootDevice bool   `json:"is_root_device"`
	IsReadOnly   bool   `json:"is_read_only"`
}

// FirecrackerMachine is machine-config.
type FirecrackerMachine struct {
	VCPUCount  int `json:"vcpu_count"`
	MemSizeMiB int `json:"mem_size_mib"`
}

// firecrackerArgs are Firecracker's recommended boot arguments; the guest ends the VM by rebooting
// (Firecracker on x86 does not end on power off).
var firecrackerArgs = []string{"reboot=k", "pci=off", "i8042.noaux", "i8042.nomux", "i8042.dumbkbd", bootcfg.FormatHalt(bootcfg.HaltReboot)}

// FirecrackerBootArgs is the kernel command line the Firecracker descriptor uses for a bundle's
// boot args (the console on the serial port).
func (e *exporter) firecrackerBootArgs() string { return e.bootArgs("ttyS0", firecrackerArgs...) }

// writeFirecracker writes vmconfig.json and vmlinux (Firecracker boots an uncompressed ELF
// kernel on x86). Paths are relative: run firecracker in this directory.
func writeFirecracker(e *exporter) (string, error) {
	if err := e.writeVmlinux(); err != nil {
		return "", err
	}
	if err := e.linkBoot(false); err != nil {
		return "", err
	}
	c := FirecrackerConfig{
		BootSource:    FirecrackerBoot{KernelImagePath: "vmlinux", BootArgs: e.firecrackerBootArgs(), InitrdPath: bundle.InitrdFile},
		Drives:        []FirecrackerDrive{},
		MachineConfig: FirecrackerMachine{VCPUCount: e.m.CPUs, MemSizeMiB: e.m.MemoryMiB},
	}
	if r := e.rootfs(); r != "" {
		c.Drives = append(c.Drives, FirecrackerDrive{DriveID: "rootfs", PathOnHost: r, IsReadOnly: true})
	}
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return "", err
	}
	return "vmconfig.json", e.write("vmconfig.json", append(data, '\n'), 0o644)
}

// writeCloudHypervisor writes run.sh for cloud-hypervisor (vmlinux via PVH, virtio-pci).
func writeCloudHypervisor(e *exporter) (string, error) {
	if err := e.writeVmlinux(); err != nil {
		return "", err
	}
	if err := e.linkBoot(false); err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, scriptHead, "Boots this c2vm bundle under Cloud Hypervisor (needs KVM).")
	r := e.rootfs()
	guard, disk := cloudHypervisorDisk(r)
	b.WriteString(guard)
	fmt.Fprintf(&b, "cloud-hypervisor --kernel \"$here/vmlinux\" --initramfs \"$here/%s\" \\\n", bundle.InitrdFile)
	fmt.Fprintf(&b, "  --cmdline %s \\\n", shellQuote(e.bootArgs("ttyS0")))
	fmt.Fprintf(&b, "  --cpus boot=%d --memory size=%dM --serial tty --console off", e.m.CPUs, e.m.MemoryMiB)
	if disk != "" {
		b.WriteString(" \\\n  --disk " + disk)
	}
	b.WriteString(" < /dev/null | tee \"$log\"\n" + statusTail)
	return "run.sh", e.write("run.sh", []byte(b.String()), 0o755)
}

// cloudHypervisorDisk returns the shell lines that must precede the command and the --disk
// argument for the rootfs file r in $here ("" and "" without one). Cloud Hypervisor splits --disk
// at commas outside double quotes and drops the quotes, so the path goes in quotes of its own; a
// double quote or bracket in it cannot be written, and the script says so.
func cloudHypervisorDisk(r string) (guard, arg string) {
	if r == "" {
		return "", ""
	}
	guard = "case $here in *'\"'* | *'['* | *']'*) echo \"run.sh: cloud-hypervisor cannot take a path with a double quote or a bracket: $here\" >&2; exit 125 ;; esac\n"
	return guard, fmt.Sprintf("\"path=\\\"$here/%s\\\",readonly=on\"", r)
}

func (e *exporter) writeVmlinux() error {
	data, err := Vmlinux(filepath.Join(e.src, bundle.KernelFile))
	if err != nil {
		return err
	}
	return e.write("vmlinux", data, 0o644)
}
