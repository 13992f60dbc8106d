package guestinit

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/c2vm/c2vm/bootcfg"
	"golang.org/x/sys/unix"
)

const testSpec = `{"ociVersion":"1.2.0","process":{"args":["/bin/sh"],"cwd":"/"},"root":{"path":"/somewhere","readonly":false},
"hostname":"image","mounts":[{"destination":"/proc","type":"proc","source":"proc"}],
"linux":{"namespaces":[{"type":"pid"},{"type":"network"},{"type":"uts"},{"type":"mount"}]}}`

// bootEnv prepares a fake guest: initramfs files, the boot config (changed by mutate) and a
// rootfs device.
func bootEnv(t *testing.T, mutate func(*bootcfg.Config)) (*fakeSystem, *fakeClock) {
	t.Helper()
	f := newFake(t)
	cfg := bootcfg.Default()
	cfg.Modules = []string{"virtio_blk", "squashfs", "overlay"}
	cfg.Container.Rootfs = bootcfg.Rootfs{Format: bootcfg.FormatSquashfs, Device: "/dev/vda"}
	if mutate != nil {
		mutate(&cfg)
	}
	data, err := cfg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	f.file(t, bootcfg.Path, string(data))
	f.file(t, bootcfg.SpecPath, testSpec)
	f.file(t, "/proc/cmdline", "console=ttyS0 quiet\n")
	f.file(t, "/dev/console", "")
	f.file(t, "/dev/vda", "")
	f.file(t, runcPath, "runc binary")
	for _, sc := range cfg.Sysctls {
		f.file(t, sc.Path(), "kernel default\n")
	}
	return f, newClock()
}

func boot(t *testing.T, f *fakeSystem, c *fakeClock, steps []Step) int {
	t.Helper()
	return Boot(context.Background(), f, Options{Clock: c, Steps: steps})
}

