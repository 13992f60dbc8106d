package main

import (
	"context"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/c2vm/c2vm/convert/spec"
	"github.com/c2vm/c2vm/internal/cachedir"
	"github.com/c2vm/c2vm/internal/launch"
	"github.com/c2vm/c2vm/internal/vm"
)

// TestVMMachine boots a bundle through the machine handle: QEMU's QMP socket answers while the
// workload runs (status, pause, resume), and Stop reaches the workload as c2vm run's Ctrl-C does.
func TestVMMachine(t *testing.T) {
	dir := testBundle(t, "squashfs")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	plan, err := launch.Prepare(ctx, dir, launch.Options{
		Network:   launch.NetworkNone,
		Overrides: spec.Overrides{Cmd: []string{"trap 'echo stopped; exit 3' TERM; echo up; sleep 600 & wait"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer plan.Close()
	cfg := plan.VM
	up := make(chan struct{})
	out := &watchWriter{sentinel: "up\n", seen: up}
	cfg.Stdout = out
	var argv []string
	cfg.OnStart = func(a []string) { argv = a }
	m, err := vm.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	select {
	case <-up:
	case <-m.Done():
		res, err := m.Wait()
		t.Fatalf("the VM ended before the workload ran: %+v, %v\nqemu: %s", res, err, quoteArgs(argv))
	}
	for _, step := range []struct {
		name string
		do   func(context.Context) error
		want string
	}{
		{"running", func(context.Context) error { return nil }, "running"},
		{"pause", m.Pause, "paused"},
		{"resume", m.Resume, "running"},
	} {
		if err := step.do(ctx); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if s, err := m.QueryStatus(ctx); err != nil || s.Status != step.want {
			t.Fatalf("%s: QueryStatus = %+v, %v; want %s", step.name, s, err, step.want)
		}
	}
	m.Stop()
	res, err := m.Wait()
	if err != nil || res.ExitCode != 3 {
		t.Fatalf("Wait = %+v, %v; want 3 from the workload's TERM trap\nqemu: %s", res, err, quoteArgs(argv))
	}
	if got := out.String(); got != "up\nstopped\n" {
		t.Errorf("stdout %q, want up, then stopped", got)
	}
}

// watchWriter keeps what is written and closes seen once sentinel has been written.
type watchWriter struct {
	sentinel string
	seen     chan struct{}
	mu       sync.Mutex
	b        strings.Builder
	once     sync.Once
}

func (w *watchWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b.Write(p)
	if strings.Contains(w.b.String(), w.sentinel) {
		w.once.Do(func() { close(w.seen) })
	}
	return len(p), nil
}

func (w *watchWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// TestVMMemoryTooSmall (issue 23): below Debian's kernel's floor (~92 MiB) run says in one line
// that the kernel ran out of memory and what to do, whether the kernel died in silence (64m: its
// decompressor) or with a panic whose stack trace scrolls the reason out of the console's tail.
func TestVMMemoryTooSmall(t *testing.T) {
	dir := debianKernelBundle(t)
	for _, mem := range []string{"64m", "88m"} {
		t.Run(mem, func(t *testing.T) {
			t.Parallel()
			code, _, stderr := c2vm(t, "", "run", "--timeout", "120s", "-m", mem, dir, "--", "true")
			want := "c2vm: run: the VM ended without reporting the workload's exit status: "
			if code != 125 || !strings.HasPrefix(stderr, want) || !strings.Contains(stderr, "the kernel ran out of memory at -m "+mem+": raise -m (Debian's kernel needs ~96 MiB) or use --kernel c2vm\n") || strings.Count(stderr, "\n") != 1 {
				t.Errorf("-m %s: exit %d, stderr %q; want 125 and one line saying the kernel ran out of memory", mem, code, stderr)
			}
		})
	}
}

// debianKernelBundle converts the VM tests' busybox image with Debian's kernel package (make
// kernel), whatever C2VM_KERNEL says: some tests are about that kernel.
func debianKernelBundle(t *testing.T) string {
	t.Helper()
	testBundle(t, "squashfs") // the busybox image layout in bundleRoot
	cache, err := cachedir.Default()
	if err != nil {
		t.Fatal(err)
	}
	debs, _ := filepath.Glob(filepath.Join(cache.KernelPackages(), "linux-image-[0-9]*_"+runtime.GOARCH+".deb"))
	if len(debs) == 0 {
		require(t, "VM", []string{"Debian's kernel package in " + cache.KernelPackages() + " (make kernel)"})
	}
	out := filepath.Join(t.TempDir(), "debian.bundle")
	if code, _, stderr := c2vm(t, "", "convert", "--quiet", "--kernel", debs[len(debs)-1], "-o", out, "oci:"+filepath.Join(bundleRoot, "oci")+":test"); code != 0 {
		t.Fatalf("convert with %s: exit %d: %s", debs[len(debs)-1], code, stderr)
	}
	return out
}
