package flatten

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"maps"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	it "github.com/c2vm/c2vm/internal/testkit/imagetest"
)

func flattenRaw(t *testing.T, raw ...[]byte) *Tree {
	t.Helper()
	tr, err := Flatten(context.Background(), bytesLayers(raw...), Options{SpoolDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

func find(t *testing.T, tr *Tree, p string) *Entry {
	t.Helper()
	for _, e := range tr.Entries {
		if e.Path == p {
			return e
		}
	}
	t.Fatalf("no entry %q", p)
	return nil
}

func TestAttributesPreserved(t *testing.T) {
	mtime := time.Date(2021, 5, 6, 7, 8, 9, 500000000, time.UTC)
	caps := "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
	tr := flattenRaw(t, it.TarLayer(t,
		with(it.TarDir("/"), func(h *tar.Header) { h.Mode = 0o750; h.Uid = 3; h.ModTime = mtime; h.Format = tar.FormatPAX }),
		with(it.TarFile("bin/ping", "elf"), func(h *tar.Header) {
			h.ModTime = mtime
			h.Format = tar.FormatPAX
			h.PAXRecords = map[string]string{"SCHILY.xattr.security.capability": caps, "SCHILY.xattr.user.b": "2", "SCHILY.xattr.user.a": "1"}
		}),
		with(it.TarDir("opt"), func(h *tar.Header) {
			h.PAXRecords = map[string]string{"SCHILY.xattr.trusted.overlay.x": "y"}
		}),
	))
	if tr.Root.Mode != 0o750 || tr.Root.UID != 3 || !tr.Root.ModTime.Equal(mtime) || tr.Root.Type != tar.TypeDir {
		t.Errorf("root = %+v", tr.Root)
	}
	ping := find(t, tr, "bin/ping")
	wantX := map[string]string{"security.capability": caps, "user.a": "1", "user.b": "2"}
	if !maps.Equal(ping.Xattrs, wantX) || !ping.ModTime.Equal(mtime) {
		t.Errorf("bin/ping xattrs %q mtime %v", ping.Xattrs, ping.ModTime)
	}
	if bin := find(t, tr, "bin"); !bin.ModTime.Equal(time.Unix(0, 0)) || bin.Mode != 0o755 || bin.UID != 0 {
		t.Errorf("implied dir bin = %+v", bin)
	}
	if opt := find(t, tr, "opt"); opt.Xattrs["trusted.overlay.x"] != "y" || !opt.ModTime.Equal(it.Epoch) {
		t.Errorf("opt = %+v", opt)
	}
	out := checkTarRoundTrip(t, tr)
	// xattrs are written in sorted order
	i, j, k := bytes.Index(out, []byte("security.capability")), bytes.Index(out, []byte("user.a")), bytes.Index(out, []byte("user.b"))
	if i < 0 || !(i < j && j < k) {
		t.Errorf("xattr records not sorted: %d %d %d", i, j, k)
	}
}

func TestSparseFile(t *testing.T) {
	tr := flattenRaw(t, it.GNUSparseLayer(t, "var/log/lastlog", 1<<20,
		it.SparseFragment{Offset: 0, Data: "head"}, it.SparseFragment{Offset: 1<<20 - 4, Data: "tail"}))
	e := find(t, tr, "var/log/lastlog")
	rc, err := tr.Open(e)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	want := make([]byte, 1<<20)
	copy(want, "head")
	copy(want[1<<20-4:], "tail")
	if e.Type != tar.TypeReg || e.Size != 1<<20 || !bytes.Equal(got, want) {
		t.Fatalf("sparse file: type %q size %d, content equal %v", e.Type, e.Size, bytes.Equal(got, want))
	}
}

func TestHardlinkCanonicalOrder(t *testing.T) {
	// The inode's first path in sort order carries the content, whichever the layers named first.
	tr := flattenRaw(t,
		it.TarLayer(t, with(it.TarFile("z/orig", "data"), func(h *tar.Header) { h.Mode = 0o4711; h.Uid = 9 }), it.TarHardlink("m", "z/orig")),
		it.TarLayer(t, it.TarHardlink("a/first", "/m"), it.TarSymlink("sym", "z/orig"), it.TarHardlink("symlink2", "sym")),
	)
	want := []string{"/ 0755 0:0", "a/ 0755 0:0", "a/first 4711 9:0 =data", "m => a/first",
		"sym -> z/orig", "symlink2 => sym", "z/ 0755 0:0", "z/orig => a/first"}
	if got := dump(t, tr); !slices.Equal(got, want) {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	checkInvariants(t, tr)
	checkTarRoundTrip(t, tr)
}

func TestReadFile(t *testing.T) {
	tr := flattenRaw(t, it.TarLayer(t,
		it.TarFile("usr/share/base-passwd/passwd", "root:x:0:0\n"),
		it.TarSymlink("etc/passwd", "../../../../usr/share/base-passwd/passwd"),
		it.TarSymlink("etc/group", "/etc/group.real"),
		it.TarHardlink("etc/group.real", "usr/share/base-passwd/passwd"),
		it.TarSymlink("etc/loop", "loop2"), it.TarSymlink("etc/loop2", "/etc/loop"),
		it.TarSymlink("etc/escape", "../../../../../host-only"),
		it.TarSymlink("etc/dir", "/usr"),
		it.TarFile("f", "x"), it.TarSymlink("etc/viafile", "/f/passwd"),
	))
	for _, tc := range []struct {
		path, want string
		err        error
	}{
		{path: "/etc/passwd", want: "root:x:0:0\n"},
		{path: "etc/passwd", want: "root:x:0:0\n"},
		{path: "/etc/group", want: "root:x:0:0\n"},
		{path: "../../etc/passwd", want: "root:x:0:0\n"},
		{path: "/etc/shadow", err: fs.ErrNotExist},
		{path: "/etc/escape", err: fs.ErrNotExist},
		{path: "/etc/viafile", err: fs.ErrNotExist},
		{path: "/etc/loop", err: syscall.ELOOP},
		{path: "/etc/dir"},
	} {
		got, err := tr.ReadFile(tc.path)
		switch {
		case tc.err != nil && !errors.Is(err, tc.err):
			t.Errorf("ReadFile(%q) error %v, want %v", tc.path, err, tc.err)
		case tc.err == nil && tc.want == "" && err == nil:
			t.Errorf("ReadFile(%q) of a directory: no error", tc.path)
		case tc.want != "" && (err != nil || string(got) != tc.want):
			t.Errorf("ReadFile(%q) = %q, %v; want %q", tc.path, got, err, tc.want)
		}
	}
}

// stream is a layer reader that counts what was read and fails at EOF like a digest verifier.
type stream struct {
	r      io.Reader
	n      int
	err    error
	closed bool
}

func (s *stream) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.n += n
	if err == io.EOF && s.err != nil {
		return n, s.err
	}
	return n, err
}

func (s *stream) Close() error { s.closed = true; return nil }

func TestStreamHandling(t *testing.T) {
	layer := append(it.TarLayer(t, it.TarFile("a", "1")), make([]byte, 4096)...)
	errDigest := errors.New("digest mismatch")
	for _, tc := range []struct {
		name    string
		verify  error
		open    error
		ctx     func() context.Context
		wantErr error
	}{
		{name: "read to EOF past the end marker"},
		{name: "digest error at the end is returned", verify: errDigest, wantErr: errDigest},
		{name: "open error", open: fs.ErrPermission, wantErr: fs.ErrPermission},
		{name: "cancelled", ctx: func() context.Context {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx
		}, wantErr: context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &stream{r: bytes.NewReader(layer), err: tc.verify}
			l := Layer{Digest: "sha256:abc", Open: func(context.Context) (io.ReadCloser, error) {
				if tc.open != nil {
					return nil, tc.open
				}
				return st, nil
			}}
			ctx := context.Background()
			if tc.ctx != nil {
				ctx = tc.ctx()
			}
			spool := t.TempDir()
			tr, err := Flatten(ctx, []Layer{l}, Options{SpoolDir: spool})
			if left, _ := os.ReadDir(spool); len(left) != 0 {
				t.Errorf("spool dir not empty: %v", left)
			}
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), "sha256:abc") {
					t.Fatalf("error %v, want %v naming the layer", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			if st.n != len(layer) || !st.closed {
				t.Errorf("read %d of %d bytes, closed %v", st.n, len(layer), st.closed)
			}
		})
	}
}

func TestCloseReleasesSpool(t *testing.T) {
	tr := flattenRaw(t, it.TarLayer(t, it.TarFile("a", "content")))
	e := find(t, tr, "a")
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.ReadFile("a"); !errors.Is(err, fs.ErrClosed) {
		t.Errorf("ReadFile after Close: %v", err)
	}
	if _, err := tr.Open(e); !errors.Is(err, fs.ErrClosed) {
		t.Errorf("Open after Close: %v", err)
	}
	if err := tr.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