func TestBootHappyPath(t *testing.T) {
	f, c := bootEnv(t, nil)
	f.waits = []fakeWait{{pid: 55, ws: 0}, {pid: 100, ws: unix.WaitStatus(3 << 8)}} // an orphan first
	if got := boot(t, f, c, nil); got != 3 {
		t.Fatalf("status %d, want 3", got)
	}
	if l, err := os.Readlink(f.p("/run/c2vm/bundle/rootfs/etc/mtab")); err != nil || l != "/proc/mounts" {
		t.Errorf("etc/mtab -> %q, %v; want docker's init-layer link to /proc/mounts", l, err)
	}
	for _, sc := range bootcfg.DockerSysctls {
		if got := f.read(t, sc.Path()); got != "kernel default\n"+sc.Value+"\n" {
			t.Errorf("%s = %q, want %q written", sc.Path(), got, sc.Value)
		}
	}
	var got []string
	for _, call := range f.calls {
		switch strings.SplitN(call, " ", 2)[0] {
		case "mount", "module", "copy", "empty", "chdir", "chroot", "start", "hostname", "linkup", "unmount", "poweroff":
			got = append(got, call)
		}
	}
	want := []string{
		"mount proc /proc proc 0xe ",
		"mount sysfs /sys sysfs 0xe ",
		"mount devtmpfs /dev devtmpfs 0x2 mode=0755",
		"mount devpts /dev/pts devpts 0xa newinstance,ptmxmode=0666,mode=0620",
		"mount shm /dev/shm tmpfs 0x6 mode=1777",
		"mount run /run tmpfs 0x6 mode=0755",
		"mount tmp /tmp tmpfs 0x6 mode=1777",
		"mount cgroup2 /sys/fs/cgroup cgroup2 0xe ",
		"module virtio_blk",
		"module squashfs",
		"module overlay",
		"mount c2vm-root /c2vm-newroot tmpfs 0x0 mode=0755",
		"mount /sbin /c2vm-newroot/sbin  0x1000 ",
		"copy /c2vm/boot.json /c2vm-newroot/c2vm/boot.json",
		"copy /c2vm/config.json /c2vm-newroot/c2vm/config.json",
		"mount /proc /c2vm-newroot/proc  0x2000 ",
		"mount /sys /c2vm-newroot/sys  0x2000 ",
		"mount /dev /c2vm-newroot/dev  0x2000 ",
		"mount /run /c2vm-newroot/run  0x2000 ",
		"mount /tmp /c2vm-newroot/tmp  0x2000 ",
		"empty / /c2vm-newroot,/sbin",
		"chdir /c2vm-newroot",
		"mount /c2vm-newroot /  0x2000 ",
		"chroot .",
		"chdir /",
		"mount /dev/vda /run/c2vm/lower squashfs 0x1 ",
		"mount c2vm-upper /run/c2vm/upper tmpfs 0x0 mode=0755,size=50%",
		"mount overlay /run/c2vm/bundle/rootfs overlay 0x0 lowerdir=/run/c2vm/lower,upperdir=/run/c2vm/upper/upper,workdir=/run/c2vm/upper/work",
		"linkup lo",
		"hostname c2vm",
		"start /sbin/runc --root /run/runc --log /run/c2vm/runc.log --log-format json run --bundle /run/c2vm/bundle c2vm",
		"unmount /run/c2vm/bundle/rootfs",
		"unmount /run/c2vm/upper",
		"unmount /run/c2vm/lower",
		"poweroff",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if con := f.read(t, "/dev/console"); con != "c2vm-exit-status: 3\n" {
		t.Errorf("console %q", con)
	}
	for _, name := range []string{"hosts", "resolv.conf", "hostname"} {
		f.read(t, "/run/c2vm/etc/"+name) // exists
	}
	var spec struct {
		Mounts []struct{ Destination, Source string }
		Root   struct{ Path string }
	}
	if err := json.Unmarshal([]byte(f.read(t, "/run/c2vm/bundle/config.json")), &spec); err != nil {
		t.Fatal(err)
	}
	if len(spec.Mounts) != 4 || spec.Mounts[1].Destination != "/etc/hosts" || spec.Root.Path != "rootfs" {
		t.Errorf("bundle spec: %+v", spec)
	}
}

func TestBootStdioPortsAndStatusPort(t *testing.T) {
	f, c := bootEnv(t, nil)
	f.file(t, virtioConsoleDrv+"/virtio2/driver", "")
	for i, name := range []string{bootcfg.StatusPortName, bootcfg.StdoutPortName, bootcfg.StderrPortName} {
		entry := "vport2p" + string(rune('1'+i))
		f.file(t, virtioPortsDir+"/"+entry+"/name", name+"\n")
		f.file(t, "/dev/"+entry, "")
	}
	f.waits = []fakeWait{{pid: 100, ws: unix.WaitStatus(unix.SIGKILL)}}
	if got := boot(t, f, c, nil); got != 137 {
		t.Fatalf("status %d, want 137", got)
	}
	if got := f.read(t, "/dev/vport2p1"); got != bootcfg.ReadyLine+"\nc2vm-exit-status: 137\n" {
		t.Errorf("status port %q", got)
	}
	opens := strings.Join(f.callsWith("open "), ",")
	if want := "open /dev/vport2p1,open /dev/null,open /dev/vport2p2,open /dev/vport2p3"; opens != want {
		t.Errorf("opens %s, want %s", opens, want)
	}
}

func TestBootOptionalMountFails(t *testing.T) {
	f, c := bootEnv(t, nil)
	f.fail["mount cgroup2 "] = unix.ENODEV
	f.fail["mount devpts "] = unix.ENODEV
	f.waits = []fakeWait{{pid: 100, ws: 0}}
	if got := boot(t, f, c, nil); got != 0 {
		t.Fatalf("status %d, want 0; console %q", got, f.read(t, "/dev/console"))
	}
	if con := f.read(t, "/dev/console"); strings.Contains(con, "c2vm-init:") {
		t.Errorf("console has a failure: %q", con)
	}
}

func TestBootRequiredFailure(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*bootcfg.Config)
		fail   string
		err    error
		want   string
		noRunc bool
	}{
		{name: "mount", fail: "mount proc ", err: unix.EPERM, noRunc: true,
			want: "c2vm-init: mounts: mount proc on /proc (proc): operation not permitted"},
		{name: "module", fail: "module squashfs", err: errors.New(`could not find module path "squashfs"`), noRunc: true,
			want: `c2vm-init: modules: load module squashfs: could not find module path "squashfs"`},
		{name: "newer version", mutate: func(c *bootcfg.Config) { c.Version = "2.0" }, noRunc: true,
			want: "c2vm-init: config: /c2vm/boot.json: version: boot config version 2.0 is newer than this init understands (1.0)"},
		{name: "missing device", mutate: func(c *bootcfg.Config) { c.Container.Rootfs.Device = "/dev/vdz" }, noRunc: true,
			want: "c2vm-init: rootfs: device /dev/vdz did not appear within 5s"},
		{name: "runc", fail: "start /sbin/runc", err: unix.ENOENT,
			want: "c2vm-init: run: start runc: no such file or directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, c := bootEnv(t, tc.mutate)
			if tc.fail != "" {
				f.fail[tc.fail] = tc.err
			}
			if got := boot(t, f, c, nil); got != FailureStatus {
				t.Fatalf("status %d, want %d", got, FailureStatus)
			}
			con := f.read(t, "/dev/console")
			lines := strings.Split(strings.TrimSuffix(con, "\n"), "\n")
			if len(lines) != 2 || !strings.HasPrefix(lines[0], tc.want) || lines[1] != "c2vm-exit-status: 125" {
				t.Errorf("console:\n%s\nwant a line starting %q, then the status", con, tc.want)
			}
			if f.poweroff != 1 {
				t.Errorf("poweroff called %d times", f.poweroff)
			}
			if started := len(f.callsWith("start ")) > 0; started == tc.noRunc {
				t.Errorf("runc started: %v", started)
			}
		})
	}
}

