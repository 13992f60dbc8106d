package bootcfg

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

func sample() Config {
	c := Default()
	c.Hostname = "web"
	c.Modules = []string{"virtio_blk", "squashfs", "overlay"}
	c.Files = []File{{Path: "/run/c2vm/motd", Mode: 0o644, Content: "hello\n"}}
	c.Binfmt = []Binfmt{{Registration: ":qemu-aarch64:M::\\x7fELF\\x02\\x01\\x01:\\xff\\xff\\xff\\xff\\xff\\xff\\xff:/usr/bin/qemu-aarch64-static:F"}}
	c.Network = Network{Mode: NetworkStatic, Interface: "eth0", Address: "10.0.2.15/24", Gateway: "10.0.2.2", DNS: []string{"10.0.2.3"}}
	c.Container.Rootfs = Rootfs{Format: FormatSquashfs, Device: "/dev/vda"}
	c.Container.Volumes = []Volume{
		{Target: "/data", FSType: "ext4", Serial: "c2vm-vol0"},
		{Target: "/ro", FSType: "ext4", Device: "/dev/vdc", ReadOnly: true},
		{Target: "/var/cache", FSType: FSTypeTmpfs},
		{Target: "/src", FSType: FSTypeVirtiofs, Tag: "c2vm-fs0"},
		{Target: "/etc/app.conf", FSType: FSTypeVirtiofs, Tag: "c2vm-fs1", Path: "app.conf", ReadOnly: true},
		{Target: "/p9", FSType: FSType9p, Tag: "c2vm-fs2"},
	}
	return c
}

