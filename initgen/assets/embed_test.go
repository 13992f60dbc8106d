//go:build c2vm_embed

package assets

import "testing"

func TestFindEmbedded(t *testing.T) {
	a, err := Find()
	if err != nil {
		t.Fatal(err)
	}
	if a.Where != "embedded" || len(a.Init.Data) == 0 || len(a.Runc.Data) == 0 || a.Init.Source != "" {
		t.Errorf("Find = %q, %d/%d bytes; want embedded assets", a.Where, len(a.Init.Data), len(a.Runc.Data))
	}
}
