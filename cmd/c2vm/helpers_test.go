package main

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/c2vm/c2vm/internal/testkit/imagetest"
)

// c2vm runs the CLI in-process and returns its exit status, stdout and stderr.
func c2vm(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(append([]string{"c2vm"}, args...), strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

// busyboxImage writes an OCI layout at dir holding one image "test" made of Debian's static busybox
// (the base layer) and a second layer with /etc/passwd, /etc/group and a home for user "app".
func busyboxImage(t testing.TB, dir string, cfg ocispec.ImageConfig) {
	t.Helper()
	busyboxImageFor(t, dir, "/bin/busybox", ocispec.Platform{OS: "linux", Architecture: "amd64"}, cfg)
}

// busyboxImageFor is busyboxImage with the busybox binary at busybox (e.g. another architecture's,
// unpacked from Debian's busybox-static of that architecture) and the image's platform.
func busyboxImageFor(t testing.TB, dir, busybox string, platform ocispec.Platform, cfg ocispec.ImageConfig, extra ...imagetest.TarEntry) {
	t.Helper()
	bin, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatalf("%v: install Debian package busybox-static (make deps)", err)
	}
	list, err := exec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		t.Fatalf("busybox --list: %v", err)
	}
	base := []imagetest.TarEntry{imagetest.TarDir("bin"), exe("bin/busybox", string(bin))}
	for _, a := range strings.Fields(string(list)) {
		if a != "busybox" {
			base = append(base, imagetest.TarSymlink("bin/"+a, "busybox"))
		}
	}
	for _, d := range []string{"etc", "proc", "sys", "dev", "tmp", "root", "home"} {
		base = append(base, imagetest.TarDir(d))
	}
	app := []imagetest.TarEntry{
		imagetest.TarFile("etc/passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n"),
		imagetest.TarFile("etc/group", "root:x:0:\napp:x:1000:\nstaff:x:50:app\n"),
		owned(imagetest.TarDir("home/app"), 1000),
	}
	app = append(app, extra...)
	img := imagetest.Image{
		Name:     "test",
		Platform: platform,
		Config:   ocispec.Image{Config: cfg},
		Layers: []imagetest.Layer{
			{Data: imagetest.Gzip(t, imagetest.TarLayer(t, base...)), MediaType: ocispec.MediaTypeImageLayerGzip},
			{Data: imagetest.Zstd(t, imagetest.TarLayer(t, app...)), MediaType: ocispec.MediaTypeImageLayerZstd},
		},
	}
	imagetest.WriteOCILayout(t, dir, img)
}

func exe(name, body string) imagetest.TarEntry {
	e := imagetest.TarFile(name, body)
	e.Hdr.Mode = 0o755
	return e
}

func owned(e imagetest.TarEntry, id int) imagetest.TarEntry {
	e.Hdr.Uid, e.Hdr.Gid = id, id
	return e
}
