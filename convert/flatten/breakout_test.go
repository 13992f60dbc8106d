package flatten

import (
	"archive/tar"
	"context"
	"slices"
	"strings"
	"testing"

	it "github.com/c2vm/c2vm/internal/testkit/imagetest"
)

// with returns e after f changed its header.
func with(e it.TarEntry, f func(h *tar.Header)) it.TarEntry {
	f(&e.Hdr)
	return e
}

func named(typ byte, name string, mode int64) it.TarEntry {
	return it.TarEntry{Hdr: tar.Header{Typeflag: typ, Name: name, Mode: mode}}
}

type L = []it.TarEntry

var long = strings.Repeat("d123456789/", 20) + "file" // 224 bytes: needs PAX or GNU long names

// breakoutCases is the issue-6 suite: each either yields the exact documented tree or a clear error
// naming the layer digest and the entry path.
var breakoutCases = []struct {
	name     string
	layers   []L
	raw      func(t testing.TB) [][]byte // instead of layers
	opts     Options
	want     []string // dump of the result, root first
	wantErr  []string // substrings of the error
	wantWarn []string // substrings of the warnings, in order
}{
	{name: "dotdot inside name is cleaned",
		layers: []L{{it.TarFile("a/../b", "1")}},
		want:   []string{"/ 0755 0:0", "b 0644 0:0 =1"}},
	{name: "relative dotdot escaping root",
		layers:  []L{{it.TarFile("ok", "1")}, {it.TarFile("../x", "1")}},
		wantErr: []string{"sha256:layer1", "../x", "escapes the image root"}},
	{name: "dotdot escaping from a subdirectory",
		layers:  []L{{it.TarFile("a/../../x", "1")}},
		wantErr: []string{"sha256:layer0", "a/../../x", "escapes"}},
	{name: "absolute path is relative to root",
		layers: []L{{it.TarFile("/etc/x", "1")}},
		want:   []string{"/ 0755 0:0", "etc/ 0755 0:0", "etc/x 0644 0:0 =1"}},
	{name: "absolute path with dotdot stays at root",
		layers: []L{{it.TarFile("/../../x", "1")}},
		want:   []string{"/ 0755 0:0", "x 0644 0:0 =1"}},
	{name: "dot slash prefixes",
		layers: []L{{it.TarDir("./"), it.TarDir("./a/"), it.TarFile("./a/./b", "1"), it.TarFile(".//c", "2")}},
		want:   []string{"/ 0755 0:0", "a/ 0755 0:0", "a/b 0644 0:0 =1", "c 0644 0:0 =2"}},
	{name: "empty and slash names set root attributes",
		layers: []L{
			{with(it.TarDir(""), func(h *tar.Header) { h.Mode = 0o700 })},
			{with(it.TarDir("/"), func(h *tar.Header) { h.Mode = 0o1777; h.Uid = 5; h.Gid = 6 })},
		},
		want: []string{"/ 1777 5:6"}},
	{name: "file named root",
		layers:  []L{{it.TarFile(".", "x")}},
		wantErr: []string{"sha256:layer0", ".", "names the image root"}},
	{name: "non-UTF-8 names",
		layers: []L{{it.TarFile("caf\xe9", "1"), it.TarSymlink("l\xff", "caf\xe9")}},
		want:   []string{"/ 0755 0:0", "caf\xe9 0644 0:0 =1", "l\xff -> caf\xe9"}},
	{name: "PAX long names and long link names",
		layers: []L{{it.TarFile(long, "1"), it.TarSymlink("s", "/"+long), it.TarHardlink("h", long)}},
		want: append(longDirs(), long+" 0644 0:0 =1",
			"h => "+long, "s -> /"+long)},
	{name: "GNU long names",
		layers: []L{{with(it.TarFile(long, "1"), func(h *tar.Header) { h.Format = tar.FormatGNU }),
			with(it.TarSymlink("s", "/"+long), func(h *tar.Header) { h.Format = tar.FormatGNU })}},
		want: append(longDirs(), long+" 0644 0:0 =1", "s -> /"+long)},
	{name: "write through symlink to slash in the same layer",
		layers: []L{{it.TarSymlink("evil", "/"), it.TarFile("evil/etc/x", "1")}},
		want:   []string{"/ 0755 0:0", "etc/ 0755 0:0", "etc/x 0644 0:0 =1", "evil -> /"}},
	{name: "write through symlink climbing out in a later layer",
		layers: []L{{it.TarSymlink("a/evil", "../../../.."), it.TarDir("tmp/")}, {it.TarFile("a/evil/tmp/x", "1")}},
		want: []string{"/ 0755 0:0", "a/ 0755 0:0", "a/evil -> ../../../..",
			"tmp/ 0755 0:0", "tmp/x 0644 0:0 =1"}},
	{name: "write through absolute symlink to a missing dir creates it inside",
		layers: []L{{it.TarSymlink("evil", "/host/etc")}, {it.TarFile("evil/passwd", "1")}},
		want: []string{"/ 0755 0:0", "evil -> /host/etc", "host/ 0755 0:0", "host/etc/ 0755 0:0",
			"host/etc/passwd 0644 0:0 =1"}},
	{name: "symlink chain",
		layers: []L{{it.TarDir("d/"), it.TarSymlink("a", "b"), it.TarSymlink("b", "./c/"), it.TarSymlink("c", "/d")}, {it.TarFile("a/f", "1")}},
		want:   []string{"/ 0755 0:0", "a -> b", "b -> ./c/", "c -> /d", "d/ 0755 0:0", "d/f 0644 0:0 =1"}},
	{name: "symlink loop",
		layers:  []L{{it.TarSymlink("a", "b"), it.TarSymlink("b", "a/x")}, {it.TarFile("a/f", "1")}},
		wantErr: []string{"sha256:layer1", "a/f", "too many levels of symbolic links"}},
	{name: "write through symlink to a file",
		layers:  []L{{it.TarFile("f", "1"), it.TarSymlink("l", "f"), it.TarFile("l/x", "2")}},
		wantErr: []string{"sha256:layer0", "l/x", "not a directory"}},
	{name: "last component symlink is replaced, not followed",
		layers: []L{{it.TarDir("d/"), it.TarSymlink("l", "d")}, {it.TarFile("l", "1")}},
		want:   []string{"/ 0755 0:0", "d/ 0755 0:0", "l 0644 0:0 =1"}},
	{name: "hardlink to dotdot path",
		layers:  []L{{it.TarFile("x", "1"), it.TarHardlink("h", "../x")}},
		wantErr: []string{"sha256:layer0", "h", "hardlink target ../x", "escapes"}},
	{name: "hardlink to absolute path",
		layers: []L{{it.TarFile("etc/f", "1")}, {it.TarHardlink("h", "/etc/f")}},
		want:   []string{"/ 0755 0:0", "etc/ 0755 0:0", "etc/f 0644 0:0 =1", "h => etc/f"}},
	{name: "hardlink to a symlink pointing outside links the symlink itself",
		layers: []L{{it.TarSymlink("s", "../../../etc/shadow"), it.TarHardlink("h", "s")}},
		want:   []string{"/ 0755 0:0", "h -> ../../../etc/shadow", "s => h"}},
	{name: "hardlink through a symlinked parent resolves inside root",
		layers: []L{{it.TarFile("etc/passwd", "1"), it.TarSymlink("s", "../../etc")}, {it.TarHardlink("h", "s/passwd")}},
		want:   []string{"/ 0755 0:0", "etc/ 0755 0:0", "etc/passwd 0644 0:0 =1", "h => etc/passwd", "s -> ../../etc"}},
	{name: "hardlink to a whited-out file",
		layers:  []L{{it.TarFile("f", "1")}, {it.TarWhiteout("f"), it.TarHardlink("h", "f")}},
		wantErr: []string{"sha256:layer1", "h", "hardlink target f", "no such file"}},
	{name: "hardlink keeps content when its target is whited out later",
		layers: []L{{it.TarFile("f", "1"), it.TarHardlink("h", "f")}, {it.TarWhiteout("f")}},
		want:   []string{"/ 0755 0:0", "h 0644 0:0 =1"}},
	{name: "hardlink keeps content when its target is replaced later",
		layers: []L{{it.TarFile("f", "old"), it.TarHardlink("h", "f")}, {it.TarFile("f", "new")}},
		want:   []string{"/ 0755 0:0", "f 0644 0:0 =new", "h 0644 0:0 =old"}},
	{name: "hardlink across layers",
		layers: []L{{with(it.TarFile("z", "1"), func(h *tar.Header) { h.Mode = 0o4755; h.Uid = 7 })}, {it.TarHardlink("a", "z")}},
		want:   []string{"/ 0755 0:0", "a 4755 7:0 =1", "z => a"}},
	{name: "hardlink preceding its target",
		layers:  []L{{it.TarHardlink("h", "f"), it.TarFile("f", "1")}},
		wantErr: []string{"sha256:layer0", "h", "must follow its target"}},
	{name: "hardlink to a directory",
		layers:  []L{{it.TarDir("d/"), it.TarHardlink("h", "d")}},
		wantErr: []string{"sha256:layer0", "h", "is a directory"}},
	{name: "hardlink to the root",
		layers:  []L{{it.TarHardlink("h", "/")}},
		wantErr: []string{"sha256:layer0", "h", "root"}},
	{name: "whiteout traversing with dotdot",
		layers:  []L{{it.TarFile("x", "1")}, {it.TarFile(".wh.../x", "")}},
		wantErr: []string{"sha256:layer1", ".wh.../x", "whiteout"}},
	{name: "whiteout of dotdot",
		layers:  []L{{it.TarFile("a/x", "1")}, {it.TarFile("a/.wh...", "")}},
		wantErr: []string{"sha256:layer1", "a/.wh...", "invalid whiteout"}},
	{name: "whiteout of a non-existent path",
		layers: []L{{it.TarFile("x", "1")}, {it.TarWhiteout("nope"), it.TarWhiteout("no/such/dir")}},
		want:   []string{"/ 0755 0:0", "x 0644 0:0 =1"}},
	{name: "whiteout through a symlinked parent stays inside",
		layers: []L{{it.TarFile("etc/passwd", "1"), it.TarSymlink("s", "/../etc")}, {it.TarWhiteout("s/passwd")}},
		want:   []string{"/ 0755 0:0", "etc/ 0755 0:0", "s -> /../etc"}},
	{name: "opaque at root",
		layers: []L{{it.TarFile("a", "1"), it.TarFile("b/c", "2")}, {it.TarFile("n", "3"), it.TarOpaque("")}},
		want:   []string{"/ 0755 0:0", "n 0644 0:0 =3"}},
	{name: "opaque keeps same-layer children in any order",
		layers: []L{{it.TarFile("d/old", "1"), it.TarFile("d/sub/old", "1")},
			{it.TarFile("d/sub/new", "2"), it.TarOpaque("d"), it.TarFile("d/new", "3")}},
		want: []string{"/ 0755 0:0", "d/ 0755 0:0", "d/new 0644 0:0 =3", "d/sub/ 0755 0:0", "d/sub/new 0644 0:0 =2"}},
	{name: "opaque in a directory replaced by a file is ignored",
		layers: []L{{it.TarFile("d/old", "1")}, {it.TarFile("d", "f"), it.TarOpaque("d")}},
		want:   []string{"/ 0755 0:0", "d 0644 0:0 =f"}},
	{name: "opaque in a redeclared directory",
		layers: []L{{it.TarFile("d/old", "1")}, {with(it.TarDir("d/"), func(h *tar.Header) { h.Mode = 0o700 }), it.TarOpaque("d/")}},
		want:   []string{"/ 0755 0:0", "d/ 0700 0:0"}},
	{name: "whiteout then re-creation in the same layer",
		layers: []L{{it.TarFile("f", "old"), it.TarFile("d/old", "1")}, {it.TarWhiteout("f"), it.TarFile("f", "new"), it.TarWhiteout("d"), it.TarFile("d/new", "2")}},
		want:   []string{"/ 0755 0:0", "d/ 0755 0:0", "d/new 0644 0:0 =2", "f 0644 0:0 =new"}},
	{name: "re-creation then whiteout in the same layer keeps the new entry",
		layers: []L{{it.TarFile("f", "old"), it.TarFile("d/old", "1")}, {it.TarFile("f", "new"), it.TarFile("d/new", "2"), it.TarWhiteout("f"), it.TarWhiteout("d")}},
		want:   []string{"/ 0755 0:0", "d/ 0755 0:0", "d/new 0644 0:0 =2", "f 0644 0:0 =new"}},
	{name: "whiteout metadata entries are skipped",
		layers:   []L{{it.TarFile(".wh..wh.plnk/1", ""), it.TarFile(".wh..wh.aufs", ""), it.TarFile("a", "1")}},
		want:     []string{"/ 0755 0:0", "a 0644 0:0 =1"},
		wantWarn: []string{".wh..wh.plnk/1: skipping whiteout metadata", ".wh..wh.aufs: skipping whiteout metadata"}},
	{name: "whiteout name used as a directory",
		layers:  []L{{it.TarFile("a/.wh.b/c", "1")}},
		wantErr: []string{"sha256:layer0", "a/.wh.b/c", "used as a directory"}},
	{name: "file replacing a directory with children",
		layers: []L{{it.TarDir("d/"), it.TarFile("d/x", "1"), it.TarFile("d/e/y", "2")}, {it.TarFile("d", "f")}},
		want:   []string{"/ 0755 0:0", "d 0644 0:0 =f"}},
	{name: "directory replacing a file",
		layers: []L{{it.TarFile("d", "f")}, {it.TarDir("d/"), it.TarFile("d/y", "2")}},
		want:   []string{"/ 0755 0:0", "d/ 0755 0:0", "d/y 0644 0:0 =2"}},
	{name: "directory over directory merges attributes",
		layers: []L{{it.TarFile("d/x", "1")}, {with(it.TarDir("d"), func(h *tar.Header) { h.Mode = 0o750; h.Uid = 1 })}},
		want:   []string{"/ 0755 0:0", "d/ 0750 1:0", "d/x 0644 0:0 =1"}},
	{name: "duplicate entries in one layer, last wins",
		layers: []L{{it.TarFile("f", "a"), it.TarFile("f", "b"), it.TarDir("f"), it.TarFile("g", "1"), it.TarFile("g", "2")}},
		want:   []string{"/ 0755 0:0", "f/ 0755 0:0", "g 0644 0:0 =2"}},
	{name: "devices and fifos kept, sockets skipped",
		layers: []L{{
			with(named(tar.TypeChar, "dev/null", 0o666), func(h *tar.Header) { h.Devmajor, h.Devminor = 1, 3 }),
			with(named(tar.TypeBlock, "dev/sda", 0o660), func(h *tar.Header) { h.Devmajor, h.Devminor = 8, 0; h.Gid = 6 }),
			named(tar.TypeFifo, "run/fifo", 0o600),
			named(tar.TypeReg, "run/sock", 0o140755),
			named('Z', "run/odd", 0o644),
		}},
		want: []string{"/ 0755 0:0", "dev/ 0755 0:0", "dev/null chr 1,3 0666 0:0", "dev/sda blk 8,0 0660 0:6",
			"run/ 0755 0:0", "run/fifo fifo 0600 0:0"},
		wantWarn: []string{"run/sock: skipping socket", "run/odd: skipping entry of unsupported type"}},
	{name: "setuid setgid sticky and owners",
		layers: []L{{
			with(it.TarFile("bin/su", "x"), func(h *tar.Header) { h.Mode = 0o4755 }),
			with(it.TarFile("bin/wall", "y"), func(h *tar.Header) { h.Mode = 0o2755; h.Gid = 5 }),
			with(it.TarDir("tmp"), func(h *tar.Header) { h.Mode = 0o1777 }),
			with(it.TarFile("home/u/f", "z"), func(h *tar.Header) { h.Mode = 0o600; h.Uid = 1000; h.Gid = 1000 }),
		}},
		want: []string{"/ 0755 0:0", "bin/ 0755 0:0", "bin/su 4755 0:0 =x", "bin/wall 2755 0:5 =y",
			"home/ 0755 0:0", "home/u/ 0755 0:0", "home/u/f 0600 1000:1000 =z", "tmp/ 1777 0:0"}},
	{name: "truncated tar",
		raw: func(t testing.TB) [][]byte {
			b := it.TarLayer(t, it.TarFile("a", "1"), it.TarFile("big", strings.Repeat("x", 5000)))
			return [][]byte{b[:512+512+512+1000]}
		},
		wantErr: []string{"sha256:layer0", "big", "unexpected EOF"}},
	{name: "garbage instead of tar",
		raw: func(t testing.TB) [][]byte {
			return [][]byte{[]byte(strings.Repeat("not a tar stream ", 64))}
		},
		wantErr: []string{"sha256:layer0", "reading tar"}},
	{name: "trailing garbage after the end marker is read and ignored",
		raw: func(t testing.TB) [][]byte {
			return [][]byte{append(it.TarLayer(t, it.TarFile("a", "1")), "trailing"...)}
		},
		want: []string{"/ 0755 0:0", "a 0644 0:0 =1"}},
	{name: "max size exceeded by a decompression bomb",
		layers:  []L{{it.TarFile("a", "123456")}, {it.TarFile("bomb", strings.Repeat("0", 1000))}},
		opts:    Options{MaxSize: 1000},
		wantErr: []string{"sha256:layer1", "bomb", "uncompressed rootfs exceeds --max-size 1000"}},
	{name: "max size exactly reached is fine",
		layers: []L{{it.TarFile("a", "12345")}, {it.TarFile("b", "12345")}},
		opts:   Options{MaxSize: 10},
		want:   []string{"/ 0755 0:0", "a 0644 0:0 =12345", "b 0644 0:0 =12345"}},
}

