package spec

import (
	"context"
	"encoding/json"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/opencontainers/runtime-spec/specs-go"
)

// testPasswd and testGroup are a small image's /etc/passwd and /etc/group: app is in wheel and audio,
// root in wheel, nohome has an empty home field.
var (
	testPasswd = []byte(`root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
app:x:1000:1000:App user:/home/app:/bin/sh
nohome:x:1002:1002:::/bin/false
`)
	testGroup = []byte(`root:x:0:
# a comment line
wheel:x:10:root,app
app:x:1000:
audio:x:29:app
staff:x:50:
`)
)

// testImage is a representative linux/amd64 image config.
func testImage() ocispec.Image {
	return ocispec.Image{
		Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		Config: ocispec.ImageConfig{
			User:       "app",
			Entrypoint: []string{"/usr/bin/tini", "--"},
			Cmd:        []string{"/app/server", "--port", "8080"},
			Env:        []string{"LANG=C.UTF-8", "APP_MODE=prod"},
			WorkingDir: "/srv/app",
			ExposedPorts: map[string]struct{}{
				"8080/tcp": {}, "53/udp": {}, "443/tcp": {},
			},
			Volumes:    map[string]struct{}{"/var/lib/app": {}, "/data": {}},
			Labels:     map[string]string{"org.opencontainers.image.title": "app"},
			StopSignal: "SIGQUIT",
		},
	}
}

// testOptions resolves users against testPasswd and testGroup.
func testOptions(o Overrides) Options {
	return Options{Passwd: testPasswd, Group: testGroup, Overrides: o}
}

// mustGenerate runs Generate and fails the test on error.
func mustGenerate(t *testing.T, img ocispec.Image, opts Options) *specs.Spec {
	t.Helper()
	s, err := Generate(context.Background(), img, opts)
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	return s
}

// marshal returns the spec as the indented JSON the bundle stores.
func marshal(t *testing.T, s *specs.Spec) []byte {
	t.Helper()
	b, err := json.MarshalIndent(s, "", "\t")
	if err != nil {
		t.Fatalf("marshal spec: %v", err)
	}
	return append(b, '\n')
}
