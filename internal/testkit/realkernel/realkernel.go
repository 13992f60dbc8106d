// Package realkernel finds the real kernel package for tests that need one.
//
// See docs/testing.md.
package realkernel

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/c2vm/c2vm/kernel"
)

// Real returns the real kernel named by $C2VM_KERNEL or cached by `make kernel`, unpacked into a
// cache shared by test runs. It skips the test when there is none, but fails it when CI=true.
func Real(t testing.TB) *kernel.Kernel {
	t.Helper()
	opts := kernel.Options{CacheDir: filepath.Join(os.TempDir(), "c2vm-test-kernel-cache")}
	if os.Getenv(kernel.EnvKernel) == "" {
		// Default() then looks in the user's cache, where `make kernel` puts the package.
		opts.CacheDir = ""
	}
	k, err := kernel.Default(context.Background(), opts)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("real kernel needed in CI: %v", err)
		}
		t.Skipf("no real kernel (set %s to a linux-image .deb or run `make kernel`): %v", kernel.EnvKernel, err)
	}
	return k
}
