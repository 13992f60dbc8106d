package descriptor

import (
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestCheck(t *testing.T) {
	good := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("x"), Size: 10}
	with := func(f func(*ocispec.Descriptor)) ocispec.Descriptor { d := good; f(&d); return d }
	for _, tc := range []struct {
		name  string
		d     ocispec.Descriptor
		max   int64
		types []string
		want  string // "" = accepted
	}{
		{"good", good, -1, nil, ""},
		{"good, typed", good, 10, []string{ocispec.MediaTypeImageManifest}, ""},
		{"sha512", with(func(d *ocispec.Descriptor) { d.Digest = digest.SHA512.FromString("x") }), -1, nil, ""},
		{"traversal", with(func(d *ocispec.Descriptor) { d.Digest = "sha256:../../etc/passwd" }), -1, nil, "digest"},
		{"no colon", with(func(d *ocispec.Descriptor) { d.Digest = "nocolon" }), -1, nil, "digest"},
		{"empty digest", with(func(d *ocispec.Descriptor) { d.Digest = "" }), -1, nil, "digest"},
		{"unknown algorithm", with(func(d *ocispec.Descriptor) { d.Digest = "md5:d41d8cd98f00b204e9800998ecf8427e" }), -1, nil, "unsupported"},
		{"short hex", with(func(d *ocispec.Descriptor) { d.Digest = "sha256:abcd" }), -1, nil, "digest"},
		{"negative size", with(func(d *ocispec.Descriptor) { d.Size = -1 }), -1, nil, "negative"},
		{"over the limit", good, 9, nil, "over the 9"},
		{"wrong type", good, -1, []string{ocispec.MediaTypeImageIndex}, "media type"},
		{"malformed type", with(func(d *ocispec.Descriptor) { d.MediaType = "../x y" }), -1, nil, "malformed media type"},
		{"long hostile type clipped", with(func(d *ocispec.Descriptor) { d.MediaType = strings.Repeat("a", 10000) }), -1, nil, "…"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(tc.d, tc.max, tc.types...)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("Check: %v, want %q", err, tc.want)
			}
			if err != nil && len(err.Error()) > 400 {
				t.Errorf("error of %d bytes", len(err.Error()))
			}
		})
	}
}

func TestUnmarshal(t *testing.T) {
	var v map[string]any
	for in, ok := range map[string]bool{`{}`: true, `{} `: true, `{}{}`: false, `{`: false, ``: false} {
		if err := Unmarshal([]byte(in), &v); (err == nil) != ok {
			t.Errorf("Unmarshal(%q): %v", in, err)
		}
	}
}
