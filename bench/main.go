// Command bench compares hishel.Transport with the Go HTTP caches people use
// today and with a plain http.Transport, in one process against one local
// origin, and prints a table. It lives in its own module so that the peers
// never become dependencies of hishel-go.
//
// Run it from the repository with `make bench`, or `cd bench && go run .`.
// Flags: -benchtime (default 1s; 100x for a quick smoke run) and -bigruns
// (fresh processes per transport for the 64 MiB miss, default 7).
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bvcache "github.com/bartventer/httpcache"
	_ "github.com/bartventer/httpcache/store/fscache"
	_ "github.com/bartventer/httpcache/store/memcache"
	gjcache "github.com/gregjones/httpcache"
	"github.com/gregjones/httpcache/diskcache"
	"github.com/gregjones/httpcache/leveldbcache"

	"github.com/hishel-go/hishel"
	"github.com/hishel-go/hishel/cache"
)

// subject is one transport under test; setup returns it and a cleanup.
type subject struct {
	name  string
	setup func(dir string, upstream http.RoundTripper) (http.RoundTripper, func())
}

func subjects() []subject {
	hishelBolt := func(noSync bool) func(string, http.RoundTripper) (http.RoundTripper, func()) {
		return func(dir string, up http.RoundTripper) (http.RoundTripper, func()) {
			s, err := cache.OpenBolt(context.Background(), &cache.BoltOptions{Path: filepath.Join(dir, "h.db"), NoSync: noSync, SweepInterval: -1})
			if err != nil {
				log.Fatal(err)
			}
			t, err := hishel.NewTransport(&hishel.Options{Storage: s, Transport: up})
			if err != nil {
				log.Fatal(err)
			}
			return t, func() { t.Close(); s.Close() }
		}
	}
	return []subject{
		{"plain http.Transport", func(_ string, up http.RoundTripper) (http.RoundTripper, func()) { return up, func() {} }},
		{"hishel bolt", hishelBolt(false)},
		{"hishel bolt NoSync", hishelBolt(true)},
		{"hishel memory", func(_ string, up http.RoundTripper) (http.RoundTripper, func()) {
			s, err := cache.OpenMemory(context.Background(), &cache.MemoryOptions{SweepInterval: -1})
			if err != nil {
				log.Fatal(err)
			}
			t, _ := hishel.NewTransport(&hishel.Options{Storage: s, Transport: up})
			return t, func() { t.Close(); s.Close() }
		}},
		{"gregjones memory", func(_ string, up http.RoundTripper) (http.RoundTripper, func()) {
			t := gjcache.NewMemoryCacheTransport()
			t.Transport = up
			return t, func() {}
		}},
		{"gregjones diskcache", func(dir string, up http.RoundTripper) (http.RoundTripper, func()) {
			t := gjcache.NewTransport(diskcache.New(filepath.Join(dir, "disk")))
			t.Transport = up
			return t, func() {}
		}},
		{"gregjones leveldbcache", func(dir string, up http.RoundTripper) (http.RoundTripper, func()) {
			c, err := leveldbcache.New(filepath.Join(dir, "ldb"))
			if err != nil {
				log.Fatal(err)
			}
			t := gjcache.NewTransport(c)
			t.Transport = up
			return t, func() {}
		}},
		{"bartventer memcache", func(_ string, up http.RoundTripper) (http.RoundTripper, func()) {
			return bvcache.NewTransport("memcache://", bvcache.WithUpstream(up)), func() {}
		}},
		{"bartventer fscache", func(dir string, up http.RoundTripper) (http.RoundTripper, func()) {
			return bvcache.NewTransport("fscache://"+filepath.Join(dir, "fs")+"?appname=bench", bvcache.WithUpstream(up)), func() {}
		}},
	}
}

