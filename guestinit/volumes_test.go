package guestinit

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/c2vm/c2vm/bootcfg"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// volumeEnv is a fake guest with virtio disks vda (rootfs), vdb and vdc (serials below) and vdd.
func volumeEnv(t *testing.T, mutate func(*bootcfg.Config)) (*fakeSystem, *fakeClock) {
	t.Helper()
	f, c := bootEnv(t, mutate)
	for name, serial := range map[string]string{"vda": "", "vdb": "c2vm-vol0\n", "vdc": "c2vm-upper", "vdd": ""} {
		f.file(t, "/sys/block/"+name+"/serial", serial)
		f.file(t, "/dev/"+name, "")
	}
	return f, c
}

func TestBootVolumes(t *testing.T) {
	f, c := volumeEnv(t, func(c *bootcfg.Config) {
		c.Container.Overlay = bootcfg.Overlay{Upper: bootcfg.UpperDisk, Serial: "c2vm-upper"}
		c.Container.Volumes = []bootcfg.Volume{
			{Target: "/data/sub", FSType: "ext4", Device: "/dev/vdd"},
			{Target: "/data", FSType: "ext4", Serial: "c2vm-vol0", ReadOnly: true},
			{Target: "/proc/x", FSType: bootcfg.FSTypeTmpfs},
			{Target: "/srv/www", FSType: bootcfg.FSTypeTmpfs, CopyUp: true},
			{Target: "/missing", FSType: bootcfg.FSTypeTmpfs, CopyUp: true},
		}
	})
	f.file(t, "/run/c2vm/bundle/rootfs/srv/www/index.html", "image content")
	f.waits = []fakeWait{{pid: 100, ws: 0}}
	if got := boot(t, f, c, nil); got != 0 {
		t.Fatalf("status %d: %s", got, f.read(t, "/dev/console"))
	}
	for _, want := range []string{
		"mount /dev/vdc /run/c2vm/upper ext4 0x0 ",
		"mount /dev/vdd /run/c2vm/volumes/0 ext4 0x6 ",
		"mount /dev/vdb /run/c2vm/volumes/1 ext4 0x7 ",
		"mount tmpfs /run/c2vm/volumes/2 tmpfs 0x6 mode=1777",
		"copytree /run/c2vm/bundle/rootfs/srv/www /run/c2vm/volumes/3",
	} {
		if !contains(f.calls, want) {
			t.Errorf("no call %q in\n%s", want, strings.Join(f.calls, "\n"))
		}
	}
	if got := f.callsWith("copytree"); len(got) != 1 {
		t.Errorf("copy-ups %v: want only /srv/www's (the image has no /missing, the others are not new)", got)
	}
	un := strings.Join(f.callsWith("unmount"), ",")
	if !strings.HasPrefix(un, "unmount /run/c2vm/volumes/4,unmount /run/c2vm/volumes/3,unmount /run/c2vm/volumes/2,unmount /run/c2vm/volumes/1,unmount /run/c2vm/volumes/0,") {
		t.Errorf("volumes not unmounted first, innermost last: %v", un)
	}
	var spec specs.Spec
	if err := json.Unmarshal([]byte(f.read(t, "/run/c2vm/bundle/config.json")), &spec); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range spec.Mounts {
		got = append(got, m.Destination+" "+m.Type+" "+m.Source+" "+strings.Join(m.Options, ","))
	}
	want := []string{
		"/proc proc proc ",
		"/data bind /run/c2vm/volumes/1 rbind,rprivate,ro",
		"/missing bind /run/c2vm/volumes/4 rbind,rprivate",
		"/data/sub bind /run/c2vm/volumes/0 rbind,rprivate",
		"/proc/x bind /run/c2vm/volumes/2 rbind,rprivate",
		"/srv/www bind /run/c2vm/volumes/3 rbind,rprivate",
		"/etc/hosts bind /run/c2vm/etc/hosts rbind,rprivate",
		"/etc/resolv.conf bind /run/c2vm/etc/resolv.conf rbind,rprivate",
		"/etc/hostname bind /run/c2vm/etc/hostname rbind,rprivate",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("spec mounts:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestPatchSpecVolumeReplacesImageMount(t *testing.T) {
	in := `{"mounts":[{"destination":"/data","type":"tmpfs","source":"tmpfs"},{"destination":"/dev","type":"tmpfs","source":"tmpfs"}]}`
	out, err := PatchSpec([]byte(in), SpecPatch{EtcDir: "/e", Volumes: []bootcfg.Volume{{Target: "/data", FSType: "ext4", Serial: "s"}}})
	if err != nil {
		t.Fatal(err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(out, &spec); err != nil {
		t.Fatal(err)
	}
	if len(spec.Mounts) != 5 || spec.Mounts[0].Destination != "/dev" || spec.Mounts[1].Source != "/run/c2vm/volumes/0" {
		t.Errorf("mounts %+v: want /dev, the /data volume bind, the /etc files", spec.Mounts)
	}
}

// TestBootDiskFailures: a missing disk or network interface ends the boot with one clear line.
func TestBootDiskFailures(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*bootcfg.Config)
		want   []string
	}{
		{"volume serial", func(c *bootcfg.Config) {
			c.Container.Volumes = []bootcfg.Volume{{Target: "/data", FSType: "ext4", Serial: "c2vm-vol7"}}
		}, []string{"c2vm-init: volumes: volume /data: no disk with serial \"c2vm-vol7\"", "(disks: vda, vdb, vdc, vdd)"}},
		{"upper serial", func(c *bootcfg.Config) {
			c.Container.Overlay = bootcfg.Overlay{Upper: bootcfg.UpperDisk, Serial: "c2vm-up2"}
		}, []string{"c2vm-init: rootfs: overlay upper: no disk with serial \"c2vm-up2\""}},
		{"no nic", func(c *bootcfg.Config) {
			c.Network = bootcfg.Network{Mode: bootcfg.NetworkStatic, Interface: "eth0", Address: "10.0.2.15/24"}
		}, []string{"c2vm-init: network: interface eth0 did not appear", "(interfaces: lo)", "no virtio-net device", "--network none"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, c := volumeEnv(t, tt.mutate)
			f.file(t, "/sys/class/net/lo/operstate", "up")
			if got := boot(t, f, c, nil); got != FailureStatus {
				t.Fatalf("status %d, want %d", got, FailureStatus)
			}
			con := f.read(t, "/dev/console")
			first, _, _ := strings.Cut(con, "\n")
			for _, w := range tt.want {
				if !strings.Contains(first, w) {
					t.Errorf("console first line %q lacks %q", first, w)
				}
			}
		})
	}
}

// TestCopyUp follows docker's rules for a volume on every run: the image directory's content only
// into an empty volume, its owner and mode always, nothing for a target the image lacks or has
// as a symlink.
func TestCopyUp(t *testing.T) {
	const rootfs, vol = "/run/c2vm/bundle/rootfs", "/run/c2vm/volumes/0"
	tests := []struct {
		name   string
		target string
		setup  func(t *testing.T, f *fakeSystem)
		want   []string
	}{
		{"new volume", "/var/lib/db", func(t *testing.T, f *fakeSystem) {
			f.file(t, rootfs+"/var/lib/db/seed", "x")
		}, []string{"copytree " + rootfs + "/var/lib/db " + vol, "copyownership " + rootfs + "/var/lib/db " + vol}},
		{"volume with data", "/var/lib/db", func(t *testing.T, f *fakeSystem) {
			f.file(t, rootfs+"/var/lib/db/seed", "x")
			f.file(t, vol+"/PG_VERSION", "15")
		}, []string{"copyownership " + rootfs + "/var/lib/db " + vol}},
		{"empty image directory", "/var/lib/db", func(t *testing.T, f *fakeSystem) {
			f.MkdirAll(rootfs+"/var/lib/db", 0o755)
		}, []string{"copyownership " + rootfs + "/var/lib/db " + vol}},
		{"absent in the image", "/var/lib/db", func(t *testing.T, f *fakeSystem) {
			f.MkdirAll(rootfs+"/var/lib", 0o755)
		}, nil},
		{"symlink in the image", "/data/x", func(t *testing.T, f *fakeSystem) {
			f.file(t, rootfs+"/srv/x/seed", "x")
			f.Symlink("srv", rootfs+"/data")
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			cfg := bootcfg.Default()
			cfg.Container.Volumes = []bootcfg.Volume{{Target: tt.target, FSType: "ext4", Device: "/dev/vdb", CopyUp: true}}
			f.MkdirAll(vol, 0o755)
			tt.setup(t, f)
			f.calls = nil
			if err := copyUp(&State{Sys: f, Cfg: &cfg}, 0, cfg.Container.Volumes[0]); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(f.calls, tt.want) {
				t.Errorf("calls %q, want %q", f.calls, tt.want)
			}
		})
	}
}
