package hishel_test

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hishel-go/hishel"
	"github.com/hishel-go/hishel/statemachine"
)

// hit calls Hit for a GET of url with the header fields hdr (name,
// value, ...) and returns the response with its body read, or nil.
func (f *fixture) hit(t *testing.T, ctx context.Context, method, url string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, method, url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp := f.tr.Hit(req)
	if resp == nil {
		return nil, ""
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("Hit %s: read body: %v", url, err)
	}
	return resp, string(b)
}

func TestTransportHit(t *testing.T) {
	var swrGen atomic.Int64 // /swr's responses, numbered
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/fresh":
			w.Header().Set("Cache-Control", "max-age=60")
		case "/swr":
			w.Header().Set("Cache-Control", "max-age=1, stale-while-revalidate=600")
			w.Header().Set("X-Gen", strconv.FormatInt(swrGen.Add(1), 10))
		case "/vary":
			w.Header().Set("Cache-Control", "max-age=60")
			w.Header().Set("Vary", "Accept-Language")
		}
		io.WriteString(w, "body of "+r.URL.Path)
	})
	var decisions, lookups, responses atomic.Int64
	f := newFixture(t, statemachine.Options{}, &hishel.Options{
		OnDecision: func(hishel.Decision) { decisions.Add(1) },
		Trace: &hishel.Trace{
			Lookup:   func(context.Context, hishel.LookupInfo) { lookups.Add(1) },
			Response: func(_ context.Context, ri hishel.ResponseInfo) { responses.Add(1) },
		},
	})
	ctx := context.Background()

	// A miss: nil, nothing traced or decided, the origin untouched.
	if resp, _ := f.hit(t, ctx, "GET", o.URL+"/fresh"); resp != nil {
		t.Fatalf("Hit before anything was stored = %s; want nil", resp.Status)
	}
	if d, l, r, n := decisions.Load(), lookups.Load(), responses.Load(), o.hits.Load(); d+l+r+n != 0 {
		t.Errorf("a miss by Hit made %d decisions, %d traced lookups, %d traced responses, %d origin requests; want none", d, l, r, n)
	}
	for _, p := range []string{"/fresh", "/swr", "/vary"} {
		f.get(t, o.URL+p, "Accept-Language", "fr")
	}
	decisions.Store(0)
	lookups.Store(0)
	responses.Store(0)

	// A fresh hit: RoundTrip's answer, traced once.
	_, wantBody, wantStatus := f.get(t, o.URL+"/fresh")
	resp, body := f.hit(t, ctx, "GET", o.URL+"/fresh")
	if resp == nil || resp.StatusCode != 200 || body != wantBody || resp.Header.Get("Cache-Status") != wantStatus {
		t.Fatalf("Hit of a stored response = %v %q; want 200 %q, Cache-Status %q (RoundTrip's)", resp, body, wantBody, wantStatus)
	}
	if resp.Header.Get("Age") == "" || resp.ContentLength != int64(len(body)) {
		t.Errorf("Hit: Age %q, ContentLength %d; want an Age and %d", resp.Header.Get("Age"), resp.ContentLength, len(body))
	}
	if d, l, r := decisions.Load(), lookups.Load(), responses.Load(); d != 2 || l != 2 || r != 2 {
		t.Errorf("a hit by RoundTrip and one by Hit: %d decisions, %d lookups, %d responses traced; want 2 each", d, l, r)
	}
	// HEAD: the head, no body.
	if resp, body := f.hit(t, ctx, "HEAD", o.URL+"/fresh"); resp == nil || body != "" {
		t.Errorf("Hit HEAD = %v %q; want the stored head, no body", resp, body)
	}

	// Vary: a hit for the stored variant only.
	if resp, _ := f.hit(t, ctx, "GET", o.URL+"/vary", "Accept-Language", "de"); resp != nil {
		t.Errorf("Hit of another variant = %s; want nil", resp.Status)
	}
	if resp, _ := f.hit(t, ctx, "GET", o.URL+"/vary", "Accept-Language", "fr"); resp == nil {
		t.Errorf("Hit of the stored variant = nil; want a hit")
	}

	// Not for Hit: a request with a body, an unsafe method, a refresh, a
	// stale response that needs the origin.
	req, _ := http.NewRequest("GET", o.URL+"/fresh", strings.NewReader("x"))
	if resp := f.tr.Hit(req); resp != nil {
		t.Errorf("Hit of a GET with a body = %s; want nil", resp.Status)
	}
	if resp, _ := f.hit(t, ctx, "POST", o.URL+"/fresh"); resp != nil {
		t.Errorf("Hit of a POST = %s; want nil", resp.Status)
	}
	if resp, _ := f.hit(t, hishel.WithRefresh(ctx), "GET", o.URL+"/fresh"); resp != nil {
		t.Errorf("Hit WithRefresh = %s; want nil", resp.Status)
	}
	if resp, _ := f.hit(t, ctx, "GET", o.URL+"/fresh", "Cache-Control", "no-cache"); resp != nil {
		t.Errorf("Hit of a no-cache request = %s; want nil", resp.Status)
	}
	if resp, _ := f.hit(t, hishel.WithOnlyIfCached(ctx), "GET", o.URL+"/fresh"); resp == nil {
		t.Errorf("Hit WithOnlyIfCached of a stored response = nil; want a hit")
	}

	// Stale while revalidate: served, and revalidated in the background.
	f.clock.Advance(10 * time.Second)
	before := o.hits.Load()
	resp, _ = f.hit(t, ctx, "GET", o.URL+"/swr")
	if resp == nil || !strings.Contains(resp.Header.Get("Cache-Status"), "detail=stale") {
		t.Fatalf("Hit of a response stale but within stale-while-revalidate = %v; want a stale hit", resp)
	}
	deadline := time.Now().Add(5 * time.Second)
	for o.hits.Load() == before && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if o.hits.Load() == before {
		t.Errorf("no background revalidation after a stale hit by Hit")
	}
	// The revalidation stores the request it sent, with its URL.
	swrReq, _ := http.NewRequest("GET", o.URL+"/swr", nil)
	swrKey, err := hishel.DefaultKey(swrReq)
	if err != nil {
		t.Fatal(err)
	}
	for stored := false; !stored; {
		pairs, err := f.store.GetPairs(ctx, swrKey)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pairs {
			p.Request.Body.Close()
			p.Response.Body.Close()
			if p.Request.URL != o.URL+"/swr" {
				t.Fatalf("a pair stored for /swr has the request URL %q; want %q", p.Request.URL, o.URL+"/swr")
			}
			stored = stored || p.Response.Header.Get("X-Gen") == "2"
		}
		if !stored && time.Now().After(deadline) {
			t.Fatalf("the background revalidation stored no response under /swr's key")
		}
		time.Sleep(5 * time.Millisecond)
	}
	f.clock.Advance(time.Minute)
	if resp, _ := f.hit(t, ctx, "GET", o.URL+"/fresh"); resp != nil {
		t.Errorf("Hit of a stale response without stale-while-revalidate = %s; want nil", resp.Status)
	}

	// After Close: nil.
	f.tr.Close()
	if resp, _ := f.hit(t, ctx, "GET", o.URL+"/swr"); resp != nil {
		t.Errorf("Hit after Close = %s; want nil", resp.Status)
	}
}

