package initgen

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	stdgzip "compress/gzip"
	"github.com/c2vm/c2vm/bootcfg"
	"github.com/c2vm/c2vm/internal/testkit/fakekernel"
	"github.com/c2vm/c2vm/kernel"
	"github.com/klauspost/compress/zstd"
	"github.com/u-root/u-root/pkg/cpio"
)

const fakeVer = "6.1.0-99-test-amd64"

// fakeKernel writes a small kernel tree and loads it.
func fakeKernel(t *testing.T) *kernel.Kernel {
	t.Helper()
	root := t.TempDir()
	fakekernel.WriteTree(t, root, fakekernel.Files(fakeVer, []fakekernel.Mod{
		{Path: "kernel/drivers/virtio/virtio_ring.ko"},
		{Path: "kernel/drivers/virtio/virtio.ko", Depends: []string{"virtio_ring"}},
		{Path: "kernel/drivers/block/virtio_blk.ko", Depends: []string{"virtio", "virtio_ring"}},
		{Path: "kernel/fs/overlayfs/overlay.ko"},
		{Path: "kernel/lib/libcrc32c.ko"},
		{Path: "kernel/fs/erofs/erofs.ko", Depends: []string{"libcrc32c"}},
		{Path: "kernel/fs/unused.ko"},
	}, []string{"kernel/fs/ext4/ext4.ko"}))
	k, err := kernel.Load(context.Background(), root, kernel.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// entry is one cpio record read back.
type entry struct {
	Name     string
	Mode     uint64
	UID, GID int
	MTime    int64
	Data     string
}

// readInitrd decompresses (with the standard library's gzip or klauspost's zstd reader) and
// reads back a cpio archive.
func readInitrd(t *testing.T, b []byte, compression string) []entry {
	t.Helper()
	var r io.Reader
	switch compression {
	case None:
		r = bytes.NewReader(b)
	case Gzip:
		gr, err := stdgzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if gr.Name != "" || !gr.ModTime.IsZero() {
			t.Errorf("gzip header has name %q, mtime %v; want neither", gr.Name, gr.ModTime)
		}
		r = gr
	default:
		zr, err := zstd.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		r = zr
	}
	raw, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("decompress %s: %v", compression, err)
	}
	var out []entry
	for _, archive := range splitArchives(t, raw) {
		recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(archive)))
		if err != nil {
			t.Fatalf("read cpio: %v", err)
		}
		for _, rec := range recs {
			var data []byte
			if rec.ReaderAt != nil {
				data, _ = io.ReadAll(io.NewSectionReader(rec.ReaderAt, 0, int64(rec.FileSize)))
			}
			if rec.Mode&cpio.S_IFMT == cpio.S_IFCHR {
				data = []byte(fmt.Sprintf("%d:%d", rec.Rmajor, rec.Rminor))
			}
			out = append(out, entry{rec.Name, rec.Mode, int(rec.UID), int(rec.GID), int64(rec.MTime), string(data)})
		}
	}
	return out
}

// splitArchives cuts concatenated newc archives apart (as the kernel reads them: each ends with
// TRAILER!!!, zero padding may follow), failing on a malformed or unaligned one.
func splitArchives(t *testing.T, raw []byte) [][]byte {
	t.Helper()
	var out [][]byte
	start, off := 0, 0
	field := func(i int) int {
		var v int
		if _, err := fmt.Sscanf(string(raw[off+6+8*i:off+14+8*i]), "%08x", &v); err != nil {
			t.Fatalf("cpio header at %d: %v", off, err)
		}
		return v
	}
	align := func(n int) int { return (n + 3) &^ 3 }
	for off < len(raw) {
		if raw[off] == 0 && start == off {
			off, start = off+1, off+1
			continue
		}
		if off+110 > len(raw) || string(raw[off:off+6]) != "070701" {
			t.Fatalf("no newc header at %d of %d", off, len(raw))
		}
		size, nameSize := field(6), field(11)
		name := string(raw[off+110 : off+110+nameSize-1])
		off = align(align(off+110+nameSize) + size)
		if name == "TRAILER!!!" {
			out = append(out, raw[start:off])
			start = off
		}
	}
	if start != len(raw) || len(out) == 0 || len(raw)%4 != 0 {
		t.Fatalf("archive of %d bytes: %d archives, the last unterminated at %d or not 4-byte aligned", len(raw), len(out), start)
	}
	return out
}

