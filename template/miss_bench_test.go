package template

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hishel-go/hishel/internal/memstat"
	"github.com/hishel-go/hishel/model"
)

// writeFile is the baseline of the large body benchmarks: the same bytes
// written to a plain file in 1 MiB writes, then fdatasync'd, as a file
// store keeps a body.
func writeFile(path string, src io.Reader) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	if _, err := io.CopyBuffer(f, src, buf); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Remove(path)
}

// pacedReader reads r with a pause of 3 ms after every MiB, as a body
// from the network arrives: slower than the writer's lazy window.
type pacedReader struct {
	r    io.Reader
	read int
}

func (p *pacedReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b[:min(len(b), 1<<20-p.read)])
	if p.read += n; p.read == 1<<20 {
		p.read = 0
		time.Sleep(3 * time.Millisecond)
	}
	return n, err
}

// BenchmarkBoltLargeBody measures storing large bodies, durably, one
// writer: pairs of a 1 MiB body, a 64 MiB body arriving as from the network
// (paced: 3 ms per MiB), and one body of 1 GiB, with the default chunk size
// and the larger ones given; the baseline is writing the same
// bytes to a plain file in the same directory and syncing it once per
// body, in alternating turns. "x-file" is Bolt's time over the file's;
// "anon-MiB" the peak of the process's anonymous memory above what it was
// before (the 1 GiB body), sampled every 5 ms; "commits/MiB" the commits
// (each two fdatasyncs) per MiB stored.
func BenchmarkBoltLargeBody(b *testing.B) {
	for _, c := range []struct {
		size  int64
		chunk int
		paced bool
	}{
		{1 << 20, 0, false}, {1 << 20, 256 << 10, false}, {64 << 20, 0, true},
		{1 << 30, 0, false}, {1 << 30, 256 << 10, false},
	} {
		name := fmt.Sprintf("%dMiB/chunk=%dKiB", c.size>>20, max(c.chunk, DefaultChunkSize)>>10)
		if c.paced {
			name += "/paced"
		}
		src := func() io.Reader { return io.LimitReader(zeros{}, c.size) }
		if c.paced {
			src = func() io.Reader { return &pacedReader{r: io.LimitReader(zeros{}, c.size)} }
		}
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			dir := b.TempDir()
			s := openBolt(b, &BoltOptions{Path: filepath.Join(dir, "c.db"), ChunkSize: c.chunk})
			var ours, file time.Duration
			c0 := s.w.commits.Load()
			var peak int64
			b.SetBytes(c.size)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				t0 := time.Now()
				done := memstat.Peak()
				inc, err := s.CreatePair(ctx, benchRequest())
				if err != nil {
					b.Fatal(err)
				}
				cp, err := s.AddResponse(ctx, inc.ID, model.Response{Status: 200, Header: benchResponse(nil).Header, Body: model.NewBody(src())}, fmt.Sprint("k", i))
				if err != nil {
					b.Fatal(err)
				}
				if n, err := io.Copy(io.Discard, cp.Response.Body); n != c.size || err != nil {
					b.Fatalf("stored %d bytes, %v", n, err)
				}
				peak = max(peak, done())
				t1 := time.Now()
				if err := writeFile(filepath.Join(dir, "plain"), src()); err != nil {
					b.Fatal(err)
				}
				ours += t1.Sub(t0)
				file += time.Since(t1)
				if c.size > 64<<20 {
					b.StopTimer()
					if err := s.Remove(ctx, inc.ID); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(file.Nanoseconds())/float64(b.N), "file-ns/op")
			b.ReportMetric(float64(ours)/float64(file), "x-file")
			b.ReportMetric(float64(peak)/(1<<20), "anon-MiB")
			b.ReportMetric(float64(s.w.commits.Load()-c0)/float64(int64(b.N)*c.size>>20), "commits/MiB")
		})
	}
}
