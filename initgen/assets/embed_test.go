//go:build c2vm_embed

package assets

import (
	"runtime"
	"testing"
)

func TestFindEmbedded(t *testing.T) {
	a, err := Find("")
	if err != nil {
		t.Fatal(err)
	}
	if a.Where != "embedded" || len(a.Init.Data) == 0 || len(a.Runc.Data) == 0 || a.Init.Source != "" {
		t.Errorf("Find = %q, %d/%d bytes; want embedded assets", a.Where, len(a.Init.Data), len(a.Runc.Data))
	}
	found := false
	for _, arch := range EmbeddedArches() {
		found = found || arch == runtime.GOARCH
	}
	if !found {
		t.Errorf("EmbeddedArches() = %v, want the host's %s among them", EmbeddedArches(), runtime.GOARCH)
	}
}