func TestGolden(t *testing.T) {
	c := sample()
	if err := c.Validate(); err != nil {
		t.Fatalf("sample config invalid: %v", err)
	}
	got, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "boot.golden.json")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./bootcfg -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("boot config JSON changed; diff against %s (run -update if intended):\n%s", golden, got)
	}
	back, err := Decode(bytes.NewReader(want))
	if err != nil {
		t.Fatal(err)
	}
	again, _ := back.Marshal()
	if !bytes.Equal(again, want) {
		t.Errorf("decode/encode round trip changed the document")
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string // "" = valid
	}{
		{"sample", func(*Config) {}, ""},
		{"initrd rootfs", func(c *Config) { c.Container.Rootfs = Rootfs{Format: FormatInitrd, Path: "/c2vm/rootfs"} }, ""},
		{"newer major", func(c *Config) { c.Version = "2.0" }, "newer than this init understands"},
		{"newer minor ok", func(c *Config) { c.Version = "1.7" }, ""},
		{"bad version", func(c *Config) { c.Version = "one" }, "version"},
		{"zero major", func(c *Config) { c.Version = "0.9" }, "not a supported"},
		{"relative mount target", func(c *Config) { c.Mounts[0].Target = "proc" }, "mounts[0]: target"},
		{"unclean mount target", func(c *Config) { c.Mounts[1].Target = "/sys/../x" }, "mounts[1]: target"},
		{"empty fstype", func(c *Config) { c.Mounts[2].FSType = "" }, "mounts[2]: fstype"},
		{"unknown flag", func(c *Config) { c.Mounts[0].Flags = []string{"bogus"} }, "unknown mount flag"},
		{"mkdir escapes", func(c *Config) { c.Mounts[0].Mkdir = []string{"../etc"} }, "mkdir"},
		{"module with slash", func(c *Config) { c.Modules = []string{"../evil"} }, "modules[0]"},
		{"file relative", func(c *Config) { c.Files[0].Path = "etc/x" }, "files[0].path"},
		{"file mode", func(c *Config) { c.Files[0].Mode = 0o100644 }, "files[0].mode"},
		{"binfmt fields", func(c *Config) { c.Binfmt[0].Registration = ":a:M:" }, "binfmt[0]"},
		{"binfmt type", func(c *Config) { c.Binfmt[0].Registration = ":a:X::m::/i:" }, "type"},
		{"sysctl escape", func(c *Config) { c.Sysctls = []Sysctl{{Key: "net..ipv4", Value: "1"}} }, "sysctls[0]: key"},
		{"sysctl path", func(c *Config) { c.Sysctls = []Sysctl{{Key: "../../etc/passwd", Value: "1"}} }, "not a sysctl name"},
		{"sysctl single", func(c *Config) { c.Sysctls = []Sysctl{{Key: "kernel", Value: "1"}} }, "not a sysctl name"},
		{"sysctl value", func(c *Config) { c.Sysctls = []Sysctl{{Key: "kernel.x", Value: "1\n2"}} }, "newline"},
		{"network mode", func(c *Config) { c.Network.Mode = "bridge" }, "network.mode"},
		{"network address", func(c *Config) { c.Network.Address = "10.0.2.15" }, "network.address"},
		{"network dns", func(c *Config) { c.Network.DNS = []string{"dns.example"} }, "network.dns[0]"},
		{"container id", func(c *Config) { c.Container.ID = "" }, "container.id"},
		{"rootfs format", func(c *Config) { c.Container.Rootfs.Format = "ext4" }, "container.rootfs.format"},
		{"rootfs device", func(c *Config) { c.Container.Rootfs.Device = "" }, "container.rootfs.device"},
		{"overlay disk without device", func(c *Config) { c.Container.Overlay = Overlay{Upper: UpperDisk} }, "container.overlay.device"},
		{"hostname", func(c *Config) { c.Hostname = "a b" }, "hostname"},
		{"overlay disk by serial", func(c *Config) { c.Container.Overlay = Overlay{Upper: UpperDisk, Serial: "c2vm-upper"} }, ""},
		{"overlay device and serial", func(c *Config) {
			c.Container.Overlay = Overlay{Upper: UpperDisk, Serial: "c2vm-upper", Device: "/dev/vdb"}
		}, "container.overlay.device: give a device or a serial"},
		{"volume relative target", func(c *Config) { c.Container.Volumes[0].Target = "data" }, "container.volumes[0].target"},
		{"volume root target", func(c *Config) { c.Container.Volumes[0].Target = "/" }, "replace the container's root"},
		{"volume duplicate target", func(c *Config) { c.Container.Volumes[1].Target = "/data" }, "volumes[1].target: \"/data\" is used"},
		{"volume no disk", func(c *Config) { c.Container.Volumes[0].Serial = "" }, "volumes[0].device: empty path"},
		{"volume long serial", func(c *Config) { c.Container.Volumes[0].Serial = "c2vm-volume-serial-too-long" }, "volumes[0].serial"},
		{"volume serial comma", func(c *Config) { c.Container.Volumes[0].Serial = "a,b" }, "volumes[0].serial"},
		{"volume fstype", func(c *Config) { c.Container.Volumes[0].FSType = "" }, "volumes[0].fstype"},
		{"share with serial", func(c *Config) { c.Container.Volumes[3].Serial = "c2vm-vol3" }, "volumes[3].fstype: a share has no disk"},
		{"share without tag", func(c *Config) { c.Container.Volumes[3].Tag = "" }, "volumes[3].tag"},
		{"share tag comma", func(c *Config) { c.Container.Volumes[3].Tag = "a,b" }, "volumes[3].tag"},
		{"share tag too long", func(c *Config) { c.Container.Volumes[3].Tag = strings.Repeat("t", 37) }, "volumes[3].tag"},
		{"share duplicate tag", func(c *Config) { c.Container.Volumes[4].Tag = "c2vm-fs0" }, "volumes[4].tag: \"c2vm-fs0\" is used"},
		{"share copy-up", func(c *Config) { c.Container.Volumes[3].CopyUp = true }, "volumes[3].copyUp"},
		{"share path with slash", func(c *Config) { c.Container.Volumes[4].Path = "etc/app.conf" }, "volumes[4].path"},
		{"share path dot-dot", func(c *Config) { c.Container.Volumes[4].Path = ".." }, "volumes[4].path"},
		{"disk with tag", func(c *Config) { c.Container.Volumes[0].Tag = "c2vm-fs9" }, "volumes[0].tag: only a share"},
		{"tmpfs volume with disk", func(c *Config) { c.Container.Volumes[2].Device = "/dev/vdd" }, "volumes[2].fstype: a tmpfs volume has no disk"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := sample()
			tt.mutate(&c)
			err := c.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("want error containing %q, got %v", tt.wantErr, err)
			}
		})
	}
}

