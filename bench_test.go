package hishel_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hishel-go/hishel"
	"github.com/hishel-go/hishel/cache"
	"github.com/hishel-go/hishel/internal/memstat"
)

// The benchmarks here run the Transport and a plain http.Transport against
// the same local origin, interleaved in rounds so that machine noise hits
// both alike. Each reports the plain transport's ns/op, "x-plain", the
// Transport's time relative to it (1.0 = as fast), and "added-ns/op", the
// difference.

func benchOrigin(b *testing.B, size int) *httptest.Server {
	body := bytes.Repeat([]byte("x"), size)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Header().Set("Content-Length", fmt.Sprint(size))
		w.Write(body)
	}))
	b.Cleanup(srv.Close)
	return srv
}

func get(c *http.Client, url string) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return err
}

// compare runs subject and plain b.N times each, in interleaved rounds.
func compare(b *testing.B, subject, plain func(i int) error) { compareWith(b, subject, plain, "plain") }

// compareWith is compare with the baseline named base in the metrics:
// base-ns/op, x-base and added-ns/op.
func compareWith(b *testing.B, subject, plain func(i int) error, base string) {
	b.ReportAllocs()
	b.ResetTimer()
	var ts, tp time.Duration
	const round = 32
	for done := 0; done < b.N; done += round {
		n := min(round, b.N-done)
		t0 := time.Now()
		for i := range n {
			if err := subject(done + i); err != nil {
				b.Fatal(err)
			}
		}
		t1 := time.Now()
		for i := range n {
			if err := plain(done + i); err != nil {
				b.Fatal(err)
			}
		}
		ts += t1.Sub(t0)
		tp += time.Since(t1)
	}
	b.ReportMetric(float64(tp.Nanoseconds())/float64(b.N), base+"-ns/op")
	b.ReportMetric(float64(ts)/float64(tp), "x-"+base)
	b.ReportMetric(float64((ts-tp).Nanoseconds())/float64(b.N), "added-ns/op")
}

type storeKind struct {
	name string
	open func(b *testing.B) hishel.Storage
}

var storeKinds = []storeKind{
	{"memory", func(b *testing.B) hishel.Storage {
		s, err := cache.OpenMemory(context.Background(), &cache.MemoryOptions{SweepInterval: -1})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		return s
	}},
	{"bolt", func(b *testing.B) hishel.Storage {
		s, err := cache.OpenBolt(context.Background(), &cache.BoltOptions{Path: filepath.Join(b.TempDir(), "c.db"), SweepInterval: -1})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		return s
	}},
	{"bolt-nosync", func(b *testing.B) hishel.Storage {
		s, err := cache.OpenBolt(context.Background(), &cache.BoltOptions{Path: filepath.Join(b.TempDir(), "c.db"), SweepInterval: -1, NoSync: true})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		return s
	}},
}

