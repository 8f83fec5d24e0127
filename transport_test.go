package hishel_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hishel-go/hishel"
	"github.com/hishel-go/hishel/cache"
	"github.com/hishel-go/hishel/internal/testclock"
	"github.com/hishel-go/hishel/model"
	"github.com/hishel-go/hishel/statemachine"
)

// origin is an httptest server that counts its requests.
type origin struct {
	*httptest.Server
	hits atomic.Int64
}

func newOrigin(t testing.TB, h http.HandlerFunc) *origin {
	o := &origin{}
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.hits.Add(1)
		h(w, r)
	}))
	t.Cleanup(o.Close)
	return o
}

type fixture struct {
	clock *testclock.Clock // shared by the state machine and the storage
	store *cache.Memory
	tr    *hishel.Transport
	cl    *http.Client
}

func newFixture(t testing.TB, cacheOpts statemachine.Options, opts *hishel.Options) *fixture {
	t.Helper()
	c := testclock.New(time.Now())
	s, err := cache.OpenMemory(context.Background(), &cache.MemoryOptions{Now: c.Now, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	var o hishel.Options
	if opts != nil {
		o = *opts
	}
	o.Storage = s
	cacheOpts.Now = c.Now
	o.Cache = cacheOpts
	tr, err := hishel.NewTransport(&o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return &fixture{clock: c, store: s, tr: tr, cl: &http.Client{Transport: tr}}
}

// get does a GET and returns status, body and Cache-Status.
func (f *fixture) get(t testing.TB, url string, hdr ...string) (int, string, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := f.cl.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return resp.StatusCode, string(b), resp.Header.Get("Cache-Status")
}

func TestTransportMissHit(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Add("Set-Cookie", "a=1")
		w.Header().Add("Set-Cookie", "b=2")
		fmt.Fprint(w, "hello")
	})
	f := newFixture(t, statemachine.Options{}, nil)
	status, body, cs := f.get(t, o.URL+"/x")
	if status != 200 || body != "hello" || !strings.Contains(cs, "fwd=uri-miss") || !strings.Contains(cs, "stored") {
		t.Fatalf("first GET = %d %q %q; want 200 hello, a stored miss", status, body, cs)
	}
	status, body, cs = f.get(t, o.URL+"/x")
	if status != 200 || body != "hello" || !strings.HasPrefix(cs, "hishel; hit") {
		t.Fatalf("second GET = %d %q %q; want a hit", status, body, cs)
	}
	if n := o.hits.Load(); n != 1 {
		t.Errorf("origin saw %d requests; want 1", n)
	}
	resp, err := f.cl.Get(o.URL + "/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Values("Set-Cookie"); len(got) != 2 {
		t.Errorf("hit Set-Cookie = %q; want both values, unjoined", got)
	}
	if resp.Header.Get("Age") == "" {
		t.Errorf("hit has no Age field")
	}
}

func TestTransportRevalidate(t *testing.T) {
	var conditional atomic.Int64
	f := newFixture(t, statemachine.Options{}, nil)
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Date", f.clock.Now().UTC().Format(http.TimeFormat))
		w.Header().Set("Cache-Control", "max-age=10")
		w.Header().Set("ETag", `"v1"`)
		if r.Header.Get("If-None-Match") == `"v1"` {
			conditional.Add(1)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		fmt.Fprint(w, "body v1")
	})
	f.get(t, o.URL)
	f.clock.Advance(20 * time.Second) // stale
	status, body, cs := f.get(t, o.URL)
	if status != 200 || body != "body v1" || !strings.Contains(cs, "fwd-status=304") {
		t.Fatalf("revalidated GET = %d %q %q; want 200 from cache after a 304", status, body, cs)
	}
	if conditional.Load() != 1 {
		t.Fatalf("origin saw %d conditional requests; want 1", conditional.Load())
	}
	// Freshened: the next request is a plain hit.
	f.clock.Advance(5 * time.Second)
	if _, _, cs := f.get(t, o.URL); !strings.HasPrefix(cs, "hishel; hit") {
		t.Errorf("after 304, GET Cache-Status %q; want a hit", cs)
	}
	if n := o.hits.Load(); n != 2 {
		t.Errorf("origin saw %d requests; want 2", n)
	}
}

