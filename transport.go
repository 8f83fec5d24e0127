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
	"sync/atomic"
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
	// MaxKeyBodySize is the largest request body read into memory to key
	// a request on its body (see KeyFunc); a request to a cached method
	// with a larger body is sent to the origin whole and not cached.
	// Zero means DefaultMaxKeyBodySize (64 KiB); negative: requests with
	// a body are never cached.
	MaxKeyBodySize int64
	// MaxBodySize, if positive, is the largest response body stored; a
	// larger one (by Content-Length, or once that many bytes have been
	// read) passes through to the caller uncached.
	MaxBodySize int64
	// IgnoreParams are query parameters kept out of cache keys and out of
	// the URLs stored with pairs, such as tracking parameters ("utm_*") or
	// API keys: patterns matched against each parameter's name, in which *
	// stands for any run of characters and ? for one. Requests to the
	// origin keep them.
	IgnoreParams []string
	// MatchHeaders are request header fields whose values join the cache
	// key: requests that differ in them are stored and answered apart
	// (requests-cache's match_headers). The key holds a SHA-256 of the
	// values, never the values. Invalidation then finds a URL's pairs
	// under every value, which with a Bolt store reads every record on
	// each unsafe request, and needs a Storage with Delete.
	MatchHeaders []string
	// URLRules set, by URL pattern, how long pairs are stored or that
	// requests bypass the cache; the first rule whose pattern matches a
	// request applies (see URLRule).
	URLRules []URLRule
	// StoreFilter, if not nil, is asked before a response that may be
	// stored is stored, with the request and the origin's response
	// (whose body it must not read or close): false keeps the response
	// out of the cache, and the caller gets it all the same
	// (Cache-Status detail=filtered). OnDecision observes; StoreFilter
	// decides.
	StoreFilter func(req *http.Request, resp *http.Response) bool
	// SetCookie says what happens to a storable response with Set-Cookie:
	// stored as it is (the default), stored without it, or not stored.
	SetCookie SetCookiePolicy
	// CredentialKey is the key of the HMAC-SHA256 under which stored
	// request heads keep Authorization, Proxy-Authorization and Cookie:
	// never in clear, only as a keyed hash, which is enough to match a
	// later request's fields for Vary. nil means a random key made by
	// NewTransport: then only this Transport can match what it stored on
	// those fields, and after a restart, or in another process sharing the
	// store, a response that varies on them is a miss (never a wrong hit).
	// Processes that share one store should share one key (16 bytes or
	// more, kept secret like a password).
	CredentialKey []byte
	// CollapseWindow is how many of the latest bytes of a response being
	// fetched are kept in memory for its clients (a collapsed miss serves
	// one fetch to many clients, each at its own pace); a client that
	// falls further behind reads from a temporary file in SpillDir. Zero
	// means DefaultCollapseWindow (1 MiB).
	CollapseWindow int
	// SpillDir is where those temporary files go; empty means
	// os.TempDir(). A file lasts as long as its fetch has clients and is
	// unlinked at once where the system allows.
	SpillDir string
	// Logger gets a Debug record for every decision, when set, and a Warn
	// record for every storage failure (a pair that could not be stored,
	// updated or read), with the key and the error. nil: decisions are not
	// logged, and warnings go to slog.Default().
	Logger *slog.Logger
	// OnDecision, if not nil, is called with every decision, from the
	// goroutine making it (the fetch's goroutine, for the decision to
	// store a response).
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
// whatever the body's size. The response body is read from the origin and
// stored by a goroutine of the Transport's, not by the caller's reads, and
// concurrent misses for one key are collapsed: one request goes to the
// origin, and every caller (the first, and those that came while it was
// under way) reads the one response at its own pace, none waiting for
// another (see Options.CollapseWindow). The pair is stored when the body
// arrives whole, whatever the callers do, unless every one of them has
// closed its body (or gone) before that; a body that fails or is cut short
// is never stored.
//
// Partial content is stored as ordinary pairs (status 206 with its
// Content-Range) through Storage; parts of one representation are combined
// into an ordinary pair by streaming their stored bodies into it (see
// statemachine.PartialUpdate). A HEAD request is keyed like a GET.
//
// Every response carries a Cache-Status field (RFC 9211) naming the cache
// "hishel". A response says "stored" only when its pair was stored before
// the response was handed over: a body of up to 64 KiB (by Content-Length)
// is stored first; a larger one streams, and whether it was stored goes to
// the log.
type Transport struct {
	next     http.RoundTripper
	store    Storage
	raw      Storage // store without its Trace hooks (Hit traces itself)
	ownStore bool
	machine  statemachine.IdleClient
	// lentMachine is machine without ReuseHeaders, for pairs whose
	// header maps the store lends (Hit).
	lentMachine statemachine.IdleClient
	// statuses are the Cache-Status values HitHeader's hits share.
	statuses statusCache
	opts     Options
	credKey  []byte

	del   deleter  // the store's Delete, if it has one (Invalidate)
	shape keyShape // IgnoreParams, MatchHeaders
	rules urlRules

	mu       sync.Mutex
	inflight map[string]*flight   // collapsed misses, by key
	flights  map[*flight]struct{} // every fetch under way, for Close
	fetches  sync.WaitGroup       // their goroutines
	revals   map[string]bool      // background revalidations, by key
	bg       sync.WaitGroup       // background revalidations running
	closed   atomic.Bool          // Close has begun: RoundTrip fails
	stopping bool                 // Close is cancelling fetches: none may start

	combining combiner // partial-content combinations under way (partial.go)
}

