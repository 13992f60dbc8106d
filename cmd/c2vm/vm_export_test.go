package main

import (
	"context"
	"debug/elf"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/c2vm/c2vm/internal/export"
)

// exportBundle converts a busybox bundle whose workload writes to both streams and exits 7.
func exportBundle(t *testing.T) string {
	t.Helper()
	requireVM(t)
	dir := t.TempDir()
	busyboxImage(t, filepath.Join(dir, "oci"), ocispec.ImageConfig{
		Entrypoint: []string{"/bin/sh", "-c"}, Cmd: []string{"echo out from $(uname -m); echo err >&2; exit 7"},
	})
	out := filepath.Join(dir, "bundle")
	if code, _, stderr := c2vm(t, "", "convert", "--quiet", "-o", out, "oci:"+filepath.Join(dir, "oci")+":test"); code != 0 {
		t.Fatalf("convert: %s", stderr)
	}
	return out
}

func exportTo(t *testing.T, bundle, runner string, flags ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), runner)
	args := append(append([]string{"export", "--runner", runner}, flags...), "-o", dir, bundle)
	if code, _, stderr := c2vm(t, "", args...); code != 0 {
		t.Fatalf("export %s: exit %d: %s", runner, code, stderr)
	}
	return dir
}

// bootCommand runs a VMM command line with a timeout and returns its output and exit status.
func bootCommand(t *testing.T, argv []string, env ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 180*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("%s did not finish within 180s:\n%s", strings.Join(argv, " "), out)
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s: %v", argv[0], err)
	}
	return strings.ReplaceAll(string(out), "\r", ""), code
}

// TestVMExportRunners: one bundle, the same output and status under c2vm run, the exported QEMU
// script and the Firecracker
// descriptor's kernel, initrd, rootfs and boot args under QEMU's microvm with virtio-mmio devices
// only (Firecracker's device model; Firecracker itself needs hardware KVM).
func TestVMExportRunners(t *testing.T) {
	b := exportBundle(t)
	const wantOut = "out from x86_64\n"
	stdout, stderr := runVM(t, 7, b)
	if stdout != wantOut || stderr != "err\n" {
		t.Fatalf("c2vm run: stdout %q stderr %q", stdout, stderr)
	}
	if code, out, _ := c2vm(t, "", "run", "--dry-run", b); code != 0 || !strings.Contains(out, "qemu-system-x86_64 -M q35") || !strings.Contains(out, "serial=c2vm-rootfs") {
		t.Errorf("run --dry-run: exit %d, %q", code, out)
	}
	checkConsole := func(t *testing.T, what, console string) {
		t.Helper()
		for _, want := range []string{wantOut, "err\n", "c2vm-exit-status: 7\n"} {
			if !strings.Contains(console, want) {
				t.Errorf("%s console lacks %q:\n%s", what, want, console)
			}
		}
	}
	t.Run("qemu script", func(t *testing.T) {
		dir := exportTo(t, b, export.QEMU)
		out, code := bootCommand(t, []string{filepath.Join(dir, "run.sh")}, "ACCEL=tcg")
		checkConsole(t, "run.sh", out)
		if code != 7 {
			t.Errorf("run.sh exit %d, want 7:\n%s", code, out)
		}
	})
	// spindle: TestVMSpindleAgent boots the spindle descriptor with spindle's command line and plays
	// spindle's host side (the guest is spindle's agent there, not a one-shot workload).
	t.Run("firecracker model", func(t *testing.T) {
		dir := exportTo(t, b, export.Firecracker)
		var c export.FirecrackerConfig
		readJSON(t, filepath.Join(dir, "vmconfig.json"), &c)
		checkFirecracker(t, dir, c)
		argv := []string{"qemu-system-x86_64", "-M", "microvm,accel=tcg", "-m", strconv.Itoa(c.MachineConfig.MemSizeMiB),
			"-smp", strconv.Itoa(c.MachineConfig.VCPUCount), "-nodefaults", "-no-user-config", "-no-reboot", "-display", "none",
			"-kernel", filepath.Join(dir, c.BootSource.KernelImagePath), "-initrd", filepath.Join(dir, c.BootSource.InitrdPath),
			"-append", c.BootSource.BootArgs + " tsc_early_khz=2000000", "-serial", "stdio"}
		for i, d := range c.Drives {
			id := "d" + strconv.Itoa(i)
			argv = append(argv, "-drive", "id="+id+",file="+filepath.Join(dir, d.PathOnHost)+",format=raw,if=none,readonly=on", "-device", "virtio-blk-device,drive="+id)
		}
		out, code := bootCommand(t, argv)
		checkConsole(t, "microvm", out)
		if code != 0 || !strings.Contains(out, "reboot: Restarting system") {
			t.Errorf("the guest should end by rebooting (c2vm.halt=reboot); qemu exit %d:\n%s", code, out)
		}
	})
	t.Run("cloud-hypervisor", func(t *testing.T) {
		dir := exportTo(t, b, export.CloudHypervisor)
		script, err := os.ReadFile(filepath.Join(dir, "run.sh"))
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{`cloud-hypervisor --kernel "$here/vmlinux" --initramfs "$here/initrd.img"`, "console=ttyS0", `--disk "path=\"$here/rootfs.squashfs\",readonly=on"`, "--serial tty --console off", "--memory size=512M"} {
			if !strings.Contains(string(script), want) {
				t.Errorf("run.sh lacks %q:\n%s", want, script)
			}
		}
		checkPVH(t, filepath.Join(dir, "vmlinux"))
	})
}

