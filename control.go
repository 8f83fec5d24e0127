package hishel

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/hishel-go/hishel/model"
	"github.com/hishel-go/hishel/statemachine"
)

// mode is how one request uses the cache, set through its context.
type mode uint8

const (
	modeDefault mode = iota
	modeRefresh
	modeOnlyIfCached
)

// modeKey is the context key of a request's mode.
type modeKey struct{}

// WithRefresh returns a context that makes the Transport skip the stored
// responses for a request made with it: the request goes to the origin as
// it is (not as a conditional request), and the answer is stored as any
// other; once it is stored, the responses it replaces (those the request
// would have been answered from, or revalidated) are removed. For a method
// the cache does not store, it changes nothing. It undoes WithOnlyIfCached.
func WithRefresh(ctx context.Context) context.Context {
	return context.WithValue(ctx, modeKey{}, modeRefresh)
}

// WithOnlyIfCached returns a context that keeps a request made with it
// from the origin: the Transport answers from the cache, or with 504
// Gateway Timeout when it holds nothing it may serve without asking the
// origin, as for a request with Cache-Control: only-if-cached (RFC 9111
// §5.2.1.7). A request with a method the cache does not store, or that
// cannot be keyed, gets the 504 at once. It undoes WithRefresh.
func WithOnlyIfCached(ctx context.Context) context.Context {
	return context.WithValue(ctx, modeKey{}, modeOnlyIfCached)
}

// modeOf returns req's mode.
func modeOf(req *http.Request) mode {
	m, _ := req.Context().Value(modeKey{}).(mode)
	return m
}

// control carries out what a request's mode and the URL rules ask for
// before the usual round trip: it reports done with the response (or
// error) when they answer req themselves. keyed says whether req has its
// key (it may not: no key, or a body too large to key on).
func (t *Transport) control(req *http.Request, key string, keyed bool) (resp *http.Response, err error, done bool) {
	switch m := modeOf(req); {
	case m == modeOnlyIfCached && (!keyed || !t.supports(req.Method)):
		closeBody(req)
		return synthetic(req, http.StatusGatewayTimeout, "hishel; detail=only-if-cached"), nil, true
	case !keyed:
		return nil, nil, false
	case t.bypassed(req):
		resp, err := t.send(req)
		if err != nil {
			return nil, &ForwardError{Fwd: "bypass", Err: err}, true
		}
		setCacheStatus(resp.Header, "fwd=bypass; fwd-status="+strconv.Itoa(resp.StatusCode)+"; detail=url-rule")
		return resp, nil, true
	case m == modeRefresh && t.supports(req.Method):
		resp, err := t.forceRefresh(req, key)
		return resp, err, true
	}
	return nil, nil, false
}

// forceRefresh answers req from the origin whatever is stored (WithRefresh),
// stores the answer as a miss would, and removes the pairs it replaces
// once it is stored.
func (t *Transport) forceRefresh(req *http.Request, key string) (*http.Response, error) {
	ctx := req.Context()
	mreq := t.lookupRequest(req)
	var replaced []model.PairID
	pairs, err := t.store.GetPairs(ctx, key)
	if err != nil && !errors.Is(err, context.Canceled) {
		t.storeFailed(req, key, "get pairs", err)
	}
	if len(pairs) > 0 {
		// What the request would have been answered from: the state
		// machine's choice, without acting on it.
		switch st := t.machine.Next(mreq, pairs).(type) {
		case *statemachine.FromCache:
			replaced = append(replaced, st.Pair.ID)
		case *statemachine.NeedRevalidation:
			for _, p := range st.Pairs {
				replaced = append(replaced, p.ID)
			}
		}
		closeOthers(pairs, model.PairID{})
	}
	next := t.machine.Next(mreq, nil)
	t.decide(req, key, next)
	miss, ok := next.(*statemachine.CacheMiss)
	if !ok || miss.Partial != nil { // not a plain miss after all
		return t.roundTrip(req, key, false)
	}
	f, r, err := t.startFlight(key, req)
	if err != nil {
		closeBody(req)
		return nil, err
	}
	if len(replaced) > 0 {
		f.onStored = func() {
			for _, id := range replaced {
				if err := t.store.Remove(f.ctx, id); err != nil {
					t.storeFailed(req, key, "remove a replaced pair", err)
				}
			}
		}
	}
	go f.fetch(req, mreq, miss, "request")
	return f.leaderResponse(req, r)
}
