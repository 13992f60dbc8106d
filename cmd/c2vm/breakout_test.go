package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/c2vm/c2vm/bundle"
	"github.com/c2vm/c2vm/initgen/assets"
	it "github.com/c2vm/c2vm/internal/testkit/imagetest"
	"github.com/c2vm/c2vm/kernel"
)

// This file runs hostile and broken images through the real `c2vm convert` binary (issue 6): as an
// unprivileged user (nobody, via setpriv) when the tests run as root, with a canary directory beside
// the output that a breakout could reach, and with TMPDIR pointing into the case directory so that
// leftover spool or stage files are seen.

// nobody is the uid and gid conversions run as when the tests run as root.
const nobody = 65534

// cliEnv is a built c2vm and the readable environment it runs in.
type cliEnv struct {
	root   string // world-readable workspace
	bin    string // the built c2vm
	kernel string // a directory kernel (boot/, lib/modules/) readable by nobody
	libdir string // guest assets
	home   string // HOME and XDG_CACHE_HOME of the converting user
}

var (
	cliOnce sync.Once
	cliRes  cliEnv
	cliErr  error
)

// requireConvert gates tests that run the real convert: like requireVM, but QEMU is not needed.
func requireConvert(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("convert test: skipped with -short (testing.Short; make test and CI run it)")
	}
	var missing []string
	if _, err := kernel.Default(t.Context(), kernel.Options{}); err != nil {
		missing = append(missing, "kernel: "+err.Error())
	}
	if a, err := assets.Find(""); err != nil || a.Where == "embedded" {
		missing = append(missing, fmt.Sprintf("guest assets in a directory (C2VM_LIBDIR): %v", err))
	}
	for _, tool := range []string{"unsquashfs", "setpriv", "mksquashfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool+" (Debian packages squashfs-tools, util-linux)")
		}
	}
	require(t, "convert", missing)
}

// cliWorkspace builds c2vm once and prepares a kernel and home the converting user can read.
func cliWorkspace(t *testing.T) cliEnv {
	t.Helper()
	requireConvert(t)
	cliOnce.Do(func() { cliRes, cliErr = newCLIEnv(t.Context()) })
	if cliErr != nil {
		t.Fatal(cliErr)
	}
	return cliRes
}

func newCLIEnv(ctx context.Context) (cliEnv, error) {
	root, err := os.MkdirTemp("", "c2vm-clitest-")
	if err != nil {
		return cliEnv{}, err
	}
	cleanups = append(cleanups, func() { os.RemoveAll(root) })
	if err := os.Chmod(root, 0o755); err != nil {
		return cliEnv{}, err
	}
	e := cliEnv{root: root, bin: filepath.Join(root, "c2vm"), kernel: filepath.Join(root, "kernel"), home: filepath.Join(root, "home")}
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", e.bin, ".").CombinedOutput(); err != nil {
		return cliEnv{}, fmt.Errorf("go build c2vm: %v\n%s", err, out)
	}
	a, err := assets.Find("")
	if err != nil {
		return cliEnv{}, err
	}
	e.libdir = a.Where
	k, err := kernel.Default(ctx, kernel.Options{})
	if err != nil {
		return cliEnv{}, err
	}
	if err := mirror(k.Vmlinuz, filepath.Join(e.kernel, "boot", "vmlinuz-"+k.Version)); err != nil {
		return cliEnv{}, err
	}
	if err := mirror(k.ModulesDir, filepath.Join(e.kernel, "lib", "modules", k.Version)); err != nil {
		return cliEnv{}, err
	}
	if err := mkdirOwned(e.home); err != nil {
		return cliEnv{}, err
	}
	return e, nil
}

// cleanups run at the end of TestMain (see cleanupWorkspaces).
var cleanups []func()

func cleanupWorkspaces() {
	for _, f := range cleanups {
		f()
	}
}

// mirror recreates src at dst with world-readable directories, hard-linking files when it can.
func mirror(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(to, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(target, to)
		}
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			return err
		}
		if os.Link(p, to) == nil {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(to, b, 0o644)
	})
}

// mkdirOwned creates dir owned by the converting user (nobody when running as root).
func mkdirOwned(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		return os.Chown(dir, nobody, nobody)
	}
	return nil
}