// origin serves /size/<n>/<anything> with n bytes, cacheable for an hour.
func origin() *httptest.Server {
	bodies := sync.Map{}
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var n int
		fmt.Sscanf(r.URL.Path, "/size/%d/", &n)
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Header().Set("Content-Length", strconv.Itoa(n))
		w.Header().Set("Last-Modified", "Mon, 02 Jan 2006 15:04:05 GMT")
		// Bodies up to 1 MiB are kept; larger ones are written in pieces,
		// so that the origin's own memory does not blur the heap figures.
		const piece = 1 << 20
		b, ok := bodies.Load(min(n, piece))
		if !ok {
			b, _ = bodies.LoadOrStore(min(n, piece), bytes.Repeat([]byte("0123456789abcdef"), piece/16)[:min(n, piece)])
		}
		for left := n; left > 0; left -= piece {
			if _, err := w.Write(b.([]byte)[:min(left, piece)]); err != nil {
				return
			}
		}
	}))
}

func fetch(c *http.Client, url string) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return err
}

type result struct {
	nsOp, bOp, allocsOp float64
}

func run(fn func(b *testing.B)) result {
	r := testing.Benchmark(fn)
	return result{float64(r.NsPerOp()), float64(r.AllocedBytesPerOp()), float64(r.AllocsPerOp())}
}

func main() {
	testing.Init()
	benchtime := flag.String("benchtime", "1s", "how long each measurement runs (a duration, or Nx for N iterations)")
	bigOnly := flag.Int("big", -1, "internal: measure the 64 MiB miss for subject N and exit")
	bigRuns := flag.Int("bigruns", 7, "fresh processes per transport for the 64 MiB miss")
	flag.Parse()
	if err := flag.Set("test.benchtime", *benchtime); err != nil {
		log.Fatal(err)
	}
	if *bigRuns < 1 {
		log.Fatalf("-bigruns %d: want at least 1", *bigRuns)
	}
	if *bigOnly >= 0 {
		bigChild(*bigOnly)
		return
	}
	srv := origin()
	defer srv.Close()
	upstream := &http.Transport{MaxIdleConnsPerHost: 128}

	type workload struct {
		name string
		fn   func(c *http.Client, base string) func(b *testing.B)
	}
	hit := func(size int) workload {
		return workload{fmt.Sprintf("hit %s", human(size)), func(c *http.Client, base string) func(b *testing.B) {
			url := fmt.Sprintf("%s/size/%d/hit", base, size)
			_ = fetch(c, url)
			return func(b *testing.B) {
				b.ReportAllocs()
				for i := 0; i < b.N; i++ {
					if err := fetch(c, url); err != nil {
						b.Fatal(err)
					}
				}
			}
		}}
	}
	var seq atomic.Int64
	miss := func(size int) workload {
		return workload{fmt.Sprintf("miss+store %s", human(size)), func(c *http.Client, base string) func(b *testing.B) {
			return func(b *testing.B) {
				b.ReportAllocs()
				for i := 0; i < b.N; i++ {
					if err := fetch(c, fmt.Sprintf("%s/size/%d/m%d", base, size, seq.Add(1))); err != nil {
						b.Fatal(err)
					}
				}
			}
		}}
	}
	concurrent := workload{"hit 16 KiB, 16 clients", func(c *http.Client, base string) func(b *testing.B) {
		url := fmt.Sprintf("%s/size/%d/conc", base, 16<<10)
		_ = fetch(c, url)
		return func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(8) // 2 cores x 8 = 16 goroutines
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := fetch(c, url); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
	}}
	workloads := []workload{hit(1 << 10), hit(16 << 10), hit(1 << 20), miss(1 << 10), miss(16 << 10), miss(1 << 20), concurrent}

	fmt.Printf("# hishel-go vs peers (%s, %d CPUs, %s)\n\n", runtime.Version(), runtime.NumCPU(), time.Now().Format("2006-01-02"))
	fmt.Println("ns/op, B/op, allocs/op; ratio = ns/op / plain http.Transport's ns/op in the same workload (lower is better).")
	fmt.Println()
	for _, w := range workloads {
		fmt.Printf("## %s\n\n| transport | ns/op | B/op | allocs/op | x plain |\n|---|---:|---:|---:|---:|\n", w.name)
		var plain float64
		for _, s := range subjects() {
			dir, _ := os.MkdirTemp("", "hishel-bench")
			rt, cleanup := s.setup(dir, upstream)
			c := &http.Client{Transport: rt}
			r := run(w.fn(c, srv.URL))
			cleanup()
			os.RemoveAll(dir)
			if plain == 0 {
				plain = r.nsOp
			}
			fmt.Printf("| %s | %.0f | %.0f | %.0f | %.2f |\n", s.name, r.nsOp, r.bOp, r.allocsOp, r.nsOp/plain)
		}
		fmt.Println()
	}

	// A 64 MiB response on a miss: time to first byte, total, peak heap.
	// Each measurement runs in a fresh process of its own (this program
	// with -big), so that what earlier transports left on the heap does not
	// blur the figure; HeapAlloc counts garbage too, and a small live heap
	// keeps the collector running often. One sample of a millisecond is
	// mostly scheduling noise on a small machine: each transport runs
	// *bigRuns times, and the table shows the median time to first byte and
	// total time, and the largest peak.
	fmt.Printf("## 64 MiB response, miss, median of %d fresh processes\n\n| transport | time to first byte | total | peak heap above baseline |\n|---|---:|---:|---:|\n", *bigRuns)
	self, err := os.Executable()
	if err != nil {
		log.Fatal(err)
	}
	for i, s := range subjects() {
		var ttfb, total []time.Duration
		var peak int64
		for range *bigRuns {
			out, err := exec.Command(self, "-big", strconv.Itoa(i)).Output()
			if err != nil {
				log.Fatalf("%s: %v", s.name, err)
			}
			var t, tot time.Duration
			var p int64
			if _, err := fmt.Sscan(string(out), &t, &tot, &p); err != nil {
				log.Fatalf("%s: child printed %q: %v", s.name, out, err)
			}
			ttfb, total, peak = append(ttfb, t), append(total, tot), max(peak, p)
		}
		fmt.Printf("| %s | %v | %v | %.1f MiB |\n", s.name, median(ttfb).Round(time.Microsecond), median(total).Round(time.Millisecond), float64(peak)/(1<<20))
	}
}

