package launch

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/c2vm/c2vm/bootcfg"
)

func TestParseMount(t *testing.T) {
	cwd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		in      string
		want    Volume
		wantErr string
	}{
		{in: "type=bind,source=/h/src,target=/src", want: Volume{Type: TypeBind, Source: "/h/src", Target: "/src"}},
		{in: "type=bind,src=/h/src/,dst=/src/,readonly", want: Volume{Type: TypeBind, Source: "/h/src", Target: "/src", ReadOnly: true}},
		{in: "type=bind,src=.,destination=/src,ro=true", want: Volume{Type: TypeBind, Source: cwd, Target: "/src", ReadOnly: true}},
		{in: "type=bind,src=./a,target=/a,readonly=false", want: Volume{Type: TypeBind, Source: filepath.Join(cwd, "a"), Target: "/a"}},
		{in: `type=bind,"src=/h/a,b",target=/x`, want: Volume{Type: TypeBind, Source: "/h/a,b", Target: "/x"}},
		{in: "source=data,target=/data", want: Volume{Type: TypeVolume, Source: "data", Target: "/data"}},
		{in: "type=volume,src=data,target=/data,ro", want: Volume{Type: TypeVolume, Source: "data", Target: "/data", ReadOnly: true}},
		{in: "type=block,src=disk.raw,target=/data", want: Volume{Type: TypeBlock, Source: "disk.raw", Target: "/data"}},
		{in: "type=tmpfs,target=/scratch", want: Volume{Type: TypeTmpfs, Target: "/scratch"}},
		{in: "type=bind,src=rel,target=/x", wantErr: `source "rel" is not an absolute path`},
		{in: "type=bind,src=~/x,target=/x", wantErr: "the shell expands ~ only unquoted"},
		{in: "type=bind,target=/x", wantErr: "type=bind needs source=HOST_PATH"},
		{in: "type=volume,target=/x", wantErr: "type=volume needs source=NAME"},
		{in: "type=block,target=/x", wantErr: "type=block needs source=DISK_IMAGE"},
		{in: "type=tmpfs,src=x,target=/x", wantErr: "type=tmpfs takes only a target"},
		{in: "type=npipe,src=x,target=/x", wantErr: `type "npipe": want bind, volume, tmpfs or block`},
		{in: "type=bind,src=/h,target=/x,bind-propagation=shared", wantErr: `option "bind-propagation" is not supported`},
		{in: "type=bind,src=/h,target=/x,readonly=maybe", wantErr: `readonly="maybe"`},
		{in: "type=bind,src=/h,target=x", wantErr: "must be an absolute path below /"},
		{in: "type=bind,src=/h,target=/", wantErr: "must be an absolute path below /"},
	}
	for _, tt := range tests {
		v, err := ParseMount(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseMount(%q) error %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || v != tt.want {
			t.Errorf("ParseMount(%q) = %+v, %v; want %+v", tt.in, v, err, tt.want)
		}
	}
}

// TestAttachShares: directories and files become shares by tag (a file through its directory,
// symlinks resolved); a missing -v source is made, a missing --mount source is an error.
func TestAttachShares(t *testing.T) {
	host := t.TempDir()
	dir, file, link := filepath.Join(host, "src"), filepath.Join(host, "app.conf"), filepath.Join(host, "link")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("src", link); err != nil {
		t.Fatal(err)
	}
	made := filepath.Join(host, "new", "dir")
	t.Setenv(ShareFSEnv, bootcfg.FSType9p)
	vols := []Volume{
		{Type: TypeBind, Source: dir, Target: "/src"},
		{Type: TypeVolume, Source: "data", Target: "/data"},
		{Type: TypeBind, Source: file, Target: "/etc/app.conf", ReadOnly: true},
		{Type: TypeBind, Source: link, Target: "/link"},
		{Type: TypeBind, Source: made, Target: "/made", create: true},
	}
	boot := bootcfg.Default()
	boot.Container.Rootfs = bootcfg.Rootfs{Format: bootcfg.FormatSquashfs, Device: "/dev/vda"}
	shares, servers, err := attachShares(&boot, Options{Volumes: vols})
	if err != nil {
		t.Fatal(err)
	}
	if len(servers) != 0 {
		t.Errorf("9p shares started %d servers", len(servers))
	}
	want := []bootcfg.Volume{
		{Target: "/src", FSType: "9p", Tag: "c2vm-fs0"},
		{Target: "/etc/app.conf", FSType: "9p", Tag: "c2vm-fs1", Path: "app.conf", ReadOnly: true},
		{Target: "/link", FSType: "9p", Tag: "c2vm-fs2"},
		{Target: "/made", FSType: "9p", Tag: "c2vm-fs3"},
	}
	if !reflect.DeepEqual(boot.Container.Volumes, want) {
		t.Errorf("boot volumes\n%+v\nwant\n%+v", boot.Container.Volumes, want)
	}
	var dirs []string
	for _, s := range shares {
		dirs = append(dirs, s.Dir)
	}
	if wantDirs := []string{dir, host, dir, made}; !reflect.DeepEqual(dirs, wantDirs) {
		t.Errorf("share dirs %q, want %q", dirs, wantDirs)
	}
	if fi, err := os.Stat(made); err != nil || !fi.IsDir() {
		t.Errorf("-v did not make the missing source directory: %v", err)
	}
	if err := boot.Validate(); err != nil {
		t.Errorf("boot config invalid: %v", err)
	}

	_, _, err = attachShares(&boot, Options{Volumes: []Volume{{Type: TypeBind, Source: filepath.Join(host, "absent"), Target: "/x"}}})
	if err == nil || !strings.Contains(err.Error(), "bind source path does not exist") {
		t.Errorf("missing --mount source: %v", err)
	}
	t.Setenv(ShareFSEnv, "nfs")
	if _, _, err := attachShares(&boot, Options{Volumes: vols[:1]}); err == nil || !strings.Contains(err.Error(), "want virtiofs or 9p") {
		t.Errorf("%s=nfs: %v", ShareFSEnv, err)
	}
}

// TestAttachSharesVirtiofs: each virtio-fs share gets its own server; nothing starts before boot.
func TestAttachSharesVirtiofs(t *testing.T) {
	dir := t.TempDir()
	boot := bootcfg.Default()
	shares, servers, err := attachShares(&boot, Options{Volumes: []Volume{{Type: TypeBind, Source: dir, Target: "/src"}}})
	if os.Geteuid() != 0 {
		if err == nil || !strings.Contains(err.Error(), "need root") {
			t.Fatalf("without root: %v", err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(shares) != 1 || shares[0].Connect == nil || len(servers) != 1 || servers[0].Dir != dir {
		t.Fatalf("shares %+v servers %+v", shares, servers)
	}
	if boot.Container.Volumes[0].FSType != bootcfg.FSTypeVirtiofs {
		t.Errorf("fstype %q", boot.Container.Volumes[0].FSType)
	}
	f, err := shares[0].Connect()
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	servers[0].Close()
}
