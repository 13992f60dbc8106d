// Package guestinit is the c2vm guest init: the program the kernel runs as /init (PID 1) from the
// initrd. It reads the boot config (package bootcfg), mounts the guest filesystems, loads kernel
// modules, switches from the initramfs to a tmpfs root, mounts the container rootfs with a writable
// overlay, configures the network, writes files and binfmt_misc registrations, patches the OCI
// runtime spec, runs the workload under runc, reports the workload's exit status and powers off.
//
// The work is a table of named steps (see Steps), run in order by Boot. Every system call goes
// through the System interface, so the steps are tested unprivileged with a fake; Linux is the real
// implementation.
//
// # Initrd layout
//
// The init expects this newc cpio as the initrd (the kernel provides /dev/console):
//
//	/init                               this binary (static, CGO_ENABLED=0)
//	/sbin/runc                          static runc
//	/lib/modules/<uname -r>/modules.dep "kernel/fs/overlayfs/overlay.ko:" lines, deps space separated, no trailing space
//	/lib/modules/<uname -r>/**.ko       the modules named in the boot config and their dependencies
//	/c2vm/boot.json                     boot config (bootcfg.Path)
//	/c2vm/config.json                   OCI runtime spec (bootcfg.SpecPath, or Container.SpecPath)
//	<Container.Rootfs.Path>/...         the image rootfs, only for the "initrd" rootfs format (e.g. /c2vm/rootfs)
//
// A second cpio appended by the host at run time may replace /c2vm/boot.json and /c2vm/config.json.
//
// # Guest layout after the switch to the tmpfs root
//
//	/sbin (runc)                        bind mount of the initramfs's /sbin (kept, not copied)
//	/c2vm/*.json                        copied from the initramfs (the rest of which is then emptied)
//	/c2vm/rootfs                        bind mount of the initrd rootfs dir (initrd format only)
//	/proc /sys /dev /run /tmp ...       the boot config's mounts, moved from the initramfs
//	/run/c2vm/lower                     read-only rootfs: the disk with Rootfs.Serial, else the one
//	                                    matching Rootfs.Identity (any VMM's disk order), or the initrd dir
//	                                    (its xattrs applied from <Rootfs.Path>.xattrs)
//	/run/c2vm/upper/{upper,work}        overlay upper: tmpfs (Overlay.Size) or ext4 disk (Overlay.Device or .Serial)
//	/run/c2vm/volumes/<N>               volume N of Container.Volumes (disk or tmpfs, filled from the
//	                                    image when CopyUp, or a host directory share by tag), bound
//	                                    onto its target (a share's Path: that one file)
//	<BundleDir>/rootfs                  overlay mount, the container root
//	<BundleDir>/config.json             patched runtime spec
//	/run/c2vm/etc/{hosts,resolv.conf,hostname}  bind-mounted onto the container's /etc files
//	/run/runc                           runc state (--root)
//
// # Exit status contract
//
// When runc ends, the init writes "c2vm-exit-status: N\n" (bootcfg.StatusLinePrefix) on the
// virtio-serial port named bootcfg.StatusPortName if the VM has one, and as a line on /dev/console.
// N is the workload's exit code, or 128+signal when it was killed (runc's own convention, see
// runc/libcontainer/utils.ExitStatus). If any required step fails, the init first prints exactly
// one line "c2vm-init: <step>: <error>" on both, then reports status 125. Then it syncs, unmounts
// the container filesystems and powers off (or reboots, with c2vm.halt=reboot on the kernel command
// line, for VMMs that end a VM only then); it never exits (a PID 1 exit panics the kernel). The first
// line on the status port is bootcfg.ReadyLine, as soon as the init has it open.
//
// The workload's stdout, stderr and stdin are the virtio-serial ports bootcfg.StdoutPortName,
// StderrPortName and StdinPortName when present (stdin is /dev/null otherwise), else /dev/console.
// A line "stop" read from the status port, or SIGTERM, SIGINT or SIGPWR sent to the init, sends
// the container its stop signal (default SIGTERM) through "runc kill", and SIGKILL after the stop
// timeout (default 10 s).
//
// # Debugging
//
// With "debug": true in the boot config (convert --debug, or run --debug, which appends its boot
// config to the initrd), each step's name and duration is logged to /dev/console.
//
// See docs/guest-contract.md (this contract in prose) and docs/architecture.md.
package guestinit
