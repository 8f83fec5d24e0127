package hishel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hishel-go/hishel/cache"
	"github.com/hishel-go/hishel/model"
	"github.com/hishel-go/hishel/statemachine"
)

// Storage is what the Transport needs of a store. The blocking types of
// package cache (cache.Bolt, cache.Memory and any generated backend) have
// these methods. Like them, a Storage must not keep the header maps it is
// given: the Transport may change them once a call has returned. Nor may
// it keep the header maps GetPairs returns: the Transport serves a hit
// with the stored response's header map, changed in place (see
// statemachine.Options.ReuseHeaders), unless Options.CopyHeaders is set.
type Storage interface {
	CreatePair(ctx context.Context, req model.Request, opts ...model.CreateOption) (model.IncompletePair, error)
	AddResponse(ctx context.Context, id model.PairID, resp model.Response, key string) (model.CompletePair, error)
	GetPairs(ctx context.Context, key string) ([]model.CompletePair, error)
	UpdatePair(ctx context.Context, id model.PairID, pair model.CompletePair) (model.CompletePair, error)
	Remove(ctx context.Context, id model.PairID) error
	Close() error
}

// Options configure a Transport. A nil *Options means the defaults.
type Options struct {
	// Transport sends requests to the origin. Default http.DefaultTransport.
	Transport http.RoundTripper
	// Storage keeps the pairs. Default: a cache.Bolt at the default path
	// (see cache.BoltOptions), opened by NewTransport and closed by Close.
	// A Storage given here is not closed by the Transport.
	Storage Storage
	// Cache are the state machine's options: shared or private (private by
	// default), methods, heuristics, stale, force cache and the clock.
	// Its ReuseHeaders is set unless CopyHeaders is.
	Cache statemachine.Options
	// CopyHeaders serves hits from a copy of the stored header, for a
	// Storage whose GetPairs returns header maps it keeps (see Storage).
	// The storages of packages cache and cacheasync need no copy.
	CopyHeaders bool
	// Key derives cache keys. Default DefaultKey.
	Key KeyFunc
	// MaxBodySize, if positive, is the largest response body stored; a
	// larger one (by Content-Length, or once that many bytes have been
	// read) passes through to the caller uncached.
	MaxBodySize int64
	// Logger, if not nil, gets a Debug record for every decision.
	Logger *slog.Logger
	// OnDecision, if not nil, is called with every decision, from the
	// goroutine making it.
	OnDecision func(Decision)
	// Trace, if not nil, is called with the lookups, stores and outcomes
	// of the Transport's work (see Trace), for metrics.
	Trace *Trace
}

// Decision is what the Transport decided for a request, and why.
type Decision struct {
	Request *http.Request
	// State is the state machine's state, such as "FromCache".
	State string
	// Reason is the state machine's reason, with its RFC section.
	Reason statemachine.Reason
	// Key is the cache key; empty when the request could not be keyed.
	Key string
}

// Transport is an http.RoundTripper that answers from a cache where RFC 9111
// allows and stores what the origin sends. It is safe for concurrent use;
// it never modifies the caller's request and closes its body; it returns an
// error only when it has no response.
//
// Response bodies stream to the caller while they are stored: the caller
// sees the first byte when the origin sends it, and memory stays bounded
// whatever the body's size. A pair is stored only when its body was read to
// the end; a body that fails, is cut short or is closed early by the caller
// is not stored. Concurrent misses for one key are collapsed: one request
// goes to the origin and the others wait for its pair (or, if it cannot be
// stored, go to the origin themselves).
//
// Partial content is stored as ordinary pairs (status 206 with its
// Content-Range) through Storage; parts of one representation are combined
// into an ordinary pair by streaming their stored bodies into it (see
// statemachine.PartialUpdate). A HEAD request is keyed like a GET.
//
// Every response carries a Cache-Status field (RFC 9211) naming the cache
// "hishel".
type Transport struct {
	next     http.RoundTripper
	store    Storage
	ownStore bool
	machine  statemachine.IdleClient
	opts     Options
	key      KeyFunc

	mu       sync.Mutex
	inflight map[string]chan struct{} // collapsed misses, by key
	revals   map[string]bool          // background revalidations, by key
	bg       sync.WaitGroup           // background revalidations running
	closed   bool

	combining combiner // partial-content combinations under way (partial.go)
}

