package statemachine

import (
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hishel-go/hishel/model"
)

// RFC 9111 §3 (storing), §3.1 (which fields), §3.5 (Authorization),
// §5.2.1.5, §5.2.2.3, §5.2.2.5, §5.2.2.7, RFC 9110 §6.6.1 (Date).
func TestCacheMissNext(t *testing.T) {
	lm := httpDate(t0.Add(-48 * time.Hour))
	tests := []struct {
		name       string
		opts       Options
		req        model.Request
		status     int
		resp       http.Header
		want       string
		wantShared string
		section    string
		check      func(t *testing.T, shared bool, s StoreNext)
	}{
		{name: "§3 max-age", resp: hdr("Cache-Control", "max-age=60"), want: "StoreAndUse", section: "RFC 9111 §3"},
		{name: "§3 Expires", resp: hdr("Expires", httpDate(t0.Add(time.Hour))), want: "StoreAndUse"},
		{name: "§3 heuristically cacheable with Last-Modified", resp: hdr("Last-Modified", lm), want: "StoreAndUse"},
		{name: "§3 heuristically cacheable with ETag", resp: hdr("ETag", `"a"`), want: "StoreAndUse"},
		{name: "§3 never reusable: no freshness, no validator", resp: hdr("Content-Type", "text/plain"), want: "CouldNotBeStored"},
		{name: "§3 never reusable: no-cache without validator", resp: hdr("Cache-Control", "max-age=60, no-cache"), want: "CouldNotBeStored"},
		{name: "§3 no-cache with validator", resp: hdr("Cache-Control", "no-cache", "ETag", `"a"`), want: "StoreAndUse"},
		{name: "§3 stale-if-error makes an expired response useful", resp: hdr("Cache-Control", "max-age=0, stale-if-error=60"), want: "StoreAndUse"},
		{name: "§3 AllowStale makes an expired response useful", opts: Options{AllowStale: true}, resp: hdr("Cache-Control", "max-age=0"), want: "StoreAndUse"},
		{name: "§5.2.2.5 no-store", resp: hdr("Cache-Control", "max-age=60, no-store"), want: "CouldNotBeStored", section: "RFC 9111 §5.2.2.5"},
		{name: "§5.2 NO-STORE in capitals", resp: hdr("Cache-Control", "max-age=60, NO-STORE"), want: "CouldNotBeStored"},
		{name: "§5.2.1.5 request no-store", req: get(hdr("Cache-Control", "no-store")), resp: hdr("Cache-Control", "max-age=60"),
			want: "CouldNotBeStored", section: "RFC 9111 §5.2.1.5"},
		{name: "§5.2.2.3 must-understand with an understood status ignores no-store", resp: hdr("Cache-Control", "must-understand, no-store, max-age=60"),
			want: "StoreAndUse"},
		{name: "§5.2.2.3 must-understand with an unknown status", opts: Options{CacheableStatusCodes: []int{200, 299}}, status: 299,
			resp: hdr("Cache-Control", "must-understand, no-store, max-age=60"), want: "CouldNotBeStored", section: "RFC 9111 §5.2.2.3"},
		{name: "§5.2.2.7 private", resp: hdr("Cache-Control", "private, max-age=60"),
			want: "StoreAndUse", wantShared: "CouldNotBeStored"},
		{name: "§5.2.2.7 private alone is explicit for a private cache", status: 302, resp: hdr("Cache-Control", "private", "ETag", `"a"`),
			want: "StoreAndUse", wantShared: "CouldNotBeStored"},
		{name: "§5.2.2.7 private=field stripped by a shared cache", resp: hdr("Cache-Control", `private="X-User", max-age=60`, "X-User", "u", "X-Other", "o"),
			want: "StoreAndUse", check: func(t *testing.T, shared bool, s StoreNext) {
				h := s.(*StoreAndUse).Response.Header
				if got := h.Get("X-User"); (got == "") != shared || h.Get("X-Other") != "o" {
					t.Errorf("stored X-User = %q, X-Other = %q (shared %v); want X-User only in a private cache", got, h.Get("X-Other"), shared)
				}
			}},
		{name: "§4.2.1 conflicting public and private: private wins", resp: hdr("Cache-Control", "public, private, max-age=60"),
			want: "StoreAndUse", wantShared: "CouldNotBeStored"},
		{name: "§5.2 malformed Cache-Control does not store an uncacheable response", resp: hdr("Cache-Control", `max-age=, "no-store`),
			want: "CouldNotBeStored"},
		{name: "§3.5 Authorization", req: get(hdr("Authorization", "Basic eA==")), resp: hdr("Cache-Control", "max-age=60"),
			want: "StoreAndUse", wantShared: "CouldNotBeStored"},
		{name: "§3.5 Authorization and public", req: get(hdr("Authorization", "Basic eA==")), resp: hdr("Cache-Control", "max-age=60, public"), want: "StoreAndUse"},
		{name: "§3.5 Authorization and s-maxage", req: get(hdr("Authorization", "Basic eA==")), resp: hdr("Cache-Control", "s-maxage=60"),
			want: "CouldNotBeStored", wantShared: "StoreAndUse"}, // a private cache ignores s-maxage: no freshness
		{name: "§3.5 Authorization and must-revalidate", req: get(hdr("Authorization", "Basic eA==")), resp: hdr("Cache-Control", "max-age=60, must-revalidate"), want: "StoreAndUse"},
		{name: "§3 s-maxage alone is explicit for a shared cache only", status: 302, resp: hdr("Cache-Control", "s-maxage=60"),
			want: "CouldNotBeStored", wantShared: "StoreAndUse"},
		{name: "§4.1 Vary: *", resp: hdr("Cache-Control", "max-age=60", "Vary", "Accept, *"), want: "CouldNotBeStored", section: "RFC 9111 §4.1"},
		{name: "§3 206 is not stored", status: 206, resp: hdr("Cache-Control", "max-age=60"), want: "CouldNotBeStored"},
		{name: "§3 304 is not stored", status: 304, resp: hdr("Cache-Control", "max-age=60"), want: "CouldNotBeStored"},
		{name: "§3 1xx is not final", status: 103, resp: hdr("Cache-Control", "max-age=60"), want: "CouldNotBeStored"},
		{name: "§3 500 with max-age", status: 500, resp: hdr("Cache-Control", "max-age=60"), want: "StoreAndUse"},
		{name: "§3 500 not configured", opts: Options{CacheableStatusCodes: HeuristicallyCacheableStatusCodes}, status: 500,
			resp: hdr("Cache-Control", "max-age=60"), want: "CouldNotBeStored"},
		{name: "§3 302 without explicit freshness", status: 302, resp: hdr("Last-Modified", lm), want: "CouldNotBeStored"},
		{name: "§3 302 with max-age", status: 302, resp: hdr("Cache-Control", "max-age=60"), want: "StoreAndUse"},
		{name: "§3 404 with Last-Modified", status: 404, resp: hdr("Last-Modified", lm), want: "StoreAndUse"},
		{name: "§3 configured status codes", opts: Options{CacheableStatusCodes: []int{301}}, resp: hdr("Cache-Control", "max-age=60"), want: "CouldNotBeStored"},
		{name: "§3 method not cached", req: model.Request{Method: "OPTIONS", URL: testURL}, resp: hdr("Cache-Control", "max-age=60"), want: "CouldNotBeStored"},
		{name: "ForceCache stores no-store", opts: Options{ForceCache: true}, resp: hdr("Cache-Control", "no-store"), want: "StoreAndUse"},
		{name: "ForceCache keeps the status code filter", opts: Options{ForceCache: true}, status: 500, want: "CouldNotBeStored"},
		{name: "§3.1 hop-by-hop fields are not stored", resp: hdr("Cache-Control", "max-age=60", "Connection", "close, X-Conn", "X-Conn", "1",
			"Keep-Alive", "timeout=5", "Transfer-Encoding", "chunked", "Proxy-Authenticate", "Basic", "Upgrade", "h2c", "X-Keep", "k"),
			want: "StoreAndUse", check: func(t *testing.T, _ bool, s StoreNext) {
				h := s.(*StoreAndUse).Response.Header
				delete(h, "Date")
				want := hdr("Cache-Control", "max-age=60", "X-Keep", "k")
				if diff := cmp.Diff(want, h); diff != "" {
					t.Errorf("stored header mismatch (-want +got):\n%s", diff)
				}
			}},
		{name: "RFC 9110 §6.6.1 Date added when missing", resp: hdr("Cache-Control", "max-age=60"), want: "StoreAndUse",
			check: func(t *testing.T, _ bool, s StoreNext) {
				if got := s.(*StoreAndUse).Response.Header.Get("Date"); got != httpDate(t0) {
					t.Errorf("stored Date = %q; want %q", got, httpDate(t0))
				}
			}},
		{name: "origin cannot forge the time fields", resp: hdr("Cache-Control", "max-age=60", HeaderResponseTime, "2099-01-01T00:00:00Z"),
			want: "StoreAndUse", check: func(t *testing.T, _ bool, s StoreNext) {
				if got := s.(*StoreAndUse).Response.Header[HeaderResponseTime]; got != nil {
					t.Errorf("stored %s = %q; want none", HeaderResponseTime, got)
				}
			}},
		{name: "TTL from the request options", req: model.Request{Method: "GET", URL: testURL, Options: model.RequestOptions{TTL: time.Hour}},
			resp: hdr("Cache-Control", "max-age=60"), want: "StoreAndUse", check: func(t *testing.T, _ bool, s StoreNext) {
				if got := s.(*StoreAndUse).TTL; got != time.Hour {
					t.Errorf("TTL = %v; want 1h", got)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			modes(t, func(t *testing.T, shared bool) {
				now := t0
				o := tt.opts
				o.Shared, o.Now = shared, clock(&now)
				req := tt.req
				if req.Method == "" {
					req = get(nil)
				}
				status := tt.status
				if status == 0 {
					status = 200
				}
				resp := model.Response{Status: status, Header: tt.resp}
				if resp.Header == nil {
					resp.Header = make(http.Header)
				}
				before := resp.Header.Clone()
				miss, ok := (&IdleClient{Options: &o}).Next(req, nil).(*CacheMiss)
				if !ok {
					t.Fatalf("IdleClient.Next with no pairs is not a CacheMiss")
				}
				got := miss.Next(resp)
				want := pick(shared, tt.want, tt.wantShared)
				if kind(got) != want {
					t.Fatalf("CacheMiss.Next(%d %v) = %s (%v); want %s", status, tt.resp, kind(got), got.Why(), want)
				}
				if tt.section != "" && want == tt.want && got.Why().Section != tt.section {
					t.Errorf("CacheMiss.Next reason = %v; want section %s", got.Why(), tt.section)
				}
				if !cmp.Equal(before, resp.Header) {
					t.Errorf("CacheMiss.Next modified the response header")
				}
				if tt.check != nil {
					tt.check(t, shared, got)
				}
			})
		})
	}
}

// RFC 9111 §3: any final status code may be stored with explicit
// freshness or public; without them only a heuristically cacheable one
// (RFC 9110 §15.1). §5.2.2.3: must-understand keeps an unknown status out.
func TestStoreAnyFinalStatus(t *testing.T) {
	lm := httpDate(t0.Add(-48 * time.Hour))
	type want struct{ private, shared string }
	stored, notStored := want{"StoreAndUse", "StoreAndUse"}, want{"CouldNotBeStored", "CouldNotBeStored"}
	tests := []struct {
		name   string
		opts   Options
		resp   http.Header
		codes  []int
		want   want
		reason string
	}{
		{name: "§3 max-age", resp: hdr("Cache-Control", "max-age=3600"),
			codes: []int{200, 201, 299, 303, 400, 403, 499, 500, 502, 503, 504, 599}, want: stored},
		{name: "§3 Expires", resp: hdr("Expires", httpDate(t0.Add(time.Hour))),
			codes: []int{299, 303, 400, 500, 599}, want: stored},
		{name: "§3 s-maxage counts in a shared cache only", resp: hdr("Cache-Control", "s-maxage=3600"),
			codes: []int{299, 400, 503}, want: want{"CouldNotBeStored", "StoreAndUse"}},
		{name: "§3 public", resp: hdr("Cache-Control", "public", "Last-Modified", lm),
			codes: []int{299, 400, 500}, want: stored},
		{name: "§3 private is explicit for a private cache", resp: hdr("Cache-Control", "private", "ETag", `"a"`),
			codes: []int{400, 500}, want: want{"StoreAndUse", "CouldNotBeStored"}},
		{name: "§4.2.2 heuristics only for heuristically cacheable codes", resp: hdr("Last-Modified", lm),
			codes: []int{201, 299, 302, 303, 307, 400, 500, 503, 599}, want: notStored, reason: "RFC 9111 §3"},
		{name: "§4.2.2 heuristically cacheable codes", resp: hdr("Last-Modified", lm),
			codes: []int{200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501}, want: stored},
		{name: "§5.2.2.3 must-understand with an unknown status", resp: hdr("Cache-Control", "max-age=3600, must-understand"),
			codes: []int{299, 499, 599, 218, 306, 418}, want: notStored, reason: "RFC 9111 §5.2.2.3"},
		{name: "§5.2.2.3 must-understand with a status of RFC 9110", resp: hdr("Cache-Control", "max-age=3600, must-understand, no-store"),
			codes: []int{200, 400, 500, 503}, want: stored},
		{name: "§3 not final", resp: hdr("Cache-Control", "max-age=3600"), codes: []int{100, 103, 199, 600, 999, 0, -1}, want: notStored},
		{name: "CacheableStatusCodes restricts", opts: Options{CacheableStatusCodes: []int{200, 404}}, resp: hdr("Cache-Control", "max-age=3600"),
			codes: []int{500, 299, 301}, want: notStored},
		{name: "ForceCache keeps to the heuristically cacheable codes", opts: Options{ForceCache: true}, resp: hdr("Cache-Control", "no-store"),
			codes: []int{500, 503, 299}, want: notStored},
	}
	for _, tt := range tests {
		for _, code := range tt.codes {
			t.Run(fmt.Sprintf("%s/%d", tt.name, code), func(t *testing.T) {
				modes(t, func(t *testing.T, shared bool) {
					now := t0
					o := tt.opts
					o.Shared, o.Now = shared, clock(&now)
					miss := (&IdleClient{Options: &o}).Next(get(nil), nil).(*CacheMiss)
					got := miss.Next(model.Response{Status: code, Header: tt.resp.Clone()})
					w := tt.want.private
					if shared {
						w = tt.want.shared
					}
					if kind(got) != w {
						t.Fatalf("CacheMiss.Next(%d %v) = %s (%v); want %s", code, tt.resp, kind(got), got.Why(), w)
					}
					if tt.reason != "" && got.Why().Section != tt.reason {
						t.Errorf("CacheMiss.Next(%d) reason = %v; want section %s", code, got.Why(), tt.reason)
					}
				})
			})
		}
	}
}

// RFC 9111 §4.2, §4.2.4: a response stored for its explicit freshness
// whatever its status is reused while fresh, and never served stale when
// its status is neither heuristically cacheable nor a redirection.
func TestReuseAnyFinalStatus(t *testing.T) {
	for _, code := range []int{299, 400, 500, 503, 599} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			status := strconv.Itoa(code)
			runIdle(t, []idleCase{
				{name: "§4.2 fresh", pairs: []model.CompletePair{stored(time.Minute, hdr(":status", status, "Cache-Control", "max-age=3600"))},
					want: "FromCache", check: func(t *testing.T, s IdleNext) {
						if st := s.(*FromCache).Status; st != code {
							t.Errorf("served status %d; want %d", st, code)
						}
					}},
				{name: "§4.2.4 stale: validated, not served", pairs: []model.CompletePair{stored(2*time.Hour, hdr(":status", status, "Cache-Control", "max-age=3600, stale-while-revalidate=99999"))},
					want: "NeedRevalidation", section: "RFC 9111 §4.2.4"},
				{name: "§4.2.4 max-stale does not serve it", req: get(hdr("Cache-Control", "max-stale")),
					pairs: []model.CompletePair{stored(2*time.Hour, hdr(":status", status, "Cache-Control", "max-age=3600"))},
					want:  "NeedRevalidation", section: "RFC 9111 §4.2.4"},
			})
			modes(t, func(t *testing.T, shared bool) {
				now := t0
				o := &Options{Shared: shared, Now: clock(&now), AllowStale: true}
				p := stored(2*time.Hour, hdr(":status", status, "Cache-Control", "max-age=3600, stale-if-error=99999", "ETag", `"a"`))
				nr := revalidation(t, o, get(nil), p)
				if got := nr.OnError(errTest); kind(got) != "GatewayTimeout" {
					t.Errorf("OnError for a stale %d = %s (%v); want GatewayTimeout", code, kind(got), got.Why())
				}
				if got := nr.Next(model.Response{Status: 503, Header: hdr()}); kind(got) != "CouldNotBeStored" {
					t.Errorf("Next(503) for a stale %d = %s (%v); want CouldNotBeStored", code, kind(got), got.Why())
				}
			})
		})
	}
}