func median(d []time.Duration) time.Duration {
	slices.Sort(d)
	return d[len(d)/2]
}

// bigChild measures the 64 MiB miss for subject i and prints time to first
// byte and total time (ns) and the peak heap (bytes). Before it, one 64 MiB
// response passes through the plain transport (so that the connection and
// the origin are warm, as for every subject) and one 1 KiB miss through the
// subject (so that its code and storage are, too: a first request's page
// faults and lazy initialisation are not what the row is about).
func bigChild(i int) {
	srv := origin()
	defer srv.Close()
	upstream := &http.Transport{}
	dir, _ := os.MkdirTemp("", "hishel-bench")
	defer os.RemoveAll(dir)
	rt, cleanup := subjects()[i].setup(dir, upstream)
	defer cleanup()
	_ = fetch(&http.Client{Transport: upstream}, fmt.Sprintf("%s/size/%d/warm", srv.URL, 64<<20))
	_ = fetch(&http.Client{Transport: rt}, fmt.Sprintf("%s/size/%d/warm", srv.URL, 1<<10))
	ttfb, total, peak := big(&http.Client{Transport: rt}, fmt.Sprintf("%s/size/%d/big", srv.URL, 64<<20))
	fmt.Println(int64(ttfb), int64(total), peak)
}

// big fetches url once, measuring time to first byte, total time and the
// heap's peak above its level before the request.
func big(c *http.Client, url string) (ttfb, total time.Duration, peak int64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := int64(ms.HeapAlloc)
	var top atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			if v := int64(m.HeapAlloc) - base; v > top.Load() {
				top.Store(v)
			}
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	start := time.Now()
	resp, err := c.Get(url)
	if err != nil {
		log.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	n, err := resp.Body.Read(buf)
	ttfb = time.Since(start)
	for err == nil {
		_, err = resp.Body.Read(buf)
	}
	resp.Body.Close()
	total = time.Since(start)
	close(stop)
	wg.Wait()
	_ = n
	return ttfb, total, top.Load()
}

func human(n int) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}
