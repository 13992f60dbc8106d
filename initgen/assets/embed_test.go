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
	if a.Where != "embedded" || len(a.Guest.Data) == 0 || a.Guest.Source != "" || a.Init.Data != nil {
		t.Errorf("Find = %q, %d bytes; want the embedded guest archive only", a.Where, len(a.Guest.Data))
	}
	found := false
	for _, arch := range EmbeddedArches() {
		found = found || arch == runtime.GOARCH
	}
	if !found {
		t.Errorf("EmbeddedArches() = %v, want the host's %s among them", EmbeddedArches(), runtime.GOARCH)
	}
}
