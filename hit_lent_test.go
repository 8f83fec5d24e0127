package hishel_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hishel-go/hishel"
	"github.com/hishel-go/hishel/cache"
	"github.com/hishel-go/hishel/internal/lent"
	"github.com/hishel-go/hishel/internal/testclock"
	"github.com/hishel-go/hishel/statemachine"
)

// copyingBolt is a cache.Bolt that is not one to the Transport, which
// then reads its pairs with GetPairs (header maps of their own), as from
// any Storage.
type copyingBolt struct{ *cache.Bolt }

// lentOrigin serves the responses TestTransportHitLent stores: every
// field a hit reads, changes or leaves out of what it serves, with a Date
// from the test clock so that two stores of the same response are the
// same bytes.
func lentOrigin(t *testing.T, clock *testclock.Clock) *origin {
	return newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Date", clock.Now().UTC().Format(http.TimeFormat))
		h.Set("Last-Modified", "Mon, 02 Jan 2006 15:04:05 GMT")
		h.Set("Etag", `"v1"`)
		h.Set("Content-Type", "text/plain")
		h.Add("X-Multi", "a")
		h.Add("X-Multi", "b")
		switch r.URL.Path {
		case "/fresh":
			h.Set("Cache-Control", "max-age=600")
		case "/nocache-field":
			h.Set("Cache-Control", `max-age=600, no-cache="X-Secret"`)
			h.Set("X-Secret", "s")
		case "/vary":
			h.Set("Cache-Control", "max-age=600")
			h.Set("Vary", "Accept-Language")
		case "/swr":
			h.Set("Cache-Control", "max-age=1, stale-while-revalidate=600")
		case "/private":
			h.Set("Cache-Control", "public, max-age=600")
			h.Set("Vary", "Cookie")
		}
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		fmt.Fprintf(w, "the body of %s, %s", r.URL.Path, r.Header.Get("Accept-Language"))
	})
}

