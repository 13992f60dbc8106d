package spec

import (
	"slices"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestApplyToConfig(t *testing.T) {
	img := ocispec.ImageConfig{Entrypoint: []string{"/e"}, Cmd: []string{"c"}, Env: []string{"A=1", "B=2"}, User: "app", WorkingDir: "/w"}
	tests := []struct {
		name string
		o    Overrides
		want ocispec.ImageConfig
	}{
		{"none", Overrides{}, img},
		{"entrypoint drops cmd", Overrides{Entrypoint: &[]string{"/x"}},
			ocispec.ImageConfig{Entrypoint: []string{"/x"}, Env: img.Env, User: "app", WorkingDir: "/w"}},
		{"cmd", Overrides{Cmd: []string{"a"}},
			ocispec.ImageConfig{Entrypoint: []string{"/e"}, Cmd: []string{"a"}, Env: img.Env, User: "app", WorkingDir: "/w"}},
		{"env by key, bare key unsets", Overrides{Env: []string{"B=3", "A", "C=4"}},
			ocispec.ImageConfig{Entrypoint: []string{"/e"}, Cmd: []string{"c"}, Env: []string{"B=3", "C=4"}, User: "app", WorkingDir: "/w"}},
		{"user and workdir", Overrides{User: "0", WorkingDir: "/tmp"},
			ocispec.ImageConfig{Entrypoint: []string{"/e"}, Cmd: []string{"c"}, Env: img.Env, User: "0", WorkingDir: "/tmp"}},
		{"run-time ones leave the config", Overrides{Hostname: "h", Terminal: true, ReadOnly: true, CapAdd: []string{"ALL"}}, img},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.o.ApplyToConfig(img)
			if !slices.Equal(got.Entrypoint, tt.want.Entrypoint) || !slices.Equal(got.Cmd, tt.want.Cmd) || !slices.Equal(got.Env, tt.want.Env) ||
				got.User != tt.want.User || got.WorkingDir != tt.want.WorkingDir {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestRunTimeOnly(t *testing.T) {
	tests := []struct {
		o    Overrides
		want []string
	}{
		{Overrides{Entrypoint: &[]string{}, Cmd: []string{"a"}, Env: []string{"A=1"}, User: "u", WorkingDir: "/"}, nil},
		{Overrides{Hostname: "h"}, []string{"Hostname"}},
		{Overrides{Terminal: true, ReadOnly: true, CapAdd: []string{"ALL"}, CapDrop: []string{"CHOWN"}}, []string{"Terminal", "ReadOnly", "CapAdd", "CapDrop"}},
	}
	for _, tt := range tests {
		if got := tt.o.RunTimeOnly(); !slices.Equal(got, tt.want) {
			t.Errorf("RunTimeOnly(%+v) = %v, want %v", tt.o, got, tt.want)
		}
	}
}