func TestTransportInvalidation(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		fmt.Fprint(w, r.Method)
	})
	f := newFixture(t, statemachine.Options{}, nil)
	f.get(t, o.URL+"/doc")
	f.get(t, o.URL+"/doc")
	resp, err := f.cl.Post(o.URL+"/doc", "text/plain", strings.NewReader("update"))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if _, _, cs := f.get(t, o.URL+"/doc"); !strings.Contains(cs, "fwd=uri-miss") {
		t.Errorf("GET after POST: Cache-Status %q; want a miss (invalidated)", cs)
	}
	if n := o.hits.Load(); n != 3 {
		t.Errorf("origin saw %d requests; want 3", n)
	}
}

func TestTransportVaryConcurrent(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Vary", "Accept-Language")
		time.Sleep(20 * time.Millisecond)
		fmt.Fprint(w, "lang:"+r.Header.Get("Accept-Language"))
	})
	f := newFixture(t, statemachine.Options{}, nil)
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lang := fmt.Sprint("l", i)
			if _, body, _ := f.get(t, o.URL, "Accept-Language", lang); body != "lang:"+lang {
				t.Errorf("GET with %s = %q", lang, body)
			}
		}()
	}
	wg.Wait()
	key, _ := hishel.URLKey("GET", o.URL)
	pairs, err := f.store.GetPairs(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pairs {
		p.Close()
	}
	if len(pairs) != 16 {
		t.Fatalf("%d variants stored; want 16", len(pairs))
	}
	for i := range 16 {
		lang := fmt.Sprint("l", i)
		if _, body, cs := f.get(t, o.URL, "Accept-Language", lang); body != "lang:"+lang || !strings.HasPrefix(cs, "hishel; hit") {
			t.Errorf("GET %s = %q %q; want its own variant, a hit", lang, body, cs)
		}
	}
}

func TestTransportCollapsesMisses(t *testing.T) {
	release := make(chan struct{})
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
		w.Header().Set("Cache-Control", "max-age=600")
		fmt.Fprint(w, "shared")
	})
	f := newFixture(t, statemachine.Options{}, nil)
	var wg sync.WaitGroup
	var started sync.WaitGroup
	for range 100 {
		wg.Add(1)
		started.Add(1)
		go func() {
			defer wg.Done()
			started.Done()
			if _, body, _ := f.get(t, o.URL); body != "shared" {
				t.Errorf("body %q; want shared", body)
			}
		}()
	}
	started.Wait()
	time.Sleep(100 * time.Millisecond) // let them all reach the cache
	close(release)
	wg.Wait()
	if n := o.hits.Load(); n != 1 {
		t.Errorf("100 concurrent misses made %d origin requests; want 1", n)
	}
}

func TestTransportStaleIfErrorRefused(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=1, stale-if-error=600")
		fmt.Fprint(w, "still here")
	})
	f := newFixture(t, statemachine.Options{}, nil)
	f.get(t, o.URL)
	f.clock.Advance(time.Minute)
	o.Close() // connections are now refused
	status, body, cs := f.get(t, o.URL)
	if status != 200 || body != "still here" || !strings.Contains(cs, "stale") {
		t.Fatalf("GET with the origin down = %d %q %q; want the stale pair", status, body, cs)
	}
}

func TestTransportStaleIfError5xx(t *testing.T) {
	var fail atomic.Bool
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if fail.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Cache-Control", "max-age=1, stale-if-error=600")
		fmt.Fprint(w, "good")
	})
	f := newFixture(t, statemachine.Options{}, nil)
	f.get(t, o.URL)
	f.clock.Advance(time.Minute)
	fail.Store(true)
	if status, body, _ := f.get(t, o.URL); status != 200 || body != "good" {
		t.Fatalf("GET with the origin failing = %d %q; want the stale 200", status, body)
	}
}

func TestTransportStaleWhileRevalidate(t *testing.T) {
	var version atomic.Int64
	version.Store(1)
	f := newFixture(t, statemachine.Options{}, nil)
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		// The origin's clock is the cache's, so that the refreshed v2 is
		// fresh (and triggers no refresh of its own).
		w.Header().Set("Date", f.clock.Now().UTC().Format(http.TimeFormat))
		w.Header().Set("Cache-Control", "max-age=10, stale-while-revalidate=600")
		fmt.Fprint(w, "v", version.Load())
	})
	f.get(t, o.URL)
	version.Store(2)
	f.clock.Advance(time.Minute)
	if _, body, _ := f.get(t, o.URL); body != "v1" {
		t.Fatalf("stale-while-revalidate GET = %q; want the stale v1 at once", body)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, body, _ := f.get(t, o.URL)
		if body == "v2" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("background revalidation never stored v2")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := o.hits.Load(); n != 2 {
		t.Errorf("origin saw %d requests; want 2 (one background refresh)", n)
	}
}

