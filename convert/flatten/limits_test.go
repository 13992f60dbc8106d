package flatten

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"

	it "github.com/c2vm/c2vm/internal/testkit/imagetest"
)

func withXattr(e it.TarEntry, name, value string) it.TarEntry {
	return with(e, func(h *tar.Header) {
		if h.PAXRecords == nil {
			h.PAXRecords = map[string]string{}
		}
		h.PAXRecords[xattrPrefix+name] = value
		h.Format = tar.FormatPAX
	})
}

func manyFiles(n int, f func(i int) it.TarEntry) L {
	var l L
	for i := range n {
		l = append(l, f(i))
	}
	return l
}

// nameOf returns a path of exactly n bytes made of 200-byte components.
func nameOf(n int) string {
	var b strings.Builder
	for b.Len() < n {
		c := min(200, n-b.Len())
		if b.Len() > 0 {
			b.WriteByte('/')
			c = min(200, n-b.Len())
		}
		b.WriteString(strings.Repeat("n", c))
	}
	return b.String()
}

// TestMetadataLimits checks the per-entry metadata limits and the metadata budget: each case
// succeeds with the given number of entries, or fails with an error naming the layer and entry.
func TestMetadataLimits(t *testing.T) {
	x255, x256 := strings.Repeat("k", 255), strings.Repeat("k", 256)
	cases := []struct {
		name    string
		layer   L
		maxSize int64
		entries int      // entries of the result when no error is wanted
		wantErr []string // substrings of the error
	}{
		{name: "name of 4096 bytes is fine",
			layer: L{it.TarFile(nameOf(4096), "x")}, entries: 21},
		{name: "name of 4097 bytes",
			layer:   L{it.TarFile("ok", "1"), it.TarFile(nameOf(4097), "x")},
			wantErr: []string{"sha256:layer0", nameOf(4097), "name is 4097 bytes, over the 4096-byte limit"}},
		{name: "symlink target of 4095 bytes is fine",
			layer: L{it.TarSymlink("s", nameOf(4095))}, entries: 1},
		{name: "symlink target of 4096 bytes",
			layer:   L{it.TarSymlink("s", nameOf(4096))},
			wantErr: []string{"sha256:layer0", ": s: ", "link target is 4096 bytes, over the 4095-byte limit"}},
		{name: "hardlink target of 4096 bytes",
			layer:   L{it.TarFile("f", "1"), it.TarHardlink("h", nameOf(4096))},
			wantErr: []string{"sha256:layer0", ": h: ", "link target is 4096 bytes"}},
		{name: "xattr name of 255 bytes and value of 65535 bytes are fine",
			layer:   L{withXattr(withXattr(it.TarFile("f", "1"), x255, "v"), "user.big", strings.Repeat("v", 65535))},
			entries: 1},
		{name: "xattr name of 256 bytes",
			layer:   L{withXattr(it.TarFile("f", "1"), x256, "v")},
			wantErr: []string{"sha256:layer0", ": f: ", "xattr name", "256 bytes, over the 255-byte limit"}},
		{name: "xattr value of 65536 bytes (erofs would truncate it)",
			layer:   L{withXattr(it.TarDir("d"), "user.big", strings.Repeat("v", 65536))},
			wantErr: []string{"sha256:layer0", ": d: ", "xattr user.big value is 65536 bytes, over the 65535-byte limit"}},
		{name: "xattr value of 900 KiB",
			layer:   L{withXattr(it.TarFile("f", ""), "user.big", strings.Repeat("v", 900<<10))},
			wantErr: []string{"sha256:layer0", "f", "over the 65535-byte limit"}},
		{name: "many entries with large xattrs exceed the metadata budget",
			layer: manyFiles(300, func(i int) it.TarEntry {
				return withXattr(it.TarFile(fmt.Sprintf("f%03d", i), ""), "user.big", strings.Repeat("v", 60000))
			}),
			maxSize: 1 << 20,
			wantErr: []string{"sha256:layer0", "f017", "exceeds --max-size 1048576"}},
		{name: "too many empty files exceed the metadata budget",
			layer:   manyFiles(3000, func(i int) it.TarEntry { return it.TarFile(fmt.Sprintf("f%04d", i), "") }),
			maxSize: 1 << 20,
			wantErr: []string{"sha256:layer0", "f2028", "exceeds --max-size 1048576"}}, // 2028*(512+5) fit
		{name: "skipped whiteouts are charged too",
			layer:   manyFiles(3000, func(i int) it.TarEntry { return it.TarWhiteout(fmt.Sprintf("w%04d", i)) }),
			maxSize: 1 << 20,
			wantErr: []string{"sha256:layer0", ".wh.w2012", "exceeds --max-size"}},
		{name: "a thousand empty files fit a 1 MiB budget",
			layer:   manyFiles(1000, func(i int) it.TarEntry { return it.TarFile(fmt.Sprintf("f%04d", i), "") }),
			maxSize: 1 << 20, entries: 1000},
		{name: "tiny MaxSize still allows metadata up to 1 MiB",
			layer:   manyFiles(100, func(i int) it.TarEntry { return it.TarFile(fmt.Sprintf("f%03d", i), "") }),
			maxSize: 1, entries: 100},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := Flatten(context.Background(), bytesLayers(tarLayers(t, tc.layer)...),
				Options{SpoolDir: t.TempDir(), MaxSize: tc.maxSize})
			if tc.wantErr != nil {
				checkErr(t, tr, err, tc.wantErr)
				return
			}
			if err != nil {
				t.Fatalf("%.300v", err)
			}
			defer tr.Close()
			if len(tr.Entries) != tc.entries {
				t.Errorf("%d entries, want %d", len(tr.Entries), tc.entries)
			}
			checkInvariants(t, tr)
		})
	}
}