func TestBootFailureOnStatusPort(t *testing.T) {
	f, c := bootEnv(t, func(c *bootcfg.Config) { c.Container.Rootfs.Device = "/dev/vdb" })
	f.file(t, virtioConsoleDrv+"/virtio1/driver", "")
	f.file(t, virtioPortsDir+"/vport1p1/name", bootcfg.StatusPortName)
	f.file(t, "/dev/vport1p1", "")
	boot(t, f, c, nil)
	want := bootcfg.ReadyLine + "\nc2vm-init: rootfs: device /dev/vdb did not appear within 5s\nc2vm-exit-status: 125\n"
	if got := f.read(t, "/dev/vport1p1"); got != want {
		t.Errorf("status port %q, want %q", got, want)
	}
}

func TestBootPanicAndPowerOffRetry(t *testing.T) {
	f, c := bootEnv(t, nil)
	f.powerErrs = []error{unix.EPERM, unix.EPERM}
	steps := []Step{
		{Name: "ok", Run: func(context.Context, *State) error { return nil }},
		{Name: "skipped", Optional: true, Run: func(context.Context, *State) error { return errors.New("no") }},
		{Name: "bad", Run: func(context.Context, *State) error { panic("boom") }},
		{Name: "never", Run: func(context.Context, *State) error { t.Error("step after a panic ran"); return nil }},
	}
	if got := boot(t, f, c, steps); got != FailureStatus {
		t.Fatalf("status %d", got)
	}
	con := f.read(t, "/dev/console")
	if !strings.HasPrefix(con, "c2vm-init: panic: boom\nc2vm-exit-status: 125\n") {
		t.Errorf("console %q", con)
	}
	if f.poweroff != 3 {
		t.Errorf("poweroff called %d times, want 3", f.poweroff)
	}
}

// TestBootDebugAndHalt: debug comes from the boot config, the halt mode from the command line.
func TestBootDebugAndHalt(t *testing.T) {
	f, c := bootEnv(t, func(c *bootcfg.Config) { c.Debug = true })
	f.file(t, "/proc/cmdline", "console=ttyS0 reboot=k "+bootcfg.FormatHalt(bootcfg.HaltReboot)+"\n")
	f.waits = []fakeWait{{pid: 100, ws: 0}}
	boot(t, f, c, nil)
	con := f.read(t, "/dev/console")
	for _, step := range Steps() {
		if !strings.Contains(con, "c2vm-init: debug: step "+step.Name+": ") {
			t.Errorf("no debug line for step %s in %q", step.Name, con)
		}
	}
	if !contains(f.calls, "reboot") || contains(f.calls, "poweroff") {
		t.Errorf("halt with %s: calls %v", bootcfg.FormatHalt(bootcfg.HaltReboot), f.callsWith("re"))
	}
}

func TestBootStaticNetwork(t *testing.T) {
	f, c := bootEnv(t, func(c *bootcfg.Config) {
		c.Hostname = "web"
		c.Network = bootcfg.Network{Mode: bootcfg.NetworkStatic, Interface: "eth0", Address: "10.0.2.15/24", Gateway: "10.0.2.2", DNS: []string{"10.0.2.3"}}
	})
	f.file(t, "/sys/class/net/eth0/operstate", "down")
	f.waits = []fakeWait{{pid: 100, ws: 0}}
	if got := boot(t, f, c, nil); got != 0 {
		t.Fatalf("status %d: %s", got, f.read(t, "/dev/console"))
	}
	if got := strings.Join(f.callsWith("link"), ","); got != "linkup lo,link eth0 10.0.2.15/24 10.0.2.2" {
		t.Errorf("link calls %s", got)
	}
	if got := f.read(t, "/run/c2vm/etc/hosts"); !strings.HasSuffix(got, "10.0.2.15\tweb\n") {
		t.Errorf("hosts %q", got)
	}
	if got := f.read(t, "/run/c2vm/etc/resolv.conf"); got != "nameserver 10.0.2.3\n" {
		t.Errorf("resolv.conf %q", got)
	}
	spec := f.read(t, "/run/c2vm/bundle/config.json")
	if strings.Contains(spec, `"network"`) || !strings.Contains(spec, `"hostname": "web"`) {
		t.Errorf("spec keeps the network namespace or misses the host name:\n%s", spec)
	}
}

