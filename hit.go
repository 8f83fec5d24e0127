package hishel

import (
	"context"
	"maps"
	"net/http"
	"net/textproto"
	"reflect"
	"strings"
	"time"

	"github.com/hishel-go/hishel/cache"
	"github.com/hishel-go/hishel/internal/lent"
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
func (t *Transport) Hit(req *http.Request) *http.Response { return t.hit(req, nil) }

// HitHeader is Hit for a server that writes the hit to its client itself:
// the response's header fields go into h, such as the Header() of the
// server's http.ResponseWriter, and resp.Header is h. With an empty h
// (the usual case) and a Bolt store, the stored fields are written into h
// once, where Hit would copy them into a map of the response's that the
// server then copies into its own. Fields h held already are replaced
// where the response has them too, and kept otherwise. When HitHeader
// returns nil, h is as it was. The values HitHeader puts in h (the slices
// of its fields) are shared with the cache and with other hits: a caller
// that changes a field sets a new slice, and never writes into one.
func (t *Transport) HitHeader(req *http.Request, h http.Header) *http.Response {
	if h == nil || len(h) > 0 {
		resp := t.hit(req, nil)
		if resp != nil && h != nil {
			maps.Copy(h, resp.Header)
			resp.Header = h
		}
		return resp
	}
	return t.hit(req, h)
}

// hit is Hit, and HitHeader with dst, an empty map, not nil.
func (t *Transport) hit(req *http.Request, dst http.Header) *http.Response {
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
	pairs, shared, err := t.lendPairs(ctx, key)
	if err != nil {
		return nil
	}
	machine := t.machine
	filled := false // dst holds pairs[0]'s response fields, its header now
	if shared {
		machine = t.lentMachine
		if dst != nil && len(pairs) == 1 {
			// The one pair's fields go to dst, and the state machine
			// serves dst itself, changed in place (ReuseHeaders): it
			// removes fields and sets others, never changing a value's
			// slice, which stays the store's.
			maps.Copy(dst, pairs[0].Response.Header)
			pairs[0].Response.Header = dst
			machine, filled = t.machine, true
		}
	}
	st, ok := machine.Next(t.hitLookup(req, pairs), pairs).(*statemachine.FromCache)
	if ok && st.Revalidate != nil {
		if shared {
			// The background revalidation freshens or replaces the
			// pairs it is given: they must be copies. Look them up
			// again, as GetPairs gives them.
			closeOthers(pairs, model.PairID{})
			if filled {
				clear(dst)
				filled = false
			}
			if pairs, err = t.raw.GetPairs(ctx, key); err != nil {
				return nil
			}
			machine = t.machine
		}
		// The background revalidation sends and stores the request the
		// state machine saw: it must be the one lookupRequest gives,
		// with its URL and the header as stored.
		st, ok = machine.Next(t.lookupRequest(req), pairs).(*statemachine.FromCache)
	}
	if !ok {
		closeOthers(pairs, model.PairID{})
		if filled {
			clear(dst)
		}
		return nil
	}
	if dst != nil && (!filled || !sameMap(st.Served.Header, dst)) {
		// Served from a copy, or from a header of its own (a 304's).
		clear(dst)
		maps.Copy(dst, st.Served.Header)
		st.Served.Header = dst
	}
	if tr != nil && tr.Lookup != nil {
		tr.Lookup(ctx, LookupInfo{Key: key, Pairs: len(pairs), Duration: time.Since(start)})
	}
	t.decide(req, key, st)
	resp := t.fromCache(req, key, st, pairs, dst != nil)
	if tr != nil && tr.Response != nil {
		t.traceResponse(req, start, resp, nil)
	}
	return resp
}

// sameMap reports whether a and b are the same map.
func sameMap(a, b http.Header) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

// lendPairs reads the pairs under key for Hit: from a Bolt store, with the
// header maps its head cache shares (lent reports it; see package
// internal/lent), which Hit only reads and serves through lentMachine,
// which copies what it serves; from any other store, with GetPairs.
func (t *Transport) lendPairs(ctx context.Context, key string) ([]model.CompletePair, bool, error) {
	if b, ok := t.raw.(*cache.Bolt); ok && b != nil {
		if pairs, ok, err := lent.GetPairs(ctx, b.Template(), key); ok {
			return pairs, true, err
		}
	}
	pairs, err := t.raw.GetPairs(ctx, key)
	return pairs, false, err
}

// fromCache serves the pair the state machine chose, closes the others'
// bodies, and starts a background revalidation if one is due; share is
// servedShared's.
func (t *Transport) fromCache(req *http.Request, key string, st *statemachine.FromCache, pairs []model.CompletePair, share bool) *http.Response {
	closeOthers(pairs, st.Pair.ID)
	if st.Revalidate != nil {
		t.revalidateInBackground(req, key, st.Revalidate)
	}
	detail := "hit"
	if st.Stale {
		detail = "hit; detail=stale"
	}
	return t.servedShared(req, st.Served, detail, share)
}

// hitLookup is lookupRequest(req) for Hit, which only decides whether one
// of pairs may be served: with req's own header, not the copy of it
// without the fields storedHeader drops or hashes, as long as no pair's
// Vary names one of those fields. The state machine reads them for Vary
// alone (Authorization only for being there), and changes no request
// header, so the decision is the same without the copy (which a proxy
// makes for every request: it adds X-Forwarded-For). Its URL is left
// empty: the state machine reads a request's URL only for the requests it
// sends or stores (a revalidation, an invalidation, a miss), which Hit
// does not send but with lookupRequest's request (see hit).
func (t *Transport) hitLookup(req *http.Request, pairs []model.CompletePair) model.Request {
	if !hasPrivateFields(req.Header) || modeOf(req) == modeOnlyIfCached {
		return t.lookupRequestWith(req, t.storedHeader(req.Header), false)
	}
	for i := range pairs {
		if variesOnPrivate(pairs[i].Response.Header["Vary"]) {
			return t.lookupRequestWith(req, t.storedHeader(req.Header), false)
		}
	}
	return t.lookupRequestWith(req, req.Header, false)
}

// variesOnPrivate reports whether the Vary values vary name a field that
// storedHeader drops or hashes, or "*".
func variesOnPrivate(vary []string) bool {
	for _, v := range vary {
		for name := range strings.SplitSeq(v, ",") {
			name = textproto.TrimString(name)
			if name == "*" {
				return true
			}
			for _, f := range hashedFields {
				if strings.EqualFold(name, f) {
					return true
				}
			}
			for _, f := range droppedFields {
				if strings.EqualFold(name, f) {
					return true
				}
			}
		}
	}
	return false
}