// NewTransport returns a Transport configured by opts.
func NewTransport(opts *Options) (*Transport, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	t := &Transport{opts: o, next: o.Transport, store: o.Storage, key: o.Key,
		inflight: map[string]chan struct{}{}, revals: map[string]bool{}}
	if t.next == nil {
		t.next = http.DefaultTransport
	}
	if t.key == nil {
		t.key = DefaultKey
	}
	cacheOpts := o.Cache
	cacheOpts.ReuseHeaders = !o.CopyHeaders // GetPairs's header maps are ours (see Storage)
	t.machine = statemachine.IdleClient{Options: &cacheOpts}
	if t.store == nil {
		s, err := cache.OpenBolt(context.Background(), nil)
		if err != nil {
			return nil, fmt.Errorf("hishel: transport storage: %w", err)
		}
		t.store, t.ownStore = s, true
	}
	t.store = traceStorage(t.store, o.Trace)
	return t, nil
}

// Close waits for background revalidations and closes the storage if the
// Transport opened it.
func (t *Transport) Close() error {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.bg.Wait()
	if t.ownStore {
		return t.store.Close()
	}
	return nil
}

func (t *Transport) now() time.Time {
	if t.opts.Cache.Now != nil {
		return t.opts.Cache.Now()
	}
	return time.Now()
}

// decide reports a decision to the hook and the logger.
func (t *Transport) decide(req *http.Request, key string, st statemachine.State) {
	if t.opts.OnDecision == nil && t.opts.Logger == nil {
		return
	}
	name := strings.TrimPrefix(fmt.Sprintf("%T", st), "*statemachine.")
	d := Decision{Request: req, State: name, Reason: st.Why(), Key: key}
	if t.opts.OnDecision != nil {
		t.opts.OnDecision(d)
	}
	if t.opts.Logger != nil {
		t.opts.Logger.LogAttrs(req.Context(), slog.LevelDebug, "hishel decision",
			slog.String("method", req.Method), slog.String("url", req.URL.String()),
			slog.String("state", name), slog.String("reason", d.Reason.Text), slog.String("section", d.Reason.Section))
	}
}

// requestOptionsKey is the context key of per-request storage options.
type requestOptionsKey struct{}

// WithRequestOptions returns a context that makes the Transport store the
// pair of a request made with it under opts (its TTL and refresh).
func WithRequestOptions(ctx context.Context, opts model.RequestOptions) context.Context {
	return context.WithValue(ctx, requestOptionsKey{}, opts)
}

