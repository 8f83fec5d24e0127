package statemachine

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hishel-go/hishel/model"
)

// RFC 9111 §4.4: invalidation after unsafe methods.
func TestInvalidation(t *testing.T) {
	const target = "https://example.com/items/1"
	both := func(urls ...string) []Target {
		var out []Target
		for _, u := range urls {
			out = append(out, Target{"GET", u}, Target{"HEAD", u})
		}
		return out
	}
	tests := []struct {
		name   string
		method string
		status int
		resp   http.Header
		want   []Target
	}{
		{"POST 200 invalidates the target", "POST", 200, nil, both(target)},
		{"PUT 204", "PUT", 204, nil, both(target)},
		{"DELETE 202", "DELETE", 202, nil, both(target)},
		{"PATCH 200", "PATCH", 200, nil, both(target)},
		{"unknown method is unsafe", "FROB", 200, nil, both(target)},
		{"3xx is not an error", "POST", 303, hdr("Location", "/items/2"), both(target, "https://example.com/items/2")},
		{"relative Location", "POST", 201, hdr("Location", "2"), both(target, "https://example.com/items/2")},
		{"Content-Location", "PUT", 200, hdr("Content-Location", "https://example.com/items/1/v2"), both(target, "https://example.com/items/1/v2")},
		{"Location and Content-Location", "POST", 201, hdr("Location", "/a", "Content-Location", "/b"),
			both(target, "https://example.com/a", "https://example.com/b")},
		{"duplicates collapse", "POST", 201, hdr("Location", target, "Content-Location", "/a#frag"), both(target, "https://example.com/a")},
		{"explicit default port is the same origin", "POST", 201, hdr("Location", "https://EXAMPLE.com:443/x"), both(target, "https://EXAMPLE.com:443/x")},
		{"other host is not invalidated", "POST", 201, hdr("Location", "https://evil.example/x"), both(target)},
		{"other scheme is not invalidated", "POST", 201, hdr("Location", "http://example.com/x"), both(target)},
		{"other port is not invalidated", "POST", 201, hdr("Content-Location", "https://example.com:8443/x"), both(target)},
		{"malformed Location is ignored", "POST", 201, hdr("Location", "http://[::1"), both(target)},
		{"4xx invalidates nothing", "POST", 404, nil, nil},
		{"5xx invalidates nothing", "DELETE", 500, nil, nil},
		{"1xx invalidates nothing", "POST", 100, nil, nil},
		{"safe methods invalidate nothing", "OPTIONS", 200, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			modes(t, func(t *testing.T, shared bool) {
				o := &Options{Shared: shared}
				req := model.Request{Method: tt.method, URL: target, Header: make(http.Header)}
				resp := model.Response{Status: tt.status, Header: tt.resp}
				got := InvalidationTargets(req, resp, o)
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("InvalidationTargets(%s, %d %v) mismatch (-want +got):\n%s", tt.method, tt.status, tt.resp, diff)
				}
				if !isSafe(tt.method) {
					wt, ok := (&IdleClient{Options: o}).Next(req, nil).(*WriteThrough)
					if !ok {
						t.Fatalf("IdleClient.Next(%s) is not WriteThrough", tt.method)
					}
					next := wt.Next(resp)
					if inv, ok := next.(*InvalidateURIs); ok {
						if diff := cmp.Diff(tt.want, inv.Targets); diff != "" || inv.Why().Section != "RFC 9111 §4.4" {
							t.Errorf("WriteThrough.Next = %v (%v); targets mismatch (-want +got):\n%s", kind(next), inv.Why(), diff)
						}
					} else if tt.want != nil {
						t.Errorf("WriteThrough.Next = %s; want InvalidateURIs", kind(next))
					}
				}
			})
		})
	}
}

func TestInvalidationSupportedMethods(t *testing.T) {
	o := &Options{SupportedMethods: []string{"GET"}}
	got := InvalidationTargets(model.Request{Method: "DELETE", URL: testURL}, model.Response{Status: 200}, o)
	if want := []Target{{"GET", testURL}}; !cmp.Equal(got, want) {
		t.Errorf("InvalidationTargets with SupportedMethods [GET] = %v; want %v", got, want)
	}
	got = InvalidationTargets(model.Request{Method: "DELETE", URL: "not a url"}, model.Response{Status: 200, Header: hdr("Location", "/x")}, nil)
	if want := []Target{{"GET", "not a url"}, {"HEAD", "not a url"}}; !cmp.Equal(got, want) {
		t.Errorf("InvalidationTargets with a relative target = %v; want %v", got, want)
	}
}

