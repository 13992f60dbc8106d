package spec

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

var update = flag.Bool("update", false, "rewrite testdata/golden/*.json")

// TestGolden pins the spec for representative configs. Regenerate with
// go test ./convert/spec/ -run TestGolden -update
func TestGolden(t *testing.T) {
	arm := testImage()
	arm.Architecture, arm.Variant = "arm64", "v8"
	tests := []struct {
		name string
		img  ocispec.Image
		opts Options
	}{
		{"app-amd64", testImage(), testOptions(Overrides{})},
		{"app-arm64-overrides", arm, testOptions(Overrides{
			Cmd:        []string{"/app/server", "--debug"},
			Env:        []string{"APP_MODE=debug", "EXTRA=1"},
			User:       "1000:staff",
			WorkingDir: "/tmp",
			Hostname:   "web",
			Terminal:   true,
		})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := marshal(t, mustGenerate(t, tt.img, tt.opts))
			file := filepath.Join("testdata", "golden", tt.name+".json")
			if *update {
				if err := os.WriteFile(file, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("spec differs from %s (run with -update if the change is intended):\n%s", file, got)
			}
		})
	}
}
