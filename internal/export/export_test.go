package export

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/c2vm/c2vm/bundle"
)

func TestWriteRefuses(t *testing.T) {
	dir := t.TempDir()
	full := filepath.Join(dir, "full")
	os.MkdirAll(filepath.Join(full, "x"), 0o755)
	if _, err := Write(t.Context(), dir, filepath.Join(dir, "out"), Options{Runner: QEMU}); err == nil || !strings.Contains(err.Error(), "bundle") {
		t.Errorf("not a bundle: %v", err)
	}
	if err := usableTarget(full); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("non-empty target: %v", err)
	}
	if err := usableTarget(filepath.Join(dir, "new")); err != nil {
		t.Errorf("new target: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("left files behind: %v", ents)
	}
}

func TestBootArgs(t *testing.T) {
	e := &exporter{m: &bundle.Manifest{BootArgs: "console=ttyS0 quiet panic=-1"}}
	if got := e.bootArgs("hvc0", "a=b"); got != "console=hvc0 quiet panic=-1 a=b" {
		t.Errorf("bootArgs = %q", got)
	}
	if got := e.firecrackerBootArgs(); !strings.Contains(got, "reboot=k") || !strings.Contains(got, "c2vm.halt=reboot") || !strings.HasPrefix(got, "console=ttyS0 ") {
		t.Errorf("firecracker boot args %q", got)
	}
}

func TestShellQuote(t *testing.T) {
	for _, s := range []string{"plain", "it's", `a "b" $c \d`, ""} {
		out, err := exec.Command("sh", "-c", "printf %s "+shellQuote(s)).Output()
		if err != nil || string(out) != s {
			t.Errorf("shellQuote(%q) → %q, %v", s, out, err)
		}
	}
}

func TestBzPayloadErrors(t *testing.T) {
	if _, err := bzPayload(make([]byte, 100)); err == nil || !strings.Contains(err.Error(), "not an x86 bzImage") {
		t.Errorf("short: %v", err)
	}
	img := make([]byte, 4096)
	copy(img[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(img[0x206:], 0x20f)
	img[0x1f1] = 1
	binary.LittleEndian.PutUint32(img[0x248:], 100)
	binary.LittleEndian.PutUint32(img[0x24c:], 1<<20)
	if _, err := bzPayload(img); err == nil || !strings.Contains(err.Error(), "outside") {
		t.Errorf("payload beyond the file: %v", err)
	}
	binary.LittleEndian.PutUint32(img[0x24c:], 64)
	p, err := bzPayload(img)
	if err != nil || len(p) != 64 {
		t.Fatalf("payload %d bytes, %v", len(p), err)
	}
	if _, err := decompressKernel(append([]byte("BZh9"), bytes.Repeat([]byte{1}, 60)...)); err == nil || !strings.Contains(err.Error(), "unknown compression") {
		t.Errorf("bzip2: %v", err)
	}
}

func TestHasNote(t *testing.T) {
	note := func(name string, typ uint32, desc []byte) []byte {
		var b bytes.Buffer
		n := append([]byte(name), 0)
		binary.Write(&b, binary.LittleEndian, []uint32{uint32(len(n)), uint32(len(desc)), typ})
		b.Write(n)
		b.Write(make([]byte, int(align4(uint32(len(n))))-len(n)))
		b.Write(desc)
		b.Write(make([]byte, int(align4(uint32(len(desc))))-len(desc)))
		return b.Bytes()
	}
	data := append(note("GNU", 3, []byte("build-id")), note("Xen", xenElfnotePhys32Entry, []byte{1, 2, 3, 4})...)
	if !hasNote(data, binary.LittleEndian, "Xen", xenElfnotePhys32Entry) {
		t.Error("PVH note not found")
	}
	if hasNote(data[:len(data)-2], binary.LittleEndian, "Xen", xenElfnotePhys32Entry) || hasNote(note("Xen", 1, nil), binary.LittleEndian, "Xen", xenElfnotePhys32Entry) {
		t.Error("truncated or other note taken for PVH")
	}
}

// fakeBundle writes a bundle whose files are placeholders: enough for Write, which never boots it.
func fakeBundle(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "bundle")
	s, err := bundle.NewStage(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{bundle.KernelFile, bundle.InitrdFile, "rootfs.squashfs"} {
		if err := os.WriteFile(s.Path(n), []byte(n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m := &bundle.Manifest{RootfsFormat: "squashfs", MemoryMiB: 256, CPUs: 1}
	m.Platform.Architecture = "amd64"
	m.Boot.Container.Rootfs.Format = "squashfs"
	if err := s.Commit(m); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestWriteTarget: the export appears whole, mode 0755, in a missing or empty directory; a
// directory filled while the export was built is kept and the export fails. No stage is left.
func TestWriteTarget(t *testing.T) {
	src := fakeBundle(t)
	tests := []struct {
		name  string
		setup func(t *testing.T, out string)
		fill  bool // fill out while the export is built
		want  string
	}{
		{"missing", func(*testing.T, string) {}, false, ""},
		{"empty", func(t *testing.T, out string) { mkdir(t, out) }, false, ""},
		{"filled meanwhile", func(t *testing.T, out string) { mkdir(t, out) }, true, "not empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent := t.TempDir()
			out := filepath.Join(parent, "out")
			tt.setup(t, out)
			if tt.fill {
				writers["fill"] = func(e *exporter) (string, error) {
					return "x", os.WriteFile(filepath.Join(out, "theirs"), nil, 0o644)
				}
				defer delete(writers, "fill")
			}
			runner := QEMU
			if tt.fill {
				runner = "fill"
			}
			res, err := Write(t.Context(), src, out, Options{Runner: runner})
			if ents, _ := os.ReadDir(parent); len(ents) != 1 {
				t.Errorf("%s holds %v, want only out", parent, ents)
			}
			if tt.want != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("err = %v, want %q", err, tt.want)
				}
				if _, err := os.Stat(filepath.Join(out, "theirs")); err != nil {
					t.Errorf("the filled directory was not kept: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(out)
			if err != nil || fi.Mode().Perm() != 0o755 {
				t.Fatalf("out: %v, %v; want a 0755 directory", fi, err)
			}
			if _, err := os.Stat(filepath.Join(out, res.Entry)); err != nil {
				t.Error(err)
			}
		})
	}
}

func mkdir(t *testing.T, dir string) {
	t.Helper()
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}
