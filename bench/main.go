// Command bench compares hishel.Transport with the Go HTTP caches people use
// today and with a plain http.Transport, in one process against one local
// origin, and prints a table. It lives in its own module so that the peers
// never become dependencies of hishel-go.
//
// Run it from the repository with `make bench`, or `cd bench && go run .`.
// Every transport runs interleaved with a plain http.Transport, in
// alternating rounds, and is reported as a ratio to it.
//
// Flags: -benchtime (default 1s per measurement; 100x for a quick smoke
// run), -count (measurements per row, default 3), -bigruns (fresh
// processes per transport for the 64 MiB miss, default 11) and -only
// (transports whose names contain one of its comma-separated parts).
// Each workload ends with the Tiered store's time against each of its
// tiers alone, when all three ran.
package main

import (
	"bytes"
	"cmp"
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
	"strings"
	"sync"
	"sync/atomic"
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
		{tieredName, func(dir string, up http.RoundTripper) (http.RoundTripper, func()) {
			ctx := context.Background()
			lower, err := cache.OpenBolt(ctx, &cache.BoltOptions{Path: filepath.Join(dir, "h.db"), SweepInterval: -1})
			if err != nil {
				log.Fatal(err)
			}
			s, err := cache.OpenTiered(ctx, lower, nil)
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

// tieredName is the subject of a memory tier in front of a durable bbolt
// file, compared in each workload with its tiers alone ("hishel bolt",
// "hishel memory").
const tieredName = "hishel tiered (memory over bolt)"

// chosen returns the subjects whose names contain one of the
// comma-separated parts of only (all when only is empty); the plain
// transport always comes first.
func chosen(only string) []subject {
	all := subjects()
	if only == "" {
		return all
	}
	out := all[:1]
	for _, s := range all[1:] {
		for _, part := range strings.Split(only, ",") {
			if part != "" && strings.Contains(s.name, part) {
				out = append(out, s)
				break
			}
		}
	}
	return out
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

// side is what one transport cost over the rounds of a measurement.
type side struct {
	ops           int
	elapsed       time.Duration
	bytes, allocs uint64
}

func (s side) nsOp() float64     { return float64(s.elapsed.Nanoseconds()) / float64(s.ops) }
func (s side) bOp() float64      { return float64(s.bytes) / float64(s.ops) }
func (s side) allocsOp() float64 { return float64(s.allocs) / float64(s.ops) }

// result is one measurement: a subject and the plain transport, run in
// alternating rounds so that the machine's noise hits both alike.
type result struct{ subj, plain side }

func (r result) ratio() float64 {
	return float64(r.subj.elapsed) / float64(r.plain.elapsed) * float64(r.plain.ops) / float64(r.subj.ops)
}

// op is one fetch by worker w (of par), its i-th.
type op func(w, i int) error

// round runs n fetches of fn on par goroutines and adds its time and the
// process's allocations meanwhile to s. Allocations are read outside the
// timed part (ReadMemStats stops the world); they include whatever the
// origin and the transport's own goroutines allocated during the round.
func round(s *side, fn op, par, n int) error {
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	start := time.Now()
	var err error
	if par == 1 {
		for i := range n {
			if err = fn(0, i); err != nil {
				break
			}
		}
	} else {
		var wg sync.WaitGroup
		var mu sync.Mutex
		for w := range par {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < n; i += par {
					if e := fn(w, i); e != nil {
						mu.Lock()
						err = e
						mu.Unlock()
						return
					}
				}
			}()
		}
		wg.Wait()
	}
	s.elapsed += time.Since(start)
	runtime.ReadMemStats(&m1)
	s.ops += n
	s.bytes += m1.TotalAlloc - m0.TotalAlloc
	s.allocs += m1.Mallocs - m0.Mallocs
	return err
}

// measure runs subject and plain in alternating rounds of 32 fetches per
// goroutine each, until both have run for d together (or, when n > 0,
// until each has made n fetches).
func measure(subject, plain op, par int, d time.Duration, n int) (result, error) {
	var r result
	roundOps := 32 * par
	for done := 0; ; done += roundOps {
		if n > 0 && done >= n || n <= 0 && r.subj.elapsed+r.plain.elapsed >= d {
			return r, nil
		}
		k := roundOps
		if n > 0 {
			k = min(k, n-done)
		}
		if err := round(&r.subj, subject, par, k); err != nil {
			return r, err
		}
		if err := round(&r.plain, plain, par, k); err != nil {
			return r, err
		}
	}
}

func main() {
	benchtime := flag.String("benchtime", "1s", "how long each measurement runs, subject and plain together (a duration, or Nx for N fetches of each)")
	count := flag.Int("count", 3, "measurements per transport and workload; the table shows the median ratio and the range")
	bigOnly := flag.Int("big", -1, "internal: measure the 64 MiB miss for subject N and exit")
	bigRuns := flag.Int("bigruns", 11, "fresh processes per transport for the 64 MiB miss")
	only := flag.String("only", "", "measure only the transports whose names contain one of these comma-separated `parts` (such as hishel)")
	flag.Parse()
	var d time.Duration
	var fixed int
	if v, ok := strings.CutSuffix(*benchtime, "x"); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			log.Fatalf("-benchtime %s: want a positive count before x", *benchtime)
		}
		fixed = n
	} else {
		var err error
		if d, err = time.ParseDuration(*benchtime); err != nil || d <= 0 {
			log.Fatalf("-benchtime %s: want a positive duration or Nx", *benchtime)
		}
	}
	if *count < 1 {
		log.Fatalf("-count %d: want at least 1", *count)
	}
	if *bigRuns < 1 {
		log.Fatalf("-bigruns %d: want at least 1", *bigRuns)
	}
	if *bigOnly >= 0 {
		bigChild(*bigOnly, *only)
		return
	}
	srv := origin()
	defer srv.Close()
	// The plain transport, and the origin transport of every subject.
	upstream := &http.Transport{MaxIdleConnsPerHost: 128}
	plainClient := &http.Client{Transport: upstream}

	// A workload names the URL of fetch i by worker w, and whether it is
	// fetched once beforehand (so that the subject serves it from cache).
	type workload struct {
		name string
		par  int
		url  func(base string, w, i int) string
		warm bool
	}
	hit := func(size int) workload {
		return workload{name: "hit " + human(size), par: 1, warm: true,
			url: func(base string, _, _ int) string { return fmt.Sprintf("%s/size/%d/hit", base, size) }}
	}
	var seq atomic.Int64 // every miss, of subject or plain, fetches a new URL
	miss := func(size int) workload {
		return workload{name: "miss+store " + human(size), par: 1,
			url: func(base string, _, _ int) string { return fmt.Sprintf("%s/size/%d/m%d", base, size, seq.Add(1)) }}
	}
	concurrent := workload{name: "hit 16 KiB, 16 clients", par: 16, warm: true,
		url: func(base string, _, _ int) string { return fmt.Sprintf("%s/size/%d/conc", base, 16<<10) }}
	workloads := []workload{hit(1 << 10), hit(16 << 10), hit(1 << 20), miss(1 << 10), miss(16 << 10), miss(1 << 20), concurrent}

	fmt.Printf("# hishel-go vs peers (%s, %d CPUs, %s)\n\n", runtime.Version(), runtime.NumCPU(), time.Now().Format("2006-01-02"))
	fmt.Printf("Each transport runs in alternating rounds of 32 fetches (per client) with a plain http.Transport fetching the same\n"+
		"kind of URL from the same origin; x plain = its time / the plain transport's time in the same\n"+
		"measurement (lower is better): the median of %d measurements, and their range. ns/op, B/op and\n"+
		"allocs/op are the transport's own, from the median measurement; B/op and allocs/op count the whole\n"+
		"process during its rounds (the origin included). The plain column is the plain transport's ns/op\n"+
		"alongside.\n\n", *count)
	for _, w := range workloads {
		fmt.Printf("## %s\n\n| transport | ns/op | plain ns/op | B/op | allocs/op | x plain | range |\n|---|---:|---:|---:|---:|---:|---:|\n", w.name)
		medians := map[string]float64{}
		for _, s := range chosen(*only)[1:] {
			var rs []result
			for range *count {
				dir, err := os.MkdirTemp("", "hishel-bench")
				if err != nil {
					log.Fatal(err)
				}
				rt, cleanup := s.setup(dir, upstream)
				c := &http.Client{Transport: rt}
				fetchOp := func(c *http.Client) op {
					return func(wk, i int) error { return fetch(c, w.url(srv.URL, wk, i)) }
				}
				if w.warm {
					if err := fetch(c, w.url(srv.URL, 0, 0)); err != nil {
						log.Fatalf("%s, %s: %v", s.name, w.name, err)
					}
					if err := fetch(plainClient, w.url(srv.URL, 0, 0)); err != nil {
						log.Fatalf("plain, %s: %v", w.name, err)
					}
				}
				r, err := measure(fetchOp(c), fetchOp(plainClient), w.par, d, fixed)
				cleanup()
				os.RemoveAll(dir)
				if err != nil {
					log.Fatalf("%s, %s: %v", s.name, w.name, err)
				}
				rs = append(rs, r)
			}
			slices.SortFunc(rs, func(a, b result) int { return cmp.Compare(a.ratio(), b.ratio()) })
			m := rs[len(rs)/2]
			medians[s.name] = m.ratio()
			fmt.Printf("| %s | %.0f | %.0f | %.0f | %.0f | %.2f | %.2f–%.2f |\n", s.name, m.subj.nsOp(), m.plain.nsOp(),
				m.subj.bOp(), m.subj.allocsOp(), m.ratio(), rs[0].ratio(), rs[len(rs)-1].ratio())
		}
		if t, b, mem := medians[tieredName], medians["hishel bolt"], medians["hishel memory"]; t > 0 && b > 0 && mem > 0 {
			fmt.Printf("\nTiered against its tiers alone (medians of x plain, this run): %.2f of hishel bolt's time, %.2f of hishel memory's.\n", t/b, t/mem)
		}
		fmt.Println()
	}

	// A 64 MiB response on a miss: time to the response (its header), to
	// the first byte of the body, in all, and peak heap. Each measurement
	// runs in a fresh process of its own (this program with -big), so that
	// what earlier transports left on the heap does not blur the figure;
	// HeapAlloc counts garbage too, and a small live heap keeps the
	// collector running often. One sample of a millisecond is mostly
	// scheduling noise on a small machine: every transport runs *bigRuns
	// times, taking turns (so that a slow spell of the machine hits them
	// alike), and the table shows medians and the largest peak. The time
	// from the response to its first byte is the transport's own share of
	// the time to first byte: a transport that streams adds little to the
	// origin's, one that buffers the body has read all of it by then.
	fmt.Printf("## 64 MiB response, miss, median of %d fresh processes\n\n"+
		"| transport | time to response | time to first byte | first byte after response | total | peak heap above baseline |\n"+
		"|---|---:|---:|---:|---:|---:|\n", *bigRuns)
	self, err := os.Executable()
	if err != nil {
		log.Fatal(err)
	}
	subs := chosen(*only)
	type bigRun struct{ hdr, ttfb, after, total []time.Duration }
	runs := make([]bigRun, len(subs))
	peaks := make([]int64, len(subs))
	for range *bigRuns {
		for i, s := range subs {
			out, err := exec.Command(self, "-big", strconv.Itoa(i), "-only", *only).Output()
			if err != nil {
				log.Fatalf("%s: %v", s.name, err)
			}
			var hdr, t, tot time.Duration
			var p int64
			if _, err := fmt.Sscan(string(out), &hdr, &t, &tot, &p); err != nil {
				log.Fatalf("%s: child printed %q: %v", s.name, out, err)
			}
			r := &runs[i]
			r.hdr, r.ttfb, r.after, r.total = append(r.hdr, hdr), append(r.ttfb, t), append(r.after, t-hdr), append(r.total, tot)
			peaks[i] = max(peaks[i], p)
		}
	}
	for i, s := range subs {
		r := runs[i]
		fmt.Printf("| %s | %v | %v | %v | %v | %.1f MiB |\n", s.name, median(r.hdr).Round(time.Microsecond), median(r.ttfb).Round(time.Microsecond),
			median(r.after).Round(time.Microsecond), median(r.total).Round(time.Millisecond), float64(peaks[i])/(1<<20))
	}
}

func median(d []time.Duration) time.Duration {
	slices.Sort(d)
	return d[len(d)/2]
}

// bigChild measures the 64 MiB miss for subject i and prints the time to
// the response, to the first byte and in all (ns) and the peak heap (bytes). Before it, one 64 MiB
// response passes through the plain transport (so that the connection and
// the origin are warm, as for every subject) and one 1 KiB miss through the
// subject (so that its code and storage are, too: a first request's page
// faults and lazy initialisation are not what the row is about).
func bigChild(i int, only string) {
	srv := origin()
	defer srv.Close()
	upstream := &http.Transport{}
	dir, _ := os.MkdirTemp("", "hishel-bench")
	defer os.RemoveAll(dir)
	rt, cleanup := chosen(only)[i].setup(dir, upstream)
	defer cleanup()
	_ = fetch(&http.Client{Transport: upstream}, fmt.Sprintf("%s/size/%d/warm", srv.URL, 64<<20))
	_ = fetch(&http.Client{Transport: rt}, fmt.Sprintf("%s/size/%d/warm", srv.URL, 1<<10))
	hdr, ttfb, total, peak := big(&http.Client{Transport: rt}, fmt.Sprintf("%s/size/%d/big", srv.URL, 64<<20))
	fmt.Println(int64(hdr), int64(ttfb), int64(total), peak)
}

// big fetches url once, measuring the time to the response, to the first
// byte of its body and in all, and the heap's peak above its level before
// the request.
func big(c *http.Client, url string) (hdr, ttfb, total time.Duration, peak int64) {
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
	hdr = time.Since(start)
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
	return hdr, ttfb, total, top.Load()
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
