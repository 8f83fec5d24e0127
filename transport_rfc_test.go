package hishel_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hishel-go/hishel"
	"github.com/hishel-go/hishel/cache"
	"github.com/hishel-go/hishel/model"
	"github.com/hishel-go/hishel/statemachine"
)

// do sends a request through the fixture's client and returns the response
// with its body read.
func (f *fixture) do(t testing.TB, method, url string, body io.Reader, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, body)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := f.cl.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return resp, string(b)
}

// pairs returns the pairs stored under the key of a GET of url, closed.
func (f *fixture) pairs(t testing.TB, url string) []model.CompletePair {
	t.Helper()
	key, err := hishel.URLKey("GET", url)
	if err != nil {
		t.Fatal(err)
	}
	ps, err := f.store.GetPairs(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		p.Close()
	}
	return ps
}

// RFC 9111 §3: a response with any final status and explicit freshness is
// stored and reused while fresh.
func TestTransportAnyFinalStatus(t *testing.T) {
	for _, shared := range []bool{false, true} {
		t.Run(fmt.Sprintf("shared=%v", shared), func(t *testing.T) {
			o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
				code, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/"))
				if r.URL.Query().Get("fresh") != "" {
					w.Header().Set("Cache-Control", "max-age=60")
				}
				w.WriteHeader(code)
				fmt.Fprintf(w, "status %d", code)
			})
			f := newFixture(t, statemachine.Options{Shared: shared}, nil)
			for _, code := range []int{299, 303, 400, 500, 503, 599} {
				u := fmt.Sprintf("%s/%d?fresh=1", o.URL, code)
				f.do(t, "GET", u, nil)
				resp, body := f.do(t, "GET", u, nil)
				if resp.StatusCode != code || body != fmt.Sprintf("status %d", code) || !strings.HasPrefix(resp.Header.Get("Cache-Status"), "hishel; hit") {
					t.Errorf("second GET of a %d with max-age = %d %q %q; want the stored %d, a hit", code, resp.StatusCode, body, resp.Header.Get("Cache-Status"), code)
				}
				// Without explicit freshness it is not stored.
				u = fmt.Sprintf("%s/%d", o.URL, code)
				f.do(t, "GET", u, nil)
				if resp, _ := f.do(t, "GET", u, nil); strings.Contains(resp.Header.Get("Cache-Status"), "hit") {
					t.Errorf("a %d without explicit freshness was reused", code)
				}
			}
			// Stale, it is not served even with max-stale.
			before := o.hits.Load()
			f.clock.Advance(2 * time.Minute)
			if resp, _ := f.do(t, "GET", o.URL+"/500?fresh=1", nil, "Cache-Control", "max-stale"); strings.Contains(resp.Header.Get("Cache-Status"), "hit") {
				t.Errorf("a stale 500 was served under max-stale: %q", resp.Header.Get("Cache-Status"))
			}
			if o.hits.Load() != before+1 {
				t.Errorf("the stale 500 did not go to the origin")
			}
		})
	}
}

// rangeOrigin serves content with Range support (http.ServeContent), a
// strong ETag and max-age, recording the Range and If-Range fields it
// receives.
type rangeOrigin struct {
	*origin
	mu      sync.Mutex
	content []byte
	tag     string
	ranges  []string
}

func newRangeOrigin(t testing.TB, content []byte) *rangeOrigin {
	ro := &rangeOrigin{content: content, tag: `"v1"`}
	ro.origin = newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		ro.mu.Lock()
		content, tag := ro.content, ro.tag
		rv := r.Header.Get("Range")
		if ir := r.Header.Get("If-Range"); ir != "" {
			rv += " if-range " + ir
		}
		ro.ranges = append(ro.ranges, rv)
		ro.mu.Unlock()
		w.Header().Set("ETag", tag)
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Content-Type", "application/octet-stream")
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(content))
	})
	return ro
}

func (ro *rangeOrigin) seen() []string {
	ro.mu.Lock()
	defer ro.mu.Unlock()
	return append([]string(nil), ro.ranges...)
}