func byName(es []entry) map[string]entry {
	m := make(map[string]entry, len(es))
	for _, e := range es {
		m[e.Name] = e
	}
	return m
}

func testOptions(t *testing.T, k *kernel.Kernel) Options {
	t.Helper()
	runc := filepath.Join(t.TempDir(), "runc")
	if err := os.WriteFile(runc, []byte("#!runc binary"), 0o600); err != nil {
		t.Fatal(err)
	}
	return Options{
		Kernel:     k,
		Modules:    []string{"virtio_blk", "erofs", "overlay", "ext4"},
		Init:       Blob{Data: []byte("init binary")},
		Runc:       Blob{Source: runc},
		BootConfig: []byte(`{"version":"1.0"}`),
		Spec:       []byte(`{"ociVersion":"1.2.0"}`),
		Extra: []File{
			{Path: "/etc/hostname", Mode: 0o644, Data: []byte("vm\n")},
			{Path: "/bin/su", Mode: 0o4755, Data: []byte("setuid")},
			{Path: "/bin/sh", Mode: ModeSymlink | 0o777, Data: []byte("busybox")},
			{Path: "/tmp", Mode: ModeDir | 0o1777},
			{Path: "/empty"},
		},
	}
}

func write(t *testing.T, opts Options) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := Write(context.Background(), &b, opts); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestWriteContents(t *testing.T) {
	k := fakeKernel(t)
	for _, comp := range []string{"", Zstd, Gzip} {
		t.Run("compression="+comp, func(t *testing.T) {
			opts := testOptions(t, k)
			opts.Compression = comp
			es := readInitrd(t, write(t, opts), comp)
			mods := "lib/modules/" + fakeVer + "/"
			want := map[string]struct {
				mode uint64
				data string
			}{
				"init":                                {cpio.S_IFREG | 0o755, "init binary"},
				"sbin":                                {cpio.S_IFDIR | 0o755, ""},
				"sbin/runc":                           {cpio.S_IFREG | 0o755, "#!runc binary"},
				"dev":                                 {cpio.S_IFDIR | 0o755, ""},
				"dev/null":                            {cpio.S_IFCHR | 0o666, "1:3"},
				"c2vm":                                {cpio.S_IFDIR | 0o755, ""},
				strings.TrimPrefix(bootcfg.Path, "/"): {cpio.S_IFREG | 0o644, `{"version":"1.0"}`},
				strings.TrimPrefix(bootcfg.SpecPath, "/"): {cpio.S_IFREG | 0o644, `{"ociVersion":"1.2.0"}`},
				"etc/hostname":                    {cpio.S_IFREG | 0o644, "vm\n"},
				"bin/su":                          {cpio.S_IFREG | 0o4755, "setuid"},
				"bin/sh":                          {cpio.S_IFLNK | 0o777, "busybox"},
				"tmp":                             {cpio.S_IFDIR | 0o1777, ""},
				"empty":                           {cpio.S_IFREG | 0o644, ""},
				"lib":                             {cpio.S_IFDIR | 0o755, ""},
				mods + "kernel/fs/erofs/erofs.ko": {cpio.S_IFREG | 0o644, ""},
				mods + "modules.dep": {cpio.S_IFREG | 0o644, "kernel/lib/libcrc32c.ko:\n" +
					"kernel/fs/erofs/erofs.ko: kernel/lib/libcrc32c.ko\n" +
					"kernel/fs/overlayfs/overlay.ko:\n" +
					"kernel/drivers/virtio/virtio_ring.ko:\n" +
					"kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko\n" +
					"kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n"},
				mods + "modules.builtin": {cpio.S_IFREG | 0o644, "kernel/fs/ext4/ext4.ko\n"},
			}
			got := byName(es)
			for name, w := range want {
				e, ok := got[name]
				if !ok {
					t.Errorf("%s missing", name)
					continue
				}
				if e.Mode != w.mode {
					t.Errorf("%s: mode %o, want %o", name, e.Mode, w.mode)
				}
				if w.data != "" && e.Data != w.data {
					t.Errorf("%s: content %q, want %q", name, e.Data, w.data)
				}
			}
			modFile, err := os.ReadFile(filepath.Join(k.ModulesDir, "kernel/fs/erofs/erofs.ko"))
			if err != nil {
				t.Fatal(err)
			}
			if got[mods+"kernel/fs/erofs/erofs.ko"].Data != string(modFile) {
				t.Error("erofs.ko content differs from the kernel's")
			}
			if _, ok := got[mods+"kernel/fs/unused.ko"]; ok {
				t.Error("a module outside the closure was included")
			}
			assertWellFormed(t, es)
		})
	}
}

