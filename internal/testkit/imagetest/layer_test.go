package imagetest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"testing"

	"github.com/klauspost/compress/zstd"
)

func TestTarLayerRoundTrip(t *testing.T) {
	raw := TarLayer(t, TarDir("d/"), TarFile("d/f", "hello"), TarSymlink("s", "d/f"),
		TarHardlink("h", "d/f"), TarWhiteout("d/gone"), TarOpaque("d"))
	gz, err := gzip.NewReader(bytes.NewReader(Gzip(t, raw)))
	if err != nil {
		t.Fatal(err)
	}
	zr, err := zstd.NewReader(bytes.NewReader(Zstd(t, raw)))
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	for name, r := range map[string]io.Reader{"plain": bytes.NewReader(raw), "gzip": gz, "zstd": zr} {
		got := readNames(t, r)
		want := []string{"d/ 53 0", "d/f 48 5 hello", "s 50 0", "h 49 0", "d/.wh.gone 48 0", "d/.wh..wh..opq 48 0"}
		if len(got) != len(want) {
			t.Fatalf("%s: got %q, want %q", name, got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("%s: entry %d = %q, want %q", name, i, got[i], want[i])
			}
		}
	}
}

func TestGNUSparseLayer(t *testing.T) {
	raw := GNUSparseLayer(t, "sparse", 10000, SparseFragment{0, "head"}, SparseFragment{8000, "tail"})
	rd := tar.NewReader(bytes.NewReader(raw))
	h, err := rd.Next()
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(rd)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 10000)
	copy(want, "head")
	copy(want[8000:], "tail")
	if h.Name != "sparse" || h.Size != 10000 || !bytes.Equal(body, want) {
		t.Fatalf("got %q size %d, body equal %v", h.Name, h.Size, bytes.Equal(body, want))
	}
}

func readNames(t *testing.T, r io.Reader) []string {
	t.Helper()
	var out []string
	rd := tar.NewReader(r)
	for {
		h, err := rd.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rd)
		if err != nil {
			t.Fatal(err)
		}
		s := h.Name + " " + itoa(int(h.Typeflag)) + " " + itoa(int(h.Size))
		if len(b) > 0 {
			s += " " + string(b)
		}
		out = append(out, s)
	}
}

func itoa(n int) string { return fmt.Sprint(n) }
