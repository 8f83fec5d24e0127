package statemachine

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/hishel-go/hishel/model"
)

// t0 is the fixed "now" of the tests.
var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

const testURL = "https://example.com/resource"

// clock returns a clock stopped at *now.
func clock(now *time.Time) func() time.Time { return func() time.Time { return *now } }

// hdr builds a header from name/value pairs; a name may repeat (several
// field lines).
func hdr(kv ...string) http.Header {
	if len(kv)%2 != 0 {
		panic("hdr: odd number of arguments")
	}
	h := make(http.Header)
	for i := 0; i < len(kv); i += 2 {
		h[http.CanonicalHeaderKey(kv[i])] = append(h[http.CanonicalHeaderKey(kv[i])], kv[i+1])
	}
	return h
}

func httpDate(t time.Time) string { return t.UTC().Format(http.TimeFormat) }

// stored builds a complete GET pair for testURL whose response (status 200
// unless the header carries ":status") was received ago before t0. Its Date
// is the reception time unless the header sets Date (an empty Date value
// removes it).
func stored(ago time.Duration, respHeader http.Header) model.CompletePair {
	at := t0.Add(-ago)
	h := respHeader.Clone()
	if h == nil {
		h = make(http.Header)
	}
	status := 200
	if s := h.Get(":status"); s != "" {
		fmt.Sscan(s, &status)
		delete(h, ":status")
	}
	if d, ok := h["Date"]; !ok {
		h.Set("Date", httpDate(at))
	} else if len(d) == 1 && d[0] == "" {
		delete(h, "Date")
	}
	return model.CompletePair{
		ID:       model.NewPairID(),
		Request:  model.Request{Method: "GET", URL: testURL, Header: make(http.Header)},
		Response: model.Response{Status: status, Header: h},
		Key:      "GET " + testURL,
		Meta:     model.PairMeta{Created: at, Completed: at},
	}
}

// withReq sets the stored pair's request header.
func withReq(p model.CompletePair, h http.Header) model.CompletePair {
	p.Request.Header = h
	return p
}

func get(h http.Header) model.Request {
	if h == nil {
		h = make(http.Header)
	}
	return model.Request{Method: "GET", URL: testURL, Header: h}
}

// kind names a state, with the flags a test cares about.
func kind(s State) string {
	switch v := s.(type) {
	case *FromCache:
		switch {
		case v.Revalidate != nil:
			return "FromCache+revalidate"
		case v.Stale:
			return "FromCache(stale)"
		}
		return "FromCache"
	case *InvalidatePairs:
		return "InvalidatePairs>" + kind(v.Next())
	case nil:
		return "<nil>"
	}
	return fmt.Sprintf("%T", s)[len("*statemachine."):]
}

// modes runs f for a private and a shared cache.
func modes(t *testing.T, f func(t *testing.T, shared bool)) {
	for _, shared := range []bool{false, true} {
		name := "private"
		if shared {
			name = "shared"
		}
		t.Run(name, func(t *testing.T) { f(t, shared) })
	}
}

// pick returns want for a private cache and wantShared (if set) for a
// shared one.
func pick(shared bool, want, wantShared string) string {
	if shared && wantShared != "" {
		return wantShared
	}
	return want
}
