package rootfs

import (
	"archive/tar"
	"bytes"
	"context"
	"github.com/c2vm/c2vm/bootcfg"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/u-root/u-root/pkg/cpio"
)

// listCpio reads a compressed cpio with u-root's reader; names outside prefix are returned with
// a leading "!" so the test sees them. Hardlinks are found by inode number.
func listCpio(t *testing.T, img, prefix string) (map[string]file, []cpio.Record) {
	t.Helper()
	raw, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	var r io.Reader
	switch {
	case bytes.HasPrefix(raw, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		r = zr
	case bytes.HasPrefix(raw, []byte{0x1f, 0x8b}):
		if r, err = gzip.NewReader(bytes.NewReader(raw)); err != nil {
			t.Fatal(err)
		}
	default:
		r = bytes.NewReader(raw)
	}
	data, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(data)))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]file{}
	byIno := map[uint64]string{}
	var xattrs []bootcfg.Xattr
	for _, rec := range recs {
		if rec.Name == prefix+bootcfg.XattrsSuffix {
			body, _ := io.ReadAll(io.NewSectionReader(rec.ReaderAt, 0, int64(rec.FileSize)))
			if xattrs, err = bootcfg.DecodeXattrs(bytes.NewReader(body)); err != nil {
				t.Fatal(err)
			}
			continue
		}
		rel, ok := strings.CutPrefix(rec.Name, prefix+"/")
		if !ok {
			continue
		}
		f := file{Mode: int64(rec.Mode & 0o7777), UID: int(rec.UID), GID: int(rec.GID), Mtime: int64(rec.MTime)}
		var body []byte
		if rec.ReaderAt != nil {
			body, _ = io.ReadAll(io.NewSectionReader(rec.ReaderAt, 0, int64(rec.FileSize)))
		}
		switch rec.Mode & cpio.S_IFMT {
		case cpio.S_IFDIR:
			f.Type = tar.TypeDir
		case cpio.S_IFLNK:
			f.Type, f.Target = tar.TypeSymlink, string(body)
		case cpio.S_IFCHR:
			f.Type, f.Major, f.Minor = tar.TypeChar, int64(rec.Rmajor), int64(rec.Rminor)
		case cpio.S_IFBLK:
			f.Type, f.Major, f.Minor = tar.TypeBlock, int64(rec.Rmajor), int64(rec.Rminor)
		case cpio.S_IFIFO:
			f.Type = tar.TypeFifo
		default:
			f.Type = tar.TypeReg
			f.Content = string(body)
			if rec.NLink > 1 {
				if first, ok := byIno[rec.Ino]; ok {
					f.LinkOf = first
					f.Content = out[first].Content // the data travels with the first name
				} else {
					byIno[rec.Ino] = rel
				}
			}
		}
		out[rel] = f
	}
	for _, x := range xattrs {
		f := out[x.Path]
		if f.Xattrs == nil {
			f.Xattrs = map[string]string{}
		}
		f.Xattrs[x.Name] = string(x.Value)
		out[x.Path] = f
	}
	return out, recs
}

func TestInitrd(t *testing.T) {
	tree := flattenLayers(t, fixtureLayers(t))
	tree.Root.Mode, tree.Root.UID, tree.Root.GID = 0o751, 3, 10
	for _, tc := range []struct{ comp, prefix, wantPrefix string }{
		{"", "", DefaultPrefix},
		{"gzip", "/x/", "x"},
		{"none", "a/b/c", "a/b/c"},
	} {
		t.Run(tc.comp+tc.prefix, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), Ext(bootcfg.FormatInitrd))
			if err := Write(context.Background(), bootcfg.FormatInitrd, tree, img, Options{Compression: tc.comp, Prefix: tc.prefix, MkfsTime: 1700000000}); err != nil {
				t.Fatal(err)
			}
			got, recs := listCpio(t, img, tc.wantPrefix)
			compare(t, want(t, tree, true), got, false)
			// The prefix directories come first: 0755 root with the mkfs time, the last one with the
			// tree root's attributes; nothing else is outside the prefix.
			parts := strings.Split(tc.wantPrefix, "/")
			for i, p := range parts {
				rec := recs[i]
				wantMode, uid, gid := uint64(0o755), uint64(0), uint64(0)
				if i == len(parts)-1 {
					wantMode, uid, gid = 0o751, 3, 10
				}
				if rec.Name != strings.Join(parts[:i+1], "/") || rec.Mode != cpio.S_IFDIR|wantMode || rec.UID != uid || rec.GID != gid {
					t.Errorf("record %d (%s): %v, want dir %s mode %o %d:%d", i, p, rec, strings.Join(parts[:i+1], "/"), wantMode, uid, gid)
				}
			}
			if n := len(parts) + len(tree.Entries) + 1; len(recs) != n { // + the xattrs file
				t.Errorf("%d records, want %d", len(recs), n)
			}
		})
	}
}

func TestInitrdErrors(t *testing.T) {
	tree := flattenLayers(t, fixtureLayers(t))
	for _, o := range []Options{{Prefix: "../x"}, {Prefix: "/"}, {Compression: "xz"}} {
		out := filepath.Join(t.TempDir(), "img")
		if err := Write(context.Background(), bootcfg.FormatInitrd, tree, out, o); err == nil {
			t.Errorf("%+v accepted", o)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("%+v: output left behind", o)
		}
	}
}
