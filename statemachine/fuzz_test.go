package statemachine

import (
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/hishel-go/hishel/model"
)

// FuzzStateMachine feeds arbitrary Cache-Control, Age, Date, Expires,
// Vary, ETag and Range values through every state. Nothing may panic, and
// what is served must be well formed.
func FuzzStateMachine(f *testing.F) {
	f.Add("max-age=60", "10", "Sun, 06 Nov 1994 08:49:37 GMT", "0", "Accept", `"a"`, "bytes=0-1", "no-cache", int64(30), true)
	f.Add(`,,"=`, "-1", "", "Sun Nov  6 08:49:37 1994", "*", `W/"`, "bytes=-", "max-stale", int64(-5), false)
	f.Add("s-maxage=99999999999999999999, stale-if-error=5", "1,2", "x", "x", " , accept ,", `"a" "b"`, "bytes=99-1", "only-if-cached", int64(1<<40), true)
	f.Add("stale-while-revalidate=100, max-age=0", "99999999999999999999", "Mon, 01 Jan 0001 00:00:00 GMT", "", "Accept\x00", "", "", "min-fresh=x", int64(0), false)
	f.Fuzz(func(t *testing.T, cc, age, date, expires, vary, tag, rng, reqCC string, ago int64, shared bool) {
		for _, reuse := range []bool{false, true} {
			fuzzStates(t, cc, age, date, expires, vary, tag, rng, reqCC, ago, shared, reuse)
		}
	})
}

// fuzzStates runs one FuzzStateMachine input through every state, with
// Options.ReuseHeaders as given (each pair then has header maps of its own).
func fuzzStates(t *testing.T, cc, age, date, expires, vary, tag, rng, reqCC string, ago int64, shared, reuse bool) {
	now := t0
	o := &Options{Shared: shared, Now: clock(&now), AllowStale: true, ReuseHeaders: reuse}
	h := http.Header{"Cache-Control": {cc}, "Age": {age}, "Date": {date}, "Expires": {expires},
		"Vary": {vary}, "Etag": {tag}, "Last-Modified": {date}, "Content-Length": {"10"}}
	p := stored(time.Duration(ago), h)
	p.Request.Header = http.Header{"Accept": {vary}}
	req := get(http.Header{"Cache-Control": {reqCC}, "Range": {rng}, "If-None-Match": {tag}, "Accept": {vary}, "If-Range": {date}})
	check := func(s Served) {
		if len(s.Header["Age"]) != 1 {
			t.Fatalf("served without one Age: %v", s.Header)
		}
		if s.Range != nil && (s.Range.Start < 0 || s.Range.Length <= 0 || s.Range.Start+s.Range.Length > 10) {
			t.Fatalf("served range %+v of 10 bytes", *s.Range)
		}
	}
	var next IdleNext = (&IdleClient{Options: o}).Next(req, clonePairs([]model.CompletePair{p, p}))
	if next.Why().Text == "" {
		t.Fatalf("state %T without a reason", next)
	}
	switch s := next.(type) {
	case *FromCache:
		check(s.Served)
	case *CacheMiss:
		s.Next(model.Response{Status: 200, Header: h})
	case *NeedRevalidation:
		for _, resp := range []model.Response{
			{Status: 304, Header: h}, {Status: 200, Header: h}, {Status: 503, Header: h},
		} {
			switch n := s.Next(resp).(type) {
			case *NeedToBeUpdated:
				check(n.Next().Served)
			case *ServeStale:
				check(n.Served)
			case *InvalidatePairs:
				n.Next()
			}
		}
		if st, ok := s.OnError(errors.New("down")).(*ServeStale); ok {
			check(st.Served)
		}
	}
}

