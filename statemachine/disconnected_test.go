package statemachine

import (
	"net/http"
	"testing"
	"time"
)

// RFC 9111 §4.2.4: a disconnected cache (Options.AllowStale, the origin
// unreachable) serves a stale response unless a directive forbids it:
// each forbidding directive, in a private and a shared cache.
func TestStaleIfDisconnected(t *testing.T) {
	tests := []struct {
		name       string
		resp       http.Header
		req        http.Header
		allow      bool // Options.AllowStale
		want       string
		wantShared string
		section    string
	}{
		{name: "§4.2.4 stale, disconnected", resp: hdr("Cache-Control", "max-age=60"), allow: true,
			want: "ServeStale", section: "RFC 9111 §4.2.4"},
		{name: "§4.2.4 not without AllowStale", resp: hdr("Cache-Control", "max-age=60"),
			want: "GatewayTimeout", section: "RFC 9111 §4.2.4"},
		{name: "§4.2.4 heuristic freshness", resp: hdr("Last-Modified", httpDate(t0.Add(-time.Hour))), allow: true,
			want: "ServeStale"},
		{name: "§5.2.2.2 must-revalidate", resp: hdr("Cache-Control", "max-age=60, must-revalidate"), allow: true,
			want: "GatewayTimeout", section: "RFC 9111 §5.2.2.2"},
		{name: "§5.2.2.8 proxy-revalidate forbids in a shared cache", resp: hdr("Cache-Control", "max-age=60, proxy-revalidate"), allow: true,
			want: "ServeStale", wantShared: "GatewayTimeout", section: "RFC 9111 §4.2.4"},
		{name: "§5.2.2.10 s-maxage forbids in a shared cache", resp: hdr("Cache-Control", "max-age=60, s-maxage=60"), allow: true,
			want: "ServeStale", wantShared: "GatewayTimeout", section: "RFC 9111 §4.2.4"},
		{name: "§5.2.2.4 no-cache", resp: hdr("Cache-Control", "no-cache"), allow: true,
			want: "GatewayTimeout", section: "RFC 9111 §5.2.2.4"},
		{name: "§5.2.2.4 no-cache with max-age", resp: hdr("Cache-Control", "max-age=600, no-cache"), allow: true,
			want: "GatewayTimeout", section: "RFC 9111 §5.2.2.4"},
		{name: "RFC 7234 §5.4 Pragma: no-cache", resp: hdr("Pragma", "no-cache", "Expires", httpDate(t0.Add(-time.Minute))), allow: true,
			want: "GatewayTimeout", section: "RFC 7234 §5.4"},
		{name: "§5.2.1.4 request no-cache", req: hdr("Cache-Control", "no-cache"), resp: hdr("Cache-Control", "max-age=60"), allow: true,
			want: "GatewayTimeout", section: "RFC 9111 §5.2.1.4"},
		{name: "§5.2.1.4 request Pragma: no-cache", req: hdr("Pragma", "no-cache"), resp: hdr("Cache-Control", "max-age=60"), allow: true,
			want: "GatewayTimeout", section: "RFC 9111 §5.2.1.4"},
		{name: "§5.2.1.1 request max-age", req: hdr("Cache-Control", "max-age=10"), resp: hdr("Cache-Control", "max-age=60"), allow: true,
			want: "GatewayTimeout", section: "RFC 9111 §5.2.1.1"},
		{name: "§5.2.1.1 request max-age with max-stale", req: hdr("Cache-Control", "max-age=10, max-stale"), resp: hdr("Cache-Control", "max-age=60"), allow: true,
			want: "ServeStale"},
		{name: "§5.2.1.3 request min-fresh", req: hdr("Cache-Control", "min-fresh=10"), resp: hdr("Cache-Control", "max-age=60"), allow: true,
			want: "GatewayTimeout", section: "RFC 9111 §5.2.1.3"},
		{name: "RFC 9213 must-revalidate in CDN-Cache-Control", resp: hdr("Cache-Control", "max-age=60", "Cdn-Cache-Control", "max-age=60, must-revalidate"), allow: true,
			want: "ServeStale", wantShared: "GatewayTimeout", section: "RFC 9111 §4.2.4"},
		{name: "§4.2.4 a stored 503 is not served stale", resp: hdr(":status", "503", "Cache-Control", "max-age=60"), allow: true,
			want: "GatewayTimeout", section: "RFC 9111 §4.2.4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			modes(t, func(t *testing.T, shared bool) {
				now := t0
				o := &Options{Shared: shared, Now: clock(&now), AllowStale: tt.allow}
				h := tt.resp.Clone()
				h.Set("ETag", `"a"`)
				p := stored(10*time.Minute, h)
				nr := revalidation(t, o, get(tt.req.Clone()), p)
				got := nr.OnError(errTest)
				want := pick(shared, tt.want, tt.wantShared)
				if kind(got) != want {
					t.Fatalf("OnError = %s (%v); want %s", kind(got), got.Why(), want)
				}
				if tt.section != "" && got.Why().Section != tt.section && (want == tt.want || tt.wantShared == "") {
					t.Errorf("OnError reason = %v; want section %s", got.Why(), tt.section)
				}
				if ss, ok := got.(*ServeStale); ok {
					onlyAllowStale := ss.Why().Section == "RFC 9111 §4.2.4"
					if ss.Err != errTest || ss.Header.Get("Age") != "600" || ss.Disconnected != onlyAllowStale {
						t.Errorf("ServeStale = Err %v, Age %q, Disconnected %v; want the error, Age 600, Disconnected %v", ss.Err, ss.Header.Get("Age"), ss.Disconnected, onlyAllowStale)
					}
				}
				// The stored response is untouched.
				if p.Response.Header.Get("Age") != tt.resp.Get("Age") {
					t.Errorf("stored pair modified")
				}
			})
		})
	}
}