// NewTransport returns a Transport configured by opts.
func NewTransport(opts *Options) (*Transport, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	t := &Transport{opts: o, next: o.Transport, store: o.Storage, credKey: o.CredentialKey,
		inflight: map[string]*flight{}, flights: map[*flight]struct{}{}, revals: map[string]bool{}}
	if t.next == nil {
		t.next = http.DefaultTransport
	}
	if t.credKey == nil {
		t.credKey = newCredentialKey()
	}
	cacheOpts := o.Cache
	cacheOpts.ReuseHeaders = !o.CopyHeaders // GetPairs's header maps are ours (see Storage)
	t.machine = statemachine.IdleClient{Options: &cacheOpts}
	lentOpts := cacheOpts
	lentOpts.ReuseHeaders = false
	t.lentMachine = statemachine.IdleClient{Options: &lentOpts}
	var err error
	if t.shape, err = newKeyShape(&o); err != nil {
		return nil, err
	}
	if t.rules, err = newURLRules(o.URLRules); err != nil {
		return nil, err
	}
	if _, ok := t.store.(deleter); t.store != nil && !ok && len(t.shape.headers) > 0 {
		return nil, fmt.Errorf("hishel: Options.MatchHeaders needs a Storage with a Delete method, to invalidate every variant (the stores of package cache have one): %w", model.ErrInvalid)
	}
	if t.store == nil {
		s, err := cache.OpenBolt(context.Background(), nil)
		if err != nil {
			return nil, fmt.Errorf("hishel: transport storage: %w", err)
		}
		t.store, t.ownStore = s, true
	}
	t.del, _ = t.store.(deleter)
	t.raw = t.store
	t.store = traceStorage(t.store, o.Trace)
	return t, nil
}