func TestDecodeRejectsTrailingData(t *testing.T) {
	if _, err := Decode(strings.NewReader(`{"version":"1.0"} {}`)); err == nil {
		t.Fatal("want error for trailing data")
	}
}

func FuzzDecodeValidate(f *testing.F) {
	b, _ := func() ([]byte, error) { c := sample(); return c.Marshal() }()
	f.Add(b)
	f.Add([]byte(`{"version":"9.0"}`))
	f.Add([]byte(`{"version":"1.0","container":{"rootfs":{"format":"initrd","path":"/x"}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Decode(bytes.NewReader(data))
		if err != nil {
			return
		}
		if c.Validate() != nil {
			return
		}
		// A valid document must survive an encode/decode round trip and stay valid.
		out, err := c.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		back, err := Decode(bytes.NewReader(out))
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if err := back.Validate(); err != nil {
			t.Fatalf("re-validate: %v", err)
		}
	})
}

func TestParseHalt(t *testing.T) {
	for cmdline, want := range map[string]string{
		"": HaltPowerOff, "console=ttyS0 c2vm.halt=reboot": HaltReboot, "c2vm.halt=reboot c2vm.halt=poweroff": HaltPowerOff,
		"c2vm.halt=bogus": HaltPowerOff, "xc2vm.halt=reboot": HaltPowerOff, FormatHalt(HaltReboot): HaltReboot,
	} {
		if got := ParseHalt(cmdline); got != want {
			t.Errorf("ParseHalt(%q) = %q, want %q", cmdline, got, want)
		}
	}
}

// TestWire pins the host-guest lines byte for byte and checks each parse undoes its format.
func TestWire(t *testing.T) {
	if got := FormatStatus(137); got != "c2vm-exit-status: 137\n" {
		t.Errorf("FormatStatus = %q", got)
	}
	for _, n := range []int{0, 1, 125, 255} {
		if got, ok := ParseStatus(FormatStatus(n)); !ok || got != n {
			t.Errorf("ParseStatus(FormatStatus(%d)) = %d, %v", n, got, ok)
		}
	}
	if got, ok := ParseStatus("c2vm-exit-status: 7\r\n"); !ok || got != 7 {
		t.Errorf("status with CRLF: %d %v", got, ok)
	}
	for _, bad := range []string{"c2vm-exit-status: 256", "c2vm-exit-status: -1", "x c2vm-exit-status: 1", ReadyLine} {
		if _, ok := ParseStatus(bad); ok {
			t.Errorf("ParseStatus(%q) accepted", bad)
		}
	}
	if got := FormatWinsize(24, 80); got != "winsize 24 80\n" {
		t.Errorf("FormatWinsize = %q", got)
	}
	if r, c, ok := ParseWinsize(FormatWinsize(50, 132)); !ok || r != 50 || c != 132 {
		t.Errorf("ParseWinsize round trip: %d %d %v", r, c, ok)
	}
	if _, _, ok := ParseWinsize("winsize 1 99999"); ok {
		t.Error("winsize beyond 16 bits accepted")
	}
	if f, err := ParseMountFlags([]string{"ro", "nosuid", "rbind"}); err != nil || f == 0 {
		t.Errorf("ParseMountFlags = %#x, %v", f, err)
	}
	if StopLine != "stop" || ReadyLine != "c2vm-init-ready" || RootfsSerial != "c2vm-rootfs" || RuncPath != "/sbin/runc" {
		t.Error("a wire constant changed: old bundles and hosts would no longer agree")
	}
}