// RFC 9111 §3.3, §3.4 through the Transport: parts stored as ordinary
// pairs, a range served from a part, the missing run asked for and joined,
// the parts combined into one complete pair that answers any request.
func TestTransportPartialContent(t *testing.T) {
	content := make([]byte, 10000)
	for i := range content {
		content[i] = byte('a' + i%26)
	}
	for _, shared := range []bool{false, true} {
		t.Run(fmt.Sprintf("shared=%v", shared), func(t *testing.T) {
			ro := newRangeOrigin(t, content)
			f := newFixture(t, statemachine.Options{Shared: shared}, nil)
			steps := []struct {
				rng       string
				status    int
				want      []byte
				cs        string // Cache-Status prefix
				origin    string // the Range the origin saw, "" if none
				stored    int    // pairs stored after the step
				allStored bool   // one complete pair
			}{
				{rng: "bytes=0-999", status: 206, want: content[:1000], cs: "hishel; fwd=uri-miss; fwd-status=206; stored", origin: "bytes=0-999", stored: 1},
				{rng: "bytes=100-199", status: 206, want: content[100:200], cs: "hishel; hit", stored: 1},
				{rng: "bytes=500-1999", status: 206, want: content[500:2000], cs: "hishel; fwd=partial; fwd-status=206; stored", origin: `bytes=1000-1999 if-range "v1"`, stored: 2},
				{rng: "bytes=1500-1599", status: 206, want: content[1500:1600], cs: "hishel; hit", stored: 1}, // combined into 0-1999
				// A part is stored for the URI, but none usable: fwd=miss (RFC 9211).
				{rng: "bytes=8000-", status: 206, want: content[8000:], cs: "hishel; fwd=miss", origin: "bytes=8000-", stored: 2},
				{rng: "bytes=1900-8099", status: 206, want: content[1900:8100], cs: "hishel; fwd=partial", origin: `bytes=2000-7999 if-range "v1"`, stored: 3},
				{rng: "", status: 200, want: content, cs: "hishel; hit", stored: 1, allStored: true}, // combined into the whole
				{rng: "bytes=-10", status: 206, want: content[len(content)-10:], cs: "hishel; hit", stored: 1, allStored: true},
			}
			for i, st := range steps {
				before := len(ro.seen())
				var hdr []string
				if st.rng != "" {
					hdr = []string{"Range", st.rng}
				}
				resp, body := f.do(t, "GET", ro.URL+"/file", nil, hdr...)
				if resp.StatusCode != st.status || body != string(st.want) {
					t.Fatalf("step %d GET %s = %d, %d bytes (%.20q); want %d, %d bytes", i, st.rng, resp.StatusCode, len(body), body, st.status, len(st.want))
				}
				if cs := resp.Header.Get("Cache-Status"); !strings.HasPrefix(cs, st.cs) {
					t.Errorf("step %d GET %s Cache-Status %q; want %q", i, st.rng, cs, st.cs)
				}
				if st.status == 206 && resp.ContentLength != int64(len(st.want)) {
					t.Errorf("step %d GET %s ContentLength %d; want %d", i, st.rng, resp.ContentLength, len(st.want))
				}
				seen := ro.seen()[before:]
				if st.origin == "" && len(seen) != 0 || st.origin != "" && (len(seen) != 1 || seen[0] != st.origin) {
					t.Errorf("step %d GET %s: the origin saw %q; want %q", i, st.rng, seen, st.origin)
				}
				ps := f.pairs(t, ro.URL+"/file")
				if len(ps) != st.stored || st.allStored && ps[0].Response.Status != 200 {
					t.Errorf("step %d: %d pairs stored; want %d (complete: %v)", i, len(ps), st.stored, st.allStored)
				}
				for _, p := range ps {
					if p.Response.Status == 206 && p.Response.Header.Get("Content-Range") == "" {
						t.Errorf("step %d: a stored 206 without Content-Range", i)
					}
				}
			}
		})
	}
}

