package statemachine

import (
	"errors"
	"net/http"
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
