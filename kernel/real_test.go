package kernel_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/c2vm/c2vm/internal/testkit/realkernel"
	"github.com/c2vm/c2vm/kernel"
)

func TestRealKernelPackage(t *testing.T) {
	k := realkernel.Real(t)
	if !strings.HasPrefix(k.Version, "6.") || kernel.ImageVersion(k.Vmlinuz) != k.Version {
		t.Errorf("kernel %+v: image version %q", k, kernel.ImageVersion(k.Vmlinuz))
	}
	if _, err := os.Stat(filepath.Join(k.ModulesDir, "kernel/fs/overlayfs/overlay.ko")); err != nil {
		t.Error(err)
	}
}