// lentStores opens a Transport on a Bolt file, which lends Hit its pairs'
// header maps, and one on a copyingBolt, which does not, both in front of
// o and on clock, and stores the same responses in both.
func lentStores(t *testing.T, o *origin, clock *testclock.Clock, shared bool) (lending *hishel.Transport, lendingStore *cache.Bolt, copying *hishel.Transport) {
	t.Helper()
	open := func(name string) *cache.Bolt {
		s, err := cache.OpenBolt(context.Background(), &cache.BoltOptions{Path: filepath.Join(t.TempDir(), name), Now: clock.Now, SweepInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	lendingStore = open("lending.db")
	newTr := func(s hishel.Storage) *hishel.Transport {
		tr, err := hishel.NewTransport(&hishel.Options{Storage: s, Cache: statemachine.Options{Shared: shared, Now: clock.Now},
			CredentialKey: []byte("0123456789abcdef")})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tr.Close() })
		return tr
	}
	lending, copying = newTr(lendingStore), newTr(copyingBolt{open("copying.db")})
	for _, tr := range []*hishel.Transport{lending, copying} {
		cl := &http.Client{Transport: tr}
		for _, p := range []string{"/fresh", "/nocache-field", "/vary", "/swr", "/private"} {
			for _, lang := range []string{"fr", "de"} {
				req, _ := http.NewRequest("GET", o.URL+p, nil)
				req.Header.Set("Accept-Language", lang)
				req.Header.Set("Cookie", "c=1")
				resp, err := cl.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
	}
	return lending, lendingStore, copying
}

// hitAnswer is what Hit answered, for comparison: nil, or the response's
// status, header, length and body.
type hitAnswer struct {
	Hit           bool
	Status        int
	Header        http.Header
	ContentLength int64
	Body          string
}

func hitOf(t *testing.T, tr *hishel.Transport, ctx context.Context, method, url string, hdr []string) hitAnswer {
	return hitInto(t, tr, ctx, method, url, hdr, nil)
}

// hitInto is hitOf through HitHeader(req, into), unless into is nil; it
// checks that into is resp.Header, or unchanged without a hit.
func hitInto(t *testing.T, tr *hishel.Transport, ctx context.Context, method, url string, hdr []string, into http.Header) hitAnswer {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, method, url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	var resp *http.Response
	if into == nil {
		resp = tr.Hit(req)
	} else {
		was := into.Clone()
		resp = tr.HitHeader(req, into)
		switch {
		case resp == nil && !reflect.DeepEqual(into, was):
			t.Errorf("HitHeader %s %s %q = nil, and changed its header from %v to %v", method, url, hdr, was, into)
		case resp != nil && reflect.ValueOf(resp.Header).UnsafePointer() != reflect.ValueOf(into).UnsafePointer():
			t.Errorf("HitHeader %s %s %q: resp.Header is not the map given", method, url, hdr)
		}
	}
	if resp == nil {
		return hitAnswer{}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil { // Errorf: hitOf runs in goroutines too
		t.Errorf("Hit %s %s %q: read body: %v", method, url, hdr, err)
	}
	return hitAnswer{Hit: true, Status: resp.StatusCode, Header: resp.Header, ContentLength: resp.ContentLength, Body: string(b)}
}

// lentHeads returns the header maps the lending store lends for the pairs
// under the key of a GET of url (after reading them enough times for its
// head cache to keep them), and fails the test unless it lends the same
// maps twice: the maps every hit of the key reads.
func lentHeads(t *testing.T, s *cache.Bolt, url string) []http.Header {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	key, err := hishel.DefaultKey(req)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var heads [2][]http.Header
	for i := range 4 {
		pairs, ok, err := lent.GetPairs(ctx, s.Template(), key)
		if !ok || err != nil || len(pairs) == 0 {
			t.Fatalf("lent.GetPairs(%s) = %d pairs, %v, %v; want pairs lent", url, len(pairs), ok, err)
		}
		var hs []http.Header
		for _, p := range pairs {
			hs = append(hs, p.Request.Header, p.Response.Header)
			p.Close()
		}
		heads[i%2] = hs
	}
	for i := range heads[0] {
		if reflect.ValueOf(heads[0][i]).UnsafePointer() != reflect.ValueOf(heads[1][i]).UnsafePointer() {
			t.Fatalf("lent.GetPairs(%s) lent header map %d anew on a second read; want the head cache's, shared", url, i)
		}
	}
	return heads[0]
}

func cloneHeads(hs []http.Header) []http.Header {
	out := make([]http.Header, len(hs))
	for i, h := range hs {
		out[i] = h.Clone()
	}
	return out
}

// TestTransportHitLent checks that Hit (and HitHeader) on a Bolt store, which reads the
// pairs with the header maps the store's head cache shares (package
// internal/lent), answers exactly what Hit answers on a store that gives
// it copies (the same Bolt behind another type), for every kind of hit:
// a plain GET and HEAD, conditional requests (304), ranges (206 and 416),
// Vary variants, no-cache fields left out, Vary on a hashed field, a
// stale response served while it is revalidated in the background (whose
// freshening must change copies only); that HitHeader answers what Hit
// does, in the map it is given, which it leaves as it was when it returns
// nil; and that the shared maps are unchanged after all of them.
func TestTransportHitLent(t *testing.T) {
	for _, shared := range []bool{false, true} {
		t.Run(fmt.Sprintf("shared=%v", shared), func(t *testing.T) {
			clock := testclock.New(time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC))
			o := lentOrigin(t, clock)
			lending, store, copying := lentStores(t, o, clock, shared)
			stored := o.hits.Load()
			ctx := context.Background()
			paths := []string{"/fresh", "/nocache-field", "/vary", "/swr", "/private"}
			var shares [][]http.Header
			var before [][]http.Header
			for _, p := range paths {
				hs := lentHeads(t, store, o.URL+p)
				shares, before = append(shares, hs), append(before, cloneHeads(hs))
			}
			clock.Advance(3 * time.Second)

			requests := []struct {
				method, path string
				hdr          []string
			}{
				{"GET", "/fresh", nil},
				{"HEAD", "/fresh", nil},
				{"GET", "/fresh", []string{"If-None-Match", `"v1"`}},
				{"GET", "/fresh", []string{"If-None-Match", `"v2"`}},
				{"GET", "/fresh", []string{"If-Modified-Since", "Mon, 02 Jan 2006 15:04:05 GMT"}},
				{"GET", "/fresh", []string{"Range", "bytes=2-5"}},
				{"GET", "/fresh", []string{"Range", "bytes=-3"}},
				{"GET", "/fresh", []string{"Range", "bytes=900-"}},
				{"GET", "/fresh", []string{"Range", "bytes=2-5", "If-Range", `"v1"`}},
				{"GET", "/fresh", []string{"Cache-Control", "max-age=1"}},
				{"GET", "/fresh", []string{"Cache-Control", "no-cache"}},
				{"GET", "/nocache-field", nil},
				{"HEAD", "/nocache-field", nil},
				{"GET", "/vary", []string{"Accept-Language", "fr"}},
				{"GET", "/vary", []string{"Accept-Language", "de"}},
				{"GET", "/vary", []string{"Accept-Language", "it"}},
				{"GET", "/vary", []string{"Accept-Language", "fr", "If-None-Match", `"v1"`}},
				{"GET", "/private", []string{"Cookie", "c=1"}},
				{"GET", "/private", []string{"Cookie", "c=2"}},
				{"GET", "/private", []string{"Cookie", "c=1", "X-Forwarded-For", "192.0.2.1"}},
				{"GET", "/swr", []string{"Accept-Language", "fr"}},
			}
			for _, r := range requests {
				got := hitOf(t, lending, ctx, r.method, o.URL+r.path, r.hdr)
				want := hitOf(t, copying, ctx, r.method, o.URL+r.path, r.hdr)
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("Hit %s %s %q from lent heads differs from Hit from copies (-copies +lent):\n%s", r.method, r.path, r.hdr, diff)
				}
				if r.path == "/swr" {
					continue // served once: the next is fresh or revalidating
				}
				// HitHeader, into an empty map (the stored fields written
				// into it) and into one with a field (as Hit, then copied).
				if diff := cmp.Diff(want, hitInto(t, lending, ctx, r.method, o.URL+r.path, r.hdr, http.Header{})); diff != "" {
					t.Errorf("HitHeader %s %s %q into an empty map differs from Hit (-Hit +HitHeader):\n%s", r.method, r.path, r.hdr, diff)
				}
				into := http.Header{"X-Server": {"s"}, "Etag": {"replaced"}}
				wantInto := want
				if want.Hit {
					wantInto.Header = want.Header.Clone()
					if wantInto.Header["Etag"] == nil {
						wantInto.Header["Etag"] = into["Etag"]
					}
					wantInto.Header["X-Server"] = into["X-Server"]
				}
				if diff := cmp.Diff(wantInto, hitInto(t, lending, ctx, r.method, o.URL+r.path, r.hdr, into)); diff != "" {
					t.Errorf("HitHeader %s %s %q into a map with fields differs from Hit (-want +HitHeader):\n%s", r.method, r.path, r.hdr, diff)
				}
			}
			// The stale hit started a background revalidation in each
			// (answered 304: the pair freshened, in a copy of its heads).
			for _, tr := range []*hishel.Transport{lending, copying} {
				tr.Close() // waits for the background revalidations
			}
			if n := o.hits.Load() - stored; n != 2 {
				t.Errorf("the hits sent %d requests to the origin; want the 2 background revalidations", n)
			}
			for i, p := range paths {
				if p == "/swr" {
					continue // freshened: its new heads are new maps
				}
				if diff := cmp.Diff(before[i], shares[i]); diff != "" {
					t.Errorf("the shared heads of %s changed under the hits (-before +after):\n%s", p, diff)
				}
			}
		})
	}
}

// TestTransportHitLentRace serves hits of every kind from lent heads in
// many goroutines at once, with stale hits revalidated in the background
// and misses storing beside them: under -race, any write to a shared
// header map beside the hits' reads of it is a reported race, and the
// shared maps must be unchanged after.
func TestTransportHitLentRace(t *testing.T) {
	clock := testclock.New(time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC))
	o := lentOrigin(t, clock)
	lending, store, _ := lentStores(t, o, clock, true)
	ctx := context.Background()
	paths := []string{"/fresh", "/nocache-field", "/vary", "/private"}
	var shares, before [][]http.Header
	for _, p := range paths {
		hs := lentHeads(t, store, o.URL+p)
		shares, before = append(shares, hs), append(before, cloneHeads(hs))
	}
	clock.Advance(3 * time.Second) // /swr is stale, within stale-while-revalidate
	hdrs := [][]string{
		nil,
		{"Range", "bytes=1-4"},
		{"If-None-Match", `"v1"`},
		{"Accept-Language", "fr"},
		{"Cookie", "c=1"},
		{"Cache-Control", "no-cache"},
	}
	cl := &http.Client{Transport: lending}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				p := paths[(g+i)%len(paths)]
				if i%10 == 0 {
					p = "/swr"
				}
				method := "GET"
				if i%7 == 0 {
					method = "HEAD"
				}
				var into http.Header
				if i%2 == 0 {
					into = http.Header{}
				}
				a := hitInto(t, lending, ctx, method, o.URL+p, hdrs[i%len(hdrs)], into)
				if a.Hit && a.Header.Get("Age") == "" {
					t.Errorf("Hit %s %s: no Age", method, p)
				}
				if a.Hit { // the caller's own map, changed as net/http's Header methods do
					a.Header.Set("X-Changed", "by the caller")
					a.Header.Add("X-Multi", "c")
					a.Header.Del("Content-Type")
				}
				if i%50 == 0 { // a miss that stores beside the hits
					resp, err := cl.Get(fmt.Sprintf("%s/miss/%d/%d", o.URL, g, i))
					if err != nil {
						t.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		})
	}
	wg.Wait()
	lending.Close()
	for i, p := range paths {
		if diff := cmp.Diff(before[i], shares[i]); diff != "" {
			t.Errorf("the shared heads of %s changed under the hits (-before +after):\n%s", p, diff)
		}
		if got := strings.Join(shares[i][1]["X-Changed"], ""); got != "" {
			t.Errorf("a caller's change to its response header reached the shared heads of %s", p)
		}
	}
}
