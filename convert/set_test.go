package convert

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/c2vm/c2vm/bootcfg"
	"github.com/c2vm/c2vm/bundle"
)

// TestConvertSetAtomic: a set appears whole, replaces an earlier set, and a failed set leaves the
// earlier one and no stage behind.
func TestConvertSetAtomic(t *testing.T) {
	fakeAssets(t)
	img := testImage(t, ocispec.ImageConfig{Cmd: []string{"/bin/sh"}})
	parent := t.TempDir()
	out := filepath.Join(parent, "set")
	opts := baseOptions(t, img, out)
	opts.RootfsFormat = bootcfg.FormatErofs
	requireFormat(t, opts.RootfsFormat)
	listing := func() []string {
		var names []string
		ents, _ := os.ReadDir(parent)
		for _, e := range ents {
			names = append(names, e.Name())
		}
		return names
	}
	for range 2 { // the second one replaces the first
		set, err := ConvertSet(context.Background(), opts, []string{"linux/amd64"})
		if err != nil {
			t.Fatal(err)
		}
		if len(set.Bundles) != 1 || set.Bundles[0].Path != "linux-amd64" {
			t.Fatalf("set %+v", set)
		}
		if _, err := bundle.Read(filepath.Join(out, set.Bundles[0].Path)); err != nil {
			t.Fatal(err)
		}
		if _, ok, err := bundle.ReadSet(out); !ok || err != nil {
			t.Fatalf("ReadSet: %v, %v", ok, err)
		}
		if got := listing(); !slices.Equal(got, []string{"set"}) {
			t.Fatalf("parent holds %v", got)
		}
	}
	before, _ := os.ReadFile(filepath.Join(out, bundle.SetFile))
	if _, err := ConvertSet(context.Background(), opts, []string{"linux/amd64", "linux/s390x"}); err == nil || !strings.Contains(err.Error(), "s390x") {
		t.Fatalf("err = %v, want the s390x platform to fail", err)
	}
	if after, _ := os.ReadFile(filepath.Join(out, bundle.SetFile)); string(after) != string(before) {
		t.Errorf("a failed set changed the earlier one")
	}
	if got := listing(); !slices.Equal(got, []string{"set"}) {
		t.Errorf("parent holds %v after a failure", got)
	}
}