// RFC 9110 §13.1.5 and §15.3.7: the origin's representation changed; its
// answer to the partial request's If-Range is the whole, which the caller
// gets (a server may ignore Range) and which is stored.
func TestTransportPartialRepresentationChanged(t *testing.T) {
	ro := newRangeOrigin(t, []byte(strings.Repeat("x", 1000)))
	f := newFixture(t, statemachine.Options{}, nil)
	f.do(t, "GET", ro.URL, nil, "Range", "bytes=0-99")
	ro.mu.Lock()
	ro.content, ro.tag = []byte(strings.Repeat("y", 1000)), `"v2"`
	ro.mu.Unlock()
	resp, body := f.do(t, "GET", ro.URL, nil, "Range", "bytes=50-149")
	if resp.StatusCode != 200 || body != strings.Repeat("y", 1000) {
		t.Fatalf("GET bytes=50-149 after a change = %d %.20q; want the new whole representation", resp.StatusCode, body)
	}
	resp, body = f.do(t, "GET", ro.URL, nil, "Range", "bytes=50-149")
	if resp.StatusCode != 206 || body != strings.Repeat("y", 100) || !strings.HasPrefix(resp.Header.Get("Cache-Status"), "hishel; hit") {
		t.Errorf("then GET bytes=50-149 = %d %.20q %q; want 100 new bytes from the cache", resp.StatusCode, body, resp.Header.Get("Cache-Status"))
	}
	// An If-Range the stored validator fails needs the whole
	// representation: a 200, from the complete pair.
	resp, body = f.do(t, "GET", ro.URL, nil, "Range", "bytes=0-9", "If-Range", `"v1"`)
	if resp.StatusCode != 200 || len(body) != 1000 {
		t.Errorf("GET with a failing If-Range = %d, %d bytes; want the whole 200", resp.StatusCode, len(body))
	}
}

// RFC 9111 §3.3: a part whose body is not as long as its Content-Range is
// not stored; the caller sees an error, not a short part.
func TestTransportPartialLengthChecked(t *testing.T) {
	for _, n := range []int{50, 150} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("ETag", `"r"`)
				w.Header().Set("Cache-Control", "max-age=600")
				w.Header().Set("Content-Range", "bytes 0-99/1000")
				w.WriteHeader(http.StatusPartialContent)
				w.(http.Flusher).Flush() // chunked: no Content-Length to check
				w.Write(bytes.Repeat([]byte("z"), n))
			})
			f := newFixture(t, statemachine.Options{}, nil)
			req, _ := http.NewRequest("GET", o.URL, nil)
			req.Header.Set("Range", "bytes=0-99")
			resp, err := f.cl.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil {
				t.Errorf("reading a %d-byte body for a 100-byte Content-Range gave no error", n)
			}
			if ps := f.pairs(t, o.URL); len(ps) != 0 {
				t.Errorf("%d pairs stored; want none", len(ps))
			}
		})
	}
}

