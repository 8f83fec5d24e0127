package statemachine_test

import (
	"fmt"
	"net/http"
	"time"

	"github.com/hishel-go/hishel/model"
	"github.com/hishel-go/hishel/statemachine"
)

// A cache miss, the origin's answer stored, and a later hit.
func Example() {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	idle := &statemachine.IdleClient{Options: &statemachine.Options{Now: func() time.Time { return now }}}
	req := model.Request{Method: "GET", URL: "https://example.com/", Header: http.Header{}}

	var pairs []model.CompletePair // what storage's GetPairs returned
	state := idle.Next(req, pairs)
	fmt.Println(state.Why())

	miss := state.(*statemachine.CacheMiss)
	origin := model.Response{Status: 200, Header: http.Header{
		"Cache-Control": {"max-age=60"},
		"Date":          {now.Format(http.TimeFormat)},
	}}
	store := miss.Next(origin)
	fmt.Println(store.Why())

	// The caller stores the pair; storage records when.
	sau := store.(*statemachine.StoreAndUse)
	pairs = append(pairs, model.CompletePair{
		Request: req, Response: sau.Response,
		Meta: model.PairMeta{Created: now, Completed: now},
	})

	now = now.Add(25 * time.Second)
	switch s := idle.Next(req, pairs).(type) {
	case *statemachine.FromCache:
		fmt.Println(s.Why(), "Age:", s.Header.Get("Age"))
	case *statemachine.NeedRevalidation, *statemachine.CacheMiss:
		fmt.Println("go to the origin")
	}
	// Output:
	// no stored response matches the request (RFC 9111 §4)
	// storable (RFC 9111 §3)
	// stored response is fresh (RFC 9111 §4.2) Age: 25
}

// A stale response is validated with a conditional request; a 304 freshens
// it.
func ExampleNeedRevalidation_Next() {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	opts := &statemachine.Options{Now: func() time.Time { return now }}
	stored := model.CompletePair{
		Request: model.Request{Method: "GET", URL: "https://example.com/", Header: http.Header{}},
		Response: model.Response{Status: 200, Header: http.Header{
			"Cache-Control": {"max-age=60"},
			"Etag":          {`"v1"`},
			"Date":          {now.Add(-time.Hour).Format(http.TimeFormat)},
		}},
		Meta: model.PairMeta{Created: now.Add(-time.Hour), Completed: now.Add(-time.Hour)},
	}
	req := model.Request{Method: "GET", URL: "https://example.com/", Header: http.Header{}}
	nr := (&statemachine.IdleClient{Options: opts}).Next(req, []model.CompletePair{stored}).(*statemachine.NeedRevalidation)
	fmt.Println(nr.Why(), "If-None-Match:", nr.Request.Header.Get("If-None-Match"))

	up := nr.Next(model.Response{Status: 304, Header: http.Header{"Etag": {`"v1"`}}}).(*statemachine.NeedToBeUpdated)
	fmt.Println(up.Why(), len(up.Updates), "pair to update")
	fc := up.Next()
	fmt.Println(fc.Status, "Age:", fc.Header.Get("Age"))
	// Output:
	// stored response is stale (RFC 9111 §4.2) If-None-Match: "v1"
	// 304 Not Modified: freshen the stored response (RFC 9111 §4.3.4) 1 pair to update
	// 200 Age: 0
}

func ExampleResolveRange() {
	for _, h := range []string{"bytes=0-99", "bytes=-10", "bytes=5000-", "bytes=0-1,5-6"} {
		a := statemachine.ResolveRange(h, 1000)
		fmt.Printf("%-14s %d %q %+v\n", h, a.Status, a.ContentRange, a.Range)
	}
	// Output:
	// bytes=0-99     206 "bytes 0-99/1000" {Start:0 Length:100}
	// bytes=-10      206 "bytes 990-999/1000" {Start:990 Length:10}
	// bytes=5000-    416 "bytes */1000" {Start:0 Length:0}
	// bytes=0-1,5-6  200 "" {Start:0 Length:0}
}

func ExampleParseCacheControl() {
	cc := statemachine.ParseCacheControl([]string{`Max-Age=60, no-cache="Set-Cookie"`, "max-stale"})
	fmt.Println(cc.MaxAge.Seconds, cc.NoCacheFields, cc.MaxStale.Seconds == statemachine.MaxDelta)
	bad := statemachine.ParseCacheControl([]string{"max-age=10, max-age=20"})
	fmt.Println(bad.MaxAge.Present, bad.MaxAge.Valid)
	// Output:
	// 60 [Set-Cookie] true
	// true false
}

func ExampleParseHTTPDate() {
	for _, s := range []string{"Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994", "0"} {
		t, ok := statemachine.ParseHTTPDate(s, time.Time{})
		fmt.Println(t.Format(time.RFC3339), ok)
	}
	// Output:
	// 1994-11-06T08:49:37Z true
	// 1994-11-06T08:49:37Z true
	// 1994-11-06T08:49:37Z true
	// 0001-01-01T00:00:00Z false
}

// After a successful unsafe request, the stored pairs of the target and of
// same-origin Location and Content-Location go.
func ExampleInvalidationTargets() {
	req := model.Request{Method: "POST", URL: "https://example.com/items"}
	resp := model.Response{Status: 201, Header: http.Header{"Location": {"/items/7"}}}
	for _, t := range statemachine.InvalidationTargets(req, resp, nil) {
		fmt.Println(t.Method, t.URL)
	}
	// Output:
	// GET https://example.com/items
	// HEAD https://example.com/items
	// GET https://example.com/items/7
	// HEAD https://example.com/items/7
}

// Two stored parts of one representation are combined into the whole
// (RFC 9111 §3.4), which then answers a request without Range.
func ExamplePartialUpdate() {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	idle := &statemachine.IdleClient{Options: &statemachine.Options{Now: func() time.Time { return now }}}
	req := model.Request{Method: "GET", URL: "https://example.com/f", Header: http.Header{}}
	bodies := map[model.PairID]string{}
	part := func(rng, body string) model.CompletePair {
		p := model.CompletePair{ID: model.NewPairID(), Request: req,
			Response: model.Response{Status: 206, Header: http.Header{
				"Cache-Control": {"max-age=60"}, "Etag": {`"v1"`}, "Content-Range": {rng},
				"Date": {now.Format(http.TimeFormat)},
			}},
			Meta: model.PairMeta{Created: now, Completed: now},
		}
		bodies[p.ID] = body
		return p
	}
	pairs := []model.CompletePair{part("bytes 0-4/11", "hello"), part("bytes 5-10/11", " world")}

	pu := idle.Next(req, pairs).(*statemachine.PartialUpdate)
	fmt.Println(pu.Why())
	// The caller stores a pair whose body is the parts' bytes in order, and
	// removes pu.Replaces.
	combined := model.CompletePair{ID: model.NewPairID(), Request: pu.Request, Response: pu.Response,
		Meta: model.PairMeta{Created: now, Completed: now}}
	for _, p := range pu.Parts {
		bodies[combined.ID] += bodies[p.Pair.ID][p.Range.Start : p.Range.Start+p.Range.Length]
	}
	fmt.Println(pu.Response.Status, pu.Response.Header.Get("Content-Length"), bodies[combined.ID])

	fc := pu.Next(combined).(*statemachine.FromCache)
	fmt.Println(fc.Why(), fc.Status)
	// Output:
	// stored partial responses with one strong validator combine (RFC 9111 §3.4)
	// 200 11 hello world
	// stored response is fresh (RFC 9111 §4.2) 200
}