// gateKey marks a request context whose GetPairs gatedStore holds.
type gateKey struct{}

// gatedStore holds GetPairs calls made with a gateKey context after they
// have read: it closes read (once) and waits for release.
type gatedStore struct {
	hishel.Storage
	once          sync.Once
	read, release chan struct{}
}

func (g *gatedStore) GetPairs(ctx context.Context, key string) ([]model.CompletePair, error) {
	pairs, err := g.Storage.GetPairs(ctx, key)
	if ctx.Value(gateKey{}) != nil {
		g.once.Do(func() { close(g.read) })
		<-g.release
	}
	return pairs, err
}

// TestTransportStaleWhileRevalidateSnapshot: a request that read the stale
// pair before a background revalidation stored the fresh one, and decides
// after that revalidation has ended, starts no second one: the new
// revalidation finds the fresh pair and does nothing.
func TestTransportStaleWhileRevalidateSnapshot(t *testing.T) {
	clock := testclock.New(time.Now())
	mem, err := cache.OpenMemory(context.Background(), &cache.MemoryOptions{Now: clock.Now, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	g := &gatedStore{Storage: mem, read: make(chan struct{}), release: make(chan struct{})}
	var version atomic.Int64
	version.Store(1)
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if version.Load() == 2 {
			<-g.read // the background revalidation answers once the gated request has read v1
		}
		w.Header().Set("Date", clock.Now().UTC().Format(http.TimeFormat))
		w.Header().Set("Cache-Control", "max-age=10, stale-while-revalidate=600")
		fmt.Fprint(w, "v", version.Load())
	})
	tr, err := hishel.NewTransport(&hishel.Options{Storage: g, Cache: statemachine.Options{Now: clock.Now}})
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: tr}
	get := func(ctx context.Context) string {
		req, _ := http.NewRequestWithContext(ctx, "GET", o.URL, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Error(err)
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body) // a removed pair's body may fail: only the origin's count matters here
		return string(b)
	}
	get(context.Background())
	key, err := hishel.URLKey("GET", o.URL)
	if err != nil {
		t.Fatal(err)
	}
	version.Store(2)
	clock.Advance(time.Minute)
	revalidated := clock.Now()                           // v2 is created from here on, v1 before
	if body := get(context.Background()); body != "v1" { // starts the background revalidation
		t.Fatalf("stale-while-revalidate GET = %q; want the stale v1", body)
	}
	gated := make(chan struct{})
	go func() {
		defer close(gated)
		get(context.WithValue(context.Background(), gateKey{}, true))
	}()
	<-g.read
	// The revalidation now stores v2, removes v1 and ends.
	deadline := time.Now().Add(10 * time.Second)
	for {
		pairs, err := mem.GetPairs(context.Background(), key)
		if err != nil {
			t.Fatal(err)
		}
		onlyV2 := len(pairs) == 1 && !pairs[0].Meta.Created.Before(revalidated)
		for _, p := range pairs {
			_ = p.Close()
		}
		if onlyV2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the background revalidation never replaced v1")
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // for its goroutine to end
	close(g.release)
	<-gated
	if err := tr.Close(); err != nil { // waits for background revalidations
		t.Fatal(err)
	}
	if n := o.hits.Load(); n != 2 {
		t.Errorf("origin saw %d requests; want 2 (one background revalidation)", n)
	}
}

func TestTransportBodyNotStoredWhenCut(t *testing.T) {
	tests := []struct {
		name string
		h    http.HandlerFunc
		read func(r io.ReadCloser) error
	}{
		{"caller closes early", func(w http.ResponseWriter, r *http.Request) {
			// The fetch reads on whatever its callers do; the caller's
			// Close abandons it only before its end: the rest waits for
			// that (or for a minute).
			w.Header().Set("Cache-Control", "max-age=600")
			w.Write(make([]byte, 64<<10))
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(time.Minute):
			}
			w.Write(make([]byte, 1<<20))
		}, func(r io.ReadCloser) error {
			_, err := io.ReadFull(r, make([]byte, 1000))
			r.Close()
			return err
		}},
		{"origin closes mid-body", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "max-age=600")
			w.Header().Set("Content-Length", "100000")
			w.Write(make([]byte, 5000))
			w.(http.Flusher).Flush()
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
		}, func(r io.ReadCloser) error {
			_, err := io.ReadAll(r)
			r.Close()
			if err == nil {
				return errors.New("a truncated body read without error")
			}
			return nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := newOrigin(t, tt.h)
			f := newFixture(t, statemachine.Options{}, nil)
			resp, err := f.cl.Get(o.URL)
			if err != nil {
				t.Fatal(err)
			}
			if err := tt.read(resp.Body); err != nil {
				t.Fatal(err)
			}
			key, _ := hishel.URLKey("GET", o.URL)
			if ps, _ := f.store.GetPairs(context.Background(), key); len(ps) != 0 {
				t.Errorf("a cut body was stored")
			}
		})
	}
}

