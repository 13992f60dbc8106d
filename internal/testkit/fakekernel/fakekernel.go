// Package fakekernel builds synthetic kernel inputs for tests: ELF kernel modules with a .modinfo
// section, bzImage-like kernel images, module trees and Debian packages (ar + data.tar.*), so
// initgen's tests run without a real kernel package.
//
// See docs/testing.md.
package fakekernel

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/c2vm/c2vm/internal/testkit/imagetest"
)

// Module returns a minimal ELF64 relocatable object whose .modinfo section holds fields
// ("name=foo", "depends=bar,baz"), each NUL-terminated, as the kernel's build writes them.
func Module(fields ...string) []byte {
	var modinfo []byte
	for _, f := range fields {
		modinfo = append(modinfo, f...)
		modinfo = append(modinfo, 0)
	}
	shstr := []byte("\x00.modinfo\x00.shstrtab\x00")
	const ehsize, shentsize = 64, 64
	modOff := uint64(ehsize)
	strOff := modOff + uint64(len(modinfo))
	shOff := (strOff + uint64(len(shstr)) + 7) &^ 7

	var b bytes.Buffer
	le := binary.LittleEndian
	ident := [16]byte{0x7f, 'E', 'L', 'F', 2 /* 64-bit */, 1 /* LE */, 1 /* version */}
	b.Write(ident[:])
	binary.Write(&b, le, uint16(1))  // ET_REL
	binary.Write(&b, le, uint16(62)) // EM_X86_64
	binary.Write(&b, le, uint32(1))  // EV_CURRENT
	binary.Write(&b, le, uint64(0))  // entry
	binary.Write(&b, le, uint64(0))  // phoff
	binary.Write(&b, le, shOff)
	binary.Write(&b, le, uint32(0)) // flags
	binary.Write(&b, le, uint16(ehsize))
	binary.Write(&b, le, uint16(0)) // phentsize
	binary.Write(&b, le, uint16(0)) // phnum
	binary.Write(&b, le, uint16(shentsize))
	binary.Write(&b, le, uint16(3)) // shnum
	binary.Write(&b, le, uint16(2)) // shstrndx
	b.Write(modinfo)
	b.Write(shstr)
	b.Write(make([]byte, shOff-uint64(b.Len())))
	section := func(name, typ uint32, off, size, align uint64) {
		binary.Write(&b, le, name)
		binary.Write(&b, le, typ)
		binary.Write(&b, le, uint64(0)) // flags
		binary.Write(&b, le, uint64(0)) // addr
		binary.Write(&b, le, off)
		binary.Write(&b, le, size)
		binary.Write(&b, le, uint32(0)) // link
		binary.Write(&b, le, uint32(0)) // info
		binary.Write(&b, le, align)
		binary.Write(&b, le, uint64(0)) // entsize
	}
	section(0, 0, 0, 0, 0)
	section(1, 1 /* PROGBITS */, modOff, uint64(len(modinfo)), 1)
	section(10, 3 /* STRTAB */, strOff, uint64(len(shstr)), 1)
	return b.Bytes()
}

// Image returns a fake x86 bzImage: a setup header with the "HdrS" magic and a kernel_version
// pointer to "<version> (fake@c2vm) #1".
func Image(version string) []byte {
	img := make([]byte, 0x400)
	copy(img[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(img[0x20e:], 0x100) // string at 0x300
	copy(img[0x300:], version+" (fake@c2vm) #1 SMP\x00")
	return img
}

// ImageArm64 returns a fake arm64 Image: the 64-byte header with the "ARM\x64" magic at 0x38.
func ImageArm64() []byte {
	img := make([]byte, 0x400)
	copy(img[0x38:], "ARM\x64")
	return img
}

// Mod describes one module of a fake tree.
type Mod struct {
	Path    string // relative to lib/modules/<version>, e.g. "kernel/net/core/failover.ko"
	Depends []string
}

// Files returns a fake kernel's files, keyed by slash path relative to the root: the image at
// boot/vmlinuz-<version>, the modules, and modules.builtin listing builtin.
func Files(version string, mods []Mod, builtin []string) map[string][]byte {
	files := map[string][]byte{"boot/vmlinuz-" + version: Image(version)}
	base := "lib/modules/" + version + "/"
	for _, m := range mods {
		name := strings.TrimSuffix(filepath.Base(m.Path), ".ko")
		files[base+m.Path] = Module("name="+name, "depends="+strings.Join(m.Depends, ","), "vermagic="+version+" SMP mod_unload")
	}
	var bl strings.Builder
	for _, b := range builtin {
		bl.WriteString(b + "\n")
	}
	files[base+"modules.builtin"] = []byte(bl.String())
	return files
}

// WriteTree writes files below root.
func WriteTree(t testing.TB, root string, files map[string][]byte) {
	t.Helper()
	imagetest.WriteFiles(t, root, files)
}

// Deb writes a Debian package to path: debian-binary, control.tar.gz with control, and
// data.tar.<compression> ("xz", "zst", "gz" or "" for an uncompressed data.tar) holding files
// under "./".
func Deb(t testing.TB, path, control string, files map[string][]byte, compression string) {
	t.Helper()
	ctl := compress(t, tarball(t, map[string][]byte{"control": []byte(control)}), "gz")
	data := compress(t, tarball(t, files), compression)
	dataName := "data.tar"
	if compression != "" {
		dataName += "." + compression
	}
	var b bytes.Buffer
	b.WriteString("!<arch>\n")
	for _, m := range []struct {
		name string
		data []byte
	}{{"debian-binary", []byte("2.0\n")}, {"control.tar.gz", ctl}, {dataName, data}} {
		fmt.Fprintf(&b, "%-16s%-12d%-6d%-6d%-8s%-10d`\n", m.name, 0, 0, 0, "100644", len(m.data))
		b.Write(m.data)
		if len(m.data)%2 == 1 {
			b.WriteByte('\n')
		}
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func tarball(t testing.TB, files map[string][]byte) []byte {
	t.Helper()
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	dirs := map[string]bool{}
	for _, n := range names {
		for d := filepath.Dir(n); d != "."; d = filepath.Dir(d) {
			if !dirs[d] {
				dirs[d] = true
				if err := tw.WriteHeader(&tar.Header{Name: "./" + d + "/", Typeflag: tar.TypeDir, Mode: 0o755}); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := tw.WriteHeader(&tar.Header{Name: "./" + n, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(files[n]))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(files[n]); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func compress(t testing.TB, data []byte, how string) []byte {
	t.Helper()
	var b bytes.Buffer
	var w io.WriteCloser
	var err error
	switch how {
	case "":
		return data
	case "xz":
		w, err = xz.NewWriter(&b)
	case "zst":
		w, err = zstd.NewWriter(&b)
	case "gz":
		w = gzip.NewWriter(&b)
	default:
		t.Fatalf("fakekernel: unknown compression %q", how)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
