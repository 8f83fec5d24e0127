package statemachine

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hishel-go/hishel/model"
)

// revalidation returns the NeedRevalidation IdleClient.Next gives for
// pairs, failing the test otherwise.
func revalidation(t *testing.T, o *Options, req model.Request, pairs ...model.CompletePair) *NeedRevalidation {
	t.Helper()
	got := (&IdleClient{Options: o}).Next(req, pairs)
	nr, ok := got.(*NeedRevalidation)
	if !ok {
		t.Fatalf("IdleClient.Next = %s (%v); want NeedRevalidation", kind(got), got.Why())
	}
	return nr
}

// RFC 9111 §4.3.1: the conditional request.
func TestConditionalRequest(t *testing.T) {
	modes(t, func(t *testing.T, shared bool) {
		now := t0
		o := &Options{Shared: shared, Now: clock(&now)}
		lm := t0.Add(-time.Hour)
		a := withReq(stored(2*time.Minute, hdr("Cache-Control", "max-age=60", "ETag", `"a"`, "Last-Modified", httpDate(lm), "Vary", "Accept")), hdr("Accept", "x"))
		b := withReq(stored(3*time.Minute, hdr("Cache-Control", "max-age=60", "ETag", `W/"b"`, "Vary", "Accept")), hdr("Accept", "x"))
		other := withReq(stored(time.Minute, hdr("Cache-Control", "max-age=600", "ETag", `"c"`, "Vary", "Accept")), hdr("Accept", "y"))
		req := get(hdr("Accept", "x", "If-None-Match", `"mine"`, "If-Modified-Since", httpDate(t0), "X-Client", "1"))
		before := req.Header.Clone()
		nr := revalidation(t, o, req, b, other, a)
		want := hdr("Accept", "x", "If-None-Match", `"a", W/"b"`, "If-Modified-Since", httpDate(lm), "X-Client", "1")
		if diff := cmp.Diff(want, nr.Request.Header); diff != "" {
			t.Errorf("conditional request header mismatch (-want +got):\n%s", diff)
		}
		if !cmp.Equal(before, req.Header) {
			t.Errorf("caller's header modified: %v", req.Header)
		}
		if len(nr.Pairs) != 2 || nr.Pairs[0].ID != a.ID || nr.Pairs[1].ID != b.ID {
			t.Errorf("nominated pairs = %d, first %v; want a (newest) then b", len(nr.Pairs), nr.Pairs[0].ID)
		}
		if nr.Why().Section != "RFC 9111 §4.2" {
			t.Errorf("reason = %v; want RFC 9111 §4.2", nr.Why())
		}
	})
}

