package flatten

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// fuzzInput encodes two layers as a fuzz input: a 4-byte big-endian length of the first, then both.
func fuzzInput(a, b []byte) []byte {
	out := binary.BigEndian.AppendUint32(nil, uint32(len(a)))
	return append(append(out, a...), b...)
}

// fuzzLayers decodes fuzzInput; anything else is one layer.
func fuzzLayers(data []byte) [][]byte {
	if len(data) < 4 {
		return [][]byte{data}
	}
	n, rest := binary.BigEndian.Uint32(data), data[4:]
	if uint64(n) > uint64(len(rest)) {
		return [][]byte{rest}
	}
	return [][]byte{rest[:n], rest[n:]}
}

// FuzzFlatten feeds arbitrary tar streams to Flatten: it must not panic, and whatever it returns
// must be canonical (sorted, unique, contained, links after targets) and write a tar that reads back.
func FuzzFlatten(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		tr, err := Flatten(context.Background(), bytesLayers(fuzzLayers(data)...),
			Options{SpoolDir: t.TempDir(), MaxSize: 1 << 20})
		if err != nil {
			return
		}
		defer tr.Close()
		checkInvariants(t, tr)
		checkTarRoundTrip(t, tr)
		tr.ReadFile("/etc/passwd")
	})
}

// TestWriteFuzzSeeds regenerates testdata/fuzz/FuzzFlatten from the breakout suite when
// FLATTEN_WRITE_SEEDS=1; otherwise it checks that the corpus is there.
func TestWriteFuzzSeeds(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzFlatten")
	if os.Getenv("FLATTEN_WRITE_SEEDS") != "1" {
		seeds, err := os.ReadDir(dir)
		if err != nil || len(seeds) < 25 {
			t.Fatalf("seed corpus %s: %d files, %v (regenerate with FLATTEN_WRITE_SEEDS=1)", dir, len(seeds), err)
		}
		return
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, tc := range breakoutCases {
		raw := tarLayers(t, tc.layers...)
		if tc.raw != nil {
			raw = tc.raw(t)
		}
		var data []byte
		switch len(raw) {
		case 1:
			data = fuzzInput(raw[0], nil)
		default:
			data = fuzzInput(raw[0], raw[1])
		}
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("breakout-%02d", i)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