// RFC 9110 §9.3.3: a POST response with explicit freshness and the target
// URI in Content-Location may answer later GETs of that URI, once the
// invalidation of RFC 9111 §4.4 is done.
func TestPostReusedForGet(t *testing.T) {
	const target = "https://example.com/items/1"
	tests := []struct {
		name       string
		status     int
		req        http.Header
		resp       http.Header
		want       bool
		wantShared bool
	}{
		{name: "§9.3.3 max-age and Content-Location", status: 200, resp: hdr("Cache-Control", "max-age=60", "Content-Location", target), want: true, wantShared: true},
		{name: "§9.3.3 relative Content-Location", status: 200, resp: hdr("Cache-Control", "max-age=60", "Content-Location", "/items/1"), want: true, wantShared: true},
		{name: "§9.3.3 Content-Location with another case of host and the default port", status: 200,
			resp: hdr("Cache-Control", "max-age=60", "Content-Location", "HTTPS://Example.COM:443/items/1"), want: true, wantShared: true},
		{name: "§9.3.3 Expires", status: 200, resp: hdr("Expires", httpDate(t0.Add(time.Hour)), "Content-Location", target), want: true, wantShared: true},
		{name: "§9.3.3 s-maxage is explicit for a shared cache only", status: 200, resp: hdr("Cache-Control", "s-maxage=60", "Content-Location", target),
			want: false, wantShared: true},
		{name: "§9.3.3 CDN-Cache-Control max-age in a shared cache", status: 200, resp: hdr("Cdn-Cache-Control", "max-age=60", "Cache-Control", "no-store", "Content-Location", target),
			want: false, wantShared: true},
		{name: "§9.3.3 no explicit freshness", status: 200, resp: hdr("Last-Modified", httpDate(t0.Add(-time.Hour)), "ETag", `"a"`, "Content-Location", target)},
		{name: "§9.3.3 public is not freshness", status: 200, resp: hdr("Cache-Control", "public", "ETag", `"a"`, "Content-Location", target)},
		{name: "§9.3.3 no Content-Location", status: 200, resp: hdr("Cache-Control", "max-age=60")},
		{name: "§9.3.3 Content-Location of another resource", status: 200, resp: hdr("Cache-Control", "max-age=60", "Content-Location", "/items/2")},
		{name: "§9.3.3 Content-Location with another query", status: 200, resp: hdr("Cache-Control", "max-age=60", "Content-Location", "/items/1?v=2")},
		{name: "§9.3.3 Content-Location on another host", status: 200, resp: hdr("Cache-Control", "max-age=60", "Content-Location", "https://evil.example/items/1")},
		{name: "§9.3.3 201 is not a GET's answer", status: 201, resp: hdr("Cache-Control", "max-age=60", "Content-Location", target)},
		{name: "§5.2.2.5 no-store", status: 200, resp: hdr("Cache-Control", "max-age=60, no-store", "Content-Location", target)},
		{name: "§5.2.2.7 private", status: 200, resp: hdr("Cache-Control", "max-age=60, private", "Content-Location", target), want: true},
		{name: "§3.5 Authorization", status: 200, req: hdr("Authorization", "Basic eA=="), resp: hdr("Cache-Control", "max-age=60", "Content-Location", target), want: true},
		{name: "§4.1 Vary: *", status: 200, resp: hdr("Cache-Control", "max-age=60", "Vary", "*", "Content-Location", target)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			modes(t, func(t *testing.T, shared bool) {
				now := t0
				o := &Options{Shared: shared, Now: clock(&now)}
				h := tt.req
				if h == nil {
					h = hdr("Accept", "text/plain")
				}
				req := model.Request{Method: "POST", URL: target, Header: h}
				wt := (&IdleClient{Options: o}).Next(req, nil).(*WriteThrough)
				inv, ok := wt.Next(model.Response{Status: tt.status, Header: tt.resp}).(*InvalidateURIs)
				if !ok {
					t.Fatalf("WriteThrough.Next is not InvalidateURIs")
				}
				if !slices.Contains(inv.Targets, Target{"GET", target}) {
					t.Errorf("targets %v lack the target URI: invalidation comes first (RFC 9111 §4.4)", inv.Targets)
				}
				want := tt.want
				if shared {
					want = tt.wantShared
				}
				if (inv.Store != nil) != want {
					t.Fatalf("InvalidateURIs.Store = %v; want stored: %v", inv.Store, want)
				}
				if !want {
					return
				}
				if inv.Store.Why().Section != "RFC 9110 §9.3.3" || inv.StoreRequest.Method != "GET" || inv.StoreRequest.URL != target {
					t.Errorf("Store reason %v, request %s %s; want RFC 9110 §9.3.3, GET %s", inv.Store.Why(), inv.StoreRequest.Method, inv.StoreRequest.URL, target)
				}
				// The stored pair answers a later GET with the same selecting
				// fields; a POST is never answered from the cache.
				p := model.CompletePair{ID: model.NewPairID(), Request: inv.StoreRequest, Response: inv.Store.Response,
					Meta: model.PairMeta{Created: now, Completed: now}}
				now = now.Add(10 * time.Second)
				later := model.Request{Method: "GET", URL: target, Header: h.Clone()}
				if got := (&IdleClient{Options: o}).Next(later, []model.CompletePair{p}); kind(got) != "FromCache" {
					t.Errorf("a later GET = %s (%v); want FromCache", kind(got), got.Why())
				}
				if got := (&IdleClient{Options: o}).Next(req, []model.CompletePair{p}); kind(got) != "WriteThrough" {
					t.Errorf("a later POST = %s; want WriteThrough", kind(got))
				}
			})
		})
	}
}
