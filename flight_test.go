package hishel_test

import (
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hishel-go/hishel"
	"github.com/hishel-go/hishel/cache"
)

// The tests of collapsed misses: one origin fetch, many clients, each at
// its own pace. Each checks that no goroutine outlives it and that no spill
// file is left (checkLeaks).

// patternBlock is the size of the blocks the test bodies are made of.
const patternBlock = 64 << 10

var patternBlocks = func() [4][]byte {
	var bs [4][]byte
	r := rand.NewChaCha8([32]byte{17})
	for i := range bs {
		bs[i] = make([]byte, patternBlock)
		_, _ = r.Read(bs[i])
	}
	return bs
}()

// pattern writes n bytes of a body in which every 64 KiB block starts with
// its index, so that a byte out of place changes the CRC.
func pattern(w io.Writer, n int64) error {
	buf := make([]byte, patternBlock)
	for k := int64(0); n > 0; k++ {
		copy(buf, patternBlocks[k%4])
		binary.BigEndian.PutUint64(buf, uint64(k))
		m := min(n, patternBlock)
		if _, err := w.Write(buf[:m]); err != nil {
			return err
		}
		n -= m
	}
	return nil
}

func patternCRC(n int64) uint32 {
	h := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	_ = pattern(h, n)
	return h.Sum32()
}

// gateOrigin serves a pattern body of size bytes with Cache-Control
// max-age=600 and no Content-Length: the first bytes at once, the rest once
// gate is closed (all at once when gate is nil). It counts requests and
// tells how each handler ended.
type gateOrigin struct {
	*httptest.Server
	hits     atomic.Int64
	returned chan error // one value per request: nil, or why the handler stopped
}

func newGateOrigin(t *testing.T, size, first int64, gate chan struct{}, header ...string) *gateOrigin {
	o := &gateOrigin{returned: make(chan error, 1000)}
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.hits.Add(1)
		w.Header().Set("Cache-Control", "max-age=600")
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		o.returned <- pattern(&gateWriter{w: w, first: first, gate: gate, ctx: r.Context()}, size)
	}))
	t.Cleanup(o.Close)
	return o
}

// gateWriter writes the first bytes at once (flushed), then waits for its
// gate, or for the request to be cancelled, before the rest.
type gateWriter struct {
	w       http.ResponseWriter
	first   int64
	written int64
	gate    chan struct{}
	ctx     context.Context
}

func (g *gateWriter) Write(b []byte) (int, error) {
	var done int
	if g.gate != nil && g.written+int64(len(b)) > g.first {
		if k := g.first - g.written; k > 0 {
			n, err := g.w.Write(b[:k])
			g.written += int64(n)
			if err != nil {
				return n, err
			}
			b, done = b[k:], int(k)
		}
		g.w.(http.Flusher).Flush()
		select {
		case <-g.gate:
			g.gate = nil
		case <-g.ctx.Done():
			return done, g.ctx.Err()
		}
	}
	n, err := g.w.Write(b)
	g.written += int64(n)
	return done + n, err
}

// flightFixture is a Transport on a store, with its own origin transport,
// whose goroutines and spill files the test checks at its end.
type flightFixture struct {
	tr    *hishel.Transport
	cl    *http.Client
	store hishel.Storage
	spill string
}

func newFlightFixture(t *testing.T, store hishel.Storage, opts *hishel.Options) *flightFixture {
	t.Helper()
	spill := t.TempDir()
	next := &http.Transport{MaxIdleConnsPerHost: 200}
	var o hishel.Options
	if opts != nil {
		o = *opts
	}
	o.Storage, o.Transport, o.SpillDir = store, next, spill
	tr, err := hishel.NewTransport(&o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := tr.Close(); err != nil {
			t.Error(err)
		}
		next.CloseIdleConnections()
		if ents, _ := os.ReadDir(spill); len(ents) != 0 {
			t.Errorf("%d spill files left behind", len(ents))
		}
	})
	return &flightFixture{tr: tr, cl: &http.Client{Transport: tr}, store: store, spill: spill}
}