// assertWellFormed checks the archive invariants: sorted, unique, parents (directories) before
// children, owned by root, mtime 0.
func assertWellFormed(t *testing.T, es []entry) {
	t.Helper()
	seen := map[string]entry{}
	var names []string
	for _, e := range es {
		names = append(names, e.Name)
		if _, dup := seen[e.Name]; dup {
			t.Errorf("%s appears twice", e.Name)
		}
		if e.UID != 0 || e.GID != 0 || e.MTime != 0 {
			t.Errorf("%s: uid %d gid %d mtime %d, want 0 0 0", e.Name, e.UID, e.GID, e.MTime)
		}
		if strings.HasPrefix(e.Name, "/") || strings.HasPrefix(e.Name, ".") {
			t.Errorf("%s: names are relative to / without a leading / or ./", e.Name)
		}
		if i := strings.LastIndexByte(e.Name, '/'); i >= 0 {
			p, ok := seen[e.Name[:i]]
			if !ok || p.Mode&cpio.S_IFMT != cpio.S_IFDIR {
				t.Errorf("%s comes before its parent directory %s", e.Name, e.Name[:i])
			}
		}
		seen[e.Name] = e
	}
	if !slices.IsSorted(names) {
		t.Errorf("entries not sorted: %q", names)
	}
}

func TestWriteDeterministic(t *testing.T) {
	k := fakeKernel(t)
	for _, comp := range []string{Zstd, Gzip} {
		t.Run(comp, func(t *testing.T) {
			opts := testOptions(t, k)
			opts.Compression = comp
			first := write(t, opts)
			// Same inputs in another order, from another host path, at another time.
			slices.Reverse(opts.Extra)
			opts.Modules = []string{"ext4", "overlay", "erofs", "virtio_blk"}
			data, err := os.ReadFile(opts.Runc.Source)
			if err != nil {
				t.Fatal(err)
			}
			opts.Runc = Blob{Data: data}
			if second := write(t, opts); !bytes.Equal(first, second) {
				t.Errorf("two writes of the same inputs differ (%d vs %d bytes)", len(first), len(second))
			}
		})
	}
}

func TestWriteSourceDateEpoch(t *testing.T) {
	k := fakeKernel(t)
	t.Setenv(EnvSourceDateEpoch, "1700000000")
	for _, e := range readInitrd(t, write(t, testOptions(t, k)), Zstd) {
		if e.MTime != 1700000000 {
			t.Fatalf("%s: mtime %d, want SOURCE_DATE_EPOCH", e.Name, e.MTime)
		}
	}
	t.Setenv(EnvSourceDateEpoch, "yesterday")
	if err := Write(context.Background(), io.Discard, testOptions(t, k)); err == nil || !strings.Contains(err.Error(), EnvSourceDateEpoch) {
		t.Errorf("bad SOURCE_DATE_EPOCH: error %v", err)
	}
}