// RFC 9111 §4.3.3 (handling the answer), §4.3.4 (freshening), RFC 5861 §4
// (stale-if-error), §4.2.4 (serving stale).
func TestRevalidationNext(t *testing.T) {
	lm := httpDate(t0.Add(-48 * time.Hour))
	pairA := func(cc string) model.CompletePair {
		return stored(2*time.Minute, hdr("Cache-Control", cc, "ETag", `"a"`, "Last-Modified", lm,
			"Content-Length", "5", "Content-Type", "text/plain", "X-Old", "1"))
	}
	tests := []struct {
		name       string
		opts       Options
		req        http.Header
		pairs      []model.CompletePair
		status     int
		resp       http.Header
		err        error // OnError instead of Next
		want       string
		wantShared string
		section    string
		check      func(t *testing.T, s State)
	}{
		{name: "§4.3.4 304 strong match freshens", pairs: []model.CompletePair{pairA("max-age=60")}, status: 304,
			resp: hdr("ETag", `"a"`, "Cache-Control", "max-age=600", "Content-Length", "0", "Connection", "X-Hop", "X-Hop", "1",
				"Keep-Alive", "timeout=1", "X-New", "2"),
			want: "NeedToBeUpdated", section: "RFC 9111 §4.3.4", check: func(t *testing.T, s State) {
				up := s.(*NeedToBeUpdated)
				if len(up.Updates) != 1 {
					t.Fatalf("Updates = %d pairs; want 1", len(up.Updates))
				}
				h := up.Updates[0].Response.Header
				if h.Get("Cache-Control") != "max-age=600" || h.Get("Content-Length") != "5" || h.Get("X-Old") != "1" ||
					h.Get("X-New") != "2" || h["X-Hop"] != nil || h["Keep-Alive"] != nil || h["Connection"] != nil ||
					h.Get("Date") != httpDate(t0) || h.Get(HeaderResponseTime) == "" {
					t.Errorf("freshened header = %v", h)
				}
				fc := up.Next()
				if fc.Stale || fc.Status != 200 || fc.Header.Get("Age") != "0" || fc.Header[HeaderResponseTime] != nil || fc.Header.Get("Content-Length") != "5" {
					t.Errorf("Next() = stale %v, %d %v; want a fresh 200 with Age 0 and the stored Content-Length", fc.Stale, fc.Status, fc.Header)
				}
			}},
		{name: "§4.3.4 304 strong match updates every matching pair", pairs: []model.CompletePair{pairA("max-age=60"), pairA("max-age=60"),
			stored(2*time.Minute, hdr("Cache-Control", "max-age=60", "ETag", `"other"`))}, status: 304, resp: hdr("ETag", `"a"`),
			want: "NeedToBeUpdated", check: func(t *testing.T, s State) {
				if n := len(s.(*NeedToBeUpdated).Updates); n != 2 {
					t.Errorf("Updates = %d pairs; want 2", n)
				}
			}},
		{name: "§4.3.4 304 weak match updates the most recent", pairs: []model.CompletePair{
			stored(3*time.Minute, hdr("Cache-Control", "max-age=60", "ETag", `W/"w"`, "X-Which", "old")),
			stored(2*time.Minute, hdr("Cache-Control", "max-age=60", "ETag", `W/"w"`, "X-Which", "new")),
		}, status: 304, resp: hdr("ETag", `W/"w"`), want: "NeedToBeUpdated", check: func(t *testing.T, s State) {
			up := s.(*NeedToBeUpdated)
			if len(up.Updates) != 1 || up.Updates[0].Response.Header.Get("X-Which") != "new" {
				t.Errorf("Updates = %v; want only the newest", up.Updates)
			}
		}},
		{name: "§4.3.4 304 with Last-Modified", pairs: []model.CompletePair{stored(2*time.Minute, hdr("Cache-Control", "max-age=60", "Last-Modified", lm))},
			status: 304, resp: hdr("Last-Modified", lm), want: "NeedToBeUpdated"},
		{name: "§4.3.4 304 without validators, one pair", pairs: []model.CompletePair{pairA("max-age=60")}, status: 304, resp: hdr("Cache-Control", "max-age=60"),
			want: "NeedToBeUpdated"},
		{name: "§4.3.4 304 with another entity-tag", pairs: []model.CompletePair{pairA("max-age=60")}, status: 304, resp: hdr("ETag", `"b"`),
			want: "CacheMiss", section: "RFC 9111 §4.3.4", check: func(t *testing.T, s State) {
				if h := s.(*CacheMiss).Request.Header; h["If-None-Match"] != nil {
					t.Errorf("retry request %v is conditional", h)
				}
			}},
		{name: "§4.3.4 304 with a weak tag matches by weak comparison", pairs: []model.CompletePair{pairA("max-age=60")}, status: 304, resp: hdr("ETag", `W/"a"`),
			want: "NeedToBeUpdated"},
		{name: "§4.3.4 304 with bad Last-Modified", pairs: []model.CompletePair{stored(2*time.Minute, hdr("Cache-Control", "max-age=60", "Last-Modified", lm))},
			status: 304, resp: hdr("Last-Modified", "garbage"), want: "CacheMiss"},
		{name: "§4.3.4 no-cache fields come back after validation", pairs: []model.CompletePair{
			stored(2*time.Minute, hdr("Cache-Control", `max-age=60, no-cache="Set-Cookie"`, "ETag", `"a"`, "Set-Cookie", "s=1"))},
			status: 304, resp: hdr("ETag", `"a"`), want: "NeedToBeUpdated", check: func(t *testing.T, s State) {
				if got := s.(*NeedToBeUpdated).Next().Header.Get("Set-Cookie"); got != "s=1" {
					t.Errorf("validated response Set-Cookie = %q; want s=1", got)
				}
			}},
		{name: "§4.3.3 200 replaces the stored pairs", pairs: []model.CompletePair{pairA("max-age=60")}, status: 200, resp: hdr("Cache-Control", "max-age=60", "ETag", `"b"`),
			want: "InvalidatePairs>StoreAndUse", section: "RFC 9111 §4.3.3", check: func(t *testing.T, s State) {
				if ids := s.(*InvalidatePairs).PairIDs; len(ids) != 1 {
					t.Errorf("PairIDs = %v; want the one nominated pair", ids)
				}
			}},
		{name: "§4.3.3 uncacheable 200 still invalidates", pairs: []model.CompletePair{pairA("max-age=60")}, status: 200, resp: hdr("Cache-Control", "no-store"),
			want: "InvalidatePairs>CouldNotBeStored"},
		{name: "§4.3.3 410 invalidates", pairs: []model.CompletePair{pairA("max-age=60")}, status: 410, resp: hdr(),
			want: "InvalidatePairs>CouldNotBeStored"},
		{name: "§4.3.3 429 keeps the pairs", pairs: []model.CompletePair{pairA("max-age=60")}, status: 429, resp: hdr(), want: "CouldNotBeStored"},
		{name: "§4.3.3 500 without stale-if-error passes through", pairs: []model.CompletePair{pairA("max-age=60")}, status: 500, resp: hdr(),
			want: "CouldNotBeStored"},
		{name: "RFC 5861 §4 500 within stale-if-error", pairs: []model.CompletePair{pairA("max-age=60, stale-if-error=600")}, status: 500, resp: hdr(),
			want: "ServeStale", section: "RFC 5861 §4", check: func(t *testing.T, s State) {
				ss := s.(*ServeStale)
				if ss.Status != 200 || ss.Header.Get("Age") != "120" || ss.Err != nil {
					t.Errorf("ServeStale = %d %v err %v; want the stored 200 with Age 120", ss.Status, ss.Header, ss.Err)
				}
			}},
		{name: "RFC 5861 §4 503 past stale-if-error", pairs: []model.CompletePair{pairA("max-age=60, stale-if-error=30")}, status: 503, resp: hdr(),
			want: "CouldNotBeStored"},
		{name: "RFC 5861 §4 501 is not an error", pairs: []model.CompletePair{pairA("max-age=60, stale-if-error=600")}, status: 501, resp: hdr(),
			want: "CouldNotBeStored"},
		{name: "RFC 5861 §4 request stale-if-error", req: hdr("Cache-Control", "stale-if-error=600"), pairs: []model.CompletePair{pairA("max-age=60")},
			status: 502, resp: hdr(), want: "ServeStale"},
		{name: "§5.2.2.2 must-revalidate beats stale-if-error", pairs: []model.CompletePair{pairA("max-age=60, must-revalidate, stale-if-error=600")},
			status: 500, resp: hdr(), want: "CouldNotBeStored"},
		{name: "§5.2.2.8 proxy-revalidate beats stale-if-error in a shared cache", pairs: []model.CompletePair{pairA("max-age=60, proxy-revalidate, stale-if-error=600")},
			status: 500, resp: hdr(), want: "ServeStale", wantShared: "CouldNotBeStored"},
		{name: "§4.2.4 network error with AllowStale", opts: Options{AllowStale: true}, pairs: []model.CompletePair{pairA("max-age=60")},
			err: errTest, want: "ServeStale", section: "RFC 9111 §4.2.4", check: func(t *testing.T, s State) {
				if ss := s.(*ServeStale); !errors.Is(ss.Err, errTest) {
					t.Errorf("ServeStale.Err = %v; want %v", ss.Err, errTest)
				}
			}},
		{name: "§4.2.4 network error without AllowStale", pairs: []model.CompletePair{pairA("max-age=60")}, err: errTest,
			want: "GatewayTimeout", check: func(t *testing.T, s State) {
				if gt := s.(*GatewayTimeout); gt.Status != 504 || !errors.Is(gt.Err, errTest) {
					t.Errorf("GatewayTimeout = %d, %v; want 504, %v", gt.Status, gt.Err, errTest)
				}
			}},
		{name: "RFC 5861 §4 network error within stale-if-error", pairs: []model.CompletePair{pairA("max-age=60, stale-if-error=600")}, err: errTest,
			want: "ServeStale"},
		{name: "§5.2.2.2 network error and must-revalidate", opts: Options{AllowStale: true}, pairs: []model.CompletePair{pairA("max-age=60, must-revalidate")},
			err: errTest, want: "GatewayTimeout", section: "RFC 9111 §5.2.2.2"},
		{name: "§5.2.2.4 network error and no-cache", opts: Options{AllowStale: true}, pairs: []model.CompletePair{pairA("max-age=600, no-cache")},
			err: errTest, want: "GatewayTimeout"},
		{name: "§4.2 network error, fresh pair being revalidated", opts: Options{AlwaysRevalidate: true}, pairs: []model.CompletePair{pairA("max-age=600, must-revalidate")},
			err: errTest, want: "ServeStale"},
		{name: "§5.2.1.2 network error past max-stale and stale-if-error", req: hdr("Cache-Control", "max-stale=1, stale-if-error=0"),
			pairs: []model.CompletePair{pairA("max-age=60")}, err: errTest, want: "GatewayTimeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			modes(t, func(t *testing.T, shared bool) {
				now := t0
				o := tt.opts
				o.Shared, o.Now = shared, clock(&now)
				nr := revalidation(t, &o, get(tt.req.Clone()), tt.pairs...)
				var got State
				if tt.err != nil {
					got = nr.OnError(tt.err)
				} else {
					got = nr.Next(model.Response{Status: tt.status, Header: tt.resp})
				}
				want := pick(shared, tt.want, tt.wantShared)
				if kind(got) != want {
					t.Fatalf("NeedRevalidation.Next(%d %v, %v) = %s (%v); want %s", tt.status, tt.resp, tt.err, kind(got), got.Why(), want)
				}
				if tt.section != "" && want == tt.want && got.Why().Section != tt.section {
					t.Errorf("reason = %v; want section %s", got.Why(), tt.section)
				}
				if tt.check != nil {
					tt.check(t, got)
				}
			})
		})
	}
}

var errTest = errors.New("connection refused")

// RFC 9111 §5.2.2.7: a shared cache does not keep private= fields, even
// when a 304 introduces them.
func TestFreshenPrivateFields(t *testing.T) {
	modes(t, func(t *testing.T, shared bool) {
		now := t0
		o := &Options{Shared: shared, Now: clock(&now)}
		p := stored(2*time.Minute, hdr("Cache-Control", "max-age=60", "ETag", `"a"`, "X-User", "u"))
		nr := revalidation(t, o, get(nil), p)
		up, ok := nr.Next(model.Response{Status: 304, Header: hdr("ETag", `"a"`, "Cache-Control", `max-age=60, private="X-User"`)}).(*NeedToBeUpdated)
		if !ok {
			t.Fatal("Next(304) is not NeedToBeUpdated")
		}
		if got := up.Updates[0].Response.Header.Get("X-User"); (got == "") != shared {
			t.Errorf("freshened X-User = %q in shared=%v; want it kept only by a private cache", got, shared)
		}
		if p.Response.Header.Get("X-User") != "u" {
			t.Errorf("the stored pair's header was modified")
		}
	})
}