func memStore(t *testing.T) *cache.Memory {
	s, err := cache.OpenMemory(context.Background(), &cache.MemoryOptions{SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// checkLeaks, registered first, checks after every other cleanup that the
// number of goroutines is back to what it was.
func checkLeaks(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(10 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				t.Errorf("goroutines: %d before, %d after:\n%s", before, runtime.NumGoroutine(), buf)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
}

// pairsUnder returns how many complete pairs are stored under the GET key
// of url.
func pairsUnder(t *testing.T, s hishel.Storage, url string) int {
	t.Helper()
	key, err := hishel.URLKey("GET", url)
	if err != nil {
		t.Fatal(err)
	}
	ps, err := s.GetPairs(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		p.Close()
	}
	return len(ps)
}

// slowReader reads a body one byte at a time, every interval, and counts.
type slowReader struct {
	n    atomic.Int64
	stop chan struct{}
	done chan error
}

func readSlowly(body io.ReadCloser, interval time.Duration) *slowReader {
	s := &slowReader{stop: make(chan struct{}), done: make(chan error, 1)}
	go func() {
		defer body.Close()
		var b [1]byte
		for {
			select {
			case <-s.stop:
				s.done <- nil
				return
			case <-time.After(interval):
			}
			n, err := body.Read(b[:])
			s.n.Add(int64(n))
			if err != nil {
				s.done <- err
				return
			}
		}
	}()
	return s
}

// follow runs n followers of url, each reading the whole body, and returns
// their CRCs and errors once all are done.
func follow(ctx context.Context, cl *http.Client, url string, n int) ([]uint32, []error) {
	crcs, errs := make([]uint32, n), make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
			resp, err := cl.Do(req)
			if err != nil {
				errs[i] = err
				return
			}
			defer resp.Body.Close()
			h := crc32.New(crc32.MakeTable(crc32.Castagnoli))
			_, errs[i] = io.CopyBuffer(h, resp.Body, make([]byte, 32<<10))
			crcs[i] = h.Sum32()
		}()
	}
	wg.Wait()
	return crcs, errs
}

// A leader that reads one byte a second: five followers get the whole body
// from the one fetch while the leader has read only a few bytes, the pair
// is stored once, and the origin sees one request.
func TestCollapseSlowLeader(t *testing.T) {
	checkLeaks(t)
	const size = 3 << 20 // beyond the window: the leader's bytes spill
	o := newGateOrigin(t, size, 0, nil)
	f := newFlightFixture(t, memStore(t), nil)
	resp, err := f.cl.Get(o.URL)
	if err != nil {
		t.Fatal(err)
	}
	leader := readSlowly(resp.Body, time.Second)
	done := make(chan struct{})
	var crcs []uint32
	var errs []error
	go func() {
		defer close(done)
		crcs, errs = follow(t.Context(), f.cl, o.URL, 5)
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Minute): // a watchdog, not a measure
		t.Fatal("the followers did not get the body while the leader read slowly")
	}
	if n := leader.n.Load(); n > 10 {
		t.Errorf("the followers finished after the leader had read %d bytes; want them done within its first 10 (seconds)", n)
	}
	want := patternCRC(size)
	for i := range crcs {
		if errs[i] != nil || crcs[i] != want {
			t.Errorf("follower %d: crc %x, %v; want the whole body (crc %x)", i, crcs[i], errs[i], want)
		}
	}
	close(leader.stop)
	<-leader.done
	if n := o.hits.Load(); n != 1 {
		t.Errorf("origin saw %d requests; want 1", n)
	}
	if n := pairsUnder(t, f.store, o.URL); n != 1 {
		t.Errorf("%d pairs stored; want 1", n)
	}
}

// A leader that never reads, and one that closes its body early: the
// followers get the whole body all the same, and the pair is stored once.
func TestCollapseLeaderGone(t *testing.T) {
	for _, tt := range []struct {
		name   string
		leader func(body io.ReadCloser)
	}{
		{"never reads", func(io.ReadCloser) {}},
		{"closes early", func(body io.ReadCloser) {
			_, _ = io.ReadFull(body, make([]byte, 1000))
			body.Close()
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			checkLeaks(t)
			const size = 3 << 20
			gate := make(chan struct{})
			o := newGateOrigin(t, size, 64<<10, gate)
			f := newFlightFixture(t, memStore(t), nil)
			resp, err := f.cl.Get(o.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			// The followers join while the origin holds the rest back.
			type got struct {
				resp *http.Response
				err  error
			}
			heads := make(chan got, 5)
			for range 5 {
				go func() {
					r, err := f.cl.Get(o.URL)
					heads <- got{r, err}
				}()
			}
			var bodies []*http.Response
			for range 5 {
				g := <-heads
				if g.err != nil {
					t.Fatal(g.err)
				}
				bodies = append(bodies, g.resp)
				if cs := g.resp.Header.Get("Cache-Status"); !strings.Contains(cs, "collapsed") {
					t.Errorf("follower Cache-Status %q; want collapsed", cs)
				}
			}
			tt.leader(resp.Body)
			close(gate)
			want := patternCRC(size)
			for i, r := range bodies {
				h := crc32.New(crc32.MakeTable(crc32.Castagnoli))
				_, err := io.Copy(h, r.Body)
				r.Body.Close()
				if err != nil || h.Sum32() != want {
					t.Errorf("follower %d: crc %x, %v; want the whole body", i, h.Sum32(), err)
				}
			}
			if err := <-o.returned; err != nil {
				t.Errorf("origin handler: %v; want the body sent whole", err)
			}
			waitPairs(t, f.store, o.URL, 1)
			if n := o.hits.Load(); n != 1 {
				t.Errorf("origin saw %d requests; want 1", n)
			}
			if _, body, cs := getBody(t, f.cl, o.URL); !strings.HasPrefix(cs, "hishel; hit") || int64(len(body)) != size {
				t.Errorf("next GET: %d bytes, Cache-Status %q; want a hit of the whole body", len(body), cs)
			}
		})
	}
}

// waitPairs waits until want pairs are stored under url's key: the fetch
// stores the pair in its own goroutine, just after the clients' last byte.
func waitPairs(t *testing.T, s hishel.Storage, url string, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := pairsUnder(t, s, url)
		if n == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d pairs stored; want %d", n, want)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func getBody(t *testing.T, cl *http.Client, url string, hdr ...string) (int, []byte, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b, resp.Header.Get("Cache-Status")
}

// Followers that cancel, before the head or in the body, leave the others
// unharmed; when every client has gone, the fetch is abandoned: the origin's
// request is cancelled and nothing is stored.
func TestCollapseClientsCancel(t *testing.T) {
	checkLeaks(t)
	const size = 3 << 20
	gate := make(chan struct{})
	o := newGateOrigin(t, size, 64<<10, gate)
	f := newFlightFixture(t, memStore(t), nil)

	leaderCtx, cancelLeader := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(leaderCtx, "GET", o.URL, nil)
	resp, err := f.cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	// Three followers: one cancels mid-body, two before they read.
	var resps []*http.Response
	var cancels []context.CancelFunc
	for range 3 {
		ctx, cancel := context.WithCancel(t.Context())
		req, _ := http.NewRequestWithContext(ctx, "GET", o.URL, nil)
		r, err := f.cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resps, cancels = append(resps, r), append(cancels, cancel)
	}
	if _, err := io.ReadFull(resps[0].Body, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	for i, cancel := range cancels {
		cancel()
		if _, err := io.ReadAll(resps[i].Body); !errors.Is(err, context.Canceled) {
			t.Errorf("follower %d after cancel: read %v; want context.Canceled", i, err)
		}
		resps[i].Body.Close()
	}
	// The leader goes too: the fetch is abandoned and the origin's request
	// cancelled while it waits at the gate.
	cancelLeader()
	resp.Body.Close()
	select {
	case err := <-o.returned:
		if err == nil {
			t.Errorf("origin handler ended normally; want its request cancelled")
		}
	case <-time.After(time.Minute):
		t.Fatal("the origin's request was not cancelled when every client had gone")
	}
	close(gate)
	if n := pairsUnder(t, f.store, o.URL); n != 0 {
		t.Errorf("%d pairs stored by an abandoned fetch; want 0", n)
	}
	// The next request fetches anew, whole.
	if _, body, _ := getBody(t, f.cl, o.URL); int64(len(body)) != size {
		t.Errorf("next GET: %d bytes; want %d", len(body), size)
	}
	waitPairs(t, f.store, o.URL, 1)
}

// A follower that cancels while the fetch waits for the origin's head goes
// at once; the others are served.
func TestCollapseFollowerCancelsBeforeHead(t *testing.T) {
	checkLeaks(t)
	headGate := make(chan struct{})
	var hits atomic.Int64
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		<-headGate
		w.Header().Set("Cache-Control", "max-age=600")
		io.WriteString(w, "late")
	}))
	defer o.Close()
	f := newFlightFixture(t, memStore(t), nil)
	results := make(chan string, 2)
	for range 2 {
		go func() {
			_, b, _ := getBody(t, f.cl, o.URL)
			results <- string(b)
		}()
	}
	for hits.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", o.URL, nil)
	if _, err := f.cl.Do(req); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("follower whose context ends before the head: %v; want DeadlineExceeded", err)
	}
	close(headGate)
	for range 2 {
		if b := <-results; b != "late" {
			t.Errorf("body %q; want late", b)
		}
	}
	if n := hits.Load(); n != 1 {
		t.Errorf("origin saw %d requests; want 1", n)
	}
}