// TestZstdFrame checks what the kernel's initramfs decompressor needs: a frame that is not
// single-segment and whose window is at most 8 MiB.
func TestZstdFrame(t *testing.T) {
	b := write(t, testOptions(t, fakeKernel(t)))
	if len(b) < 6 || binary.LittleEndian.Uint32(b) != 0xFD2FB528 {
		t.Fatalf("not a zstd frame: % x", b[:min(6, len(b))])
	}
	fhd := b[4]
	if fhd&(1<<5) != 0 {
		t.Fatal("single-segment frame: its window is the whole content")
	}
	wd := b[5]
	window := uint64(1) << (10 + wd>>3)
	window += window / 8 * uint64(wd&7)
	if window > 8<<20 {
		t.Errorf("zstd window %d bytes, want <= 8 MiB", window)
	}
}

func TestWriteErrors(t *testing.T) {
	k := fakeKernel(t)
	tests := []struct {
		name string
		mod  func(*Options)
		want string
	}{
		{"no kernel", func(o *Options) { o.Kernel = nil }, "no kernel"},
		{"no init", func(o *Options) { o.Init = Blob{} }, "no init"},
		{"no runc", func(o *Options) { o.Runc = Blob{} }, "no runc"},
		{"init twice", func(o *Options) { o.Init.Source = "/bin/true" }, "both Data and Source"},
		{"missing runc", func(o *Options) { o.Runc.Source = "/nonexistent/runc" }, "/nonexistent/runc"},
		{"runc is a dir", func(o *Options) { o.Runc.Source = t.TempDir() }, "not a regular file"},
		{"unknown module", func(o *Options) { o.Modules = append(o.Modules, "nosuchmod") }, `"nosuchmod"`},
		{"compression", func(o *Options) { o.Compression = "lz4" }, `"lz4"`},
		{"duplicate", func(o *Options) { o.Extra = append(o.Extra, File{Path: "/init", Data: []byte("x")}) }, "/init: given twice"},
		{"relative", func(o *Options) { o.Extra = append(o.Extra, File{Path: "etc/x"}) }, `"etc/x"`},
		{"unclean", func(o *Options) { o.Extra = append(o.Extra, File{Path: "/etc/../../x"}) }, `"/etc/../../x"`},
		{"root", func(o *Options) { o.Extra = append(o.Extra, File{Path: "/", Mode: ModeDir | 0o755}) }, `"/"`},
		{"parent is a file", func(o *Options) { o.Extra = append(o.Extra, File{Path: "/init/x"}) }, "parent /init is not a directory"},
		{"dir with data", func(o *Options) { o.Extra = append(o.Extra, File{Path: "/d", Mode: ModeDir, Data: []byte("x")}) }, "no content"},
		{"empty symlink", func(o *Options) { o.Extra = append(o.Extra, File{Path: "/l", Mode: ModeSymlink | 0o777}) }, "target"},
		{"block device", func(o *Options) { o.Extra = append(o.Extra, File{Path: "/dev/vda", Mode: 0o060660}) }, "unsupported file type"},
		{"device with content", func(o *Options) {
			o.Extra = append(o.Extra, File{Path: "/dev/zero", Mode: ModeCharDev | 0o666, Data: []byte("x")})
		}, "a device has no content"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := testOptions(t, k)
			tt.mod(&opts)
			err := Write(context.Background(), io.Discard, opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestWriteCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Write(ctx, io.Discard, testOptions(t, fakeKernel(t))); !errors.Is(err, context.Canceled) {
		t.Errorf("error %v, want context.Canceled", err)
	}
}

func TestWriteFiles(t *testing.T) {
	var b bytes.Buffer
	files := []File{{Path: "/c2vm/override.json", Mode: 0o600, Data: []byte("{}")}}
	if err := WriteFiles(context.Background(), &b, files, Gzip); err != nil {
		t.Fatal(err)
	}
	es := readInitrd(t, b.Bytes(), Gzip)
	want := []entry{
		{Name: "c2vm", Mode: cpio.S_IFDIR | 0o755},
		{Name: "c2vm/override.json", Mode: cpio.S_IFREG | 0o600, Data: "{}"},
	}
	if !slices.Equal(es, want) {
		t.Errorf("entries %+v, want %+v", es, want)
	}
}