func modelRequest(req *http.Request) model.Request {
	mr := model.Request{Method: req.Method, URL: req.URL.String(), Header: req.Header}
	if mr.Header == nil {
		mr.Header = http.Header{}
	}
	if o, ok := req.Context().Value(requestOptionsKey{}).(model.RequestOptions); ok {
		mr.Options = o
	}
	return mr
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (resp *http.Response, err error) {
	if tr := t.opts.Trace; tr != nil && tr.Response != nil {
		start := time.Now()
		defer func() { t.traceResponse(req, start, resp, err) }()
	}
	if req.URL == nil {
		closeBody(req)
		return nil, errors.New("hishel: request has no URL")
	}
	key, err := t.requestKey(req)
	if err != nil {
		// Not keyable: not cacheable; pass it through.
		resp, err := t.next.RoundTrip(req)
		if resp != nil {
			setCacheStatus(resp.Header, "fwd=uri-miss; detail=no-key")
		}
		return resp, err
	}
	return t.roundTrip(req, key, true)
}

func (t *Transport) roundTrip(req *http.Request, key string, collapse bool) (*http.Response, error) {
	ctx := req.Context()
	mreq := modelRequest(req)
	var pairs []model.CompletePair
	if t.supports(req.Method) { // other methods are written through; nothing to look up
		ps, err := t.store.GetPairs(ctx, key)
		if err != nil && !errors.Is(err, context.Canceled) {
			t.logError(req, "get pairs", err)
		}
		pairs = ps
	}
	next := t.machine.Next(mreq, pairs)
	t.decide(req, key, next)
	if pu, ok := next.(*statemachine.PartialUpdate); ok {
		next, pairs = t.combine(req, key, pu, pairs)
		t.decide(req, key, next)
	}
	switch st := next.(type) {
	case *statemachine.FromCache:
		closeBody(req)
		closeOthers(pairs, st.Pair.ID)
		if st.Revalidate != nil {
			t.revalidateInBackground(req, key, st.Revalidate)
		}
		detail := "hit"
		if st.Stale {
			detail = "hit; detail=stale"
		}
		return t.served(req, st.Served, detail), nil
	case *statemachine.GatewayTimeout:
		closeBody(req)
		closeOthers(pairs, model.PairID{})
		return synthetic(req, http.StatusGatewayTimeout, "hishel; fwd=miss; detail=only-if-cached"), nil
	case *statemachine.WriteThrough:
		closeOthers(pairs, model.PairID{})
		return t.writeThrough(req, st)
	case *statemachine.NeedRevalidation:
		return t.revalidate(req, key, st, pairs)
	case *statemachine.CacheMiss:
		if st.Partial != nil {
			return t.partialMiss(req, key, st, pairs)
		}
		closeOthers(pairs, model.PairID{})
		if collapse {
			if wait := t.joinFlight(key); wait != nil {
				select {
				case <-wait:
					return t.roundTrip(req, key, false)
				case <-ctx.Done():
					closeBody(req)
					return nil, ctx.Err()
				}
			}
			resp, err := t.miss(req, key, st, "uri-miss")
			if tb, ok := bodyOf(resp).(*teeBody); ok {
				tb.onEnd = func() { t.leaveFlight(key) } // waiters find the stored pair
			} else {
				t.leaveFlight(key)
			}
			return resp, err
		}
		return t.miss(req, key, st, "uri-miss")
	}
	closeBody(req)
	return nil, fmt.Errorf("hishel: unexpected state %T", next)
}

func (t *Transport) supports(method string) bool {
	ms := t.opts.Cache.SupportedMethods
	if ms == nil {
		ms = statemachine.DefaultSupportedMethods
	}
	for _, m := range ms {
		if m == method {
			return true
		}
	}
	return false
}

// joinFlight returns nil if the caller leads the miss for key (it must call
// leaveFlight), or a channel closed when the leader is done.
func (t *Transport) joinFlight(key string) <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	if ch, ok := t.inflight[key]; ok {
		return ch
	}
	t.inflight[key] = make(chan struct{})
	return nil
}

// leaveFlight ends the leader's flight for key, releasing its waiters.
func (t *Transport) leaveFlight(key string) {
	t.mu.Lock()
	ch, ok := t.inflight[key]
	delete(t.inflight, key)
	t.mu.Unlock()
	if ok {
		close(ch)
	}
}

func bodyOf(resp *http.Response) io.ReadCloser {
	if resp == nil {
		return nil
	}
	return resp.Body
}

// send sends r to the origin.
func (t *Transport) send(r *http.Request) (*http.Response, error) {
	return t.next.RoundTrip(r)
}

// outgoing returns the request for the origin: a copy of req with mreq's
// header (on a miss, the caller's own; for a conditional request, the state
// machine's new one). A RoundTripper must not change the request it is
// given, but some do (adding credentials, say): the copy keeps that from
// the caller's request and from the request header the Transport stores.
// The copy shares req's body, which the origin transport closes.
func outgoing(req *http.Request, mreq model.Request) *http.Request {
	out := req.Clone(req.Context()) // copies req.Header too
	if !sameHeader(mreq.Header, req.Header) {
		out.Header = mreq.Header // a new map of the state machine's
	}
	out.Body = req.Body
	return out
}