// checkFirecracker checks the descriptor's schema: the fields Firecracker requires, files that
// exist, boot args that end the VM by rebooting.
func checkFirecracker(t *testing.T, dir string, c export.FirecrackerConfig) {
	t.Helper()
	if c.MachineConfig.VCPUCount < 1 || c.MachineConfig.MemSizeMiB < 1 || len(c.Drives) != 1 || !c.Drives[0].IsReadOnly || c.Drives[0].IsRootDevice {
		t.Errorf("vmconfig %+v", c)
	}
	for _, want := range []string{"console=ttyS0", "reboot=k", "c2vm.halt=reboot"} {
		if !strings.Contains(c.BootSource.BootArgs, want) {
			t.Errorf("boot_args %q lack %s", c.BootSource.BootArgs, want)
		}
	}
	for _, p := range []string{c.BootSource.KernelImagePath, c.BootSource.InitrdPath, c.Drives[0].PathOnHost} {
		if filepath.IsAbs(p) {
			t.Errorf("path %s is absolute: the descriptor must move with its directory", p)
		}
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Error(err)
		}
	}
	checkPVH(t, filepath.Join(dir, c.BootSource.KernelImagePath))
}

func checkPVH(t *testing.T, vmlinux string) {
	t.Helper()
	f, err := elf.Open(vmlinux)
	if err != nil {
		t.Fatalf("vmlinux: %v", err)
	}
	defer f.Close()
	if f.Type != elf.ET_EXEC || f.Machine != elf.EM_X86_64 {
		t.Errorf("vmlinux: ELF type %v machine %v", f.Type, f.Machine)
	}
}

// spindleArgv builds the QEMU command line Tangled spindle's microvm engine builds from an image's
// spec.json (see ../shared/SPINDLE.md): the store drive with if=none,aio=io_uring, the spec's
// volumes created and formatted (ext4) in work and attached after it, a QMP monitor on the
// listening socket passed as fd 3 (ExtraFiles[0]), the console and serial port in
// work/serial.log, shuttle.vsock_port appended to the boot args. The vhost-vsock device it adds
// for its agent is left out: these hosts have no /dev/vhost-vsock.
func spindleArgv(t *testing.T, specPath, work string) []string {
	t.Helper()
	var s export.SpindleSpec
	readJSON(t, specPath, &s)
	if s.Kernel == "" || s.Initrd == "" || s.StoreDisk == "" || s.BootArgs == "" || s.Shell == "" || s.RunnerConfig.Machine == "" || s.MemoryMiB <= 0 || s.VCPUs <= 0 {
		t.Fatalf("spec.json fails spindle's Validate: %+v", s)
	}
	rel := func(p string) string { return filepath.Join(filepath.Dir(specPath), p) }
	tr := "device"
	if s.RunnerConfig.VirtioTransport == "pci" {
		tr = "pci"
	}
	log := filepath.Join(work, "serial.log")
	argv := []string{"qemu-system-" + s.Arch, "-M", s.RunnerConfig.Machine, "-m", strconv.Itoa(s.MemoryMiB) + "M", "-smp", strconv.Itoa(s.VCPUs),
		"-nodefaults", "-no-user-config", "-no-reboot", "-kernel", rel(s.Kernel), "-initrd", rel(s.Initrd),
		"-device", "virtio-rng-" + tr, "-smbios", "type=1,uuid=6f1c1b2e-2f8e-4a53-9d59-2c0b8e3c7a10", "-serial", "file:" + log}
	if s.RunnerConfig.Console == "hvc0" {
		argv = append(argv, "-chardev", "file,id=virtiocon0,path="+log+",append=on", "-device", "virtio-serial-"+tr, "-device", "virtconsole,chardev=virtiocon0")
	}
	argv = append(argv, "-display", "none", "-monitor", "none",
		"-chardev", "socket,id=qmp,fd=3,server=on,wait=off", "-mon", "chardev=qmp,mode=control",
		"-append", s.BootArgs+" shuttle.vsock_port=10240", "-sandbox", "on",
		"-drive", "id=store,format=raw,read-only=on,file="+rel(s.StoreDisk)+",if=none,aio=io_uring", "-device", "virtio-blk-"+tr+",drive=store")
	for i, v := range s.Volumes {
		if v.FSType != "ext4" || v.MountPoint == "" || v.SizeMiB <= 0 {
			t.Fatalf("spec volume %+v", v)
		}
		img := filepath.Join(work, "volume"+strconv.Itoa(i)+".img")
		if err := os.WriteFile(img, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(img, int64(v.SizeMiB)<<20); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("mkfs.ext4", "-q", "-F", img).CombinedOutput(); err != nil {
			t.Fatalf("mkfs.ext4: %v: %s", err, out)
		}
		id := "vol" + strconv.Itoa(i)
		argv = append(argv, "-drive", "id="+id+",format=raw,file="+img+",if=none,aio=io_uring", "-device", "virtio-blk-"+tr+",drive="+id)
	}
	return append(argv, s.RunnerConfig.ExtraArgs...)
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
