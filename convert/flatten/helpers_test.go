package flatten

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	it "github.com/c2vm/c2vm/internal/testkit/imagetest"
)

// digestOf names the i-th test layer in errors.
func digestOf(i int) string { return fmt.Sprintf("sha256:layer%d", i) }

// bytesLayers wraps raw tar streams as Layers named by digestOf.
func bytesLayers(raw ...[]byte) []Layer {
	var ls []Layer
	for i, b := range raw {
		ls = append(ls, Layer{Digest: digestOf(i), Open: func(context.Context) (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(b)), nil
		}})
	}
	return ls
}

// tarLayers builds one tar stream per slice of entries.
func tarLayers(t testing.TB, layers ...[]it.TarEntry) [][]byte {
	t.Helper()
	var raw [][]byte
	for _, l := range layers {
		raw = append(raw, it.TarLayer(t, l...))
	}
	return raw
}

// sandbox is a spool directory with a canary directory beside it.
type sandbox struct {
	spool, canary string
	before        []string
}

func newSandbox(t *testing.T) *sandbox {
	t.Helper()
	base := t.TempDir()
	s := &sandbox{spool: filepath.Join(base, "spool"), canary: filepath.Join(base, "canary")}
	for _, d := range []string{s.spool, filepath.Join(s.canary, "etc")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(s.canary, "etc", "passwd"), []byte("canary\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.before = listTree(t, filepath.Dir(s.spool))
	return s
}

// check asserts that nothing beside the spool changed and that the spool dir is empty.
func (s *sandbox) check(t *testing.T) {
	t.Helper()
	if after := listTree(t, filepath.Dir(s.spool)); !slices.Equal(after, s.before) {
		t.Errorf("host files changed:\nbefore %q\nafter  %q", s.before, after)
	}
}

// listTree lists every path below dir with its mode, size and content.
func listTree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		line := fmt.Sprintf("%s %v %d", p, fi.Mode(), fi.Size())
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			line += " " + string(b)
		}
		out = append(out, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// dump renders a tree as one line per entry, root first ("/"), for exact comparisons.
func dump(t testing.TB, tr *Tree) []string {
	t.Helper()
	out := []string{line(t, tr, &tr.Root)}
	for _, e := range tr.Entries {
		out = append(out, line(t, tr, e))
	}
	return out
}

func line(t testing.TB, tr *Tree, e *Entry) string {
	t.Helper()
	attrs := fmt.Sprintf("%04o %d:%d", e.Mode, e.UID, e.GID)
	switch e.Type {
	case tar.TypeDir:
		return fmt.Sprintf("%s/ %s", e.Path, attrs)
	case tar.TypeReg:
		rc, err := tr.Open(e)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("%s %s =%s", e.Path, attrs, b)
	case tar.TypeSymlink:
		return fmt.Sprintf("%s -> %s", e.Path, e.Linkname)
	case tar.TypeLink:
		return fmt.Sprintf("%s => %s", e.Path, e.Linkname)
	case tar.TypeChar:
		return fmt.Sprintf("%s chr %d,%d %s", e.Path, e.Devmajor, e.Devminor, attrs)
	case tar.TypeBlock:
		return fmt.Sprintf("%s blk %d,%d %s", e.Path, e.Devmajor, e.Devminor, attrs)
	case tar.TypeFifo:
		return fmt.Sprintf("%s fifo %s", e.Path, attrs)
	}
	return fmt.Sprintf("%s type %q", e.Path, e.Type)
}

// checkErr asserts that Flatten failed with an error containing every string of want (closing the
// tree when it unexpectedly succeeded). Long errors and wants are cut in the report.
func checkErr(t *testing.T, tr *Tree, err error, want []string) {
	t.Helper()
	if err == nil {
		tr.Close()
		t.Fatalf("no error, want one containing %.300q", want)
	}
	for _, s := range want {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %.300q does not contain %.300q", err, s)
		}
	}
}
