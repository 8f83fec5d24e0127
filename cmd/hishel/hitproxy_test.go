package main

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime/debug"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hishel-go/hishel"
)

// countingTransport counts the round trips that reach the caching
// transport; it passes Hit on, or hides it (noHit).
type countingTransport struct {
	tr    *hishel.Transport
	trips atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.trips.Add(1)
	return c.tr.RoundTrip(r)
}

func (c *countingTransport) HitHeader(r *http.Request, h http.Header) *http.Response {
	return c.tr.HitHeader(r, h)
}

// noHit is a RoundTripper without HitHeader: newProxy then serves every request
// through the reverse proxy, as before hits were written directly.
type noHit struct{ http.RoundTripper }

// TestProxyHitPath serves the same requests through the proxy's handler
// with its direct hit path and through the reverse proxy alone, sharing
// one Transport and store: the answers must be the same (status and body;
// for hits, the fields too but Age and Date), the direct path must answer hits without a
// round trip, and everything else must still go through the reverse
// proxy.
func TestProxyHitPath(t *testing.T) {
	var originReqs atomic.Int64
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		originReqs.Add(1)
		w.Header().Set("Cache-Control", "public, max-age=60")
		switch r.URL.Path {
		case "/vary-ua":
			w.Header().Set("Vary", "User-Agent")
		case "/vary-xff":
			w.Header().Set("Vary", "X-Forwarded-For")
		case "/private":
			w.Header().Set("Cache-Control", "private, max-age=60")
		}
		w.Header().Set("X-Path", r.URL.RequestURI())
		io.WriteString(w, "body of "+r.URL.RequestURI())
	}))
	t.Cleanup(origin.Close)

	cfg, tr := sharedTransport(t, origin.URL)
	ct := &countingTransport{tr: tr}
	errLog := log.New(io.Discard, "", 0)
	direct := httptest.NewServer(newProxy(cfg.target, ct, errLog, false))
	t.Cleanup(direct.Close)
	viaRP := httptest.NewServer(newProxy(cfg.target, noHit{ct}, errLog, false))
	t.Cleanup(viaRP.Close)
	if _, ok := newProxy(cfg.target, noHit{ct}, errLog, false).(*hitProxy); ok {
		t.Fatal("newProxy without a Transport that has Hit returned the direct hit path")
	}

	for _, tc := range []struct {
		name, method, path string
		header             http.Header
		hit                bool // answered without a round trip
	}{
		{"GET", "GET", "/a", nil, true},
		{"HEAD", "HEAD", "/a", nil, true},
		{"query", "GET", "/q?x=1&y=%41", nil, true},
		{"hop-by-hop fields", "GET", "/a", http.Header{"Connection": {"keep-alive, X-Hop"}, "X-Hop": {"1"}, "Keep-Alive": {"timeout=5"}}, true},
		{"client's forwarding fields", "GET", "/a", http.Header{"X-Forwarded-For": {"203.0.113.9"}, "X-Forwarded-Host": {"evil.example"}, "Forwarded": {"for=1.2.3.4"}}, true},
		{"Vary: User-Agent, same", "GET", "/vary-ua", nil, true},
		{"Vary: User-Agent, other", "GET", "/vary-ua", http.Header{"User-Agent": {"other"}}, false},
		{"Vary: X-Forwarded-For", "GET", "/vary-xff", nil, true},
		{"private in a shared cache", "GET", "/private", nil, false},
		{"re-encoded query", "GET", "/q?x=1;y=2", nil, false},
		{"Te", "GET", "/a", http.Header{"Te": {"trailers"}}, false},
		{"no-cache request", "GET", "/a", http.Header{"Cache-Control": {"no-cache"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Stored through the reverse proxy (User-Agent: none).
			get(t, viaRP.URL, "GET", tc.path, nil)
			trips := ct.trips.Load()
			d, dBody := get(t, direct.URL, tc.method, tc.path, tc.header)
			if got := ct.trips.Load() - trips; tc.hit != (got == 0) {
				t.Errorf("round trips through the reverse proxy = %d; want a direct hit: %v", got, tc.hit)
			}
			r, rBody := get(t, viaRP.URL, tc.method, tc.path, tc.header)
			if d.StatusCode != r.StatusCode || dBody != rBody {
				t.Errorf("direct = %d %q; reverse proxy = %d %q", d.StatusCode, dBody, r.StatusCode, rBody)
			}
			for _, h := range []http.Header{d.Header, r.Header} {
				h.Del("Age")
				h.Del("Date")
			}
			// A miss stores what the next request finds: only hits
			// compare whole.
			if tc.hit && !equalHeader(d.Header, r.Header) {
				t.Errorf("direct header = %v; reverse proxy's = %v", d.Header, r.Header)
			}
		})
	}
}

