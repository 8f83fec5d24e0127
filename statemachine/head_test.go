package statemachine

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/hishel-go/hishel/model"
)

func head(h http.Header) model.Request {
	r := get(h)
	r.Method = "HEAD"
	return r
}

// headPair is a stored HEAD response (no body) for testURL.
func headPair(ago time.Duration, h http.Header) model.CompletePair {
	p := stored(ago, h)
	p.Request.Method = "HEAD"
	return p
}

// RFC 9111 §4: a stored GET response answers a HEAD request.
func TestHeadFromGet(t *testing.T) {
	runIdle(t, []idleCase{
		{name: "§4 fresh GET response answers HEAD", req: head(nil),
			pairs: []model.CompletePair{stored(time.Minute, hdr("Cache-Control", "max-age=600", "Content-Length", "5"))},
			want:  "FromCache", check: func(t *testing.T, s IdleNext) {
				fc := s.(*FromCache)
				if fc.Status != 200 || fc.Header.Get("Content-Length") != "5" {
					t.Errorf("HEAD from a stored GET = %d %v; want 200 with the GET's Content-Length", fc.Status, fc.Header)
				}
			}},
		{name: "§4 stale GET response: HEAD revalidates it", req: head(nil),
			pairs: []model.CompletePair{stored(time.Hour, hdr("Cache-Control", "max-age=600", "ETag", `"a"`))},
			want:  "NeedRevalidation", check: func(t *testing.T, s IdleNext) {
				nr := s.(*NeedRevalidation)
				if nr.Request.Method != "HEAD" || nr.Request.Header.Get("If-None-Match") != `"a"` {
					t.Errorf("revalidation request = %s %v; want a conditional HEAD", nr.Request.Method, nr.Request.Header)
				}
			}},
		{name: "§4 a stored HEAD response does not answer GET", req: get(nil),
			pairs: []model.CompletePair{headPair(time.Minute, hdr("Cache-Control", "max-age=600"))}, want: "CacheMiss"},
		{name: "§4.3.5 HEAD and GET responses: the most recent", req: head(nil),
			pairs: []model.CompletePair{
				stored(2*time.Minute, hdr("Cache-Control", "max-age=600", "X-Which", "get")),
				headPair(time.Minute, hdr("Cache-Control", "max-age=600", "X-Which", "head")),
			}, want: "FromCache", check: func(t *testing.T, s IdleNext) {
				if got := s.(*FromCache).Header.Get("X-Which"); got != "head" {
					t.Errorf("served X-Which = %q; want head (the most recent)", got)
				}
			}},
	})
}

