package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hishel-go/hishel"
	"github.com/hishel-go/hishel/cache"
)

// BenchmarkProxyHit serves a stored response through the proxy's handler
// (hishel proxy -shared on a bbolt file); through the same handler with
// every request going through httputil.ReverseProxy, as hits did before
// the handler wrote them itself (reverseproxy); and, as the baseline in the
// same process, through a plain handler that writes the same head and bytes
// from memory: the Go ceiling of bench/proxy without the network. The ratio
// of their cpu-ns/op is what a hit costs above writing the bytes.
func BenchmarkProxyHit(b *testing.B) {
	eachHitSize(b, func(name string, size int, plain http.Handler, origin string) {
		b.Run(name+"/proxy", func(b *testing.B) {
			benchHandler(b, benchProxy(b, origin, false), size)
		})
		b.Run(name+"/reverseproxy", func(b *testing.B) {
			benchHandler(b, benchProxy(b, origin, true), size)
		})
		b.Run(name+"/plain", func(b *testing.B) {
			benchHandler(b, plain, size)
		})
	})
}

// eachHitSize calls run for each hit size the benchmarks measure, with an
// origin serving a body of that size through plain, at origin's URL.
func eachHitSize(b *testing.B, run func(name string, size int, plain http.Handler, origin string)) {
	for _, size := range []int{1 << 10, 16 << 10, 1 << 20} {
		plain := plainHandler(bytes.Repeat([]byte("0123456789abcdef"), size/16))
		origin := httptest.NewServer(plain)
		b.Cleanup(origin.Close)
		run(map[int]string{1 << 10: "1KiB", 16 << 10: "16KiB", 1 << 20: "1MiB"}[size], size, plain, origin.URL)
	}
}

// plainHandler writes body with an origin's head, cacheable for an hour.
func plainHandler(body []byte) http.Handler {
	cl := []string{strconv.Itoa(len(body))}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Cache-Control"] = []string{"public, max-age=3600"}
		h["Content-Type"] = []string{"application/octet-stream"}
		h["Etag"] = []string{`"bench"`}
		h["Content-Length"] = cl
		_, _ = w.Write(body)
	})
}

// sharedTransport returns the config and caching transport of a proxy
// -shared in front of origin, as runProxy builds them, on a bbolt file in
// a temporary directory.
func sharedTransport(tb testing.TB, origin string) (*proxyConfig, *hishel.Transport) {
	store, err := cache.OpenBolt(context.Background(), &cache.BoltOptions{Path: filepath.Join(tb.TempDir(), "cache.db")})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { store.Close() })
	cfg := testConfig(tb, origin)
	cfg.shared = true
	up := cfg.originTransport()
	tb.Cleanup(up.CloseIdleConnections)
	tr, err := hishel.NewTransport(cfg.options(up, store, slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { tr.Close() })
	return cfg, tr
}

// benchProxy is the proxy's handler, as runProxy builds it, in front of
// origin, on a bbolt file in a temporary directory; with viaRP, every
// request goes through the reverse proxy.
func benchProxy(b *testing.B, origin string, viaRP bool) http.Handler {
	cfg, tr := sharedTransport(b, origin)
	if viaRP {
		return newProxy(cfg.target, noHit{tr}, log.New(io.Discard, "", 0), false)
	}
	return cfg.server(tr, log.New(io.Discard, "", 0)).Handler
}

// benchHandler serves GET /hit b.N times with h, after one request that
// stores it, and checks each answer's size.
func benchHandler(b *testing.B, h http.Handler, size int) {
	req := httptest.NewRequest(http.MethodGet, "http://proxy.test/hit", nil)
	req.RemoteAddr = "127.0.0.1:40000"
	w := &discardWriter{h: http.Header{}}
	h.ServeHTTP(w, req)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	w.writes = 0
	cpu0 := cpuTime()
	b.ResetTimer()
	for b.Loop() {
		clear(w.h)
		w.n, w.code = 0, 0
		h.ServeHTTP(w, req)
		if w.n != size || w.code != http.StatusOK {
			b.Fatalf("served %d bytes, status %d; want %d, 200", w.n, w.code, size)
		}
	}
	// Each Write is a trip through net/http's buffer, and often a system
	// call: a body written in many pieces costs more than one written
	// whole.
	b.ReportMetric(float64(w.writes)/float64(b.N), "writes/op")
	// The process's CPU time (the GC's too), which other loads on the
	// machine blur less than ns/op.
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
}

// cpuTime is the CPU time the process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// discardWriter is an http.ResponseWriter that counts and discards the
// body; like net/http's, it reads from a Reader through a pooled buffer.
type discardWriter struct {
	h      http.Header
	n      int
	code   int
	writes int
}

func (w *discardWriter) Header() http.Header { return w.h }
func (w *discardWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

func (w *discardWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	w.n += len(p)
	w.writes++
	return len(p), nil
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (w *discardWriter) ReadFrom(r io.Reader) (int64, error) {
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	return io.CopyBuffer(struct{ io.Writer }{w}, r, *buf)
}

// BenchmarkProxyHitServer is BenchmarkProxyHit over loopback connections
// (net/http server and client, 8 keep-alive connections per core): the
// proxy's server (its handler on its client connections) against the
// same server with the plain handler.
func BenchmarkProxyHitServer(b *testing.B) {
	eachHitSize(b, func(name string, size int, plain http.Handler, origin string) {
		b.Run(name+"/proxy", func(b *testing.B) {
			benchServer(b, benchProxy(b, origin, false), size, true)
		})
		b.Run(name+"/plain", func(b *testing.B) {
			benchServer(b, plain, size, false)
		})
	})
}

// benchServer measures h behind a net/http server on loopback; with held,
// on the proxy's client connections (heldListener), as runProxy serves.
func benchServer(b *testing.B, h http.Handler, size int, held bool) {
	srv := httptest.NewUnstartedServer(h)
	if held {
		srv.Listener = heldListener{srv.Listener}
		srv.Config.ConnContext = withHeldConn
	}
	srv.Start()
	b.Cleanup(srv.Close)
	tr := &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}
	b.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr}
	url := srv.URL + "/hit"
	get := func() error {
		resp, err := c.Get(url)
		if err != nil {
			return err
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil && (n != int64(size) || resp.StatusCode != http.StatusOK) {
			err = fmt.Errorf("served %d bytes, status %d; want %d, 200", n, resp.StatusCode, size)
		}
		return err
	}
	if err := get(); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.SetParallelism(8)
	cpu0 := cpuTime()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := get(); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
}