func get(t *testing.T, base, method, path string, header http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header["User-Agent"] = nil // send none
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func equalHeader(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) && !(k == "Cache-Status" && len(v) == 1 && len(b[k]) == 1 && sameStatus(v[0], b[k][0])) {
			return false
		}
	}
	return true
}

// sameStatus compares Cache-Status entries but their ttl, which moves
// with the clock.
func sameStatus(a, b string) bool {
	cut := func(s string) string {
		if i := strings.Index(s, "; ttl="); i >= 0 {
			return s[:i]
		}
		return s
	}
	return cut(a) == cut(b)
}

// TestProxyOutgoing checks that the request the direct hit path looks up
// is the one the reverse proxy sends: its header without the hop-by-hop
// fields, then newProxy's Rewrite (SetURL, SetXForwarded, and
// X-Forwarded-Host only when forwarded).
func TestProxyOutgoing(t *testing.T) {
	targets := []string{"http://origin.test:8080", "http://origin.test/base/?k=v"}
	reqs := []func() *http.Request{
		func() *http.Request { return httptest.NewRequest("GET", "http://proxy.test/a/b?x=1", nil) },
		func() *http.Request {
			r := httptest.NewRequest("GET", "https://proxy.test/a", nil) // TLS
			r.Header["X-Forwarded-For"] = []string{"203.0.113.9", "198.51.100.1"}
			r.Header["X-Forwarded-Host"] = []string{"evil.example"}
			r.Header["X-Forwarded-Proto"] = []string{"gopher"}
			r.Header["Forwarded"] = []string{"for=1.2.3.4"}
			r.Header["User-Agent"] = []string{"agent/1"}
			return r
		},
		func() *http.Request {
			r := httptest.NewRequest("HEAD", "http://proxy.test/%41b", nil)
			r.RemoteAddr = "no port" // no X-Forwarded-For
			r.Header["Connection"] = []string{"keep-alive, X-Hop"}
			r.Header["X-Hop"] = []string{"1"}
			r.Header["Keep-Alive"] = []string{"timeout=5"}
			r.Header["Accept"] = []string{"a/b", "c/d"}
			return r
		},
	}
	for _, target := range targets {
		u, err := url.Parse(target)
		if err != nil {
			t.Fatal(err)
		}
		for _, forwardHost := range []bool{false, true} {
			var sent *http.Request
			rt := roundTripFunc(func(r *http.Request) (*http.Response, error) {
				sent = r
				return &http.Response{StatusCode: 204, Body: http.NoBody, Header: http.Header{}, Request: r}, nil
			})
			h := newProxy(u, hitFunc(rt), log.New(io.Discard, "", 0), forwardHost).(*hitProxy)
			for i, mk := range reqs {
				want := func() *http.Request { sent = nil; h.rp.ServeHTTP(httptest.NewRecorder(), mk()); return sent }()
				got := h.outgoing(mk())
				if want == nil || got == nil {
					t.Fatalf("%s, forwardHost %v, request %d: reverse proxy sent %v, outgoing %v", target, forwardHost, i, want, got)
				}
				if got.Method != want.Method || got.URL.String() != want.URL.String() || got.Host != want.Host ||
					!equalHeader(got.Header, want.Header) {
					t.Errorf("%s, forwardHost %v, request %d: outgoing = %s %s (Host %q) %v; reverse proxy sent %s %s (Host %q) %v",
						target, forwardHost, i, got.Method, got.URL, got.Host, got.Header, want.Method, want.URL, want.Host, want.Header)
				}
			}
		}
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// hitFunc is a RoundTripper with a HitHeader that never hits, so that newProxy
// returns its direct hit path.
type hitFunc roundTripFunc

func (f hitFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
func (hitFunc) HitHeader(*http.Request, http.Header) *http.Response { return nil }

// TestSetProxyGC checks that the proxy paces the garbage collector at
// proxyGCPercent unless GOGC is set.
func TestSetProxyGC(t *testing.T) {
	old := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(old) })
	setProxyGC("200") // GOGC set: the runtime has it already
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("with GOGC set, the GC percentage = %d; want it left at 100", got)
	}
	setProxyGC("")
	if got := debug.SetGCPercent(100); got != proxyGCPercent {
		t.Errorf("without GOGC, the GC percentage = %d; want %d", got, proxyGCPercent)
	}
}