// 100 followers of a 256 MiB body, with a leader that reads nothing until
// they are done: one fetch serves them all, the heap stays bounded (the
// leader's bytes spill to a file), and the pair is stored once, on bbolt.
func TestCollapseManyFollowersLargeBody(t *testing.T) {
	checkLeaks(t)
	size := int64(256 << 20)
	o := newGateOrigin(t, size, 0, nil)
	s, err := cache.OpenBolt(context.Background(), &cache.BoltOptions{Path: filepath.Join(t.TempDir(), "c.db"), SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	f := newFlightFixture(t, s, nil)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base, peak := ms.HeapAlloc, ms.HeapAlloc
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapAlloc)
		}
	}()
	resp, err := f.cl.Get(o.URL)
	if err != nil {
		t.Fatal(err)
	}
	crcs, errs := follow(t.Context(), f.cl, o.URL, 100)
	close(stop)
	<-sampled
	want := patternCRC(size)
	for i := range crcs {
		if errs[i] != nil || crcs[i] != want {
			t.Errorf("follower %d: crc %x, %v; want %x", i, crcs[i], errs[i], want)
		}
	}
	h := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	if _, err := io.Copy(h, resp.Body); err != nil || h.Sum32() != want {
		t.Errorf("leader, reading last: crc %x, %v; want %x", h.Sum32(), err, want)
	}
	resp.Body.Close()
	growth := int64(peak) - int64(base)
	t.Logf("100 followers and a leader on %d MiB: heap peak %.1f MiB above baseline", size>>20, float64(growth)/(1<<20))
	if growth > 32<<20 {
		t.Errorf("heap grew by %.1f MiB; want at most 32 MiB", float64(growth)/(1<<20))
	}
	if n := o.hits.Load(); n != 1 {
		t.Errorf("origin saw %d requests; want 1", n)
	}
	waitPairs(t, s, o.URL, 1)
}