func TestBootInitrdRootfs(t *testing.T) {
	f, c := bootEnv(t, func(c *bootcfg.Config) {
		c.Container.Rootfs = bootcfg.Rootfs{Format: bootcfg.FormatInitrd, Path: "/c2vm/rootfs"}
	})
	f.file(t, "/c2vm/rootfs.xattrs", `{"path":"usr/bin/ping","name":"security.capability","value":"AQAAAg=="}`+"\n")
	f.waits = []fakeWait{{pid: 100, ws: 0}}
	if got := boot(t, f, c, nil); got != 0 {
		t.Fatalf("status %d: %s", got, f.read(t, "/dev/console"))
	}
	for _, want := range []string{
		"copy /c2vm/rootfs.xattrs /c2vm-newroot/c2vm/rootfs.xattrs",
		"setxattr /c2vm/rootfs/usr/bin/ping security.capability \"\\x01\\x00\\x00\\x02\"",
		"mount /c2vm/rootfs /c2vm-newroot/c2vm/rootfs  0x5000 ",
		"empty / /c2vm-newroot,/sbin,/c2vm/rootfs",
		"mount /c2vm/rootfs /run/c2vm/lower  0x1000 ",
		"mount  /run/c2vm/lower  0x1021 ",
	} {
		if !contains(f.calls, want) {
			t.Errorf("no call %q in\n%s", want, strings.Join(f.calls, "\n"))
		}
	}
}

// TestBootFindsRootfsByIdentity: on a VMM that attaches disks in its own order and without c2vm's
// serials (spindle, Firecracker), the init finds the rootfs by the image's leading bytes.
func TestBootFindsRootfsByIdentity(t *testing.T) {
	image := strings.Repeat("hsqs superblock and more ", 400)
	id, err := bootcfg.NewIdentity(strings.NewReader(image))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, serialOf, want string
	}{
		{"by identity", "", "/dev/vdc"},
		{"by serial", "vdb", "/dev/vdb"}, // c2vm run: the serial wins, whatever the disk holds
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, c := bootEnv(t, func(c *bootcfg.Config) {
				c.Container.Rootfs = bootcfg.Rootfs{Format: bootcfg.FormatSquashfs, Serial: bootcfg.RootfsSerial, Identity: &id}
			})
			for name, content := range map[string]string{"vda": "a volume", "vdb": "another disk", "vdc": image} {
				f.file(t, "/dev/"+name, content)
				serial := ""
				if name == tc.serialOf {
					serial = bootcfg.RootfsSerial
				}
				f.file(t, "/sys/block/"+name+"/serial", serial)
			}
			f.waits = []fakeWait{{pid: 100, ws: 0}}
			if got := boot(t, f, c, nil); got != 0 {
				t.Fatalf("status %d: %s", got, f.read(t, "/dev/console"))
			}
			if want := "mount " + tc.want + " /run/c2vm/lower squashfs 0x1 "; !contains(f.calls, want) {
				t.Errorf("no call %q in\n%s", want, strings.Join(f.calls, "\n"))
			}
		})
	}
}

func TestBootRootfsNotFound(t *testing.T) {
	id := bootcfg.Identity{Length: 4096, SHA256: strings.Repeat("ab", 32)}
	f, c := bootEnv(t, func(c *bootcfg.Config) {
		c.Container.Rootfs = bootcfg.Rootfs{Format: bootcfg.FormatErofs, Identity: &id}
	})
	f.file(t, "/sys/block/vda/serial", "")
	if got := boot(t, f, c, nil); got != FailureStatus {
		t.Fatalf("status %d", got)
	}
	if con := f.read(t, "/dev/console"); !strings.Contains(con, "c2vm-init: rootfs: no disk with serial \"\" or the rootfs image's identity appeared within 5s (disks: vda): attach rootfs.erofs as a virtio block device") {
		t.Errorf("console %q", con)
	}
}