func longDirs() []string {
	out := []string{"/ 0755 0:0"}
	p := ""
	for range 20 {
		p += "d123456789/"
		out = append(out, p+" 0755 0:0")
	}
	return out
}

func TestBreakout(t *testing.T) {
	if len(breakoutCases) < 25 {
		t.Fatalf("breakout suite has %d cases, want at least 25", len(breakoutCases))
	}
	for _, tc := range breakoutCases {
		t.Run(tc.name, func(t *testing.T) {
			sb := newSandbox(t)
			raw := tarLayers(t, tc.layers...)
			if tc.raw != nil {
				raw = tc.raw(t)
			}
			var warns []string
			opts := tc.opts
			opts.SpoolDir = sb.spool
			opts.Warn = func(m string) { warns = append(warns, m) }
			tr, err := Flatten(context.Background(), bytesLayers(raw...), opts)
			defer sb.check(t)
			if tc.wantErr != nil {
				checkErr(t, tr, err, tc.wantErr)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			if got := dump(t, tr); !slices.Equal(got, tc.want) {
				t.Errorf("tree:\n got %q\nwant %q", got, tc.want)
			}
			if len(warns) != len(tc.wantWarn) {
				t.Errorf("warnings %q, want %q", warns, tc.wantWarn)
			}
			for i := range min(len(warns), len(tc.wantWarn)) {
				if !strings.Contains(warns[i], tc.wantWarn[i]) {
					t.Errorf("warning %q does not contain %q", warns[i], tc.wantWarn[i])
				}
			}
			checkInvariants(t, tr)
			checkTarRoundTrip(t, tr)
		})
	}
}
