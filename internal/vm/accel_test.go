package vm

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeHost writes a host tree: files maps paths below the root to contents.
func fakeHost(t *testing.T, arch string, files map[string]string) Host {
	t.Helper()
	root := t.TempDir()
	for p, data := range files {
		full := filepath.Join(root, p)
		dir := filepath.Dir(full)
		if strings.HasSuffix(p, "/") {
			dir = full // a directory, e.g. sys/module/kvm_intel/
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if dir == full {
			continue
		}
		if err := os.WriteFile(full, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return Host{Root: root, Arch: arch}
}

const (
	cpuinfoPVM   = "processor\t: 0\nflags\t\t: fpu vme de pse tsc msr hypervisor lahf_lm\n\nprocessor\t: 1\nflags\t\t: fpu vme de pse tsc msr hypervisor lahf_lm\n"
	cpuinfoIntel = "processor\t: 0\nflags\t\t: fpu vme de pse vmx ept\n"
	cpuinfoAMD   = "processor\t: 0\nflags\t\t: fpu vme svm npt\n"
)

func TestHostKVM(t *testing.T) {
	tests := []struct {
		name   string
		arch   string // host
		guest  string
		files  map[string]string
		ok     bool
		reason string
	}{
		{"pvm", "amd64", "amd64", map[string]string{"dev/kvm": "", "sys/module/kvm/": "", "sys/module/kvm_pvm/": "", "proc/cpuinfo": cpuinfoPVM}, false, "kvm_pvm"},
		{"intel module", "amd64", "amd64", map[string]string{"dev/kvm": "", "sys/module/kvm_intel/": "", "proc/cpuinfo": cpuinfoPVM}, true, "kvm_intel is loaded"},
		{"amd module", "amd64", "", map[string]string{"dev/kvm": "", "sys/module/kvm_amd/": ""}, true, "kvm_amd is loaded"},
		{"vmx flag", "amd64", "amd64", map[string]string{"dev/kvm": "", "proc/cpuinfo": cpuinfoIntel}, true, "the CPU has vmx"},
		{"svm flag", "amd64", "amd64", map[string]string{"dev/kvm": "", "proc/cpuinfo": cpuinfoAMD}, true, "the CPU has svm"},
		{"no hardware", "amd64", "amd64", map[string]string{"dev/kvm": "", "proc/cpuinfo": cpuinfoPVM}, false, "no hardware virtualization"},
		{"no dev kvm", "amd64", "amd64", map[string]string{"sys/module/kvm_intel/": "", "proc/cpuinfo": cpuinfoIntel}, false, "no /dev/kvm"},
		{"arch mismatch", "amd64", "arm64", map[string]string{"dev/kvm": "", "sys/module/kvm_intel/": ""}, false, "the guest is arm64, the host amd64"},
		{"arm64 host", "arm64", "arm64", map[string]string{"dev/kvm": ""}, true, "opens read-write"},
		{"arm64 host without kvm", "arm64", "arm64", map[string]string{}, false, "no /dev/kvm"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, why := fakeHost(t, tt.arch, tt.files).KVM(tt.guest)
			if ok != tt.ok || !strings.Contains(why, tt.reason) {
				t.Errorf("KVM(%q) = %v, %q; want %v and a reason with %q", tt.guest, ok, why, tt.ok, tt.reason)
			}
		})
	}
}

// TestHostKVMUnopenable: a /dev/kvm that exists but cannot be opened read-write (here a directory,
// which fails for root too, where a mode-0 file would not) is no KVM, with the reason.
func TestHostKVMUnopenable(t *testing.T) {
	h := fakeHost(t, "amd64", map[string]string{"dev/kvm/": "", "sys/module/kvm_intel/": ""})
	if ok, why := h.KVM("amd64"); ok || !strings.Contains(why, "cannot be opened read-write") {
		t.Errorf("KVM = %v, %q; want false, cannot be opened", ok, why)
	}
}

func TestChooseAccel(t *testing.T) {
	pvm := map[string]string{"dev/kvm": "", "sys/module/kvm_pvm/": "", "proc/cpuinfo": cpuinfoPVM}
	intel := map[string]string{"dev/kvm": "", "sys/module/kvm_intel/": ""}
	tests := []struct {
		req     string
		files   map[string]string
		want    string
		auto    bool
		wantErr error
	}{
		{"", pvm, AccelTCG, true, nil},
		{"auto", pvm, AccelTCG, true, nil},
		{"auto", intel, AccelKVM, true, nil},
		{"tcg", intel, AccelTCG, false, nil},
		{"kvm", intel, AccelKVM, false, nil},
		{"kvm", pvm, "", false, ErrKVM},
	}
	for _, tt := range tests {
		a, err := ChooseAccel(tt.req, "amd64", fakeHost(t, "amd64", tt.files))
		if tt.wantErr != nil {
			if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), "--accel tcg") || !strings.Contains(err.Error(), "kvm_pvm") {
				t.Errorf("ChooseAccel(%q) error %v; want %v naming kvm_pvm and --accel tcg", tt.req, err, tt.wantErr)
			}
			continue
		}
		if err != nil || a.Name != tt.want || a.Auto != tt.auto || a.Reason == "" {
			t.Errorf("ChooseAccel(%q) = %+v, %v; want %s (auto %v) with a reason", tt.req, a, err, tt.want, tt.auto)
		}
	}
	if _, err := ChooseAccel("foo", "", Host{}); err == nil || !strings.Contains(err.Error(), "want auto, kvm or tcg") {
		t.Errorf("ChooseAccel(foo) error %v", err)
	}
}
