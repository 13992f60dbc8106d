// Command mkimage makes the example image offline — no registry, no docker daemon — as an OCI
// layout: a base layer with Debian's static busybox and its applet links, and a second layer with
// /etc/passwd, a user and the script from examples/hello. It is what `make demo` converts.
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	_ "crypto/sha256" // digest.FromBytes
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

var epoch = time.Unix(1700000000, 0).UTC()

func main() {
	out := flag.String("o", "build/hello-oci", "OCI layout directory to write")
	busybox := flag.String("busybox", "/bin/busybox", "static busybox binary (Debian package busybox-static)")
	script := flag.String("script", "examples/hello/hello.sh", "the example's entry script")
	flag.Parse()
	if err := run(*out, *busybox, *script); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run(out, busybox, script string) error {
	base, err := baseLayer(busybox)
	if err != nil {
		return err
	}
	app, err := appLayer(script)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(out); err != nil {
		return err
	}
	w := &layout{dir: out}
	return w.write([][]byte{base, app})
}

// entry is one tar entry of a layer.
type entry struct {
	hdr  tar.Header
	body []byte
}

func dir(name string, mode int64) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode}}
}
func file(name string, mode int64, body []byte, uid int) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(body)), Uid: uid, Gid: uid}, body: body}
}
func link(name, target string) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}}
}

func baseLayer(busybox string) ([]byte, error) {
	bin, err := os.ReadFile(busybox)
	if err != nil {
		return nil, fmt.Errorf("%w (install Debian package busybox-static)", err)
	}
	list, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list: %w", busybox, err)
	}
	es := []entry{dir("bin", 0o755), file("bin/busybox", 0o755, bin, 0)}
	for _, applet := range strings.Fields(string(list)) {
		if applet != "busybox" {
			es = append(es, link("bin/"+applet, "busybox"))
		}
	}
	es = append(es, dir("etc", 0o755), dir("tmp", 0o1777), dir("proc", 0o555), dir("sys", 0o555), dir("dev", 0o755))
	return tarGzip(es)
}

func appLayer(script string) ([]byte, error) {
	body, err := os.ReadFile(script)
	if err != nil {
		return nil, err
	}
	passwd := "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n"
	group := "root:x:0:\napp:x:1000:\n"
	return tarGzip([]entry{
		dir("etc", 0o755), file("etc/passwd", 0o644, []byte(passwd), 0), file("etc/group", 0o644, []byte(group), 0),
		dir("home", 0o755), dir("home/app", 0o755), dir("root", 0o700),
		dir("usr", 0o755), dir("usr/local", 0o755), dir("usr/local/bin", 0o755),
		file("usr/local/bin/hello", 0o755, body, 0),
	})
}

func tarGzip(es []entry) ([]byte, error) {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	tw := tar.NewWriter(zw)
	for _, e := range es {
		h := e.hdr
		h.ModTime, h.Format = epoch, tar.FormatPAX
		if h.Typeflag == tar.TypeDir {
			h.Uid, h.Gid = 0, 0
		}
		if err := tw.WriteHeader(&h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.body); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// layout writes an OCI image layout.
type layout struct{ dir string }

func (l *layout) blob(b []byte) (digest.Digest, error) {
	d := digest.FromBytes(b)
	p := filepath.Join(l.dir, "blobs", "sha256", d.Encoded())
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return "", err
	}
	return d, os.WriteFile(p, b, 0o644)
}

func (l *layout) write(layers [][]byte) error {
	var descs []ocispec.Descriptor
	var diffIDs []digest.Digest
	for _, gz := range layers {
		d, err := l.blob(gz)
		if err != nil {
			return err
		}
		raw, err := gunzip(gz)
		if err != nil {
			return err
		}
		descs = append(descs, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: d, Size: int64(len(gz))})
		diffIDs = append(diffIDs, digest.FromBytes(raw))
	}
	created := epoch
	cfg := ocispec.Image{
		Created:  &created,
		Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		Config: ocispec.ImageConfig{
			Env:        []string{"PATH=/usr/local/bin:/bin"},
			Cmd:        []string{"/usr/local/bin/hello"},
			WorkingDir: "/home/app",
			Labels:     map[string]string{"org.opencontainers.image.title": "c2vm hello example"},
		},
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: diffIDs},
	}
	cfgDesc, err := l.json(ocispec.MediaTypeImageConfig, cfg)
	if err != nil {
		return err
	}
	man := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: cfgDesc, Layers: descs}
	manDesc, err := l.json(ocispec.MediaTypeImageManifest, man)
	if err != nil {
		return err
	}
	manDesc.Platform = &cfg.Platform
	manDesc.Annotations = map[string]string{ocispec.AnnotationRefName: "hello"}
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{manDesc}}
	if err := writeJSON(filepath.Join(l.dir, "index.json"), idx); err != nil {
		return err
	}
	return writeJSON(filepath.Join(l.dir, ocispec.ImageLayoutFile), ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
}

func (l *layout) json(mt string, v any) (ocispec.Descriptor, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	d, err := l.blob(b)
	return ocispec.Descriptor{MediaType: mt, Digest: d, Size: int64(len(b))}, err
}

func writeJSON(p string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return os.WriteFile(p, b, 0o644)
}

func gunzip(b []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	_, err = out.ReadFrom(zr)
	return out.Bytes(), err
}