func TestTransportNoFraming(t *testing.T) {
	// A response with neither Content-Length nor chunked framing ends when
	// the origin closes the connection; read to the end, it is stored.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 4096)
			c.Read(buf)
			io.WriteString(c, "HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nConnection: close\r\n\r\nunframed body")
			c.Close()
		}
	}()
	f := newFixture(t, statemachine.Options{}, nil)
	url := "http://" + ln.Addr().String() + "/"
	if _, body, _ := f.get(t, url); body != "unframed body" {
		t.Fatalf("body %q", body)
	}
	if _, body, cs := f.get(t, url); body != "unframed body" || !strings.HasPrefix(cs, "hishel; hit") {
		t.Fatalf("second GET = %q %q; want a hit", body, cs)
	}
}

func TestTransportMaxBodySize(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		if r.URL.Query().Get("framing") == "chunked" {
			w.Write(make([]byte, 3000))
			w.(http.Flusher).Flush()
			w.Write(make([]byte, 3000))
			return
		}
		w.Header().Set("Content-Length", "6000")
		w.Write(make([]byte, 6000))
	})
	f := newFixture(t, statemachine.Options{}, &hishel.Options{MaxBodySize: 4000})
	for _, q := range []string{"?framing=length", "?framing=chunked"} {
		for range 2 {
			if _, body, _ := f.get(t, o.URL+q); len(body) != 6000 {
				t.Fatalf("GET %s: %d bytes; want all 6000", q, len(body))
			}
		}
	}
	if n := o.hits.Load(); n != 4 {
		t.Errorf("origin saw %d requests; want 4 (too large to store)", n)
	}
}

func TestTransportRequestContract(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("ETag", `"e"`)
		fmt.Fprint(w, "x")
	})
	f := newFixture(t, statemachine.Options{}, nil)
	for i := range 2 {
		body := &closeCounter{Reader: strings.NewReader("")}
		req, _ := http.NewRequest("GET", o.URL, body)
		req.Header.Set("X-Mine", "1")
		before := req.Header.Clone()
		resp, err := f.tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if len(req.Header) != len(before) || req.Header.Get("If-None-Match") != "" {
			t.Errorf("round %d: the request's header was modified: %v", i, req.Header)
		}
		if body.closed.Load() == 0 {
			t.Errorf("round %d: the request body was not closed", i)
		}
	}
	// A URL that cannot be keyed passes through.
	req, _ := http.NewRequest("GET", o.URL, nil)
	req.URL.Scheme = "HTTPX"
	if _, err := f.tr.RoundTrip(req); err == nil {
		t.Errorf("RoundTrip(unsupported scheme) succeeded; the underlying transport should refuse it")
	}
}

type closeCounter struct {
	io.Reader
	closed atomic.Int64
}

func (c *closeCounter) Close() error { c.closed.Add(1); return nil }

func TestTransportDecisionHook(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
	})
	var mu sync.Mutex
	var states []string
	f := newFixture(t, statemachine.Options{}, &hishel.Options{OnDecision: func(d hishel.Decision) {
		mu.Lock()
		states = append(states, d.State)
		mu.Unlock()
		if d.Reason.Text == "" {
			t.Errorf("decision %s without a reason", d.State)
		}
	}})
	f.get(t, o.URL)
	f.get(t, o.URL)
	want := "CacheMiss StoreAndUse FromCache"
	if got := strings.Join(states, " "); got != want {
		t.Errorf("decisions = %q; want %q", got, want)
	}
}