// RFC 9111 §3.4: combining parts streams their bytes from storage into the
// new pair: memory stays bounded whatever the representation's size.
func TestTransportPartialCombineStreams(t *testing.T) {
	size := int64(128 << 20)
	if testing.Short() {
		size = 64 << 20
	}
	half := size / 2
	src := func() io.Reader { return io.LimitReader(rand.NewChaCha8([32]byte{9}), size) }
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"big"`)
		w.Header().Set("Cache-Control", "max-age=600")
		var first, last int64
		fmt.Sscanf(r.Header.Get("Range"), "bytes=%d-%d", &first, &last)
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", first, last, size))
		w.Header().Set("Content-Length", strconv.FormatInt(last-first+1, 10))
		w.WriteHeader(http.StatusPartialContent)
		r2 := src()
		io.CopyN(io.Discard, r2, first)
		io.CopyN(w, r2, last-first+1)
	})
	s, err := cache.OpenBolt(context.Background(), &cache.BoltOptions{Path: filepath.Join(t.TempDir(), "c.db"), SweepInterval: -1, NoSync: true})
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
	get := func(rng string) (int, []byte, int64) {
		req, _ := http.NewRequest("GET", o.URL, nil)
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		h := sha256.New()
		n, err := io.Copy(h, resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, h.Sum(nil), n
	}
	get(fmt.Sprintf("bytes=0-%d", half-1))
	get(fmt.Sprintf("bytes=%d-%d", half, size-1))
	hits := o.hits.Load()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	peak := base
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // sample the heap while the parts are combined and served
		defer wg.Done()
		var ms runtime.MemStats
		for {
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapAlloc)
			}
		}
	}()
	status, sum, n := get("")
	close(done)
	wg.Wait()
	want := sha256.New()
	io.Copy(want, src())
	if status != 200 || n != size || !bytes.Equal(sum, want.Sum(nil)) || o.hits.Load() != hits {
		t.Fatalf("GET after both halves = %d, %d bytes (hash match %v), %d origin requests; want the whole %d bytes from the cache",
			status, n, bytes.Equal(sum, want.Sum(nil)), o.hits.Load()-hits, size)
	}
	growth := int64(peak) - int64(base)
	t.Logf("two %d MiB parts combined and served: heap peak %.1f MiB above baseline", half>>20, float64(growth)/(1<<20))
	if growth > 32<<20 {
		t.Errorf("heap grew by %.1f MiB combining %d MiB; want at most 32 MiB", float64(growth)/(1<<20), size>>20)
	}
}

// RFC 9111 §4 and §4.3.5 through the Transport: HEAD is answered from the
// stored GET response, and a 200 to HEAD freshens or invalidates it.
func TestTransportHead(t *testing.T) {
	for _, shared := range []bool{false, true} {
		t.Run(fmt.Sprintf("shared=%v", shared), func(t *testing.T) {
			var tag atomic.Value
			tag.Store(`"v1"`)
			var heads, gets atomic.Int64
			var f *fixture
			o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Date", f.clock.Now().UTC().Format(http.TimeFormat)) // the origin's clock is the cache's
				w.Header().Set("ETag", tag.Load().(string))
				w.Header().Set("Cache-Control", "max-age=60")
				w.Header().Set("Content-Length", "5")
				// This origin ignores conditionals, as many do for HEAD.
				if r.Method == "HEAD" {
					heads.Add(1)
					return
				}
				gets.Add(1)
				io.WriteString(w, "hello")
			})
			f = newFixture(t, statemachine.Options{Shared: shared}, nil)
			f.do(t, "GET", o.URL, nil)
			resp, body := f.do(t, "HEAD", o.URL, nil)
			if resp.StatusCode != 200 || body != "" || resp.ContentLength != 5 || !strings.HasPrefix(resp.Header.Get("Cache-Status"), "hishel; hit") || heads.Load() != 0 {
				t.Fatalf("HEAD after GET = %d %q, length %d, %q, %d HEADs at the origin; want a hit from the stored GET",
					resp.StatusCode, body, resp.ContentLength, resp.Header.Get("Cache-Status"), heads.Load())
			}
			// Stale: the HEAD goes to the origin, whose 200 with the same
			// ETag and Content-Length freshens the stored GET response.
			f.clock.Advance(2 * time.Minute)
			resp, _ = f.do(t, "HEAD", o.URL, nil)
			if heads.Load() != 1 || resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Cache-Status"), "hishel; fwd=stale; fwd-status=200") {
				t.Fatalf("stale HEAD: %d %q, %d HEADs at the origin; want 200 from the freshened GET response and one HEAD", resp.StatusCode, resp.Header.Get("Cache-Status"), heads.Load())
			}
			resp, body = f.do(t, "GET", o.URL, nil)
			if body != "hello" || gets.Load() != 1 || !strings.HasPrefix(resp.Header.Get("Cache-Status"), "hishel; hit") {
				t.Errorf("GET after a freshening HEAD: %q, %d GETs at the origin, %q; want a hit", body, gets.Load(), resp.Header.Get("Cache-Status"))
			}
			// A HEAD whose ETag differs invalidates the stored GET response.
			tag.Store(`"v2"`)
			f.clock.Advance(2 * time.Minute)
			f.do(t, "HEAD", o.URL, nil)
			for _, p := range f.pairs(t, o.URL) {
				if p.Request.Method == "GET" {
					t.Errorf("the stored GET response survived a HEAD with another ETag")
				}
			}
			f.do(t, "GET", o.URL, nil)
			if gets.Load() != 2 {
				t.Errorf("GET after an invalidating HEAD: %d GETs at the origin; want 2", gets.Load())
			}
		})
	}
}

// RFC 9110 §9.3.3 through the Transport: a POST response with explicit
// freshness and Content-Location naming its target answers a later GET.
func TestTransportPostContentLocation(t *testing.T) {
	var gets atomic.Int64
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "POST" {
			b, _ := io.ReadAll(r.Body)
			w.Header().Set("Cache-Control", "max-age=60")
			if r.URL.Query().Get("cl") != "" {
				w.Header().Set("Content-Location", r.URL.RequestURI())
			}
			fmt.Fprintf(w, "posted %s", b)
			return
		}
		gets.Add(1)
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, "got")
	})
	for _, shared := range []bool{false, true} {
		t.Run(fmt.Sprintf("shared=%v", shared), func(t *testing.T) {
			gets.Store(0)
			f := newFixture(t, statemachine.Options{Shared: shared}, nil)
			u := o.URL + "/doc?cl=1"
			f.do(t, "GET", u, nil)
			resp, body := f.do(t, "POST", u, strings.NewReader("new"))
			if body != "posted new" || !strings.Contains(resp.Header.Get("Cache-Status"), "fwd=method; fwd-status=200; stored") {
				t.Fatalf("POST = %q, %q; want the origin's answer, stored", body, resp.Header.Get("Cache-Status"))
			}
			resp, body = f.do(t, "GET", u, nil)
			if body != "posted new" || gets.Load() != 1 || !strings.HasPrefix(resp.Header.Get("Cache-Status"), "hishel; hit") {
				t.Errorf("GET after the POST = %q, %q, %d GETs at the origin; want the POST's response from the cache", body, resp.Header.Get("Cache-Status"), gets.Load())
			}
			// Without Content-Location the POST only invalidates.
			u = o.URL + "/other"
			f.do(t, "GET", u, nil)
			f.do(t, "POST", u, strings.NewReader("x"))
			if _, body := f.do(t, "GET", u, nil); body != "got" || gets.Load() != 3 {
				t.Errorf("GET after a POST without Content-Location = %q, %d GETs; want a new GET", body, gets.Load())
			}
		})
	}
}

// RFC 9111 §4.2.3 through the Transport: the miss that stores a slow
// response sends the age it arrived with.
func TestTransportMissAge(t *testing.T) {
	var f *fixture
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Date", f.clock.Now().UTC().Format(http.TimeFormat))
		w.Header().Set("Cache-Control", "max-age=600")
		f.clock.Advance(5 * time.Second) // the origin takes 5s
		io.WriteString(w, "slow")
	})
	f = newFixture(t, statemachine.Options{}, nil)
	resp, _ := f.do(t, "GET", o.URL, nil)
	if got := resp.Header.Get("Age"); got != "5" {
		t.Errorf("miss Age = %q; want 5", got)
	}
	if resp.Header.Get(statemachine.HeaderRequestTime) != "" || resp.Header.Get(statemachine.HeaderResponseTime) != "" {
		t.Errorf("the miss carries the state machine's time fields: %v", resp.Header)
	}
	f.clock.Advance(10 * time.Second)
	resp, _ = f.do(t, "GET", o.URL, nil)
	if got := resp.Header.Get("Age"); got != "15" {
		t.Errorf("hit 10s later: Age = %q; want 15", got)
	}
}

// RFC 9111 §4.2.4 through the Transport: with AllowStale, a stale response
// is served when the origin refuses or resets the connection or does not
// answer in time, unless a directive forbids it.
func TestTransportStaleIfDisconnected(t *testing.T) {
	type failure struct {
		name  string
		setup func(t *testing.T, o *flakyOrigin)
	}
	failures := []failure{
		{"refused", func(t *testing.T, o *flakyOrigin) { o.close() }},
		{"reset", func(t *testing.T, o *flakyOrigin) { o.mode.Store("reset") }},
		{"timeout", func(t *testing.T, o *flakyOrigin) { o.mode.Store("hang") }},
	}
	for _, fl := range failures {
		for _, cc := range []string{"max-age=60", "max-age=60, must-revalidate", "max-age=60, no-cache", "s-maxage=60", "max-age=60, proxy-revalidate"} {
			for _, shared := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%s/shared=%v", fl.name, cc, shared), func(t *testing.T) {
					o := newFlakyOrigin(t, cc)
					tr := &http.Transport{ResponseHeaderTimeout: 200 * time.Millisecond}
					t.Cleanup(tr.CloseIdleConnections)
					f := newFixture(t, statemachine.Options{Shared: shared, AllowStale: true}, &hishel.Options{Transport: tr})
					f.do(t, "GET", o.url, nil)
					f.clock.Advance(2 * time.Minute)
					fl.setup(t, o)
					req, _ := http.NewRequest("GET", o.url, nil)
					resp, err := f.cl.Do(req)
					forbidden := strings.Contains(cc, "must-revalidate") || strings.Contains(cc, "no-cache") ||
						shared && (strings.Contains(cc, "s-maxage") || strings.Contains(cc, "proxy-revalidate"))
					if forbidden {
						if err == nil {
							resp.Body.Close()
							t.Fatalf("stale %q with the origin down: %d %q; want an error", cc, resp.StatusCode, resp.Header.Get("Cache-Status"))
						}
						return
					}
					if err != nil {
						t.Fatalf("stale %q with the origin down: %v; want the stale response", cc, err)
					}
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 || string(b) != "kept" || !strings.HasPrefix(resp.Header.Get("Cache-Status"), "hishel; fwd=stale; detail=stale-if-disconnected") {
						t.Errorf("stale response = %d %q %q; want the stored one, fwd=stale; detail=stale-if-disconnected", resp.StatusCode, b, resp.Header.Get("Cache-Status"))
					}
				})
			}
		}
	}
}

// flakyOrigin answers until told to fail: by closing (refused), resetting
// connections, or hanging until the test ends.
type flakyOrigin struct {
	srv  *httptest.Server
	url  string
	mode atomic.Value // "", "reset" or "hang"
	stop chan struct{}
	once sync.Once
}

func newFlakyOrigin(t *testing.T, cc string) *flakyOrigin {
	o := &flakyOrigin{stop: make(chan struct{})}
	o.mode.Store("")
	o.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch o.mode.Load().(string) {
		case "reset":
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.(*net.TCPConn).SetLinger(0) // RST on close
				conn.Close()
			}
			return
		case "hang":
			select {
			case <-o.stop:
			case <-r.Context().Done():
			}
			return
		}
		w.Header().Set("Cache-Control", cc)
		w.Header().Set("ETag", `"k"`)
		io.WriteString(w, "kept")
	}))
	o.url = o.srv.URL
	t.Cleanup(func() { o.once.Do(func() { close(o.stop) }); o.srv.Close() })
	return o
}

func (o *flakyOrigin) close() {
	o.once.Do(func() { close(o.stop) })
	o.srv.Close()
}

// RFC 9213 through Middleware (a shared cache): CDN-Cache-Control wins over
// Cache-Control and is passed on downstream.
func TestMiddlewareTargetedCacheControl(t *testing.T) {
	var n atomic.Int64
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		switch r.URL.Path {
		case "/cdn":
			w.Header().Set("CDN-Cache-Control", "max-age=60")
			w.Header().Set("Cache-Control", "no-store")
		case "/hishel":
			w.Header().Set("Hishel-Cache-Control", "no-store")
			w.Header().Set("CDN-Cache-Control", "max-age=60")
		case "/invalid":
			w.Header().Set("CDN-Cache-Control", "max-age=60,")
			w.Header().Set("Cache-Control", "no-store")
		}
		io.WriteString(w, r.URL.Path)
	})
	s, err := cache.OpenMemory(context.Background(), &cache.MemoryOptions{SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	h, err := hishel.Middleware(next, &hishel.Options{Storage: s, Cache: statemachine.Options{TargetedFields: []string{"Hishel-Cache-Control"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	srv := httptest.NewServer(h)
	defer srv.Close()
	for _, tc := range []struct {
		path   string
		cached bool
	}{{"/cdn", true}, {"/hishel", false}, {"/invalid", false}} {
		before := n.Load()
		var resp *http.Response
		for range 2 {
			resp, err = http.Get(srv.URL + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		if got := n.Load() - before; (got == 1) != tc.cached {
			t.Errorf("%s: the handler ran %d times for two requests; want cached: %v", tc.path, got, tc.cached)
		}
		if tc.path == "/cdn" && resp.Header.Get("CDN-Cache-Control") != "max-age=60" {
			t.Errorf("%s: CDN-Cache-Control not passed on: %v", tc.path, resp.Header)
		}
	}
}

// RFC 9111 §4.1 through the Transport: Accept-Encoding in another order
// selects the same stored variant.
func TestTransportVaryNormalised(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Vary", "Accept-Encoding")
		io.WriteString(w, "v")
	})
	f := newFixture(t, statemachine.Options{}, nil)
	f.do(t, "GET", o.URL, nil, "Accept-Encoding", "gzip, br")
	resp, _ := f.do(t, "GET", o.URL, nil, "Accept-Encoding", "BR,gzip;q=1.0")
	if !strings.HasPrefix(resp.Header.Get("Cache-Status"), "hishel; hit") {
		t.Errorf("reordered Accept-Encoding: %q; want a hit", resp.Header.Get("Cache-Status"))
	}
	f.do(t, "GET", o.URL, nil, "Accept-Encoding", "br;q=0.5, gzip")
	if n := o.hits.Load(); n != 2 {
		t.Errorf("origin saw %d requests; want 2 (another weight is another variant)", n)
	}
}

// RFC 9111 §4.3.1, §4.3.4 through the Transport: a stale part is validated
// with its entity-tag and the caller's range; the 304 freshens it and the
// range is served from it.
func TestTransportPartialRevalidated(t *testing.T) {
	var inm atomic.Value
	inm.Store("")
	var f *fixture
	// The origin validates with If-None-Match, as ServeContent does for
	// its ETag; its Date follows the cache's clock.
	ro := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		inm.Store(r.Header.Get("If-None-Match") + " " + r.Header.Get("Range"))
		w.Header().Set("Date", f.clock.Now().UTC().Format(http.TimeFormat))
		w.Header().Set("ETag", `"v1"`)
		w.Header().Set("Cache-Control", "max-age=600")
		http.ServeContent(w, r, "", time.Time{}, strings.NewReader(strings.Repeat("p", 1000)))
	})
	f = newFixture(t, statemachine.Options{}, nil)
	f.do(t, "GET", ro.URL, nil, "Range", "bytes=0-499")
	f.clock.Advance(time.Hour)
	resp, body := f.do(t, "GET", ro.URL, nil, "Range", "bytes=100-149")
	if resp.StatusCode != 206 || body != strings.Repeat("p", 50) || resp.Header.Get("Content-Range") != "bytes 100-149/1000" {
		t.Fatalf("stale part: %d %q %q; want the 50 bytes from the validated part", resp.StatusCode, body, resp.Header.Get("Content-Range"))
	}
	if got := inm.Load().(string); got != `"v1" bytes=100-149` {
		t.Errorf("the origin saw If-None-Match and Range %q; want the part's entity-tag and the caller's range", got)
	}
	if cs := resp.Header.Get("Cache-Status"); !strings.Contains(cs, "fwd=stale; fwd-status=304") {
		t.Errorf("Cache-Status %q; want a 304 validation", cs)
	}
	before := ro.hits.Load()
	if resp, _ := f.do(t, "GET", ro.URL, nil, "Range", "bytes=0-9"); !strings.HasPrefix(resp.Header.Get("Cache-Status"), "hishel; hit") || ro.hits.Load() != before {
		t.Errorf("after the 304: %q; want a hit from the freshened part", resp.Header.Get("Cache-Status"))
	}
}