// command returns the c2vm binary with args, run as nobody when the tests run as root, in an
// environment with only readable copies (HOME, XDG_CACHE_HOME, TMPDIR, C2VM_LIBDIR).
func (e cliEnv) command(ctx context.Context, tmpdir string, args ...string) *exec.Cmd {
	name, argv := e.bin, args
	if os.Geteuid() == 0 {
		name, argv = "setpriv", append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", e.bin}, args...)
	}
	cmd := exec.CommandContext(ctx, name, argv...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + e.home, "XDG_CACHE_HOME=" + filepath.Join(e.home, ".cache"),
		"TMPDIR=" + tmpdir, "C2VM_LIBDIR=" + e.libdir, "LANG=C"}
	return cmd
}

// convertCLI runs `c2vm convert --quiet --kernel K ARGS...` and returns its exit status and stderr.
func (e cliEnv) convertCLI(t *testing.T, tmpdir string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := e.command(ctx, tmpdir, append([]string{"convert", "--quiet", "--kernel", e.kernel}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if err != nil && cmd.ProcessState == nil {
		t.Fatalf("run c2vm: %v", err)
	}
	return cmd.ProcessState.ExitCode(), stderr.String()
}

// listing returns every entry under dir (skipping skip) with type, mode, owner and content digest:
// what the canary comparison needs to see any change.
func listing(t *testing.T, dir string, skip ...string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if slices.Contains(skip, rel) {
			return fs.SkipDir
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		line := fmt.Sprintf("%s %v %d:%d", rel, fi.Mode(), st.Uid, st.Gid)
		switch {
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			line += " " + hex.EncodeToString(sum[:8])
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			line += " -> " + target
		}
		out = append(out, line)
		return nil
	})
	if err != nil {
		t.Fatalf("list %s: %v", dir, err)
	}
	return out
}

var lsLine = regexp.MustCompile(`^(\S+) (\d+/\d+)\s+(.*?)\s+\d{4}-\d\d-\d\d \d\d:\d\d (.*)$`)

// rootfsListing returns `unsquashfs -lln` of a squashfs image as "MODE UID/GID PATH", with the size
// for regular files and major,minor for devices, and "-> TARGET" for symlinks.
func rootfsListing(t *testing.T, img string) []string {
	t.Helper()
	out, err := exec.Command("unsquashfs", "-lln", "-d", "", img).Output()
	if err != nil {
		t.Fatalf("unsquashfs -lln %s: %v", img, err)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		m := lsLine.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("unsquashfs: unexpected line %q", l)
		}
		mode, owner, size, name := m[1], m[2], strings.ReplaceAll(m[3], " ", ""), m[4]
		if name == "" {
			name = "/"
		}
		switch mode[0] {
		case '-', 'c', 'b':
			lines = append(lines, mode+" "+owner+" "+size+" "+name)
		default:
			lines = append(lines, mode+" "+owner+" "+name)
		}
	}
	return lines
}

// catRootfs returns a file's content from a squashfs image.
func catRootfs(t *testing.T, img, name string) string {
	t.Helper()
	out, err := exec.Command("unsquashfs", "-cat", img, name).Output()
	if err != nil {
		t.Fatalf("unsquashfs -cat %s %s: %v", img, name, err)
	}
	return string(out)
}

// hostile describes an image for the suite. canary is the absolute path of the canary directory
// (so that cases can aim symlinks and hardlinks at it); the function writes the image under dir and
// returns the image reference to convert.
type hostile func(t *testing.T, dir, canary string) string

// layered is an OCI layout of uncompressed tar layers with a command, so that only the layers matter.
func layered(layers ...func(canary string) []it.TarEntry) hostile {
	return func(t *testing.T, dir, canary string) string {
		img := it.Image{Name: "x", Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
			Config: ocispec.Image{Config: ocispec.ImageConfig{Cmd: []string{"/bin/sh"}}}}
		for _, l := range layers {
			img.Layers = append(img.Layers, it.Layer{Data: it.TarLayer(t, l(canary)...)})
		}
		it.WriteOCILayout(t, dir, img)
		return "oci:" + dir + ":x"
	}
}

// fixed is a layer that does not depend on the canary path.
func fixed(entries ...it.TarEntry) func(string) []it.TarEntry {
	return func(string) []it.TarEntry { return entries }
}