// sameHeader reports whether a and b are the same map.
func sameHeader(a, b http.Header) bool {
	return a != nil && b != nil && reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

// miss sends the request to the origin and stores the answer if it may.
func (t *Transport) miss(req *http.Request, key string, st *statemachine.CacheMiss, fwd string) (*http.Response, error) {
	resp, err := t.send(outgoing(req, st.Request))
	if err != nil {
		return nil, err
	}
	return t.store1(req, key, st.Next(modelResponse(resp)), resp, fwd)
}

func modelResponse(resp *http.Response) model.Response {
	h := resp.Header
	if h == nil {
		h = http.Header{}
	}
	return model.Response{Status: resp.StatusCode, Header: h}
}

// store1 acts on a StoreNext for the origin's response resp.
func (t *Transport) store1(req *http.Request, key string, sn statemachine.StoreNext, resp *http.Response, fwd string) (*http.Response, error) {
	t.decide(req, key, sn)
	switch st := sn.(type) {
	case *statemachine.StoreAndUse:
		return t.storeAndUse(req, key, st, resp, fwd), nil
	case *statemachine.CouldNotBeStored:
		setCacheStatus(resp.Header, "fwd="+fwd+"; fwd-status="+strconv.Itoa(resp.StatusCode))
		return resp, nil
	}
	return resp, nil
}

// storeAndUse stores resp while the caller reads it.
func (t *Transport) storeAndUse(req *http.Request, key string, st *statemachine.StoreAndUse, resp *http.Response, fwd string) *http.Response {
	status := "fwd=" + fwd + "; fwd-status=" + strconv.Itoa(resp.StatusCode)
	if t.opts.MaxBodySize > 0 && resp.ContentLength > t.opts.MaxBodySize {
		setCacheStatus(resp.Header, status+"; detail=too-large")
		return resp
	}
	ctx := req.Context()
	mreq := modelRequest(req)
	if st.TTL != 0 {
		mreq.Options.TTL = st.TTL
	}
	mreq.Body = nil // request bodies of cached requests are not kept
	inc, err := t.store.CreatePair(ctx, mreq)
	if err != nil {
		t.logError(req, "create pair", err)
		setCacheStatus(resp.Header, status)
		return resp
	}
	expectPartLength(resp)
	origin := &originBody{r: resp.Body, limit: t.opts.MaxBodySize}
	// The storage keeps a copy of the header (see Storage); out.Header below
	// is the caller's.
	cp, err := t.store.AddResponse(ctx, inc.ID, model.Response{Status: resp.StatusCode, Header: st.Response.Header, Body: model.NewBody(origin)}, key)
	if err != nil {
		t.logError(req, "add response", err)
		setCacheStatus(resp.Header, status)
		return resp
	}
	out := *resp
	out.Header = st.Response.Header // the state machine's new map; storage kept a copy
	missHeader(out.Header, st)
	setCacheStatus(out.Header, status+"; stored")
	out.Body = &teeBody{saver: cp.Response.Body, origin: origin}
	return &out
}

// originBody is the origin's response body as storage reads it. It
// remembers its own errors (to tell them from storage's), and stops storage
// once more than limit bytes have passed (limit > 0).
type originBody struct {
	r      io.ReadCloser
	limit  int64
	n      int64
	err    error // the origin's own read error, other than io.EOF
	tooBig bool
}

var errTooLarge = errors.New("hishel: body larger than MaxBodySize")

func (o *originBody) Read(p []byte) (int, error) {
	if o.tooBig {
		return 0, errTooLarge
	}
	n, err := o.r.Read(p)
	o.n += int64(n)
	if err != nil && err != io.EOF {
		o.err = err
	}
	if o.limit > 0 && o.n > o.limit {
		// Also when the origin's last bytes come with io.EOF: a body that
		// ends past the limit is too large all the same.
		o.tooBig = true
		return n, errTooLarge
	}
	return n, err
}

// Close does nothing: storage closes its source when it stops storing, but
// the caller may read on from the origin (teeBody.bypass). The teeBody
// closes the origin's body itself.
func (o *originBody) Close() error { return nil }

// teeBody is what the caller reads after a miss: the stored stream, which
// reads the origin and stores what it reads. If storing fails (not the
// origin), the caller goes on reading the origin directly: a storage
// failure never breaks the caller's response.
type teeBody struct {
	saver  *model.Body
	origin *originBody
	bypass bool
	ended  bool
	onEnd  func() // called once, when the stored stream ends either way
}

func (b *teeBody) Read(p []byte) (int, error) {
	if b.bypass {
		return b.origin.r.Read(p)
	}
	n, err := b.saver.Read(p)
	switch {
	case err == nil:
		return n, nil
	case err == io.EOF:
		b.end()
		return n, io.EOF
	case b.origin.err != nil:
		b.end()
		return n, b.origin.err // the origin failed: the caller sees its error
	}
	// Storage failed or the body outgrew MaxBodySize: the pair is not
	// stored; the caller reads on from the origin.
	b.bypass = true
	b.end()
	if n > 0 {
		return n, nil
	}
	return b.origin.r.Read(p)
}

func (b *teeBody) end() {
	if !b.ended {
		b.ended = true
		if b.onEnd != nil {
			b.onEnd()
		}
	}
}

// Close closes the body; before its end, the pair is not stored.
func (b *teeBody) Close() error {
	err := b.origin.r.Close() // first: it ends a Read blocked on the origin
	_ = b.saver.Close()
	b.end()
	return err
}

// served builds the response for a stored pair.
func (t *Transport) served(req *http.Request, s statemachine.Served, detail string) *http.Response {
	h := s.Header // a new map of the state machine's, ours to change
	status := "hit"
	if detail != "" {
		status = detail
	}
	var buf [64]byte
	entry := append(append(buf[:0], "hishel; "...), status...)
	if s.Lifetime > 0 {
		entry = strconv.AppendInt(append(entry, "; ttl="...), int64((s.Lifetime-s.Age)/time.Second), 10)
	}
	putCacheStatus(h, string(entry))
	resp := &http.Response{
		Status:     statusLine(s.Status),
		StatusCode: s.Status,
		Proto:      "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        h,
		Request:       req,
		ContentLength: -1,
	}
	if cl, err := strconv.ParseInt(h.Get("Content-Length"), 10, 64); err == nil && cl >= 0 {
		resp.ContentLength = cl
	}
	body := s.Pair.Response.Body
	switch {
	case req.Method == http.MethodHead || s.Status == http.StatusNotModified || s.Status == http.StatusRequestedRangeNotSatisfiable:
		_ = body.Close()
		_ = s.Pair.Request.Body.Close()
		resp.Body = http.NoBody
		if s.Status != http.StatusOK || req.Method != http.MethodHead {
			resp.ContentLength = 0
		}
	case s.Range != nil:
		_ = s.Pair.Request.Body.Close()
		resp.Body = &rangeBody{body: body, skip: s.Range.Start, left: s.Range.Length}
		resp.ContentLength = s.Range.Length
	default:
		_ = s.Pair.Request.Body.Close()
		resp.Body = body
	}
	return resp
}

// rangeBody serves one byte range of a stored body.
type rangeBody struct {
	body       *model.Body
	skip, left int64
}

func (r *rangeBody) Read(p []byte) (int, error) {
	if r.skip > 0 {
		n, err := io.CopyN(io.Discard, r.body, r.skip)
		r.skip -= n
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
	}
	if r.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	n, err := r.body.Read(p)
	r.left -= int64(n)
	if err == io.EOF && r.left > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func (r *rangeBody) Close() error { return r.body.Close() }

// revalidate sends the conditional request and acts on the answer.
func (t *Transport) revalidate(req *http.Request, key string, st *statemachine.NeedRevalidation, pairs []model.CompletePair) (*http.Response, error) {
	nominated := map[model.PairID]bool{}
	for _, p := range st.Pairs {
		nominated[p.ID] = true
	}
	for _, p := range pairs {
		if !nominated[p.ID] {
			_ = p.Close()
		}
	}
	resp, err := t.send(outgoing(req, st.Request))
	if err != nil {
		en := st.OnError(err)
		t.decide(req, key, en)
		switch e := en.(type) {
		case *statemachine.ServeStale:
			closeOthers(st.Pairs, e.Pair.ID)
			return t.served(req, e.Served, staleOnErrorStatus(e)), nil
		default:
			closeOthers(st.Pairs, model.PairID{})
			return nil, err
		}
	}
	rn := st.Next(modelResponse(resp))
	t.decide(req, key, rn)
	switch n := rn.(type) {
	case *statemachine.NeedToBeUpdated:
		drain(resp)
		for _, p := range n.Updates {
			if _, err := t.store.UpdatePair(req.Context(), p.ID, p); err != nil {
				t.logError(req, "update pair", err)
			}
		}
		t.removeAll(req, n.Invalidate)
		fc := n.Next()
		closeOthers(st.Pairs, fc.Pair.ID)
		return t.served(req, fc.Served, "hit; fwd=stale; fwd-status="+strconv.Itoa(resp.StatusCode)), nil
	case *statemachine.ServeStale:
		drain(resp)
		closeOthers(st.Pairs, n.Pair.ID)
		return t.served(req, n.Served, "hit; detail=stale-if-error; fwd-status="+strconv.Itoa(resp.StatusCode)), nil
	case *statemachine.InvalidatePairs:
		closeOthers(st.Pairs, model.PairID{})
		for _, id := range n.PairIDs {
			if err := t.store.Remove(req.Context(), id); err != nil {
				t.logError(req, "remove pair", err)
			}
		}
		return t.store1(req, key, n.Next(), resp, "stale")
	case *statemachine.CacheMiss:
		closeOthers(st.Pairs, model.PairID{})
		drain(resp)
		return t.miss(req, key, n, "stale")
	case statemachine.StoreNext:
		closeOthers(st.Pairs, model.PairID{})
		return t.store1(req, key, n, resp, "stale")
	}
	closeOthers(st.Pairs, model.PairID{})
	return resp, nil
}

// revalidateInBackground runs a stale-while-revalidate revalidation once
// per key at a time, in a goroutine that ends with the revalidation and that
// Close waits for.
func (t *Transport) revalidateInBackground(req *http.Request, key string, st *statemachine.NeedRevalidation) {
	t.mu.Lock()
	if t.closed || t.revals[key] {
		t.mu.Unlock()
		return
	}
	t.revals[key] = true
	t.bg.Add(1)
	t.mu.Unlock()
	bgReq := req.Clone(context.WithoutCancel(req.Context()))
	bgReq.Body = nil
	bgReq.ContentLength = 0
	go func() {
		defer t.bg.Done()
		defer func() {
			t.mu.Lock()
			delete(t.revals, key)
			t.mu.Unlock()
		}()
		ctx, cancel := context.WithTimeout(bgReq.Context(), time.Minute)
		defer cancel()
		bgReq := bgReq.WithContext(ctx)
		if !t.stillStale(bgReq, key) {
			return
		}
		t.refresh(bgReq, key, st)
	}()
}

// stillStale reports whether the pairs stored under key still call for a
// background revalidation. The request that started this one chose its
// pair from what it read before; another revalidation may have stored a
// fresh response since, and ended (so that nothing held this one back):
// then, when a fresh response would be served now, there is nothing to do.
// When the pairs cannot be read, it reports true, and the revalidation
// goes ahead.
func (t *Transport) stillStale(req *http.Request, key string) bool {
	pairs, err := t.store.GetPairs(req.Context(), key)
	if err != nil {
		return true
	}
	defer closeOthers(pairs, model.PairID{})
	fc, ok := t.machine.Next(modelRequest(req), pairs).(*statemachine.FromCache)
	return !ok || fc.Stale
}

// refresh carries out a background revalidation: it freshens, replaces or
// keeps the stored pairs, and serves nothing. It never touches the bodies of
// st.Pairs, which belong to the request that was answered.
func (t *Transport) refresh(req *http.Request, key string, st *statemachine.NeedRevalidation) {
	resp, err := t.send(outgoing(req, st.Request))
	if err != nil {
		t.decide(req, key, st.OnError(err))
		return
	}
	var out *http.Response
	rn := st.Next(modelResponse(resp))
	t.decide(req, key, rn)
	switch n := rn.(type) {
	case *statemachine.NeedToBeUpdated:
		for _, p := range n.Updates {
			if _, err := t.store.UpdatePair(req.Context(), p.ID, p); err != nil {
				t.logError(req, "update pair", err)
			}
		}
		t.removeAll(req, n.Invalidate)
	case *statemachine.InvalidatePairs:
		// Store the new response first and only then remove the pairs it
		// replaces, so that requests meanwhile always find one of them.
		out, _ = t.store1(req, key, n.Next(), resp, "stale")
		_, _ = io.Copy(io.Discard, out.Body)
		_ = out.Body.Close()
		for _, id := range n.PairIDs {
			if err := t.store.Remove(req.Context(), id); err != nil {
				t.logError(req, "remove pair", err)
			}
		}
		return
	case statemachine.StoreNext:
		out, _ = t.store1(req, key, n, resp, "stale")
	}
	if out == nil {
		out = resp
	}
	_, _ = io.Copy(io.Discard, out.Body) // reading stores a new full response
	_ = out.Body.Close()
}

// writeThrough sends an unsafe request and invalidates what it affects.
func (t *Transport) writeThrough(req *http.Request, st *statemachine.WriteThrough) (*http.Response, error) {
	resp, err := t.send(req)
	if err != nil {
		return nil, err
	}
	wn := st.Next(modelResponse(resp))
	t.decide(req, "", wn)
	if inv, ok := wn.(*statemachine.InvalidateURIs); ok {
		for _, key := range t.targetKeys(inv.Targets) {
			pairs, err := t.store.GetPairs(req.Context(), key)
			if err != nil {
				t.logError(req, "get pairs to invalidate", err)
				continue
			}
			for _, p := range pairs {
				_ = p.Close()
				if err := t.store.Remove(req.Context(), p.ID); err != nil {
					t.logError(req, "invalidate", err)
				}
			}
		}
		if inv.Store != nil {
			return t.storePost(req, inv, resp), nil
		}
	}
	setCacheStatus(resp.Header, "fwd=request; fwd-status="+strconv.Itoa(resp.StatusCode))
	return resp, nil
}

func (t *Transport) logError(req *http.Request, what string, err error) {
	if t.opts.Logger != nil {
		t.opts.Logger.LogAttrs(req.Context(), slog.LevelWarn, "hishel storage error",
			slog.String("op", what), slog.String("url", req.URL.String()), slog.Any("err", err))
	}
}

// setCacheStatus sets the Cache-Status field (RFC 9211) for this cache,
// after any entries from caches nearer the origin.
func setCacheStatus(h http.Header, params string) {
	if h != nil {
		putCacheStatus(h, "hishel; "+params)
	}
}

// putCacheStatus puts entry, this cache's member of the Cache-Status
// field, after those of the caches nearer the origin.
func putCacheStatus(h http.Header, entry string) {
	var kept []string
	for _, v := range h["Cache-Status"] {
		if !strings.HasPrefix(strings.TrimSpace(v), "hishel") {
			kept = append(kept, v)
		}
	}
	h["Cache-Status"] = append(kept, entry)
}

// statusLine is the Response.Status for code, as net/http writes it; the
// usual ones are constants, so that a hit does not build the string.
func statusLine(code int) string {
	switch code {
	case http.StatusOK:
		return "200 OK"
	case http.StatusPartialContent:
		return "206 Partial Content"
	case http.StatusNotModified:
		return "304 Not Modified"
	}
	return strconv.Itoa(code) + " " + http.StatusText(code)
}

func synthetic(req *http.Request, code int, cacheStatus string) *http.Response {
	h := http.Header{"Content-Length": {"0"}, "Cache-Status": {cacheStatus}}
	return &http.Response{
		Status: statusLine(code), StatusCode: code,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: http.NoBody, Request: req,
	}
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}

// closeOthers closes the bodies of every pair but keep.
func closeOthers(pairs []model.CompletePair, keep model.PairID) {
	for _, p := range pairs {
		if p.ID != keep {
			_ = p.Close()
		}
	}
}

// drain discards a small answer's body (a 304's) so the connection is reused.
func drain(resp *http.Response) {
	_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
	_ = resp.Body.Close()
}