// RFC 9111 §4.3.5: a 200 answer to HEAD freshens the stored GET responses
// it matches and invalidates the others.
func TestHeadFreshens(t *testing.T) {
	lm := httpDate(t0.Add(-48 * time.Hour))
	getA := func() model.CompletePair {
		return stored(time.Hour, hdr("Cache-Control", "max-age=600", "ETag", `"a"`, "Last-Modified", lm, "Content-Length", "5", "X-Old", "1"))
	}
	tests := []struct {
		name        string
		pairs       []model.CompletePair
		resp        http.Header
		want        string
		updates     int
		invalidated int
		check       func(t *testing.T, s RevalidationNext)
	}{
		{name: "§4.3.5 matching ETag and Content-Length", pairs: []model.CompletePair{getA()},
			resp: hdr("Cache-Control", "max-age=3600", "ETag", `"a"`, "Content-Length", "5", "X-New", "2"),
			want: "NeedToBeUpdated", updates: 1, check: func(t *testing.T, s RevalidationNext) {
				up := s.(*NeedToBeUpdated)
				h := up.Updates[0].Response.Header
				if h.Get("Cache-Control") != "max-age=3600" || h.Get("X-New") != "2" || h.Get("X-Old") != "1" || h.Get("Content-Length") != "5" {
					t.Errorf("freshened header = %v", h)
				}
				fc := up.Next()
				if fc.Stale || fc.Status != 200 || fc.Header.Get("Age") != "0" {
					t.Errorf("Next() = stale %v, %d, Age %q; want a fresh 200, Age 0", fc.Stale, fc.Status, fc.Header.Get("Age"))
				}
			}},
		{name: "§4.3.5 matching Last-Modified, no Content-Length", pairs: []model.CompletePair{getA()},
			resp: hdr("Cache-Control", "max-age=3600", "Last-Modified", lm), want: "NeedToBeUpdated", updates: 1},
		{name: "§4.3.5 another ETag", pairs: []model.CompletePair{getA()},
			resp: hdr("Cache-Control", "max-age=3600", "ETag", `"b"`, "Content-Length", "5"), want: "InvalidatePairs>StoreAndUse", invalidated: 1},
		{name: "§4.3.5 another Content-Length", pairs: []model.CompletePair{getA()},
			resp: hdr("Cache-Control", "max-age=3600", "ETag", `"a"`, "Content-Length", "6"), want: "InvalidatePairs>StoreAndUse", invalidated: 1},
		{name: "§4.3.5 one validator matches, the other does not", pairs: []model.CompletePair{getA()},
			resp: hdr("Cache-Control", "max-age=3600", "ETag", `"a"`, "Last-Modified", httpDate(t0)), want: "InvalidatePairs>StoreAndUse", invalidated: 1},
		{name: "§4.3.5 no validator", pairs: []model.CompletePair{getA()},
			resp: hdr("Cache-Control", "max-age=3600", "Content-Length", "5"), want: "InvalidatePairs>StoreAndUse", invalidated: 1},
		{name: "§4.3.5 weak and strong tags differ", pairs: []model.CompletePair{getA()},
			resp: hdr("Cache-Control", "max-age=3600", "ETag", `W/"a"`), want: "InvalidatePairs>StoreAndUse", invalidated: 1},
		{name: "§4.3.5 uncacheable HEAD response still invalidates", pairs: []model.CompletePair{getA()},
			resp: hdr("Cache-Control", "no-store", "ETag", `"b"`), want: "InvalidatePairs>CouldNotBeStored", invalidated: 1},
		{name: "§4.3.5 the GET response is freshened, the stored HEAD response replaced",
			pairs: []model.CompletePair{getA(), headPair(2*time.Hour, hdr("Cache-Control", "max-age=600", "ETag", `"a"`))},
			resp:  hdr("Cache-Control", "max-age=3600", "ETag", `"a"`), want: "NeedToBeUpdated", updates: 1, invalidated: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			modes(t, func(t *testing.T, shared bool) {
				now := t0
				o := &Options{Shared: shared, Now: clock(&now)}
				pairs := clonePairs(tt.pairs)
				nr := revalidation(t, o, head(nil), pairs...)
				got := nr.Next(model.Response{Status: 200, Header: tt.resp.Clone()})
				if kind(got) != tt.want {
					t.Fatalf("Next(200 to HEAD %v) = %s (%v); want %s", tt.resp, kind(got), got.Why(), tt.want)
				}
				if got.Why().Section != "RFC 9111 §4.3.5" {
					t.Errorf("reason = %v; want RFC 9111 §4.3.5", got.Why())
				}
				var updates, invalidated int
				switch s := got.(type) {
				case *NeedToBeUpdated:
					updates, invalidated = len(s.Updates), len(s.Invalidate)
					for _, id := range s.Invalidate {
						if slices.ContainsFunc(s.Updates, func(p model.CompletePair) bool { return p.ID == id }) {
							t.Errorf("pair %v both updated and invalidated", id)
						}
					}
				case *InvalidatePairs:
					invalidated = len(s.PairIDs)
				}
				if updates != tt.updates || invalidated != tt.invalidated {
					t.Errorf("updates %d, invalidated %d; want %d, %d", updates, invalidated, tt.updates, tt.invalidated)
				}
				if !slices.EqualFunc(pairs, tt.pairs, func(a, b model.CompletePair) bool {
					return a.Response.Header.Get("X-New") == b.Response.Header.Get("X-New")
				}) {
					t.Errorf("nominated pairs modified")
				}
				if tt.check != nil {
					tt.check(t, got)
				}
			})
		})
	}
}
