package kernel

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/c2vm/c2vm/internal/testkit/fakekernel"
)

type tarFile struct {
	name string
	size int
	typ  byte
}

func tarReader(t *testing.T, files []tarFile) *tar.Reader {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		typ := f.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		h := &tar.Header{Typeflag: typ, Name: f.name, Mode: 0o644}
		if typ == tar.TypeReg {
			h.Size = int64(f.size)
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			tw.Write(bytes.Repeat([]byte("x"), f.size))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return tar.NewReader(&buf)
}

func TestExtractTarLimits(t *testing.T) {
	lim := tarLimits{total: 100, file: 60, entries: 5}
	many := func(n int, dir string) []tarFile {
		var fs []tarFile
		for i := range n {
			fs = append(fs, tarFile{name: fmt.Sprintf("%s/f%d", dir, i), size: 1})
		}
		return fs
	}
	tests := []struct {
		name    string
		files   []tarFile
		wantErr []string // nil: extraction succeeds
	}{
		{name: "within limits", files: []tarFile{{name: "boot/vmlinuz-1", size: 60}, {name: "lib/modules/1/a.ko", size: 40}}},
		{name: "file over the per-file limit", files: []tarFile{{name: "boot/vmlinuz-1", size: 61}},
			wantErr: []string{"boot/vmlinuz-1", "61 bytes, over the 60 bytes limit for one file"}},
		{name: "total over the limit", files: []tarFile{{name: "boot/a", size: 60}, {name: "boot/b", size: 41}},
			wantErr: []string{"boot/b", "unpacks to over 100 bytes"}},
		{name: "skipped files do not count towards the size", files: []tarFile{{name: "usr/share/doc/big", size: 500}, {name: "boot/a", size: 60}}},
		{name: "5 entries are fine", files: many(5, "usr/share/doc")},
		{name: "entries are counted even when skipped", files: many(6, "usr/share/doc"),
			wantErr: []string{"more than 5 entries"}},
		{name: "directories count as entries", files: append(many(5, "boot"), tarFile{name: "boot/d", typ: tar.TypeDir}),
			wantErr: []string{"more than 5 entries"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			err := extractTarLimited(tarReader(t, tt.files), dir, lim)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				for _, f := range tt.files {
					rel, _ := kernelPath(f.name)
					if rel == "" || f.typ != 0 {
						continue
					}
					if fi, err := os.Stat(filepath.Join(dir, rel)); err != nil || fi.Size() != int64(f.size) {
						t.Errorf("%s: %v, %v", rel, fi, err)
					}
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	if debLimits.total != 1<<30 || debLimits.file != 256<<20 || debLimits.entries != 100_000 {
		t.Errorf("default limits %+v", debLimits)
	}
}

// TestMetapackageOneHop checks that a metapackage leads to a kernel package only, so metapackages
// naming each other cannot recurse forever.
func TestMetapackageOneHop(t *testing.T) {
	meta := func(t *testing.T, dir, pkg, dep string) string {
		p := filepath.Join(dir, pkg+"_6.1.1-1_amd64.deb")
		fakekernel.Deb(t, p, control(pkg, dep+" (= 6.1.1-1)"),
			map[string][]byte{"usr/share/doc/" + pkg + "/copyright": []byte("x")}, "xz")
		return p
	}
	tests := []struct {
		name    string
		build   func(t *testing.T, dir string) string // returns the package to load
		wantErr []string                              // nil: loads testVer
	}{
		{name: "metapackage to kernel", build: func(t *testing.T, dir string) string {
			writeKernelDeb(t, dir, testVer, "gz")
			return meta(t, dir, "linux-image-cloud-amd64", "linux-image-"+testVer)
		}},
		{name: "two metapackages naming each other", build: func(t *testing.T, dir string) string {
			meta(t, dir, "linux-image-b", "linux-image-a")
			return meta(t, dir, "linux-image-a", "linux-image-b")
		}, wantErr: []string{"linux-image-b_6.1.1-1_amd64.deb", "not another metapackage"}},
		{name: "metapackage to metapackage to kernel", build: func(t *testing.T, dir string) string {
			writeKernelDeb(t, dir, testVer, "gz")
			meta(t, dir, "linux-image-b", "linux-image-"+testVer)
			return meta(t, dir, "linux-image-a", "linux-image-b")
		}, wantErr: []string{"metapackage linux-image-a", "not another metapackage"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := tt.build(t, t.TempDir())
			k, err := Load(context.Background(), src, Options{CacheDir: t.TempDir()})
			if tt.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				assertKernel(t, k, testVer)
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}
