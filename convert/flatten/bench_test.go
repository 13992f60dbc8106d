package flatten

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// genLayer describes a synthetic layer: small files of smallSize bytes and big files of bigSize.
type genLayer struct {
	small, smallSize int
	big, bigSize     int
}

func (g genLayer) bytes() int64 { return int64(g.small*g.smallSize + g.big*g.bigSize) }

// open streams the layer's tar through a pipe, so the benchmark holds none of it in memory.
func (g genLayer) open(li int) func(context.Context) (io.ReadCloser, error) {
	return func(context.Context) (io.ReadCloser, error) {
		pr, pw := io.Pipe()
		go func() {
			tw := tar.NewWriter(pw)
			chunk := make([]byte, 64<<10)
			for i := range chunk {
				chunk[i] = byte(i*7 + li)
			}
			write := func(name string, size int) error {
				h := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(size), ModTime: time.Unix(1e9, 0)}
				if err := tw.WriteHeader(h); err != nil {
					return err
				}
				for size > 0 {
					n := min(size, len(chunk))
					if _, err := tw.Write(chunk[:n]); err != nil {
						return err
					}
					size -= n
				}
				return nil
			}
			var err error
			for i := 0; i < g.small && err == nil; i++ {
				err = write(fmt.Sprintf("usr/share/l%d/d%03d/f%05d", li, i%500, i), g.smallSize)
			}
			for i := 0; i < g.big && err == nil; i++ {
				err = write(fmt.Sprintf("opt/l%d/big%02d", li, i), g.bigSize)
			}
			if err == nil {
				err = tw.Close()
			}
			pw.CloseWithError(err)
		}()
		return pr, nil
	}
}

// peakHeap samples the heap in use until stop is called and returns the maximum seen.
func peakHeap() (stop func() uint64) {
	var peak atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
	return func() uint64 { close(done); wg.Wait(); return peak.Load() }
}

// BenchmarkFlattenWriteTar flattens 3 layers of 200 MiB in total (many small files and some big
// ones) and writes the canonical tar to io.Discard.
func BenchmarkFlattenWriteTar(b *testing.B) {
	gens := []genLayer{
		{small: 20000, smallSize: 2 << 10},
		{big: 8, bigSize: 10 << 20},
		{small: 10000, smallSize: 4 << 10, big: 4, bigSize: 10 << 20},
	}
	var layers []Layer
	var total int64
	for i, g := range gens {
		layers = append(layers, Layer{Digest: fmt.Sprintf("sha256:gen%d", i), Open: g.open(i)})
		total += g.bytes()
	}
	b.SetBytes(total)
	b.ReportAllocs()
	spool := b.TempDir()
	stop := peakHeap()
	for b.Loop() {
		tr, err := Flatten(context.Background(), layers, Options{SpoolDir: spool})
		if err != nil {
			b.Fatal(err)
		}
		if err := tr.WriteTar(context.Background(), io.Discard); err != nil {
			b.Fatal(err)
		}
		if n := len(tr.Entries); n < 30000 {
			b.Fatalf("%d entries", n)
		}
		tr.Close()
	}
	b.ReportMetric(float64(stop())/(1<<20), "peak-heap-MiB")
}