// TestTransportHitPrivateFields checks that Hit, which matches Vary on
// the request's own header when no stored response varies on a field the
// cache drops or hashes, decides as RoundTrip does whether it does or not.
func TestTransportHitPrivateFields(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=60")
		switch r.URL.Path {
		case "/cookie":
			w.Header().Set("Vary", "Accept, cookie")
		case "/xff":
			w.Header().Set("Vary", "X-Forwarded-For")
		case "/lang":
			w.Header().Set("Vary", "Accept-Language")
		}
		io.WriteString(w, "body of "+r.URL.Path)
	})
	f := newFixture(t, statemachine.Options{Shared: true}, nil)
	ctx := context.Background()
	for _, p := range []string{"/cookie", "/xff", "/lang", "/plain"} {
		f.get(t, o.URL+p, "Cookie", "a=1", "X-Forwarded-For", "192.0.2.1", "Accept-Language", "fr")
	}
	tests := []struct {
		path string
		hdr  []string
		hit  bool
	}{
		{"/cookie", []string{"Cookie", "a=1", "X-Forwarded-For", "192.0.2.9"}, true},
		{"/cookie", []string{"Cookie", "a=2", "X-Forwarded-For", "192.0.2.1"}, false},
		{"/cookie", []string{"X-Forwarded-For", "192.0.2.1"}, false},
		// X-Forwarded-For is not stored: a request's never matches one.
		{"/xff", []string{"X-Forwarded-For", "192.0.2.9"}, true},
		{"/xff", []string{"X-Forwarded-For", "192.0.2.1", "Cookie", "a=1"}, true},
		{"/lang", []string{"Accept-Language", "fr", "X-Forwarded-For", "192.0.2.9", "Cookie", "b=1"}, true},
		{"/lang", []string{"Accept-Language", "de", "X-Forwarded-For", "192.0.2.9"}, false},
		{"/plain", []string{"X-Forwarded-For", "192.0.2.9", "Forwarded", "for=192.0.2.9"}, true},
		{"/plain", []string{"Authorization", "Basic eDp5"}, true}, // public
	}
	for _, tt := range tests {
		resp, _ := f.hit(t, ctx, "GET", o.URL+tt.path, tt.hdr...)
		if got := resp != nil; got != tt.hit {
			t.Errorf("Hit %s %q = hit %v; want %v", tt.path, tt.hdr, got, tt.hit)
		}
		_, _, status := f.get(t, o.URL+tt.path, tt.hdr...)
		if got := strings.Contains(status, "hit"); got != tt.hit {
			t.Errorf("RoundTrip %s %q: Cache-Status %q; want hit %v, as Hit", tt.path, tt.hdr, status, tt.hit)
		}
	}
}