// rawImage is an OCI layout with the given stored layers (already compressed as their media type
// says) and config, changed by edit before it is written; edit may be nil.
func rawImage(cfg ocispec.ImageConfig, layers func(t testing.TB) []it.Layer, edit func(t *testing.T, l *it.Layout, dir string)) hostile {
	return func(t *testing.T, dir, _ string) string {
		img := it.Image{Name: "x", Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
			Config: ocispec.Image{Config: cfg}, Layers: layers(t)}
		l := it.BuildOCI(t, img)
		l.WriteDir(t, dir)
		if edit != nil {
			edit(t, l, dir)
		}
		return "oci:" + dir + ":x"
	}
}

var shCmd = ocispec.ImageConfig{Cmd: []string{"/bin/sh"}}

func tarOf(t testing.TB, entries ...it.TarEntry) []byte { return it.TarLayer(t, entries...) }

// blobPath is where a layout stores d.
func blobPath(dir string, d digest.Digest) string {
	return filepath.Join(dir, "blobs", d.Algorithm().String(), d.Encoded())
}

// layerDigest is the digest of the i-th layer of the only manifest of l.
func layerDigest(t *testing.T, l *it.Layout, i int) digest.Digest {
	t.Helper()
	for _, b := range l.Blobs {
		var m ocispec.Manifest
		if json.Unmarshal(b, &m) == nil && m.MediaType == ocispec.MediaTypeImageManifest && len(m.Layers) > i {
			return m.Layers[i].Digest
		}
	}
	t.Fatal("no manifest in layout")
	return ""
}

// bomb is a gzip layer holding one file of n zero bytes (a few hundred KiB compressed).
func bomb(t testing.TB, n int64) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "zeros", Mode: 0o644, Size: n, ModTime: it.Epoch}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(tw, zeroReader{}, n); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func modeOf(e it.TarEntry, mode int64, uid int) it.TarEntry {
	e.Hdr.Mode, e.Hdr.Uid, e.Hdr.Gid = mode, uid, uid
	return e
}

const root = "drwxr-xr-x 0/0 /"

