package flatten

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"maps"
	"path"
	"strings"
	"testing"
)

// checkInvariants asserts the canonical-order contract: sorted unique contained paths, parents
// before children, every hardlink after its regular-file target, contents readable.
func checkInvariants(t testing.TB, tr *Tree) {
	t.Helper()
	kinds := map[string]byte{"": tar.TypeDir}
	prev := ""
	for i, e := range tr.Entries {
		p := e.Path
		if i > 0 && p <= prev {
			t.Fatalf("entry %d %q not after %q", i, p, prev)
		}
		prev = p
		if p == "" || p == "." || path.Clean(p) != p || strings.HasPrefix(p, "/") || p == ".." ||
			strings.HasPrefix(p, "../") || strings.Contains(p, "\x00") {
			t.Fatalf("entry path %q is not clean and contained", p)
		}
		dir := path.Dir(p)
		if dir == "." {
			dir = ""
		}
		if kinds[dir] != tar.TypeDir {
			t.Fatalf("entry %q: parent %q is not an earlier directory", p, dir)
		}
		switch e.Type {
		case tar.TypeLink:
			if k, ok := kinds[e.Linkname]; !ok || k == tar.TypeDir || k == tar.TypeLink {
				t.Fatalf("hardlink %q -> %q: target is not an earlier non-directory entry", p, e.Linkname)
			}
		case tar.TypeReg:
			rc, err := tr.Open(e)
			if err != nil {
				t.Fatal(err)
			}
			n, err := io.Copy(io.Discard, rc)
			if err != nil || n != e.Size {
				t.Fatalf("entry %q: read %d bytes (err %v), want %d", p, n, err, e.Size)
			}
		case tar.TypeDir, tar.TypeSymlink, tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		default:
			t.Fatalf("entry %q has type %q", p, e.Type)
		}
		kinds[p] = e.Type
	}
}

// checkTarRoundTrip writes the tree twice, asserts identical bytes, and reads it back with
// archive/tar, comparing every header and body with the entries.
func checkTarRoundTrip(t testing.TB, tr *Tree) []byte {
	t.Helper()
	var a, b bytes.Buffer
	if err := tr.WriteTar(context.Background(), &a); err != nil {
		t.Fatal(err)
	}
	if err := tr.WriteTar(context.Background(), &b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("WriteTar is not deterministic")
	}
	rd := tar.NewReader(bytes.NewReader(a.Bytes()))
	for i := 0; ; i++ {
		h, err := rd.Next()
		if err == io.EOF {
			if i != len(tr.Entries) {
				t.Fatalf("tar has %d entries, tree %d", i, len(tr.Entries))
			}
			break
		}
		if err != nil {
			t.Fatalf("read back: %v", err)
		}
		if i >= len(tr.Entries) {
			t.Fatalf("tar has extra entry %q", h.Name)
		}
		e := tr.Entries[i]
		name := e.Path
		if e.Type == tar.TypeDir {
			name += "/"
		}
		xattrs := map[string]string{}
		for k, v := range h.PAXRecords {
			if x, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
				xattrs[x] = v
			}
		}
		want := map[string]string{}
		maps.Copy(want, e.Xattrs)
		if h.Name != name || h.Typeflag != e.Type || h.Mode != e.Mode || h.Uid != e.UID || h.Gid != e.GID ||
			h.Size != e.Size || h.Linkname != e.Linkname || !h.ModTime.Equal(e.ModTime) ||
			h.Devmajor != e.Devmajor || h.Devminor != e.Devminor || h.Uname != "" || h.Gname != "" ||
			!h.AccessTime.IsZero() || !h.ChangeTime.IsZero() || !maps.Equal(xattrs, want) {
			t.Fatalf("tar header %d %+v does not match entry %+v", i, h, e)
		}
		if e.Type == tar.TypeReg {
			got, err := io.ReadAll(rd)
			if err != nil {
				t.Fatal(err)
			}
			rc, _ := tr.Open(e)
			wantBody, _ := io.ReadAll(rc)
			if !bytes.Equal(got, wantBody) {
				t.Fatalf("tar body of %q differs", e.Path)
			}
		}
	}
	return a.Bytes()
}