// Followers are served from the fetch only when the response fits them as a
// stored one would (Vary, private data): others go to the origin alone.
func TestCollapseOnlyWhatFits(t *testing.T) {
	checkLeaks(t)
	gate := make(chan struct{})
	var hits atomic.Int64
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		<-gate
		switch r.URL.Path {
		case "/vary":
			w.Header().Set("Cache-Control", "max-age=600")
			w.Header().Set("Vary", "Accept-Language")
		case "/private":
			w.Header().Set("Cache-Control", "no-store")
		}
		io.WriteString(w, r.URL.Path+" "+r.Header.Get("Accept-Language"))
	}))
	defer o.Close()
	f := newFlightFixture(t, memStore(t), nil)
	type result struct{ lang, body string }
	var wg sync.WaitGroup
	results := make(chan result, 20)
	start := func(path, lang string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, b, _ := getBody(t, f.cl, o.URL+path, "Accept-Language", lang)
			results <- result{lang, string(b)}
		}()
	}
	start("/vary", "en")
	for hits.Load() < 1 {
		time.Sleep(time.Millisecond)
	}
	start("/vary", "en")
	start("/vary", "fr")
	start("/private", "x")
	for hits.Load() < 2 {
		time.Sleep(time.Millisecond)
	}
	start("/private", "y")
	time.Sleep(50 * time.Millisecond) // let the followers join
	close(gate)
	wg.Wait()
	close(results)
	for r := range results {
		if !strings.HasSuffix(r.body, " "+r.lang) {
			t.Errorf("request with Accept-Language %s got %q", r.lang, r.body)
		}
	}
	// /vary: en (shared by two) and fr; /private: two.
	if n := hits.Load(); n != 4 {
		t.Errorf("origin saw %d requests; want 4", n)
	}
}