func cachingClient(b *testing.B, s hishel.Storage) *http.Client {
	tr, err := hishel.NewTransport(&hishel.Options{Storage: s, Transport: &http.Transport{MaxIdleConnsPerHost: 64}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { tr.Close() })
	return &http.Client{Transport: tr}
}

// BenchmarkTransportHit serves a stored response; the plain transport asks
// the origin each time.
func BenchmarkTransportHit(b *testing.B) {
	for _, size := range []int{1 << 10, 16 << 10, 1 << 20} {
		for _, sk := range storeKinds {
			b.Run(fmt.Sprintf("%s/%dKiB", sk.name, size>>10), func(b *testing.B) {
				srv := benchOrigin(b, size)
				c := cachingClient(b, sk.open(b))
				plain := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
				if err := get(c, srv.URL); err != nil {
					b.Fatal(err)
				}
				b.SetBytes(int64(size))
				compare(b, func(int) error { return get(c, srv.URL) }, func(int) error { return get(plain, srv.URL) })
			})
		}
	}
}

// BenchmarkTransportMissStore fetches a new URL each time and stores it.
func BenchmarkTransportMissStore(b *testing.B) {
	for _, sk := range storeKinds {
		b.Run(sk.name+"/1KiB", func(b *testing.B) {
			srv := benchOrigin(b, 1<<10)
			c := cachingClient(b, sk.open(b))
			plain := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			b.SetBytes(1 << 10)
			compare(b, func(i int) error { return get(c, fmt.Sprint(srv.URL, "/", i)) },
				func(i int) error { return get(plain, fmt.Sprint(srv.URL, "/", i)) })
		})
	}
}

// cannedOrigin answers every request at once with the same 1 KiB body and
// the given Cache-Control, without a network: it isolates the Transport's
// own work.
type cannedOrigin struct {
	body []byte
	cc   string
}

func (o cannedOrigin) RoundTrip(req *http.Request) (*http.Response, error) {
	h := http.Header{}
	h.Set("Cache-Control", o.cc)
	h.Set("Content-Length", strconv.Itoa(len(o.body)))
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	return &http.Response{StatusCode: 200, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: h,
		Body: io.NopCloser(bytes.NewReader(o.body)), ContentLength: int64(len(o.body)), Request: req}, nil
}

var overheadSeq atomic.Int64 // unique URLs across b.N rounds

// BenchmarkTransportMissOverhead measures the Transport's own CPU per miss of
// a 1 KiB response, with an origin that answers from memory: a response it
// may not store (no-store: key, lookup, state machine, pass-through) and
// one it stores, on each backend. The origin alone runs interleaved with
// it (see compare) as "plain"; "added-ns/op" is the time the Transport adds
// to a miss. It is what BenchmarkTransportMissStore's ratio
// is made of, without the network's noise; on the bolt backend it includes
// the writer's work competing for the CPU.
func BenchmarkTransportMissOverhead(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 1<<10)
	for _, c := range []struct {
		name, cc string
		sk       storeKind
	}{
		{"no-store", "no-store", storeKinds[0]},
		{"store/memory", "max-age=3600", storeKinds[0]},
		{"store/bolt-nosync", "max-age=3600", storeKinds[2]},
	} {
		b.Run(c.name, func(b *testing.B) {
			origin := cannedOrigin{body: body, cc: c.cc}
			tr, err := hishel.NewTransport(&hishel.Options{Storage: c.sk.open(b), Transport: origin})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { tr.Close() })
			fetch := func(rt http.RoundTripper) func(int) error {
				c := &http.Client{Transport: rt}
				return func(int) error {
					return get(c, "http://origin.test/r/"+strconv.FormatInt(overheadSeq.Add(1), 10))
				}
			}
			compare(b, fetch(tr), fetch(origin))
		})
	}
}

// zeroOrigin serves size zero bytes at every URL, cacheable for an hour.
func zeroOrigin(b *testing.B, size int64) *httptest.Server {
	buf := make([]byte, 256<<10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		for left := size; left > 0; left -= int64(len(buf)) {
			if _, err := w.Write(buf[:min(left, int64(len(buf)))]); err != nil {
				return
			}
		}
	}))
	b.Cleanup(srv.Close)
	return srv
}

// BenchmarkTransportMissLarge fetches a new URL each time and stores its
// response: 1 MiB responses (interleaved with a plain http.Transport
// fetching the same, see compare), and one 1 GiB response per turn, on
// Bolt durable and NoSync. For 1 GiB "anon-MiB" is the peak of the
// process's anonymous memory above what it was before the fetch (sampled
// every 5 ms), which must stay a small constant: the body streams.
func BenchmarkTransportMissLarge(b *testing.B) {
	for _, size := range []int64{1 << 20, 1 << 30} {
		for _, sk := range storeKinds[1:] {
			b.Run(fmt.Sprintf("%s/%dMiB", sk.name, size>>20), func(b *testing.B) {
				srv := zeroOrigin(b, size)
				c := cachingClient(b, sk.open(b))
				plain := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
				b.SetBytes(size)
				var peak int64
				fetch := func(c *http.Client, url string) error {
					done := memstat.Peak()
					err := get(c, url)
					peak = max(peak, done())
					return err
				}
				compare(b, func(i int) error { return fetch(c, fmt.Sprint(srv.URL, "/", i)) },
					func(i int) error { return get(plain, fmt.Sprint(srv.URL, "/", i)) })
				if size > 64<<20 {
					b.ReportMetric(float64(peak)/(1<<20), "anon-MiB")
				}
			})
		}
	}
}
