package guestinit

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/c2vm/c2vm/bootcfg"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func TestBootShares(t *testing.T) {
	f, c := volumeEnv(t, func(c *bootcfg.Config) {
		c.Container.Volumes = []bootcfg.Volume{
			{Target: "/src", FSType: bootcfg.FSTypeVirtiofs, Tag: "c2vm-fs0"},
			{Target: "/src/data", FSType: "ext4", Serial: "c2vm-vol0"},
			{Target: "/etc/app.conf", FSType: bootcfg.FSTypeVirtiofs, Tag: "c2vm-fs1", Path: "app.conf", ReadOnly: true},
			{Target: "/p9", FSType: bootcfg.FSType9p, Tag: "c2vm-fs2"},
		}
	})
	f.waits = []fakeWait{{pid: 100, ws: 0}}
	if got := boot(t, f, c, nil); got != 0 {
		t.Fatalf("status %d: %s", got, f.read(t, "/dev/console"))
	}
	for _, want := range []string{
		"mount c2vm-fs0 /run/c2vm/volumes/0 virtiofs 0x6 ",
		"mount /dev/vdb /run/c2vm/volumes/1 ext4 0x6 ",
		"mount c2vm-fs1 /run/c2vm/volumes/2 virtiofs 0x7 ",
		"mount c2vm-fs2 /run/c2vm/volumes/3 9p 0x6 " + bootcfg.Options9p,
	} {
		if !contains(f.calls, want) {
			t.Errorf("no call %q in\n%s", want, strings.Join(f.calls, "\n"))
		}
	}
	var spec specs.Spec
	if err := json.Unmarshal([]byte(f.read(t, "/run/c2vm/bundle/config.json")), &spec); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range spec.Mounts {
		if strings.HasPrefix(m.Source, bootcfg.VolumesDir) {
			got = append(got, m.Destination+" "+m.Source+" "+strings.Join(m.Options, ","))
		}
	}
	want := []string{
		"/src /run/c2vm/volumes/0 rbind,rprivate",
		"/p9 /run/c2vm/volumes/3 rbind,rprivate",
		"/src/data /run/c2vm/volumes/1 rbind,rprivate",
		"/etc/app.conf /run/c2vm/volumes/2/app.conf rbind,rprivate,ro",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("spec mounts:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestBootShareNoFilesystem: a kernel without virtiofs fails the boot with what to do.
func TestBootShareNoFilesystem(t *testing.T) {
	f, c := volumeEnv(t, func(c *bootcfg.Config) {
		c.Container.Volumes = []bootcfg.Volume{{Target: "/src", FSType: bootcfg.FSTypeVirtiofs, Tag: "c2vm-fs0"}}
	})
	f.fail["mount c2vm-fs0 "] = unix.ENODEV
	if got := boot(t, f, c, nil); got == 0 {
		t.Fatal("boot succeeded without the virtiofs filesystem")
	}
	if con := f.read(t, "/dev/console"); !strings.Contains(con, "has no virtiofs filesystem") {
		t.Errorf("console does not say what is missing:\n%s", con)
	}
}