// A leader's httptrace hooks run while it waits for its head, and never
// after it has gone: a ReverseProxy's 1xx hook writes to a response that
// is then finished.
func TestCollapseTraceAfterLeaderLeft(t *testing.T) {
	checkLeaks(t)
	hints := make(chan struct{})
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</a.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		<-hints
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Set("Cache-Control", "max-age=600")
		io.WriteString(w, "after hints")
	}))
	defer o.Close()
	f := newFlightFixture(t, memStore(t), nil)
	var calls, late atomic.Int64
	var gone atomic.Bool
	first := make(chan struct{}, 1)
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		calls.Add(1)
		if gone.Load() {
			late.Add(1)
		}
		select {
		case first <- struct{}{}:
		default:
		}
		return nil
	}}
	ctx, cancel := context.WithCancel(httptrace.WithClientTrace(t.Context(), trace))
	req, _ := http.NewRequestWithContext(ctx, "GET", o.URL, nil)
	leaderErr := make(chan error, 1)
	go func() {
		_, err := f.cl.Do(req)
		leaderErr <- err
	}()
	<-first
	// A follower keeps the fetch alive after the leader goes.
	followerBody := make(chan string, 1)
	go func() {
		_, b, _ := getBody(t, f.cl, o.URL)
		followerBody <- string(b)
	}()
	time.Sleep(20 * time.Millisecond)
	cancel()
	if err := <-leaderErr; !errors.Is(err, context.Canceled) {
		t.Errorf("leader: %v; want context.Canceled", err)
	}
	gone.Store(true)
	close(hints)
	if b := <-followerBody; b != "after hints" {
		t.Errorf("follower body %q", b)
	}
	if calls.Load() != 1 || late.Load() != 0 {
		t.Errorf("the leader's 1xx hook ran %d times, %d after it had gone; want once, before", calls.Load(), late.Load())
	}
}

// Close cuts short a fetch still under way: its reader gets ErrClosed and
// nothing is stored; RoundTrip after Close fails with ErrClosed.
func TestTransportCloseDuringFetch(t *testing.T) {
	checkLeaks(t)
	gate := make(chan struct{})
	defer close(gate)
	o := newGateOrigin(t, 3<<20, 64<<10, gate)
	s := memStore(t)
	f := newFlightFixture(t, s, nil)
	resp, err := f.cl.Get(o.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.ReadFull(resp.Body, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	if err := f.tr.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(resp.Body); !errors.Is(err, hishel.ErrClosed) {
		t.Errorf("read after Close: %v; want ErrClosed", err)
	}
	if n := pairsUnder(t, s, o.URL); n != 0 {
		t.Errorf("%d pairs stored; want 0", n)
	}
	if _, err := f.cl.Get(o.URL); !errors.Is(err, hishel.ErrClosed) {
		t.Errorf("GET after Close: %v; want ErrClosed", err)
	}
}

// A response that is not shared (no-store) is the leader's alone: its
// context still ends a read of the body, as with a plain transport.
func TestNotSharedBodyFollowsContext(t *testing.T) {
	checkLeaks(t)
	release := make(chan struct{})
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		io.WriteString(w, "first part")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer o.Close()
	defer close(release)
	f := newFlightFixture(t, memStore(t), nil)
	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx, "GET", o.URL, nil)
	resp, err := f.cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.ReadFull(resp.Body, make([]byte, len("first part"))); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := io.ReadAll(resp.Body); done <- err }()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("read after cancel: %v; want context.Canceled", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("cancelling the request's context did not end the read of its body")
	}
}

// A response that is not shared goes to its leader whole: the fetch is over
// before the leader sees it, so the leader's letting go of the fetch never
// looks like abandoning it (which cut the body it was about to read).
func TestNotSharedBodyWhole(t *testing.T) {
	checkLeaks(t)
	body := strings.Repeat("n", 4<<10)
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		io.WriteString(w, body)
	}))
	defer o.Close()
	f := newFlightFixture(t, memStore(t), nil)
	for i := range 2000 {
		resp, err := f.cl.Get(o.URL)
		if err != nil {
			t.Fatalf("GET %d: %v", i, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(b) != body {
			t.Fatalf("GET %d: %d bytes, %v; want the whole body", i, len(b), err)
		}
	}
}