// Close waits for background revalidations, then cuts short the fetches
// still under way (their readers get an error wrapping ErrClosed, nothing
// incomplete is stored) and waits for their goroutines, and closes the
// storage if the Transport opened it. RoundTrip fails with ErrClosed once
// Close has begun.
func (t *Transport) Close() error {
	t.closed.Store(true)
	t.bg.Wait()
	t.mu.Lock()
	t.stopping = true
	fs := make([]*flight, 0, len(t.flights))
	for f := range t.flights {
		fs = append(fs, f)
	}
	t.mu.Unlock()
	for _, f := range fs {
		f.stop(ErrClosed)
	}
	t.fetches.Wait()
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
	logging := t.opts.Logger != nil && t.opts.Logger.Enabled(req.Context(), slog.LevelDebug)
	if t.opts.OnDecision == nil && !logging {
		return
	}
	name := strings.TrimPrefix(fmt.Sprintf("%T", st), "*statemachine.")
	d := Decision{Request: req, State: name, Reason: st.Why(), Key: key}
	if t.opts.OnDecision != nil {
		t.opts.OnDecision(d)
	}
	if logging {
		t.opts.Logger.LogAttrs(req.Context(), slog.LevelDebug, "hishel decision",
			slog.String("method", req.Method), slog.String("url", req.URL.String()),
			slog.String("state", name), slog.String("reason", d.Reason.Text), slog.String("section", d.Reason.Section))
	}
}

// requestOptionsKey is the context key of per-request storage options.
type requestOptionsKey struct{}

// WithRequestOptions returns a context that makes the Transport store the
// pair of a request made with it under opts (its TTL and refresh). A nil
// ctx stands for context.Background().
func WithRequestOptions(ctx context.Context, opts model.RequestOptions) context.Context {
	if ctx == nil {
		ctx = context.Background()
	}
	return context.WithValue(ctx, requestOptionsKey{}, opts)
}

// modelRequest is req as the cache stores and matches it: its header with
// credentials hashed and client addresses dropped (see
// Options.CredentialKey), which is a copy when anything changed.
func (t *Transport) modelRequest(req *http.Request) model.Request {
	return t.modelRequestWith(req, t.storedHeader(req.Header))
}

// modelRequestWith is modelRequest(req) with the header h.
func (t *Transport) modelRequestWith(req *http.Request, h http.Header) model.Request {
	mr := modelRequestNoURL(req, h)
	mr.URL = req.URL.String()
	return mr
}

// modelRequestNoURL is modelRequestWith(req, h) without its URL.
func modelRequestNoURL(req *http.Request, h http.Header) model.Request {
	mr := model.Request{Method: req.Method, Header: h}
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
	if t.closed.Load() {
		closeBody(req)
		return nil, ErrClosed
	}
	kr, ok := keyRequest{req: req}, true
	if t.supports(req.Method) { // others are written through: their bodies are not read here
		limit := t.opts.MaxKeyBodySize
		if limit == 0 {
			limit = DefaultMaxKeyBodySize
		}
		var err error
		if kr, ok, err = readBody(req, limit); err != nil {
			return nil, err
		}
	}
	key, err := "", error(nil)
	if ok {
		key, err = t.requestKey(kr)
	}
	if resp, err, done := t.control(kr.req, key, ok && err == nil); done {
		return resp, err
	}
	if !ok || err != nil {
		// Not keyable (or its body too large to key on): not cacheable;
		// pass it through.
		detail := "no-key"
		if !ok {
			detail = "body-too-large"
		}
		resp, err := t.next.RoundTrip(kr.req)
		if err != nil {
			return nil, &ForwardError{Fwd: "bypass", Err: err}
		}
		setCacheStatus(resp.Header, "fwd=bypass; fwd-status="+strconv.Itoa(resp.StatusCode)+"; detail="+detail)
		return resp, nil
	}
	return t.roundTrip(kr.req, key, true)
}

