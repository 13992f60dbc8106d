package image

import (
	"strings"
	"testing"
)

func TestParseRef(t *testing.T) {
	tests := []struct {
		in      string
		want    Ref
		wantErr string
	}{
		{"oci:/tmp/layout", Ref{Transport: "oci", Path: "/tmp/layout"}, ""},
		{"oci:/tmp/layout:v1", Ref{Transport: "oci", Path: "/tmp/layout", Tag: "v1"}, ""},
		{"oci-archive:img.tar:latest", Ref{Transport: "oci-archive", Path: "img.tar", Tag: "latest"}, ""},
		{"docker-archive:b.tar", Ref{Transport: "docker-archive", Path: "b.tar"}, ""},
		{"docker-archive:b.tar:busybox:latest", Ref{Transport: "docker-archive", Path: "b.tar", Tag: "busybox:latest"}, ""},
		{"docker-archive:b.tar:example.com:5000/x/y:tag", Ref{Transport: "docker-archive", Path: "b.tar", Tag: "example.com:5000/x/y:tag"}, ""},
		{"./some/dir", Ref{Path: "./some/dir"}, ""},
		{"weird:name.tar", Ref{Path: "weird:name.tar"}, ""},
		{"", Ref{}, "empty image reference"},
		{"oci:", Ref{}, "missing path"},
		{"oci::tag", Ref{}, "missing path"},
		{"docker://busybox", Ref{Transport: TransportDocker, Path: "busybox"}, ""},
		{"docker-daemon:busybox", Ref{}, "not supported"},
		{"containers-storage:x", Ref{}, "not supported"},
		{"docker-archive:b.tar:@0", Ref{}, "not supported"},
		{"docker-archive:b.tar::tag", Ref{}, "want NAME"},
		{"oci:dir:bad tag", Ref{}, "space or control"},
		{"oci:d\x00ir", Ref{}, "NUL"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseRef(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseRef(%q) = %+v, %v; want error containing %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseRef(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			}
			if again, err := ParseRef(got.String()); err != nil || again != got {
				t.Fatalf("round trip of %q via %q = %+v, %v", tt.in, got.String(), again, err)
			}
		})
	}
}

func TestNormalizeDockerName(t *testing.T) {
	tests := []struct{ a, b string }{
		{"busybox", "docker.io/library/busybox:latest"},
		{"busybox:latest", "docker.io/library/busybox:latest"},
		{"library/busybox:1", "docker.io/library/busybox:1"},
		{"user/app:2", "docker.io/user/app:2"},
		{"example.com:5000/x/y:tag", "example.com:5000/x/y:tag"},
		{"localhost/x", "localhost/x:latest"},
	}
	for _, tt := range tests {
		if got := normalizeDockerName(tt.a); got != tt.b {
			t.Errorf("normalizeDockerName(%q) = %q, want %q", tt.a, got, tt.b)
		}
	}
}

func FuzzParseRef(f *testing.F) {
	for _, s := range []string{"oci:/x:tag", "oci-archive:a.tar", "docker-archive:b.tar:busybox:latest", "/plain/path", "docker://x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRef(s)
		if err != nil {
			return
		}
		if r.Path == "" {
			t.Fatalf("ParseRef(%q) gave an empty path", s)
		}
		if r.Transport == "" && r.Path != s {
			t.Fatalf("bare ParseRef(%q) changed the path to %q", s, r.Path)
		}
		if r.Transport != "" {
			again, err := ParseRef(r.String())
			if err != nil || again != r {
				t.Fatalf("round trip %q → %+v → %q → %+v, %v", s, r, r.String(), again, err)
			}
		}
	})
}