// breakoutCases: each ends with the documented rootfs (want: the squashfs listing, cat: contents) or
// with exit 125 and one line holding every wantErr substring. Either way nothing beside the output
// changes and no stage, spool or temp file is left.
var breakoutCases = []struct {
	name     string
	image    hostile
	args     []string
	want     []string
	cat      map[string]string
	wantErr  []string
	wantWarn []string
}{
	// Names.
	{name: "dotdot escaping root",
		image:   layered(fixed(it.TarFile("ok", "1")), fixed(it.TarFile("../x", "1"))),
		wantErr: []string{"layer sha256:", "../x", "escapes the image root"}},
	{name: "absolute path into the canary is relative to the image root",
		image: layered(func(c string) []it.TarEntry { return []it.TarEntry{it.TarFile(c+"/pwned", "1")} }),
		want:  nil, // checked by cat below; the directories depend on the canary path
		cat:   map[string]string{"CANARY/pwned": "1"}},
	{name: "dot slash prefixes and empty root name",
		image: layered(fixed(it.TarDir(""), it.TarDir("./a/"), it.TarFile("./a/./b", "12"), it.TarFile(".//c", "3"))),
		want:  []string{root, "drwxr-xr-x 0/0 /a", "-rw-r--r-- 0/0 2 /a/b", "-rw-r--r-- 0/0 1 /c"}},
	{name: "non-UTF-8 names",
		image: layered(fixed(it.TarFile("caf\xe9", "1"), it.TarSymlink("l\xff", "caf\xe9"))),
		want:  []string{root, "-rw-r--r-- 0/0 1 /caf\xe9", "lrwxrwxrwx 0/0 /l\xff -> caf\xe9"}},
	{name: "PAX long names and long link names",
		image: layered(fixed(it.TarFile(strings.Repeat("d123456789/", 20)+"f", "1"), it.TarSymlink("s", "/"+strings.Repeat("t", 300)))),
		cat:   map[string]string{strings.Repeat("d123456789/", 20) + "f": "1"}},
	// Symlinks.
	{name: "write through a symlink to the canary in the same layer",
		image: layered(func(c string) []it.TarEntry {
			return []it.TarEntry{it.TarSymlink("evil", c), it.TarFile("evil/pwned", "1")}
		}),
		cat: map[string]string{"CANARY/pwned": "1"}},
	{name: "write through a climbing symlink in a later layer",
		image: layered(fixed(it.TarSymlink("a/evil", "../../../../../../../.."), it.TarDir("tmp/")), fixed(it.TarFile("a/evil/tmp/x", "1"))),
		want: []string{root, "drwxr-xr-x 0/0 /a", "lrwxrwxrwx 0/0 /a/evil -> ../../../../../../../..",
			"drwxr-xr-x 0/0 /tmp", "-rw-r--r-- 0/0 1 /tmp/x"}},
	{name: "write through a relative symlink to the canary",
		image: layered(fixed(it.TarSymlink("evil", "../../canary")), fixed(it.TarFile("evil/pwned", "1"))),
		want:  []string{root, "drwxr-xr-x 0/0 /canary", "-rw-r--r-- 0/0 1 /canary/pwned", "lrwxrwxrwx 0/0 /evil -> ../../canary"}},
	{name: "symlink chain",
		image: layered(fixed(it.TarDir("d/"), it.TarSymlink("a", "b"), it.TarSymlink("b", "./c/"), it.TarSymlink("c", "/d")), fixed(it.TarFile("a/f", "1"))),
		want: []string{root, "lrwxrwxrwx 0/0 /a -> b", "lrwxrwxrwx 0/0 /b -> ./c/", "lrwxrwxrwx 0/0 /c -> /d",
			"drwxr-xr-x 0/0 /d", "-rw-r--r-- 0/0 1 /d/f"}},
	{name: "symlink loop",
		image:   layered(fixed(it.TarSymlink("a", "b"), it.TarSymlink("b", "a/x")), fixed(it.TarFile("a/f", "1"))),
		wantErr: []string{"layer sha256:", "a/f", "too many levels of symbolic links"}},
	// Hardlinks.
	{name: "hardlink to a dotdot path",
		image:   layered(fixed(it.TarFile("x", "1"), it.TarHardlink("h", "../x"))),
		wantErr: []string{"layer sha256:", "h", "hardlink target ../x", "escapes"}},
	{name: "hardlink to an absolute host path",
		image:   layered(func(c string) []it.TarEntry { return []it.TarEntry{it.TarHardlink("h", c+"/secret")} }),
		wantErr: []string{"layer sha256:", "h", "hardlink target", "/secret"}},
	{name: "hardlink to a symlink pointing outside links the symlink",
		image: layered(fixed(it.TarSymlink("s", "../../canary/secret"), it.TarHardlink("h", "s"))),
		want:  []string{root, "lrwxrwxrwx 0/0 /h -> ../../canary/secret", "lrwxrwxrwx 0/0 /s -> ../../canary/secret"}},
	{name: "hardlink to a whited-out file",
		image:   layered(fixed(it.TarFile("f", "1")), fixed(it.TarWhiteout("f"), it.TarHardlink("h", "f"))),
		wantErr: []string{"layer sha256:", "h", "hardlink target f", "no such file"}},
	{name: "hardlink keeps content when its target is replaced later",
		image: layered(fixed(it.TarFile("f", "old"), it.TarHardlink("h", "f")), fixed(it.TarFile("f", "new!"))),
		want:  []string{root, "-rw-r--r-- 0/0 4 /f", "-rw-r--r-- 0/0 3 /h"},
		cat:   map[string]string{"f": "new!", "h": "old"}},
	{name: "hardlink preceding its target",
		image:   layered(fixed(it.TarHardlink("h", "f"), it.TarFile("f", "1"))),
		wantErr: []string{"layer sha256:", "h", "must follow its target"}},
	// Whiteouts.
	{name: "whiteout traversing with dotdot",
		image:   layered(fixed(it.TarFile("x", "1")), fixed(it.TarFile(".wh.../x", ""))),
		wantErr: []string{"layer sha256:", ".wh.../x", "whiteout"}},
	{name: "whiteout of a non-existent path",
		image: layered(fixed(it.TarFile("x", "1")), fixed(it.TarWhiteout("nope"), it.TarWhiteout("no/such/dir"))),
		want:  []string{root, "-rw-r--r-- 0/0 1 /x"}},
	{name: "opaque whiteout at the root",
		image: layered(fixed(it.TarFile("a", "1"), it.TarFile("b/c", "2")), fixed(it.TarFile("n", "3"), it.TarOpaque(""))),
		want:  []string{root, "-rw-r--r-- 0/0 1 /n"}},
	{name: "opaque whiteout in a replaced directory",
		image: layered(fixed(it.TarFile("d/old", "1")), fixed(modeOf(it.TarDir("d/"), 0o700, 0), it.TarOpaque("d/"), it.TarFile("d/new", "22"))),
		want:  []string{root, "drwx------ 0/0 /d", "-rw-r--r-- 0/0 2 /d/new"}},
	{name: "whiteout and re-creation in the same layer",
		image: layered(fixed(it.TarFile("f", "old"), it.TarFile("d/old", "1")),
			fixed(it.TarWhiteout("f"), it.TarFile("f", "new!"), it.TarWhiteout("d"), it.TarFile("d/new", "22"))),
		want: []string{root, "drwxr-xr-x 0/0 /d", "-rw-r--r-- 0/0 2 /d/new", "-rw-r--r-- 0/0 4 /f"}},
	// Replacement, duplicates, special files.
	{name: "file replacing a directory with children, and the reverse",
		image: layered(fixed(it.TarFile("d/x", "1"), it.TarFile("d/e/y", "2"), it.TarFile("g", "ff")),
			fixed(it.TarFile("d", "fff"), it.TarDir("g/"), it.TarFile("g/y", "4444"))),
		want: []string{root, "-rw-r--r-- 0/0 3 /d", "drwxr-xr-x 0/0 /g", "-rw-r--r-- 0/0 4 /g/y"}},
	{name: "duplicate entries in one layer, last wins",
		image: layered(fixed(it.TarFile("f", "a"), it.TarFile("f", "bb"), it.TarFile("g", "1"), it.TarFile("g", "222"))),
		want:  []string{root, "-rw-r--r-- 0/0 2 /f", "-rw-r--r-- 0/0 3 /g"},
		cat:   map[string]string{"f": "bb", "g": "222"}},
	{name: "devices and fifos kept, sockets skipped with a warning",
		image: layered(fixed(
			it.TarEntry{Hdr: tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3}},
			it.TarEntry{Hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "run/fifo", Mode: 0o600}},
			it.TarEntry{Hdr: tar.Header{Typeflag: tar.TypeReg, Name: "run/sock", Mode: 0o140755}},
		)),
		want: []string{root, "drwxr-xr-x 0/0 /dev", "crw-rw-rw- 0/0 1,3 /dev/null", "drwxr-xr-x 0/0 /run",
			"prw------- 0/0 /run/fifo"},
		wantWarn: []string{"run/sock: skipping socket"}},
	{name: "setuid setgid sticky and owners",
		image: layered(fixed(modeOf(it.TarFile("su", "x"), 0o4755, 0), modeOf(it.TarFile("wall", "y"), 0o2755, 5),
			modeOf(it.TarDir("tmp"), 0o1777, 0), modeOf(it.TarFile("home", "z"), 0o600, 1000))),
		want: []string{root, "-rw------- 1000/1000 1 /home", "-rwsr-xr-x 0/0 1 /su", "drwxrwxrwt 0/0 /tmp",
			"-rwxr-sr-x 5/5 1 /wall"}},
	{name: "security.capability and other xattrs",
		image: layered(fixed(it.TarEntry{Hdr: tar.Header{Typeflag: tar.TypeReg, Name: "ping", Mode: 0o755,
			PAXRecords: map[string]string{"SCHILY.xattr.security.capability": "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
				"SCHILY.xattr.user.note": "hi"}}, Body: "p"})),
		want: []string{root, "-rwxr-xr-x 0/0 1 /ping"}},
	{name: "sparse file",
		image: func(t *testing.T, dir, _ string) string {
			img := it.Image{Name: "x", Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"}, Config: ocispec.Image{Config: shCmd},
				Layers: []it.Layer{{Data: it.GNUSparseLayer(t, "sparse", 1<<20, it.SparseFragment{Offset: 4096, Data: "abc"})}}}
			it.WriteOCILayout(t, dir, img)
			return "oci:" + dir + ":x"
		},
		want: []string{root, "-rw-r--r-- 0/0 1048576 /sparse"}},
	// Streams and image structure.
	{name: "truncated gzip",
		image: rawImage(shCmd, func(t testing.TB) []it.Layer {
			return []it.Layer{{Data: truncate(it.Gzip(t, tarOf(t, it.TarFile("a", strings.Repeat("x", 5000)))), 40),
				MediaType: ocispec.MediaTypeImageLayerGzip, DiffID: digest.FromString("whatever")}}
		}, nil),
		wantErr: []string{"layer sha256:", "unexpected EOF"}},
	{name: "truncated zstd",
		image: rawImage(shCmd, func(t testing.TB) []it.Layer {
			return []it.Layer{{Data: truncate(it.Zstd(t, tarOf(t, it.TarFile("a", strings.Repeat("xy", 5000)))), 20),
				MediaType: ocispec.MediaTypeImageLayerZstd, DiffID: digest.FromString("whatever")}}
		}, nil),
		wantErr: []string{"layer sha256:"}},
	{name: "trailing garbage after the gzip stream",
		image: rawImage(shCmd, func(t testing.TB) []it.Layer {
			return []it.Layer{{Data: append(it.Gzip(t, tarOf(t, it.TarFile("a", "1"))), "garbage!garbage!"...),
				MediaType: ocispec.MediaTypeImageLayerGzip, DiffID: digest.FromBytes(tarOf(t, it.TarFile("a", "1")))}}
		}, nil),
		wantErr: []string{"layer sha256:"}},
	{name: "layer digest mismatch",
		image: rawImage(shCmd, func(t testing.TB) []it.Layer { return []it.Layer{{Data: tarOf(t, it.TarFile("a", "1"))}} }, func(t *testing.T, l *it.Layout, dir string) {
			d := layerDigest(t, l, 0)
			b := tarOf(t, it.TarFile("a", "2"))
			if err := os.WriteFile(blobPath(dir, d), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}),
		wantErr: []string{"sha256:", "digest"}},
	{name: "layer diff_id mismatch",
		image: rawImage(shCmd, func(t testing.TB) []it.Layer {
			return []it.Layer{{Data: it.Gzip(t, tarOf(t, it.TarFile("a", "1"))), MediaType: ocispec.MediaTypeImageLayerGzip, DiffID: digest.FromString("other")}}
		}, nil),
		wantErr: []string{"layer sha256:", "diff_id"}},
	{name: "manifest naming a missing blob",
		image: rawImage(shCmd, func(t testing.TB) []it.Layer { return []it.Layer{{Data: tarOf(t, it.TarFile("a", "1"))}} }, func(t *testing.T, l *it.Layout, dir string) {
			if err := os.Remove(blobPath(dir, layerDigest(t, l, 0))); err != nil {
				t.Fatal(err)
			}
		}),
		wantErr: []string{"sha256:"}},
	{name: "malformed index JSON",
		image: rawImage(shCmd, func(t testing.TB) []it.Layer { return []it.Layer{{Data: tarOf(t, it.TarFile("a", "1"))}} }, func(t *testing.T, _ *it.Layout, dir string) {
			if err := os.WriteFile(filepath.Join(dir, "index.json"), []byte(`{"schemaVersion":2,"manifests":[{`), 0o644); err != nil {
				t.Fatal(err)
			}
		}),
		wantErr: []string{"index.json"}},
	{name: "malformed manifest JSON",
		image: func(t *testing.T, dir, _ string) string {
			l := it.NewLayout()
			d := l.AddBlob(ocispec.MediaTypeImageManifest, []byte(`{"schemaVersion":2,"layers":"nope"}`))
			d.Annotations = map[string]string{ocispec.AnnotationRefName: "x"}
			l.Index.Manifests = append(l.Index.Manifests, d)
			l.WriteDir(t, dir)
			return "oci:" + dir + ":x"
		},
		wantErr: []string{"manifest"}},
	{name: "malformed config JSON",
		image: func(t *testing.T, dir, _ string) string {
			l := it.NewLayout()
			m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: l.AddBlob(ocispec.MediaTypeImageConfig, []byte(`{"architecture":`)),
				Layers: []ocispec.Descriptor{}}
			m.SchemaVersion = 2
			d := l.AddJSON(t, ocispec.MediaTypeImageManifest, m)
			d.Annotations = map[string]string{ocispec.AnnotationRefName: "x"}
			l.Index.Manifests = append(l.Index.Manifests, d)
			l.WriteDir(t, dir)
			return "oci:" + dir + ":x"
		},
		wantErr: []string{"config"}},
	{name: "unknown layer media type",
		image: rawImage(shCmd, func(t testing.TB) []it.Layer {
			return []it.Layer{{Data: tarOf(t, it.TarFile("a", "1")), MediaType: "application/vnd.example.layer.v1+lz4"}}
		}, nil),
		wantErr: []string{"application/vnd.example.layer.v1+lz4"}},
	{name: "config with no command", // converts, as docker pulls it: the command comes at run time
		image:    rawImage(ocispec.ImageConfig{Env: []string{"A=1"}}, func(t testing.TB) []it.Layer { return []it.Layer{{Data: tarOf(t, it.TarFile("a", "1"))}} }, nil),
		wantWarn: []string{"no CMD or ENTRYPOINT"}},
	{name: "decompression bomb bounded by --max-size",
		image: rawImage(shCmd, func(t testing.TB) []it.Layer {
			return []it.Layer{{Data: bomb(t, 64<<20), MediaType: ocispec.MediaTypeImageLayerGzip}}
		}, nil),
		args:    []string{"--max-size", "1000000"},
		wantErr: []string{"layer sha256:", "zeros", "--max-size 1000000"}},
}

