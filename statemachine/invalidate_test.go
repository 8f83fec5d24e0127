package statemachine

import (
	"net/http"
	"testing"

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