// TestTransportLargeBody streams a large response through the Transport on
// bbolt while watching the heap.
func TestTransportLargeBody(t *testing.T) {
	size := int64(1 << 30)
	if testing.Short() {
		size = 64 << 20
	}
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		io.Copy(w, io.LimitReader(rand.NewChaCha8([32]byte{7}), size))
	})
	s, err := cache.OpenBolt(context.Background(), &cache.BoltOptions{Path: filepath.Join(t.TempDir(), "c.db"), SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tr, err := hishel.NewTransport(&hishel.Options{Storage: s})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	cl := &http.Client{Transport: tr}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base, peak := ms.HeapAlloc, ms.HeapAlloc
	sample := func() {
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapAlloc)
	}
	want := sha256.New()
	io.Copy(want, io.LimitReader(rand.NewChaCha8([32]byte{7}), size))
	for round := range 2 {
		resp, err := cl.Get(o.URL)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		buf := make([]byte, 1<<20)
		var n int64
		for {
			k, err := resp.Body.Read(buf)
			h.Write(buf[:k])
			n += int64(k)
			if n%(32<<20) < int64(k) {
				sample()
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("round %d: read: %v", round, err)
			}
		}
		resp.Body.Close()
		if n != size || string(h.Sum(nil)) != string(want.Sum(nil)) {
			t.Fatalf("round %d: got %d bytes (hash match %v); want %d identical", round, n, string(h.Sum(nil)) == string(want.Sum(nil)), size)
		}
		if cs := resp.Header.Get("Cache-Status"); round == 1 && !strings.HasPrefix(cs, "hishel; hit") {
			t.Errorf("second GET Cache-Status %q; want a hit", cs)
		}
	}
	growth := int64(peak) - int64(base)
	t.Logf("%d MiB through the Transport twice: heap peak %.1f MiB above baseline", size>>20, float64(growth)/(1<<20))
	if growth > 32<<20 {
		t.Errorf("heap grew by %.1f MiB; want at most 32 MiB", float64(growth)/(1<<20))
	}
}

var _ = model.ErrNotFound

// settingTransport sets a header on the requests it sends, as credential
// wrappers do, though a RoundTripper should not change its request.
type settingTransport struct{ next http.RoundTripper }

func (s settingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r.Header.Set("Authorization", "Bearer secret")
	return s.next.RoundTrip(r)
}

// An origin transport that changes the request it is given changes neither
// the caller's request nor the request header stored with the pair, on a
// miss or on a revalidation.
func TestTransportOriginChangesRequest(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "" {
			t.Errorf("origin request without the header the origin transport set")
		}
		w.Header().Set("Cache-Control", "max-age=0, must-revalidate")
		w.Header().Set("ETag", `"v1"`)
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		io.WriteString(w, "body")
	}))
	defer srv.Close()
	s, err := cache.OpenMemory(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tr, err := hishel.NewTransport(&hishel.Options{Storage: s, Transport: settingTransport{http.DefaultTransport}})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	for i, want := range []string{"fwd=uri-miss", "fwd=stale"} { // a miss, then a revalidation
		req, _ := http.NewRequest("GET", srv.URL, nil)
		req.Header.Set("Accept", "text/plain")
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		if b, err := io.ReadAll(resp.Body); err != nil || string(b) != "body" {
			t.Fatalf("request %d: body %q, %v", i, b, err)
		}
		resp.Body.Close()
		if cs := resp.Header.Get("Cache-Status"); !strings.Contains(cs, want) {
			t.Errorf("request %d: Cache-Status %q; want %s", i, cs, want)
		}
		if len(req.Header) != 1 {
			t.Errorf("request %d: the caller's request header became %v", i, req.Header)
		}
	}
	for p, err := range s.Pairs(context.Background(), model.Filter{}) {
		if err != nil {
			t.Fatal(err)
		}
		if v := p.Request.Header.Get("Authorization"); v != "" {
			t.Errorf("stored request header has Authorization %q", v)
		}
	}
}

