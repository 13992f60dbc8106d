package spec

import (
	"slices"

	"github.com/containerd/containerd/v2/contrib/seccomp"
	"github.com/opencontainers/runtime-spec/specs-go"
)

// containerd's DefaultProfile looks at the converting host: runtime.GOARCH picks the seccomp
// architectures and a few arch-only syscalls, and the host kernel version decides whether ptrace
// is allowed. The profile runs in the guest, so these are re-derived from the target architecture
// and the guest kernel (Debian 12's 6.1, well past the 4.8 that ptrace needs). The tables mirror
// contrib/seccomp v2.4.2.

// GuestArch is the architecture of the VM that runs an image of arch: a 32-bit image runs on the
// kernel of its 64-bit sibling (386 on amd64, arm on arm64), as docker runs it. The seccomp
// profile is written for the guest kernel, whose list covers the compat architectures too (x86
// and x32 on amd64, arm on arm64); filtering for "386" alone would leave the native calls of the
// 64-bit kernel to libseccomp's default action and kill the workload at its first system call.
func GuestArch(arch string) string {
	switch arch {
	case "386":
		return "amd64"
	case "arm":
		return "arm64"
	}
	return arch
}

// ptraceSyscalls is the group containerd allows on kernels ≥ 4.8.
var ptraceSyscalls = []string{"process_vm_readv", "process_vm_writev", "ptrace"}

// archSyscalls are the per-architecture groups of contrib/seccomp.
var archSyscalls = map[string][]string{
	"ppc64le": {"sync_file_range2", "swapcontext"},
	"arm":     {"arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint", "cacheflush", "set_tls"},
	"arm64":   {"arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint", "cacheflush", "set_tls"},
	"amd64":   {"arch_prctl", "modify_ldt"},
	"386":     {"modify_ldt"},
	"s390x":   {"s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr"},
	"riscv64": {"riscv_flush_icache", "riscv_hwprobe"},
}

// seccompArches maps a GOARCH to the libseccomp architectures the profile covers.
func seccompArches(arch string) []specs.Arch {
	switch arch {
	case "amd64":
		return []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32}
	case "arm64":
		return []specs.Arch{specs.ArchARM, specs.ArchAARCH64}
	case "mips64", "mips64n32":
		return []specs.Arch{specs.ArchMIPS, specs.ArchMIPS64, specs.ArchMIPS64N32}
	case "mipsel64", "mipsel64n32":
		return []specs.Arch{specs.ArchMIPSEL, specs.ArchMIPSEL64, specs.ArchMIPSEL64N32}
	case "s390x":
		return []specs.Arch{specs.ArchS390, specs.ArchS390X}
	case "riscv64":
		return []specs.Arch{specs.ArchRISCV64}
	case "loong64":
		return []specs.Arch{specs.ArchLOONGARCH64}
	}
	return []specs.Arch{}
}

// seccompProfile returns containerd's default profile for the spec's capabilities, retargeted to
// arch (a GOARCH name) and the guest kernel.
func seccompProfile(s *specs.Spec, arch string) *specs.LinuxSeccomp {
	p := seccomp.DefaultProfile(s)
	p.Architectures = seccompArches(arch)

	// Drop the host's ptrace and arch groups, then put the target's where they were.
	at := -1
	kept := p.Syscalls[:0:0]
	for _, sc := range p.Syscalls {
		if isGroup(sc, ptraceSyscalls) || isArchGroup(sc) {
			if at < 0 {
				at = len(kept)
			}
			continue
		}
		kept = append(kept, sc)
	}
	if at < 0 {
		at = len(kept)
	}
	groups := []specs.LinuxSyscall{allow(ptraceSyscalls)}
	if names, ok := archSyscalls[arch]; ok {
		groups = append(groups, allow(names))
	}
	p.Syscalls = slices.Insert(kept, at, groups...)
	fixCloneIndex(p, arch)
	return p
}

func allow(names []string) specs.LinuxSyscall {
	return specs.LinuxSyscall{Names: slices.Clone(names), Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{}}
}

func isGroup(sc specs.LinuxSyscall, names []string) bool {
	return sc.Action == specs.ActAllow && len(sc.Args) == 0 && slices.Equal(sc.Names, names)
}

func isArchGroup(sc specs.LinuxSyscall) bool {
	for _, names := range archSyscalls {
		if isGroup(sc, names) {
			return true
		}
	}
	return false
}

// fixCloneIndex puts the namespace-flags check of the non-admin clone rule on the argument that
// holds the flags on the target: the second on s390x, the first elsewhere.
func fixCloneIndex(p *specs.LinuxSeccomp, arch string) {
	idx := uint(0)
	if arch == "s390x" || arch == "s390" {
		idx = 1
	}
	for i, sc := range p.Syscalls {
		if slices.Equal(sc.Names, []string{"clone"}) && len(sc.Args) == 1 && sc.Args[0].Op == specs.OpMaskedEqual {
			p.Syscalls[i].Args[0].Index = idx
		}
	}
}
