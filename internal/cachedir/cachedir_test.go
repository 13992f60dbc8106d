package cachedir

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestLayout pins the folder names: the Makefile writes the same ones, and caches filled by an
// earlier c2vm must still be found.
func TestLayout(t *testing.T) {
	d := Dir("/c")
	for _, tt := range []struct{ got, want string }{
		{d.Path(), "/c"},
		{d.KernelPackages(), "/c/kernel"},
		{d.UnpackedKernels(), "/c/kernels"},
		{d.C2VMKernels(), "/c/kernel-c2vm"},
		{d.Debs(), "/c/debs"},
		{d.Emulators(), "/c/emulators"},
		{d.Blobs(), "/c/blobs"},
		{d.Ingest(), "/c/ingest"},
		{d.Refs(), "/c/refs"},
		{d.PulledBundles(), "/c/bundles"},
		{d.Parity(), "/c/parity"},
	} {
		if tt.got != tt.want {
			t.Errorf("got %s, want %s", tt.got, tt.want)
		}
	}
}

func TestDefault(t *testing.T) {
	tests := []struct {
		name, xdg, home string
		want            string // "" = an error
	}{
		{"XDG_CACHE_HOME wins", "/xdg", "/home/u", "/xdg/c2vm"},
		{"else HOME/.cache", "", "/home/u", "/home/u/.cache/c2vm"},
		{"relative XDG_CACHE_HOME", "rel", "/home/u", ""},
		{"neither", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("XDG_CACHE_HOME", tt.xdg)
			t.Setenv("HOME", tt.home)
			d, err := Default()
			if tt.want == "" {
				if err == nil || !strings.Contains(err.Error(), "XDG_CACHE_HOME") {
					t.Fatalf("Default() = %q, %v; want an error naming XDG_CACHE_HOME", d, err)
				}
				return
			}
			if err != nil || d.Path() != tt.want {
				t.Fatalf("Default() = %q, %v; want %s", d, err, tt.want)
			}
		})
	}
}

func TestOr(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", "/xdg")
	for _, tt := range []struct{ in, want string }{
		{"", "/xdg/c2vm"},
		{"/given", "/given"},
	} {
		if d, err := Or(tt.in); err != nil || d.Path() != filepath.Clean(tt.want) {
			t.Errorf("Or(%q) = %q, %v; want %s", tt.in, d, err, tt.want)
		}
	}
}