// A hit is served from the header map GetPairs returned, changed in place
// (statemachine.Options.ReuseHeaders): neither the fields the Transport
// adds (Age, Cache-Status) nor a caller's changes to a served header may
// reach storage, on hits or through a background revalidation.
func TestTransportHitsLeaveStoredHeaders(t *testing.T) {
	for _, kind := range []string{"memory", "bolt"} {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			c := testclock.New(time.Now())
			var s interface {
				hishel.Storage
				GetPairs(context.Context, string) ([]model.CompletePair, error)
			}
			var err error
			if kind == "memory" {
				s, err = cache.OpenMemory(ctx, &cache.MemoryOptions{Now: c.Now, SweepInterval: -1})
			} else {
				s, err = cache.OpenBolt(ctx, &cache.BoltOptions{Path: filepath.Join(t.TempDir(), "c.db"), Now: c.Now, SweepInterval: -1})
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			tr, err := hishel.NewTransport(&hishel.Options{Storage: s, Cache: statemachine.Options{Now: c.Now}})
			if err != nil {
				t.Fatal(err)
			}
			release := make(chan struct{}) // the revalidation waits for the stale hit's caller
			o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Date", c.Now().UTC().Format(http.TimeFormat))
				if r.Header.Get("If-None-Match") == `"v1"` {
					<-release
					w.WriteHeader(http.StatusNotModified) // with no fields to restore the stored ones
					return
				}
				w.Header().Set("Cache-Control", "max-age=10, stale-while-revalidate=600")
				w.Header().Set("Etag", `"v1"`)
				fmt.Fprint(w, "v1")
			})
			var once sync.Once
			// Runs before the origin closes, which waits for its handlers.
			t.Cleanup(func() { once.Do(func() { close(release) }); tr.Close() })
			cl := &http.Client{Transport: tr}
			get := func() http.Header {
				t.Helper()
				resp, err := cl.Get(o.URL)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, resp.Body); err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				// The caller owns the response: change it every way it can.
				resp.Header.Set("X-Caller", "changed")
				resp.Header.Del("Cache-Control")
				resp.Header["Etag"][0] = `"caller"`
				return resp.Header
			}
			stored := func() http.Header {
				t.Helper()
				key, err := hishel.URLKey("GET", o.URL)
				if err != nil {
					t.Fatal(err)
				}
				ps, err := s.GetPairs(ctx, key)
				if err != nil || len(ps) != 1 {
					t.Fatalf("GetPairs = %d pairs, %v; want 1", len(ps), err)
				}
				ps[0].Close()
				return ps[0].Response.Header
			}
			get()
			want := stored()
			for range 3 {
				if h := get(); h.Get("Age") == "" || h.Get("Cache-Status") == "" {
					t.Fatalf("hit header %v; want Age and Cache-Status", h)
				}
				if got := stored(); !reflect.DeepEqual(got, want) {
					t.Fatalf("stored header after a hit = %v; want %v", got, want)
				}
			}
			c.Advance(time.Minute) // stale: served, then revalidated in the background
			get()
			once.Do(func() { close(release) })
			if err := tr.Close(); err != nil { // waits for the revalidation
				t.Fatal(err)
			}
			if n := o.hits.Load(); n != 2 {
				t.Fatalf("origin saw %d requests; want 2 (the miss, one revalidation)", n)
			}
			got := stored()
			for _, k := range []string{"Age", "Cache-Status", "X-Caller"} {
				if v, ok := got[k]; ok {
					t.Errorf("stored header after revalidation has %s %q", k, v)
				}
			}
			if got.Get("Etag") != `"v1"` || got.Get("Cache-Control") == "" {
				t.Errorf("stored header after revalidation = %v; want its Etag and Cache-Control", got)
			}
		})
	}
}

// keepingStore is a Storage that keeps the header maps GetPairs returns,
// which Options.CopyHeaders is for.
type keepingStore struct {
	*cache.Memory
	kept []http.Header
}

func (s *keepingStore) GetPairs(ctx context.Context, key string) ([]model.CompletePair, error) {
	ps, err := s.Memory.GetPairs(ctx, key)
	for _, p := range ps {
		s.kept = append(s.kept, p.Response.Header)
	}
	return ps, err
}

func TestTransportCopyHeaders(t *testing.T) {
	for _, copyHeaders := range []bool{false, true} {
		t.Run(fmt.Sprint("CopyHeaders=", copyHeaders), func(t *testing.T) {
			m, err := cache.OpenMemory(context.Background(), &cache.MemoryOptions{SweepInterval: -1})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			s := &keepingStore{Memory: m}
			tr, err := hishel.NewTransport(&hishel.Options{Storage: s, CopyHeaders: copyHeaders})
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Cache-Control", "max-age=60")
				fmt.Fprint(w, "x")
			})
			cl := &http.Client{Transport: tr}
			for range 2 { // a miss, then a hit
				resp, err := cl.Get(o.URL)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			if len(s.kept) != 1 {
				t.Fatalf("GetPairs returned %d pairs in all; want 1 (the hit's)", len(s.kept))
			}
			_, changed := s.kept[0]["Cache-Status"]
			if changed == copyHeaders {
				t.Errorf("after a hit, the header map GetPairs returned has Cache-Status: %v; want %v", changed, !copyHeaders)
			}
		})
	}
}
