package main

import (
	"archive/tar"
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/c2vm/c2vm/bundle"
	it "github.com/c2vm/c2vm/internal/testkit/imagetest"
)

// bigImage writes an OCI layout "big" with one uncompressed layer of n MiB of random data in 16 MiB
// files: squashing it takes seconds, long enough to interrupt a convert midway.
func bigImage(t *testing.T, dir string, n int) string {
	t.Helper()
	rng := rand.NewChaCha8([32]byte{6})
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	chunk := make([]byte, 16<<20)
	for i := 0; i < n/16; i++ {
		_, _ = rng.Read(chunk)
		h := &tar.Header{Typeflag: tar.TypeReg, Name: "data/" + string(rune('a'+i)), Mode: 0o644, Size: int64(len(chunk)), ModTime: it.Epoch}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	it.WriteOCILayout(t, dir, it.Image{Name: "big", Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		Config: ocispec.Image{Config: shCmd}, Layers: []it.Layer{{Data: buf.Bytes()}}})
	return "oci:" + dir + ":big"
}

// stages returns the stage directories (and moved-aside bundles) of target.
func stages(t *testing.T, target string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(filepath.Dir(target), "."+filepath.Base(target)+".c2vm-tmp-*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// waitForRootfs polls (every 20 ms, up to a minute) until a stage of target holds the rootfs being
// written — the convert is then midway — and returns the stage. It fails if the convert ends first.
func waitForRootfs(t *testing.T, target string, exited <-chan struct{}) string {
	t.Helper()
	deadline := time.After(time.Minute)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		for _, s := range stages(t, target) {
			if fi, err := os.Stat(filepath.Join(s, "rootfs.squashfs")); err == nil && fi.Size() > 0 {
				return s
			}
		}
		select {
		case <-exited:
			t.Fatal("convert ended before it was midway: make the image bigger")
		case <-deadline:
			t.Fatal("no stage with a rootfs appeared within a minute")
		case <-tick.C:
		}
	}
}

// TestConvertInterrupt interrupts (SIGINT) and kills (SIGKILL) a convert midway over an existing
// bundle: the old bundle must be untouched; after SIGINT the stage is removed and the exit status is
// 130; after SIGKILL the stage is left behind and removed by the next convert to the same target.
func TestConvertInterrupt(t *testing.T) {
	e := cliWorkspace(t)
	work := filepath.Join(e.root, "interrupt")
	tmp := filepath.Join(work, "tmp")
	for _, d := range []string{work, tmp} {
		if err := mkdirOwned(d); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { os.RemoveAll(work) })
	small := filepath.Join(work, "small")
	it.WriteOCILayout(t, small, it.Image{Name: "small", Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		Config: ocispec.Image{Config: shCmd}, Layers: []it.Layer{{Data: it.TarLayer(t, it.TarFile("hello", "old bundle\n"))}}})
	big := bigImage(t, filepath.Join(work, "big"), 192)
	target := filepath.Join(work, "out.bundle")
	if code, stderr := e.convertCLI(t, tmp, "-o", target, "oci:"+small+":small"); code != 0 {
		t.Fatalf("convert the old bundle: exit %d: %s", code, stderr)
	}
	old := listing(t, target)

	for _, tt := range []struct {
		name     string
		sig      syscall.Signal
		code     int
		leftover bool
	}{
		{"SIGINT", syscall.SIGINT, exitInterrupted, false},
		{"SIGKILL", syscall.SIGKILL, -1, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
			defer cancel()
			cmd := e.command(ctx, tmp, "convert", "--quiet", "--kernel", e.kernel, "-o", target, big)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan struct{})
			go func() { _ = cmd.Wait(); close(exited) }()
			stage := waitForRootfs(t, target, exited)
			start := time.Now()
			if err := cmd.Process.Signal(tt.sig); err != nil {
				t.Fatal(err)
			}
			<-exited
			t.Logf("%s: stopped %v after the signal; stderr %q", tt.name, time.Since(start).Round(time.Millisecond), stderr.String())
			if code := cmd.ProcessState.ExitCode(); code != tt.code || code == 0 {
				t.Errorf("exit status %d (%v), want %d", code, cmd.ProcessState, tt.code)
			}
			if tt.sig == syscall.SIGINT && strings.TrimSpace(stderr.String()) != "c2vm: interrupted" {
				t.Errorf("stderr %q, want the one line \"c2vm: interrupted\"", stderr.String())
			}
			if got := listing(t, target); !slices.Equal(got, old) {
				t.Errorf("old bundle changed:\nbefore %q\nafter  %q", old, got)
			}
			m, err := bundle.Read(target)
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Verify(target); err != nil {
				t.Errorf("old bundle: %v", err)
			}
			left := stages(t, target)
			if tt.leftover != slices.Contains(left, stage) || (!tt.leftover && len(left) != 0) {
				t.Errorf("stages left %q (stage was %s), want leftover %v", left, stage, tt.leftover)
			}
			if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
				t.Errorf("TMPDIR holds %d entries after the convert", len(ents))
			}
		})
	}

	// The next convert to the same target removes the killed run's stage and replaces the bundle.
	if code, stderr := e.convertCLI(t, tmp, "-o", target, "oci:"+small+":small"); code != 0 {
		t.Fatalf("convert after the kill: exit %d: %s", code, stderr)
	}
	if left := stages(t, target); len(left) != 0 {
		t.Errorf("stages left after the next convert: %q", left)
	}
	if _, err := bundle.Read(target); err != nil {
		t.Error(err)
	}
}
