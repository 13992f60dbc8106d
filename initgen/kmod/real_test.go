package kmod

import (
	"reflect"
	"slices"
	"testing"

	"github.com/c2vm/c2vm/internal/testkit/realkernel"
)

// defaultModules is the module list c2vm loads in the guest by default.
var defaultModules = []string{"virtio_pci", "virtio_mmio", "virtio_blk", "virtio_console", "virtio_net",
	"virtio_rng", "overlay", "squashfs", "erofs", "binfmt_misc", "vsock", "vmw_vsock_virtio_transport"}

// TestRealKernel checks facts about Debian 12's cloud kernel (linux-image-6.1.0-*-cloud-amd64).
func TestRealKernel(t *testing.T) {
	k := realkernel.Real(t)
	t.Logf("kernel %s from %s", k.Version, k.Source)
	tests := []struct {
		name     string
		wantDeps []string // the closure without the module itself, sorted
	}{
		{"virtio_net", []string{"failover", "net_failover", "virtio", "virtio_ring"}},
		{"erofs", []string{"libcrc32c"}},
		{"overlay", nil},
		{"squashfs", nil},
		{"virtio_blk", []string{"virtio", "virtio_ring"}},
		{"virtio_pci", []string{"virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_ring"}},
		{"vmw_vsock_virtio_transport", []string{"virtio", "virtio_ring", "vmw_vsock_virtio_transport_common", "vsock"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mods, err := Closure(k.ModulesDir, []string{tt.name})
			if err != nil {
				t.Fatal(err)
			}
			got := names(mods)
			if got[len(got)-1] != tt.name {
				t.Errorf("closure %q does not end with %s", got, tt.name)
			}
			deps := slices.Sorted(slices.Values(got[:len(got)-1]))
			if len(deps) == 0 {
				deps = nil
			}
			if !reflect.DeepEqual(deps, tt.wantDeps) {
				t.Errorf("closure of %s = %q, want deps %q", tt.name, got, tt.wantDeps)
			}
			assertDepsFirst(t, mods)
		})
	}
}

func TestRealKernelDefaultSet(t *testing.T) {
	k := realkernel.Real(t)
	mods, err := Closure(k.ModulesDir, defaultModules)
	if err != nil {
		t.Fatal(err)
	}
	assertDepsFirst(t, mods)
	for _, n := range append(defaultModules, "failover", "net_failover", "libcrc32c", "virtio", "virtio_ring") {
		if !slices.Contains(names(mods), n) {
			t.Errorf("closure lacks %s: %q", n, names(mods))
		}
	}
	again, err := Closure(k.ModulesDir, defaultModules)
	if err != nil || !reflect.DeepEqual(again, mods) {
		t.Errorf("second Closure differs: %v", err)
	}
	assertLoadOrder(t, mods, probeOrder(t, k.ModulesDir, k.Version, mods, defaultModules))
	if _, err := Closure(k.ModulesDir, []string{"ext4"}); err == nil {
		t.Error("ext4 is built in on this kernel; Closure should say so")
	}
}