// TestResolveLongTargets checks resolution through long symlink targets: runs of ".." stop at the
// root, each hop counts once, and 40 hops resolve while 41 are a loop.
func TestResolveLongTargets(t *testing.T) {
	ups := strings.Repeat("../", 1300) // 3900 bytes
	chain := func(n int) L {
		l := L{it.TarDir("d")}
		for i := range n {
			next := "d"
			if i+1 < n {
				next = fmt.Sprintf("l%02d", i+1)
			}
			l = append(l, it.TarSymlink(fmt.Sprintf("l%02d", i), ups+"a/b/../../"+next))
		}
		return l
	}
	cases := []struct {
		name    string
		layers  []L
		wantErr error
		want    string // entry that must exist
	}{
		{name: "dotdot run stops at the root",
			layers: []L{{it.TarSymlink("a", ups+"x"), it.TarFile("a/f", "1")}}, want: "x/f"},
		{name: "40 hops of long targets",
			layers: []L{chain(40), {it.TarFile("l00/f", "1")}}, want: "d/f"},
		{name: "41 hops are a loop",
			layers: []L{chain(41), {it.TarFile("l00/f", "1")}}, wantErr: syscall.ELOOP},
		{name: "self loop",
			layers: []L{{it.TarSymlink("s", ups+"s/"+strings.Repeat("./", 90)), it.TarFile("s/f", "1")}}, wantErr: syscall.ELOOP},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := Flatten(context.Background(), bytesLayers(tarLayers(t, tc.layers...)...), Options{SpoolDir: t.TempDir()})
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("error %.200v, want %v", err, tc.wantErr)
				}
				if !strings.Contains(err.Error(), "sha256:layer") {
					t.Errorf("error %.200v does not name the layer", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("%.200v", err)
			}
			defer tr.Close()
			found := false
			for _, e := range tr.Entries {
				found = found || e.Path == tc.want
			}
			if !found {
				t.Errorf("no entry %s in %d entries", tc.want, len(tr.Entries))
			}
			checkInvariants(t, tr)
		})
	}
}
