package launch

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/c2vm/c2vm/bootcfg"
	"github.com/c2vm/c2vm/bundle"
	"github.com/c2vm/c2vm/internal/vm"
)

func TestParseVolume(t *testing.T) {
	cwd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		in      string
		want    Volume
		named   bool
		wantErr string
	}{
		{in: "data:/data", want: Volume{Source: "data", Target: "/data", Type: TypeVolume}, named: true},
		{in: "cache_1.x:/var/cache/:ro", want: Volume{Source: "cache_1.x", Target: "/var/cache", ReadOnly: true, Type: TypeVolume}, named: true},
		{in: "disk.img:/data:rw", want: Volume{Source: "disk.img", Target: "/data", Type: TypeBlock}},
		{in: "/abs/disk.img:/data", want: Volume{Source: "/abs/disk.img", Target: "/data", Type: TypeBlock}},
		{in: "./d:/mnt", want: Volume{Source: filepath.Join(cwd, "d"), Target: "/mnt", Type: TypeBind, create: true}},
		{in: ".:/src", want: Volume{Source: cwd, Target: "/src", Type: TypeBind, create: true}},
		{in: "/abs/x.raw:/x:ro", want: Volume{Source: "/abs/x.raw", Target: "/x", ReadOnly: true, Type: TypeBind, create: true}},
		{in: "/abs/dir/:/x", want: Volume{Source: "/abs/dir", Target: "/x", Type: TypeBind, create: true}},
		{in: "rel/dir:/x", wantErr: "not a volume name (letters, digits, _ . -), a host path"},
		{in: "~/dir:/x", wantErr: "not a volume name"},
		{in: "../dir:/x", wantErr: "not a volume name"},
		{in: "data", wantErr: "want SOURCE:TARGET"},
		{in: "a:/b:ro:x", wantErr: "want SOURCE:TARGET"},
		{in: "data:/d:rx", wantErr: `option "rx"`},
		{in: ":/d", wantErr: "empty source"},
		{in: "bad name:/d", wantErr: "not a volume name"},
		{in: "-x:/d", wantErr: "not a volume name"},
		{in: "data:rel", wantErr: "must be an absolute path"},
		{in: "data:/", wantErr: "must be an absolute path below /"},
		{in: "data:/x/..", wantErr: "must be an absolute path below /"},
	}
	for _, tt := range tests {
		v, err := ParseVolume(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseVolume(%q) error %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || v != tt.want || v.Named() != tt.named {
			t.Errorf("ParseVolume(%q) = %+v (named %v), %v; want %+v (named %v)", tt.in, v, v.Named(), err, tt.want, tt.named)
		}
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"4096", 4096}, {"512K", 512 << 10}, {"64m", 64 << 20}, {"64MiB", 64 << 20}, {"2GB", 2 << 30},
		{"1T", 1 << 40}, {"0", 0}, {"-1G", 0}, {"G", 0}, {"", 0}, {"1.5G", 3 << 29}, {"2000T", 0},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if (tt.want == 0) != (err != nil) || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestVolumesDir(t *testing.T) {
	t.Setenv("HOME", "/home/u")
	t.Setenv("XDG_DATA_HOME", "")
	t.Setenv(VolumesEnv, "")
	for _, tt := range []struct{ xdg, env, want string }{
		{"", "", "/home/u/.local/share/c2vm/volumes"},
		{"/xdg", "", "/xdg/c2vm/volumes"},
		{"/xdg", "/vols", "/vols"},
	} {
		t.Setenv("XDG_DATA_HOME", tt.xdg)
		t.Setenv(VolumesEnv, tt.env)
		if got, err := VolumesDir(); err != nil || got != tt.want {
			t.Errorf("VolumesDir (XDG_DATA_HOME=%q %s=%q) = %q, %v; want %q", tt.xdg, VolumesEnv, tt.env, got, err, tt.want)
		}
	}
}

// TestAttachVolumes creates a named volume and a persist disk with mkfs.ext4 and checks the boot
// config, the disks, the image's ownership and sparseness, and that a second run reuses them.
func TestAttachVolumes(t *testing.T) {
	needMkfs(t)
	vols, persist, tmp := t.TempDir(), filepath.Join(t.TempDir(), "p"), t.TempDir()
	t.Setenv(VolumesEnv, vols)
	img := filepath.Join(tmp, "given.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	opts := Options{
		Volumes:    []Volume{{Source: img, Target: "/in", ReadOnly: true}, {Source: "cache", Target: "/cache"}},
		Persist:    persist,
		VolumeSize: 64 << 20,
	}
	rs := &specs.Spec{Process: &specs.Process{User: specs.User{UID: 1000, GID: 50}}}
	image := map[string]struct{}{"/cache": {}, "/var/lib/x/": {}, "logs": {}, "/logs": {}, "/": {}}
	attach := func() (*bootcfg.Config, []vm.Disk) {
		t.Helper()
		boot := bootcfg.Default()
		boot.Container.Rootfs = bootcfg.Rootfs{Format: bootcfg.FormatSquashfs, Device: "/dev/vda"}
		disks, err := attachVolumes(context.Background(), &boot, image, rs, opts)
		if err != nil {
			t.Fatal(err)
		}
		return &boot, disks
	}
	boot, disks := attach()
	named, upper := filepath.Join(vols, "cache.img"), filepath.Join(persist, "upper.img")
	wantDisks := []vm.Disk{
		{Path: img, ReadOnly: true, Serial: "c2vm-vol0"},
		{Path: named, Serial: "c2vm-vol1"},
		{Path: upper, Serial: "c2vm-upper"},
	}
	if !reflect.DeepEqual(disks, wantDisks) {
		t.Errorf("disks %+v, want %+v", disks, wantDisks)
	}
	wantVols := []bootcfg.Volume{
		{Target: "/in", FSType: "ext4", Serial: "c2vm-vol0", ReadOnly: true},
		{Target: "/cache", FSType: "ext4", Serial: "c2vm-vol1", CopyUp: true}, // a named volume
		{Target: "/logs", FSType: "tmpfs", CopyUp: true},
		{Target: "/var/lib/x", FSType: "tmpfs", CopyUp: true},
	}
	if !reflect.DeepEqual(boot.Container.Volumes, wantVols) {
		t.Errorf("volumes %+v, want %+v", boot.Container.Volumes, wantVols)
	}
	if ov := boot.Container.Overlay; ov != (bootcfg.Overlay{Upper: bootcfg.UpperDisk, Serial: "c2vm-upper"}) {
		t.Errorf("overlay %+v", ov)
	}
	if err := boot.Validate(); err != nil {
		t.Errorf("boot config invalid: %v", err)
	}
	fi, err := os.Stat(named)
	if err != nil {
		t.Fatal(err)
	}
	if used := fi.Sys().(*syscall.Stat_t).Blocks * 512; fi.Size() != 64<<20 || used > 8<<20 {
		t.Errorf("named volume: size %d, %d bytes used; want 64 MiB, sparse", fi.Size(), used)
	}
	if got := rootOwner(t, named); got != "1000 50" {
		t.Errorf("named volume root owner %q, want 1000 50", got)
	}
	if got := rootOwner(t, upper); got != "0 0" {
		t.Errorf("persist disk root owner %q, want 0 0", got)
	}
	for _, f := range []string{named, upper} {
		if got := rootEntries(t, f); len(got) != 0 {
			t.Errorf("%s: root holds %v, want it empty (as a new docker volume)", filepath.Base(f), got)
		}
	}
	mark := []byte("kept")
	f, err := os.OpenFile(named, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt(mark, 60<<20)
	f.Close()
	again, _ := attach() // reuse: the images are not made again
	if !again.Container.Volumes[1].CopyUp {
		t.Error("a named volume in use again is not given to the guest to fill when empty and to take the image directory's owner and mode (docker does both on every run)")
	}
	got := make([]byte, len(mark))
	f, _ = os.Open(named)
	f.ReadAt(got, 60<<20)
	f.Close()
	if string(got) != string(mark) {
		t.Errorf("second run recreated the named volume")
	}
	if m, _ := filepath.Glob(filepath.Join(vols, ".*")); len(m) != 0 {
		t.Errorf("temporary files left: %v", m)
	}
}

func TestAttachVolumesErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		vol  Volume
		want string
	}{
		{Volume{Source: filepath.Join(dir, "missing.img"), Target: "/d"}, "does not exist"},
		{Volume{Source: dir + "/", Target: "/d"}, "is not a disk image file"},
	} {
		boot := bootcfg.Default()
		_, err := attachVolumes(context.Background(), &boot, nil, nil, Options{Volumes: []Volume{tt.vol}})
		if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%+v: error %v, want one line with %q", tt.vol, err, tt.want)
		}
	}
}