// FuzzPartialStates feeds arbitrary Content-Range, Range, If-Range and
// entity-tag values through the partial-content states. Nothing may panic;
// parts to copy and ranges to serve must lie within the stored bodies, and
// a joined response must describe what it joins.
func FuzzPartialStates(f *testing.F) {
	f.Add("bytes 0-499/1000", "bytes 500-999/1000", "bytes=400-599", `"r"`, `"r"`, "")
	f.Add("bytes 0-9/10", "bytes 5-9/10", "bytes=-3", `"r"`, `"r"`, `"r"`)
	f.Add("bytes 0-0/1", "bytes */1", "bytes=0-", `"a"`, `W/"a"`, "Sun, 06 Nov 1994 08:49:37 GMT")
	f.Add("bytes 100-199/1000", "bytes 300-399/1000", "bytes=150-349", `"r"`, `"r"`, "")
	f.Fuzz(func(t *testing.T, cr1, cr2, rng, tag1, tag2, ifRange string) {
		now := t0
		o := &Options{Shared: len(rng)%2 == 0, Now: clock(&now)}
		var pairs []model.CompletePair
		for _, in := range [][2]string{{cr1, tag1}, {cr2, tag2}} {
			p := stored(time.Minute, http.Header{":status": {"206"}, "Content-Range": {in[0]}, "Etag": {in[1]}, "Cache-Control": {"max-age=600"}})
			if pr, ok := parseContentRange(trimOWS(in[0])); ok {
				p.Meta.ResponseSize = pr.last - pr.first + 1
			}
			pairs = append(pairs, p)
		}
		size := func(p model.CompletePair) int64 { return p.Meta.ResponseSize }
		req := get(http.Header{"Range": {rng}, "If-Range": {ifRange}})
		check := func(s Served) {
			if s.Range != nil && (s.Range.Start < 0 || s.Range.Length <= 0 || s.Range.Start+s.Range.Length > size(s.Pair)) {
				t.Fatalf("served range %+v of a %d-byte body", *s.Range, size(s.Pair))
			}
		}
		var next State = (&IdleClient{Options: o}).Next(req, pairs)
		if pu, ok := next.(*PartialUpdate); ok {
			var n int64
			for _, p := range pu.Parts {
				if p.Range.Start < 0 || p.Range.Length <= 0 || p.Range.Start+p.Range.Length > size(p.Pair) {
					t.Fatalf("part %+v of a %d-byte body", p.Range, size(p.Pair))
				}
				n += p.Range.Length
			}
			if cl := pu.Response.Header.Get("Content-Length"); cl != strconv.FormatInt(n, 10) {
				t.Fatalf("combined Content-Length %s for %d bytes", cl, n)
			}
			combined := model.CompletePair{ID: model.NewPairID(), Request: pu.Request, Response: pu.Response,
				Meta: model.PairMeta{Created: now, Completed: now, ResponseSize: n}}
			next = pu.Next(combined)
		}
		switch s := next.(type) {
		case *FromCache:
			check(s.Served)
		case *CacheMiss:
			if s.Partial != nil {
				pm := s.Partial
				for _, p := range []*Part{pm.Before, pm.After} {
					if p != nil && (p.Range.Start < 0 || p.Range.Length <= 0 || p.Range.Start+p.Range.Length > size(p.Pair)) {
						t.Fatalf("stitched part %+v of a %d-byte body", p.Range, size(p.Pair))
					}
				}
				resp := model.Response{Status: 206, Header: http.Header{"Etag": {tag1}, "Content-Range": {contentRange(pm.Missing.Start, pm.Missing.Start+pm.Missing.Length-1, pm.Size)}}}
				if j, ok := s.Join(resp); ok {
					var n int64 = pm.Missing.Length
					for _, p := range []*Part{pm.Before, pm.After} {
						if p != nil {
							n += p.Range.Length
						}
					}
					if j.Header.Get("Content-Length") != strconv.FormatInt(n, 10) || n != pm.Range.Length {
						t.Fatalf("joined Content-Length %s for %d bytes (range %+v)", j.Header.Get("Content-Length"), n, pm.Range)
					}
				}
				s.Next(resp)
			}
		}
	})
}
