package hishel

import (
	"net/http"
	"time"

	"github.com/hishel-go/hishel/model"
	"github.com/hishel-go/hishel/statemachine"
)

// Hit answers req from the cache when a stored response may be served
// without the origin: a fresh one, or a stale one that may be served as it
// is (stale-while-revalidate, which starts the background revalidation as
// RoundTrip would). The response is the one RoundTrip would return, with
// its Cache-Status; its body streams from storage, and the caller must
// read it or close it. Options.OnDecision, the logger and Options.Trace
// see the request as they would through RoundTrip.
//
// When req needs more than the cache (a miss, a revalidation, a request
// with a body, a method the cache does not store, a URL rule or a context
// that bypasses the cache, a storage that fails), Hit returns nil, and has
// done nothing to req and nothing that shows: send it through RoundTrip,
// which looks it up again (Trace.Lookup sees that lookup only). A caching
// server, such as hishel's proxy, can so write a hit to its client itself,
// with none of the work of a reverse proxy's round trip.
func (t *Transport) Hit(req *http.Request) *http.Response {
	if req.URL == nil || t.closed.Load() || hasBody(req) || !t.supports(req.Method) ||
		modeOf(req) == modeRefresh || t.bypassed(req) {
		return nil
	}
	key, err := t.requestKey(keyRequest{req: req})
	if err != nil {
		return nil
	}
	tr := t.opts.Trace
	var start time.Time
	if tr != nil && (tr.Lookup != nil || tr.Response != nil) {
		start = time.Now()
	}
	ctx := req.Context()
	pairs, err := t.raw.GetPairs(ctx, key)
	if err != nil {
		return nil
	}
	st, ok := t.machine.Next(t.lookupRequest(req), pairs).(*statemachine.FromCache)
	if !ok {
		closeOthers(pairs, model.PairID{})
		return nil
	}
	if tr != nil && tr.Lookup != nil {
		tr.Lookup(ctx, LookupInfo{Key: key, Pairs: len(pairs), Duration: time.Since(start)})
	}
	t.decide(req, key, st)
	resp := t.fromCache(req, key, st, pairs)
	if tr != nil && tr.Response != nil {
		t.traceResponse(req, start, resp, nil)
	}
	return resp
}

// fromCache serves the pair the state machine chose, closes the others'
// bodies, and starts a background revalidation if one is due.
func (t *Transport) fromCache(req *http.Request, key string, st *statemachine.FromCache, pairs []model.CompletePair) *http.Response {
	closeOthers(pairs, st.Pair.ID)
	if st.Revalidate != nil {
		t.revalidateInBackground(req, key, st.Revalidate)
	}
	detail := "hit"
	if st.Stale {
		detail = "hit; detail=stale"
	}
	return t.served(req, st.Served, detail)
}