// RFC 9111 §4.2.3: the response a miss stores carries its corrected
// initial age, and the stored pair keeps counting from it.
func TestMissAge(t *testing.T) {
	tests := []struct {
		name      string
		took      time.Duration // from the request to the response head
		resp      http.Header   // Date is the request time unless set
		wantAge   time.Duration
		wantTimes bool // request and response times recorded in the stored header
		wantLater time.Duration
	}{
		{name: "quick", took: 100 * time.Millisecond, resp: hdr(), wantAge: 100 * time.Millisecond, wantLater: 10 * time.Second},
		{name: "slow origin", took: 5 * time.Second, resp: hdr(), wantAge: 5 * time.Second, wantTimes: true, wantLater: 15 * time.Second},
		{name: "slow origin behind a cache", took: 5 * time.Second, resp: hdr("Age", "100"), wantAge: 105 * time.Second, wantTimes: true, wantLater: 115 * time.Second},
		{name: "Age from a cache on the path", took: 0, resp: hdr("Age", "100"), wantAge: 100 * time.Second, wantLater: 110 * time.Second},
		{name: "apparent age", took: 0, resp: hdr("Date", httpDate(t0.Add(-30*time.Second))), wantAge: 30 * time.Second, wantLater: 40 * time.Second},
		{name: "invalid Age", took: 2 * time.Second, resp: hdr("Age", "soon"), wantAge: 2 * time.Second, wantTimes: true, wantLater: 12 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			modes(t, func(t *testing.T, shared bool) {
				now := t0
				o := &Options{Shared: shared, Now: clock(&now)}
				miss := (&IdleClient{Options: o}).Next(get(nil), nil).(*CacheMiss)
				now = now.Add(tt.took)
				h := tt.resp.Clone()
				h.Set("Cache-Control", "max-age=3600")
				if h.Get("Date") == "" {
					h.Set("Date", httpDate(t0))
				}
				sn, ok := miss.Next(model.Response{Status: 200, Header: h}).(*StoreAndUse)
				if !ok {
					t.Fatalf("CacheMiss.Next = %s; want StoreAndUse", kind(sn))
				}
				if sn.Age != tt.wantAge {
					t.Errorf("StoreAndUse.Age = %v; want %v", sn.Age, tt.wantAge)
				}
				_, times := sn.Response.Header[HeaderRequestTime]
				if times != tt.wantTimes {
					t.Errorf("stored header has the request time: %v; want %v (%v)", times, tt.wantTimes, sn.Response.Header)
				}
				if got := sn.Response.Header.Get("Age"); got != tt.resp.Get("Age") {
					t.Errorf("stored Age = %q; want the origin's %q", got, tt.resp.Get("Age"))
				}
				// Storage creates the pair once the response is there and
				// completes it a little later.
				p := model.CompletePair{ID: model.NewPairID(), Request: get(nil), Response: sn.Response,
					Meta: model.PairMeta{Created: now.Add(time.Millisecond), Completed: now.Add(2 * time.Second)}}
				now = now.Add(10 * time.Second)
				fc, ok := (&IdleClient{Options: o}).Next(get(nil), []model.CompletePair{p}).(*FromCache)
				if !ok {
					t.Fatalf("hit 10s later is not a FromCache")
				}
				// Without recorded times the age counts from storage's times,
				// within a couple of seconds.
				if d := fc.Age - tt.wantLater; d > 2*time.Second || d < -2*time.Second || tt.wantTimes && d != 0 {
					t.Errorf("age 10s later = %v; want %v", fc.Age, tt.wantLater)
				}
			})
		})
	}
}
