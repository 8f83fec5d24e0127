//go:build unix

package template

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/hishel-go/hishel/bolt"
)

var scaleHeadCache = flag.Int("bolt.headcache", 0, "HeadCacheBytes of the files BenchmarkBoltScale/hit reads (0: the default; -1: none)")

// BenchmarkBoltScale measures what the size of a file costs, on the file
// BenchmarkBoltOpen opens (-bolt.openpairs 1 KiB pairs, 100k by default;
// 1000000 for the README's numbers; -bolt.openfile keeps it between runs):
//   - hit: GetPairs and the body of a random pair, taking turns in rounds
//     of 32 with the same on a file of 1000 pairs open in the same
//     process. "x-1k" is the mean time of a hit over the small file's,
//     "p50-x-1k" and "p99-x-1k" the same of the medians and 99th
//     percentiles; "faults/hit" and "1k-faults/hit" are the page faults
//     the process took per hit on each (a page of the map touched for the
//     first time since it was mapped, such as a page a commit wrote);
//   - close-after-hits=N: OpenBolt, N hits on random pairs (access times
//     gathered, none written yet), then Close timed ("close-ms"), then the
//     next OpenBolt timed ("reopen-ms"), as a process that stops after
//     serving reads and one that starts again. "mapped-MiB" is how much
//     of bbolt's map was resident before Close (what munmap takes down:
//     the kernel maps the neighbours of a page that faults too);
//     "raw-munmap-ms" and "raw-mapped-MiB" are the same file mapped by
//     hand, as many random pages read, and unmapped, in the same
//     iteration: the kernel's share of Close.
//
// -bolt.headcache sets both files' HeadCacheBytes (-1: none): hits on
// random pairs of a large file find few heads kept, while the small
// file's all fit.
func BenchmarkBoltScale(b *testing.B) {
	large := openBenchFile(b)
	ctx := context.Background()
	b.Run("hit", func(b *testing.B) {
		const smallPairs = 1000
		smallPath := filepath.Join(b.TempDir(), "small.db")
		buildPairsFile(b, smallPath, smallPairs)
		small := openBolt(b, &BoltOptions{Path: smallPath, HeadCacheBytes: *scaleHeadCache})
		big := openBolt(b, &BoltOptions{Path: large, HeadCacheBytes: *scaleHeadCache})
		rng := rand.New(rand.NewPCG(1, 2))
		buf := make([]byte, 32<<10)
		hit := func(s *Bolt, n int) (time.Duration, error) {
			key := pairsFileKey(rng.IntN(n))
			t0 := time.Now()
			ps, err := s.GetPairs(ctx, key)
			if err != nil || len(ps) != 1 {
				return 0, fmt.Errorf("GetPairs(%q): %d pairs, %v", key, len(ps), err)
			}
			if n, err := io.CopyBuffer(io.Discard, ps[0].Response.Body, buf); n != 1<<10 || err != nil {
				return 0, fmt.Errorf("body of %q: %d bytes, %v", key, n, err)
			}
			err = ps[0].Close()
			return time.Since(t0), err
		}
		// Warm both files up as a long-running process has them: every
		// leaf of every bucket mapped (a first touch of a page of the
		// map is a page fault, tens of microseconds on a virtual
		// machine), and the readers' and access times' state in use.
		for _, path := range []string{smallPath, large} { // into the page cache, sequentially
			f, err := os.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			_, err = io.Copy(io.Discard, f)
			f.Close()
			if err != nil {
				b.Fatal(err)
			}
		}
		for _, s := range []*Bolt{small, big} {
			err := s.view(func(t *readTx) error {
				for _, name := range bolt.Buckets {
					c := t.tx.Bucket(name).Cursor()
					for k, v := c.First(); k != nil; k, v = c.Next() {
						_ = len(v)
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		for i := range 20_000 {
			if _, err := hit(big, *openPairs); err != nil {
				b.Fatal(err)
			}
			if _, err := hit(small, min(i+1, smallPairs)); err != nil {
				b.Fatal(err)
			}
		}
		ts := make([]time.Duration, 0, b.N)
		tb := make([]time.Duration, 0, b.N)
		var fb, fs int64 // page faults during the large and small file's hits
		b.ReportAllocs()
		b.ResetTimer()
		const round = 32
		for done := 0; done < b.N; done += round {
			f0 := minorFaults()
			for range min(round, b.N-done) {
				d, err := hit(big, *openPairs)
				if err != nil {
					b.Fatal(err)
				}
				tb = append(tb, d)
			}
			f1 := minorFaults()
			for range min(round, b.N-done) {
				d, err := hit(small, smallPairs)
				if err != nil {
					b.Fatal(err)
				}
				ts = append(ts, d)
			}
			fb, fs = fb+f1-f0, fs+minorFaults()-f1
		}
		b.StopTimer()
		b.ReportMetric(float64(fb)/float64(b.N), "faults/hit")
		b.ReportMetric(float64(fs)/float64(b.N), "1k-faults/hit")
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
	})
	for _, hits := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("close-after-hits=%d", hits), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(3, 4))
			buf := make([]byte, 32<<10)
			var closing, reopen, unmap time.Duration
			var mapped, rawBytes int64
			for range b.N {
				s, err := OpenBolt(ctx, &BoltOptions{Path: large, SweepInterval: -1, AccessFlushInterval: time.Hour})
				if err != nil {
					b.Fatal(err)
				}
				for range hits {
					ps, err := s.GetPairs(ctx, pairsFileKey(rng.IntN(*openPairs)))
					if err != nil || len(ps) != 1 {
						b.Fatalf("GetPairs: %d pairs, %v", len(ps), err)
					}
					if _, err := io.CopyBuffer(io.Discard, ps[0].Response.Body, buf); err != nil {
						b.Fatal(err)
					}
					ps[0].Close()
				}
				mapped += mappedBytes(s.db.Info().Data)
				t0 := time.Now()
				if err := s.Close(); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				s, err = OpenBolt(ctx, &BoltOptions{Path: large, SweepInterval: -1, AccessFlushInterval: time.Hour})
				if err != nil {
					b.Fatal(err)
				}
				t2 := time.Now()
				st := s.db.Stats()
				b.ReportMetric(float64(st.FreePageN+st.PendingPageN), "free-pages")
				if err := s.Close(); err != nil {
					b.Fatal(err)
				}
				// The same file mapped by hand, as many random pages
				// touched, and unmapped: what the kernel's munmap
				// costs alone, without bbolt.
				raw, rawMapped, err := rawUnmap(large, hits, rng)
				if err != nil {
					b.Fatal(err)
				}
				unmap += raw
				rawBytes += rawMapped
				closing += t1.Sub(t0)
				reopen += t2.Sub(t1)
			}
			b.ReportMetric(float64(closing.Microseconds())/1e3/float64(b.N), "close-ms")
			b.ReportMetric(float64(reopen.Microseconds())/1e3/float64(b.N), "reopen-ms")
			b.ReportMetric(float64(mapped)/(1<<20)/float64(b.N), "mapped-MiB")
			b.ReportMetric(float64(unmap.Microseconds())/1e3/float64(b.N), "raw-munmap-ms")
			b.ReportMetric(float64(rawBytes)/(1<<20)/float64(b.N), "raw-mapped-MiB")
		})
	}
}

// rawSum keeps rawUnmap's reads from being optimised away.
var rawSum byte

// rawUnmap maps the file at path read-only, reads a byte of each of n
// random pages, and returns how long munmap then took and how much of the
// map was resident (the kernel maps the pages around one that faults too).
func rawUnmap(path string, n int, rng *rand.Rand) (time.Duration, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, 0, err
	}
	data, err := syscall.Mmap(int(f.Fd()), 0, int(fi.Size()), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return 0, 0, err
	}
	pages := len(data) / os.Getpagesize()
	for range n {
		rawSum += data[rng.IntN(pages)*os.Getpagesize()]
	}
	resident := mappedBytes(uintptr(unsafe.Pointer(&data[0])))
	t0 := time.Now()
	err = syscall.Munmap(data)
	return time.Since(t0), resident, err
}

// mappedBytes returns the resident size (Rss in /proc/self/smaps) of the
// mapping that starts at addr: the pages the process has mapped, which
// munmap must take down.
func mappedBytes(addr uintptr) int64 {
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return 0
	}
	start := strconv.FormatUint(uint64(addr), 16) + "-"
	in := false
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":") {
			in = strings.HasPrefix(f[0], start)
			continue
		}
		if in && len(f) == 3 && f[0] == "Rss:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// minorFaults returns the page faults the process has taken so far that
// needed no I/O: on a file in the page cache, each is a page of the map
// touched for the first time since it was (re)mapped.
func minorFaults() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Minflt
}