func (t *Transport) roundTrip(req *http.Request, key string, collapse bool) (*http.Response, error) {
	ctx := req.Context()
	mreq := t.lookupRequest(req)
	var pairs []model.CompletePair
	var storeErr error
	cached := t.supports(req.Method)
	if cached { // other methods are written through; nothing to look up
		ps, err := t.store.GetPairs(ctx, key)
		if err != nil && !errors.Is(err, context.Canceled) {
			t.storeFailed(req, key, "get pairs", err)
			storeErr = err
		}
		pairs = ps
	}
	next := t.machine.Next(mreq, pairs)
	t.decide(req, key, next)
	if m, ok := next.(*statemachine.CacheMiss); ok && storeErr != nil {
		return t.storageDown(req, m, storeErr)
	}
	if pu, ok := next.(*statemachine.PartialUpdate); ok {
		next, pairs = t.combine(req, key, pu, pairs)
		t.decide(req, key, next)
	}
	switch st := next.(type) {
	case *statemachine.FromCache:
		closeBody(req)
		return t.fromCache(req, key, st, pairs, false), nil
	case *statemachine.GatewayTimeout:
		closeBody(req)
		closeOthers(pairs, model.PairID{})
		// Neither a hit nor forwarded (RFC 9211): the cache answered.
		return synthetic(req, http.StatusGatewayTimeout, "hishel; detail=only-if-cached"), nil
	case *statemachine.WriteThrough:
		closeOthers(pairs, model.PairID{})
		return t.writeThrough(req, st)
	case *statemachine.NeedRevalidation:
		return t.revalidate(req, key, mreq, st, pairs)
	case *statemachine.CacheMiss:
		if st.Partial != nil {
			return t.partialMiss(req, key, st, pairs)
		}
		closeOthers(pairs, model.PairID{})
		fwd := "uri-miss" // RFC 9211: nothing stored for the URI
		switch {
		case !cached:
			fwd = "method"
		case len(pairs) > 0:
			fwd = "miss" // stored, but none usable (Vary, say)
		}
		if !cached {
			// Nothing to store: no fetch of the Transport's.
			resp, err := t.send(outgoing(ctx, req, st.Request))
			if err != nil {
				return nil, &ForwardError{Fwd: fwd, Err: err}
			}
			t.decide(req, key, st.Next(modelResponse(resp)))
			setCacheStatus(resp.Header, cacheStatus(fwd, resp.StatusCode, false, false, ""))
			return resp, nil
		}
		if !collapse {
			return t.miss(req, key, mreq, st, fwd)
		}
		f, r, lead, err := t.joinFlight(key, req)
		if err != nil {
			closeBody(req)
			return nil, err
		}
		if !lead {
			return f.followerResponse(req, key, mreq, fwd, r)
		}
		go f.fetch(req, mreq, st, fwd)
		return f.leaderResponse(req, r)
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

// send sends r to the origin.
func (t *Transport) send(r *http.Request) (*http.Response, error) {
	return t.next.RoundTrip(r)
}

// outgoing returns the request for the origin, made with ctx: a copy of req
// with mreq's header (on a miss, the caller's own; for a conditional
// request, the state machine's new one), with the credentials and client
// fields the caller sent (mreq's are hashed or dropped, see
// Options.CredentialKey). A RoundTripper must not change the request it is
// given, but some do (adding credentials, say): the copy keeps that from
// the caller's request and from the request header the Transport stores.
// The copy shares req's body, which the origin transport closes.
func outgoing(ctx context.Context, req *http.Request, mreq model.Request) *http.Request {
	out := req.Clone(ctx) // copies req.Header too
	if !sameHeader(mreq.Header, req.Header) {
		out.Header = mreq.Header.Clone()
		restorePrivateFields(out.Header, req.Header)
	}
	out.Body = req.Body
	return out
}

// sameHeader reports whether a and b are the same map.
func sameHeader(a, b http.Header) bool {
	return a != nil && b != nil && reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

// miss sends the request to the origin and stores the answer if it may,
// in a fetch of its own (not collapsed with others).
func (t *Transport) miss(req *http.Request, key string, mreq model.Request, st *statemachine.CacheMiss, fwd string) (*http.Response, error) {
	f, r, err := t.startFlight(key, req)
	if err != nil {
		closeBody(req)
		return nil, err
	}
	go f.fetch(req, mreq, st, fwd)
	return f.leaderResponse(req, r)
}

func modelResponse(resp *http.Response) model.Response {
	h := resp.Header
	if h == nil {
		h = http.Header{}
	}
	return model.Response{Status: resp.StatusCode, Header: h}
}

// store1 acts on a StoreNext for the origin's response resp: a response
// that may be stored is, by a fetch of its own that reads resp's body.
func (t *Transport) store1(req *http.Request, key string, mreq model.Request, sn statemachine.StoreNext, resp *http.Response, fwd string) (*http.Response, error) {
	t.decide(req, key, sn)
	if _, ok := sn.(*statemachine.StoreAndUse); ok {
		f, r, err := t.startFlight(key, req)
		if err == nil {
			go func() {
				defer t.fetches.Done()
				f.begin(req, mreq, sn, resp, fwd)
			}()
			return f.leaderResponse(req, r)
		}
	}
	setCacheStatus(resp.Header, cacheStatus(fwd, resp.StatusCode, false, false, ""))
	return resp, nil
}

// originBody is the origin's response body as storage reads it. It
// remembers its own errors (to tell them from storage's), and stops storage
// once more than limit bytes have passed (limit > 0); the fetch then reads
// on from r.
type originBody struct {
	r      io.ReadCloser
	size   int64 // the body's length, or -1 when unknown
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
// the fetch may read on from the origin (see flight.pump), and closes the
// origin's body itself.
func (o *originBody) Close() error { return nil }

// served builds the response for a stored pair.
func (t *Transport) served(req *http.Request, s statemachine.Served, detail string) *http.Response {
	return t.servedShared(req, s, detail, false)
}

// servedShared is served; with share, the Cache-Status value may be a
// slice that other responses share (see HitHeader).
func (t *Transport) servedShared(req *http.Request, s statemachine.Served, detail string, share bool) *http.Response {
	h := s.Header // a new map of the state machine's, ours to change
	status := "hit"
	if detail != "" {
		status = detail
	}
	ttl := int64(-1)
	if s.Lifetime > 0 {
		ttl = int64((s.Lifetime - s.Age) / time.Second)
	}
	if share && len(h["Cache-Status"]) == 0 {
		h["Cache-Status"] = t.statuses.value(status, ttl)
	} else {
		putCacheStatus(h, cacheStatusEntry(status, ttl))
	}
	resp := &http.Response{
		Status:     statusLine(s.Status),
		StatusCode: s.Status,
		Proto:      "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        h,
		Request:       req,
		ContentLength: -1,
	}
	if v := h["Content-Length"]; len(v) > 0 {
		if cl, err := strconv.ParseInt(v[0], 10, 64); err == nil && cl >= 0 {
			resp.ContentLength = cl
		}
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
func (t *Transport) revalidate(req *http.Request, key string, mreq model.Request, st *statemachine.NeedRevalidation, pairs []model.CompletePair) (*http.Response, error) {
	nominated := map[model.PairID]bool{}
	for _, p := range st.Pairs {
		nominated[p.ID] = true
	}
	for _, p := range pairs {
		if !nominated[p.ID] {
			_ = p.Close()
		}
	}
	resp, err := t.send(outgoing(req.Context(), req, st.Request))
	if err != nil {
		en := st.OnError(err)
		t.decide(req, key, en)
		switch e := en.(type) {
		case *statemachine.ServeStale:
			closeOthers(st.Pairs, e.Pair.ID)
			return t.served(req, e.Served, staleOnErrorStatus(e)), nil
		default:
			closeOthers(st.Pairs, model.PairID{})
			return nil, &ForwardError{Fwd: "stale", Err: err}
		}
	}
	rn := st.Next(modelResponse(resp))
	t.decide(req, key, rn)
	switch n := rn.(type) {
	case *statemachine.NeedToBeUpdated:
		drain(resp)
		t.update(req, key, n.Updates)
		t.remove(req, key, n.Invalidate)
		fc := n.Next()
		closeOthers(st.Pairs, fc.Pair.ID)
		return t.served(req, fc.Served, "fwd=stale; fwd-status="+strconv.Itoa(resp.StatusCode)), nil
	case *statemachine.ServeStale:
		drain(resp)
		closeOthers(st.Pairs, n.Pair.ID)
		return t.served(req, n.Served, "fwd=stale; fwd-status="+strconv.Itoa(resp.StatusCode)+"; detail=stale-if-error"), nil
	case *statemachine.InvalidatePairs:
		closeOthers(st.Pairs, model.PairID{})
		t.remove(req, key, n.PairIDs)
		return t.store1(req, key, mreq, n.Next(), resp, "stale")
	case *statemachine.CacheMiss:
		closeOthers(st.Pairs, model.PairID{})
		drain(resp)
		return t.miss(req, key, mreq, n, "stale")
	case statemachine.StoreNext:
		closeOthers(st.Pairs, model.PairID{})
		return t.store1(req, key, mreq, n, resp, "stale")
	}
	closeOthers(st.Pairs, model.PairID{})
	return resp, nil
}

// revalidateInBackground runs a stale-while-revalidate revalidation once
// per key at a time, in a goroutine that ends with the revalidation and that
// Close waits for.
func (t *Transport) revalidateInBackground(req *http.Request, key string, st *statemachine.NeedRevalidation) {
	t.mu.Lock()
	if t.closed.Load() || t.revals[key] {
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
	fc, ok := t.machine.Next(t.modelRequest(req), pairs).(*statemachine.FromCache)
	return !ok || fc.Stale
}

// refresh carries out a background revalidation: it freshens, replaces or
// keeps the stored pairs, and serves nothing. It never touches the bodies of
// st.Pairs, which belong to the request that was answered.
func (t *Transport) refresh(req *http.Request, key string, st *statemachine.NeedRevalidation) {
	resp, err := t.send(outgoing(req.Context(), req, st.Request))
	if err != nil {
		t.decide(req, key, st.OnError(err))
		return
	}
	mreq := t.modelRequest(req)
	var out *http.Response
	rn := st.Next(modelResponse(resp))
	t.decide(req, key, rn)
	switch n := rn.(type) {
	case *statemachine.NeedToBeUpdated:
		t.update(req, key, n.Updates)
		t.remove(req, key, n.Invalidate)
	case *statemachine.InvalidatePairs:
		// Store the new response first and only then remove the pairs it
		// replaces, so that requests meanwhile always find one of them.
		out, err = t.store1(req, key, mreq, n.Next(), resp, "stale")
		if err == nil {
			_, _ = io.Copy(io.Discard, out.Body)
			_ = out.Body.Close()
		}
		t.remove(req, key, n.PairIDs)
		return
	case statemachine.StoreNext:
		out, err = t.store1(req, key, mreq, n, resp, "stale")
		if err != nil {
			return
		}
	}
	if out == nil {
		out = resp
	}
	_, _ = io.Copy(io.Discard, out.Body) // the fetch stores the new response
	_ = out.Body.Close()
}

// update writes the pairs a 304 freshened. Their stored headers follow
// Options.SetCookie: a 304 may carry Set-Cookie for its own client.
func (t *Transport) update(req *http.Request, key string, updates []model.CompletePair) {
	for _, p := range updates {
		if t.opts.SetCookie != SetCookieStore && len(p.Response.Header["Set-Cookie"]) > 0 {
			p.Response.Header = p.Response.Header.Clone()
			delete(p.Response.Header, "Set-Cookie")
		}
		if _, err := t.store.UpdatePair(req.Context(), p.ID, p); err != nil {
			t.storeFailed(req, key, "update pair", err)
		}
	}
}

// remove removes pairs, logging failures.
func (t *Transport) remove(req *http.Request, key string, ids []model.PairID) {
	for _, id := range ids {
		if err := t.store.Remove(req.Context(), id); err != nil {
			t.storeFailed(req, key, "remove pair", err)
		}
	}
}

// writeThrough sends an unsafe request and invalidates what it affects.
func (t *Transport) writeThrough(req *http.Request, st *statemachine.WriteThrough) (*http.Response, error) {
	resp, err := t.send(req)
	if err != nil {
		return nil, &ForwardError{Fwd: "method", Err: err}
	}
	wn := st.Next(modelResponse(resp))
	t.decide(req, "", wn)
	if inv, ok := wn.(*statemachine.InvalidateURIs); ok {
		t.invalidateTargets(req, inv.Targets)
		if inv.Store != nil {
			return t.storePost(req, inv, resp)
		}
	}
	// RFC 9211: the method's semantics require forwarding.
	setCacheStatus(resp.Header, "fwd=method; fwd-status="+strconv.Itoa(resp.StatusCode))
	return resp, nil
}

// storeFailed logs a failed storage operation at Warn: the key, the
// operation and the error.
func (t *Transport) storeFailed(req *http.Request, key, op string, err error) {
	t.warn(req.Context(), "hishel: storage failed", key, err,
		slog.String("op", op), slog.String("method", req.Method), slog.String("url", req.URL.Redacted()))
}

// warn logs at Warn, to Options.Logger or else slog.Default().
func (t *Transport) warn(ctx context.Context, msg, key string, err error, attrs ...slog.Attr) {
	l := t.opts.Logger
	if l == nil {
		l = slog.Default()
	}
	l.LogAttrs(ctx, slog.LevelWarn, msg, append([]slog.Attr{slog.String("key", key), slog.Any("err", err)}, attrs...)...)
}

// debug logs at Debug to Options.Logger, if set.
func (t *Transport) debug(req *http.Request, key, msg string, attrs ...slog.Attr) {
	if t.opts.Logger != nil {
		t.opts.Logger.LogAttrs(req.Context(), slog.LevelDebug, msg,
			append([]slog.Attr{slog.String("key", key), slog.String("url", req.URL.Redacted())}, attrs...)...)
	}
}

// setCacheStatus sets the Cache-Status field (RFC 9211) for this cache,
// after any entries from caches nearer the origin.
func setCacheStatus(h http.Header, params string) {
	if h != nil {
		putCacheStatus(h, "hishel; "+params)
	}
}

// cacheStatusEntry is this cache's member of the Cache-Status field for
// a response served from storage: status, and the ttl unless it is
// negative.
func cacheStatusEntry(status string, ttl int64) string {
	var buf [64]byte
	entry := append(append(buf[:0], "hishel; "...), status...)
	if ttl >= 0 {
		entry = strconv.AppendInt(append(entry, "; ttl="...), ttl, 10)
	}
	return string(entry)
}

// statusCache holds Cache-Status values for responses served from
// storage that may share them, by their ttl: hits of one stored response
// within a second have the same value, and share one slice of it instead
// of building the string and a slice for each.
type statusCache [64]atomic.Pointer[statusValue]

// statusValue is the Cache-Status value of a response served with status
// and ttl: v, of length and capacity one (an append makes a copy).
type statusValue struct {
	status string
	ttl    int64
	v      [1]string
}

// value returns the Cache-Status value for status and ttl (see
// cacheStatusEntry): the slice of an earlier response with them, or a new
// one that later responses share.
func (c *statusCache) value(status string, ttl int64) []string {
	slot := &c[uint64(ttl)%uint64(len(c))]
	if v := slot.Load(); v != nil && v.ttl == ttl && v.status == status {
		return v.v[:]
	}
	v := &statusValue{status: status, ttl: ttl}
	v.v[0] = cacheStatusEntry(status, ttl)
	slot.Store(v)
	return v.v[:]
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