func needMkfs(t *testing.T) {
	t.Helper()
	if _, err := e2fsTool("mkfs.ext4"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err) // not in CI: fails above
	}
}

// rootEntries lists the root directory of an ext4 image, read with debugfs, without . and ..
func rootEntries(t *testing.T, img string) []string {
	t.Helper()
	out, err := exec.Command("/usr/sbin/debugfs", "-R", "ls /", img).Output()
	if err != nil {
		t.Fatalf("debugfs: %v", err)
	}
	var names []string
	// "ls" prints "INODE (REC_LEN) NAME" triples.
	f := strings.Fields(string(out))
	for i := 2; i < len(f); i += 3 {
		if f[i] != "." && f[i] != ".." {
			names = append(names, f[i])
		}
	}
	return names
}

// rootOwner returns "UID GID" of an ext4 image's root directory, read with debugfs.
func rootOwner(t *testing.T, img string) string {
	t.Helper()
	out, err := exec.Command("/usr/sbin/debugfs", "-R", "stat /", img).Output()
	if err != nil {
		t.Fatalf("debugfs: %v", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		// "User:  1000   Group:    50   Project: ..."
		if f := strings.Fields(line); len(f) >= 4 && f[0] == "User:" && f[2] == "Group:" {
			return f[1] + " " + f[3]
		}
	}
	t.Fatalf("no owner in debugfs output:\n%s", out)
	return ""
}

func TestCheckPlatform(t *testing.T) {
	m := &bundle.Manifest{Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"}}
	for want, ok := range map[string]bool{"": true, "linux/amd64": true, "linux/x86_64": true, "linux/arm64": false, "bogus/x/y/z": false} {
		if err := checkPlatform(m, want); (err == nil) != ok {
			t.Errorf("checkPlatform(%q) = %v; want ok %v", want, err, ok)
		}
	}
}
