package bootcfg

import "strings"

// The boot config travels in the initrd, which every VMM that boots a bundle shares; what differs
// between VMMs goes on their kernel command lines (a runner descriptor's boot args).

// HaltArg on the kernel command line says how the init ends the VM: HaltArg=HaltPowerOff (the
// default) or HaltArg=HaltReboot, for VMMs that end a VM only when it reboots (Firecracker on
// x86, with reboot=k).
const HaltArg = "c2vm.halt"

// Halt modes.
const (
	HaltPowerOff = "poweroff"
	HaltReboot   = "reboot"
)

// FormatHalt returns the command-line argument for a halt mode.
func FormatHalt(mode string) string { return HaltArg + "=" + mode }

// ParseHalt returns the halt mode a kernel command line asks for (the last HaltArg wins; a missing
// or unknown one is HaltPowerOff).
func ParseHalt(cmdline string) string {
	mode := HaltPowerOff
	for _, f := range strings.Fields(cmdline) {
		if v, ok := strings.CutPrefix(f, HaltArg+"="); ok {
			mode = HaltPowerOff
			if v == HaltReboot {
				mode = HaltReboot
			}
		}
	}
	return mode
}

// serialConsoles are the first serial port of each VM architecture's machines: the 8250 UART of
// QEMU q35/microvm, Firecracker and Cloud Hypervisor on x86, the PL011 of QEMU virt on arm64.
var serialConsoles = map[string]string{"amd64": "ttyS0", "arm64": "ttyAMA0"}

// SerialConsole is the kernel's name of the first serial port of a VM architecture (GOARCH);
// ttyS0 for one it does not know.
func SerialConsole(arch string) string {
	if c, ok := serialConsoles[arch]; ok {
		return c
	}
	return "ttyS0"
}

// ChannelsArg on the kernel command line says how the host serves the named channels (status,
// stdio): ChannelsArg=ChannelsVsock when they travel over vsock (the guest listens on VsockPort of
// each name and the host dials it). Without it they are virtio-serial ports, found by name.
const ChannelsArg = "c2vm.channels"

// ChannelsVsock is ChannelsArg's value for channels over vsock.
const ChannelsVsock = "vsock"

// FormatChannels returns the command-line argument for a channel transport.
func FormatChannels(transport string) string { return ChannelsArg + "=" + transport }

// ParseChannels returns the channel transport a kernel command line names (the last ChannelsArg
// wins), or "" for virtio-serial.
func ParseChannels(cmdline string) string {
	t := ""
	for _, f := range strings.Fields(cmdline) {
		if v, ok := strings.CutPrefix(f, ChannelsArg+"="); ok {
			t = v
		}
	}
	return t
}

// vsockPorts are the guest's vsock ports of the named channels when they travel over vsock.
var vsockPorts = map[string]uint32{
	StatusPortName: 6301,
	StdoutPortName: 6302,
	StderrPortName: 6303,
	StdinPortName:  6304,
	AgentPortName:  6305, // the guest accepts again and again: one connection at a time, for the VM's life
}

// VsockPort returns the vsock port the guest listens on for a named channel.
func VsockPort(name string) (uint32, bool) {
	p, ok := vsockPorts[name]
	return p, ok
}