func truncate(b []byte, n int) []byte { return b[:min(n, len(b))] }

func TestCLIBreakout(t *testing.T) {
	e := cliWorkspace(t)
	for i, tt := range breakoutCases {
		t.Run(tt.name, func(t *testing.T) {
			caseDir := filepath.Join(e.root, fmt.Sprintf("case%02d", i))
			canary, tmp, imgDir := filepath.Join(caseDir, "canary"), filepath.Join(caseDir, "tmp"), filepath.Join(e.root, fmt.Sprintf("img%02d", i))
			for _, d := range []string{caseDir, canary, tmp} {
				if err := mkdirOwned(d); err != nil {
					t.Fatal(err)
				}
			}
			t.Cleanup(func() { os.RemoveAll(caseDir); os.RemoveAll(imgDir) })
			it.WriteFiles(t, canary, map[string][]byte{"secret": []byte("s3cret\n"), "sub/keep": []byte("keep\n")})
			if err := os.Symlink("secret", filepath.Join(canary, "link")); err != nil {
				t.Fatal(err)
			}
			ref := tt.image(t, imgDir, canary)
			before := listing(t, caseDir)
			out := filepath.Join(caseDir, "out.bundle")
			code, stderr := e.convertCLI(t, tmp, append(append([]string{}, tt.args...), "-o", out, ref)...)

			if after := listing(t, caseDir, "out.bundle"); !slices.Equal(before, after) {
				t.Errorf("outside the output changed:\nbefore %q\nafter  %q", before, after)
			}
			t.Logf("exit %d, stderr: %s", code, stderr)
			errLines, warnLines := splitStderr(stderr)
			checkWarnings(t, warnLines, tt.wantWarn)
			if tt.wantErr != nil {
				if code != ExitFailure || len(errLines) != 1 {
					t.Fatalf("exit %d, stderr %q: want exit %d and one error line", code, stderr, ExitFailure)
				}
				for _, s := range tt.wantErr {
					if !strings.Contains(errLines[0], s) {
						t.Errorf("error %q does not contain %q", errLines[0], s)
					}
				}
				if _, err := os.Lstat(out); !os.IsNotExist(err) {
					t.Errorf("failed convert left %s (%v)", out, err)
				}
				return
			}
			if code != 0 || len(errLines) != 0 {
				t.Fatalf("exit %d, stderr %q: want success", code, stderr)
			}
			m, err := bundle.Read(out)
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Verify(out); err != nil {
				t.Fatal(err)
			}
			img := filepath.Join(out, "rootfs.squashfs")
			if got := rootfsListing(t, img); tt.want != nil && !slices.Equal(got, tt.want) {
				t.Errorf("rootfs:\n got %q\nwant %q", got, tt.want)
			}
			for name, want := range tt.cat {
				name = strings.Replace(name, "CANARY", strings.TrimPrefix(canary, "/"), 1)
				if got := catRootfs(t, img, name); got != want {
					t.Errorf("rootfs %s = %q, want %q", name, got, want)
				}
			}
		})
	}
}

// splitStderr separates `c2vm: warning:` lines from the other (error) lines.
func splitStderr(s string) (errs, warns []string) {
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		switch {
		case l == "":
		case strings.HasPrefix(l, "c2vm: warning: "):
			warns = append(warns, l)
		default:
			errs = append(errs, l)
		}
	}
	return errs, warns
}

func checkWarnings(t *testing.T, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("warnings %q, want %d matching %q", got, len(want), want)
		return
	}
	for i, w := range want {
		if !strings.Contains(got[i], w) {
			t.Errorf("warning %q does not contain %q", got[i], w)
		}
	}
}
