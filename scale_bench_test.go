package hishel_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/hishel-go/hishel"
	"github.com/hishel-go/hishel/cache"
)

var (
	scalePairs = flag.Int("transport.scalepairs", 100_000, "1 KiB responses in the file BenchmarkTransportHitScale reads (1000000 for the README's numbers)")
	scaleFile  = flag.String("transport.scalefile", "", "the file BenchmarkTransportHitScale reads: filled there through a Transport if missing, and kept (default: filled in a temporary directory)")
)

// scaleURL is the URL of response i of a file fillScaleFile filled.
func scaleURL(i int) string { return "http://origin.test/r/" + strconv.Itoa(i) }

// fillScaleFile stores n responses of 1 KiB, cacheable for a year, at
// scaleURL(0) to scaleURL(n-1), through a Transport on a new Bolt file at
// path (NoSync while it fills), and closes it.
func fillScaleFile(b *testing.B, path string, n int) {
	s, err := cache.OpenBolt(context.Background(), &cache.BoltOptions{Path: path, NoSync: true, SweepInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	origin := cannedOrigin{body: bytes.Repeat([]byte("x"), 1<<10), cc: "max-age=31536000"}
	tr, err := hishel.NewTransport(&hishel.Options{Storage: s, Transport: origin})
	if err != nil {
		b.Fatal(err)
	}
	c := &http.Client{Transport: tr}
	start := time.Now()
	for i := range n {
		if err := get(c, scaleURL(i)); err != nil {
			b.Fatal(err)
		}
	}
	if err := errors.Join(tr.Close(), s.Close()); err != nil {
		b.Fatal(err)
	}
	b.Logf("%d responses stored in %v", n, time.Since(start).Round(time.Millisecond))
}

// scaleClient returns a client whose Transport answers from the Bolt file
// at path, of n responses, open until b's end, with every response read
// once in order.
func scaleClient(b *testing.B, path string, n int) *http.Client {
	s, err := cache.OpenBolt(context.Background(), &cache.BoltOptions{Path: path, SweepInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	tr, err := hishel.NewTransport(&hishel.Options{Storage: s, Transport: noOrigin{}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { tr.Close(); s.Close() })
	c := &http.Client{Transport: tr}
	for i := range n {
		if err := get(c, scaleURL(i)); err != nil {
			b.Fatal(err)
		}
	}
	return c
}

// noOrigin fails every request: a hit must not reach the origin.
type noOrigin struct{}

func (noOrigin) RoundTrip(req *http.Request) (*http.Response, error) {
	return nil, fmt.Errorf("%s reached the origin: not a hit", req.URL)
}

// BenchmarkTransportHitScale measures what the size of a Bolt file costs a
// hit as a Transport's user sees it: a GET answered from the store, read
// to the end, at a random URL among -transport.scalepairs (100k by
// default; -transport.scalefile keeps the file between runs), taking turns
// in rounds of 32 with the same on a file of 1000 responses, both open in
// this process and both filled through a Transport. "x-1k" is the mean
// time of a hit over the small file's, "p50-x-1k" and "p99-x-1k" the same
// of the medians and 99th percentiles, "1k-ns/op" the small file's mean.
//
// Both files are read once from end to end first (every response, in
// order), as a long-running process has them: in the page cache and
// mapped. A request that reaches the origin fails the benchmark.
func BenchmarkTransportHitScale(b *testing.B) {
	large := *scaleFile
	if large == "" {
		large = filepath.Join(b.TempDir(), "large.db")
	}
	if _, err := os.Stat(large); err != nil {
		fillScaleFile(b, large, *scalePairs)
	}
	const smallPairs = 1000
	small := filepath.Join(b.TempDir(), "small.db")
	fillScaleFile(b, small, smallPairs)
	big, little := scaleClient(b, large, *scalePairs), scaleClient(b, small, smallPairs)
	b.Run("hit", func(b *testing.B) {
		rng := rand.New(rand.NewPCG(1, 2))
		hit := func(c *http.Client, n int) (time.Duration, error) {
			url := scaleURL(rng.IntN(n))
			t0 := time.Now()
			resp, err := c.Get(url)
			if err != nil {
				return 0, err
			}
			m, err := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err == nil && m != 1<<10 {
				err = fmt.Errorf("%s: %d bytes", url, m)
			}
			return time.Since(t0), err
		}
		ts := make([]time.Duration, 0, b.N)
		tb := make([]time.Duration, 0, b.N)
		b.ReportAllocs()
		b.ResetTimer()
		const round = 32
		for done := 0; done < b.N; done += round {
			for _, t := range []struct {
				c  *http.Client
				n  int
				to *[]time.Duration
			}{{big, *scalePairs, &tb}, {little, smallPairs, &ts}} {
				for range min(round, b.N-done) {
					d, err := hit(t.c, t.n)
					if err != nil {
						b.Fatal(err)
					}
					*t.to = append(*t.to, d)
				}
			}
		}
		b.StopTimer()
		reportScale(b, tb, ts)
	})
}

// reportScale reports the times of hits on a large file, tb, against
// those on a small one, ts: the small one's mean ("1k-ns/op"), and the
// ratios of the means ("x-1k"), medians ("p50-x-1k") and 99th percentiles
// ("p99-x-1k").
func reportScale(b *testing.B, tb, ts []time.Duration) {
	sum := func(ds []time.Duration) (t time.Duration) {
		for _, d := range ds {
			t += d
		}
		return t
	}
	b.ReportMetric(float64(sum(ts).Nanoseconds())/float64(len(ts)), "1k-ns/op")
	b.ReportMetric(float64(sum(tb))/float64(sum(ts)), "x-1k")
	slices.Sort(ts)
	slices.Sort(tb)
	at := func(ds []time.Duration, q float64) float64 { return float64(ds[int(q*float64(len(ds)-1))]) }
	b.ReportMetric(at(tb, 0.5)/at(ts, 0.5), "p50-x-1k")
	b.ReportMetric(at(tb, 0.99)/at(ts, 0.99), "p99-x-1k")
}
