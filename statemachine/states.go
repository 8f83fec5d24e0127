package statemachine

import (
	"net/http"
	"time"

	"github.com/hishel-go/hishel/model"
)

// State is implemented by every state the machine can reach. Why says why
// it was reached. The set of states is closed: only this package
// implements State and the interfaces below.
type State interface {
	Why() Reason
	isState()
}

// IdleNext is a state that can follow IdleClient: *CacheMiss, *FromCache,
// *NeedRevalidation, *GatewayTimeout, *WriteThrough or *PartialUpdate.
type IdleNext interface {
	State
	isIdleNext()
}

// StoreNext is a state that says what to do with a full response from the
// origin: *StoreAndUse or *CouldNotBeStored. Both can also follow
// NeedRevalidation, so a StoreNext is a RevalidationNext.
type StoreNext interface {
	RevalidationNext
	isStoreNext()
}

// RevalidationNext is a state that can follow NeedRevalidation once the
// origin has answered: *NeedToBeUpdated, *InvalidatePairs, *CacheMiss,
// *StoreAndUse, *CouldNotBeStored or *ServeStale.
type RevalidationNext interface {
	State
	isRevalidationNext()
}

// ErrorNext is a state that can follow NeedRevalidation when the origin
// could not be reached: *ServeStale or *GatewayTimeout.
type ErrorNext interface {
	State
	isErrorNext()
}

// WriteThroughNext is a state that can follow WriteThrough: *InvalidateURIs
// or *CouldNotBeStored.
type WriteThroughNext interface {
	State
	isWriteThroughNext()
}

// IdleClient is the starting state: a cache holding a request and the
// stored pairs for its key. The zero value is a private cache with default
// Options. An IdleClient is never modified, so one value may serve any
// number of goroutines.
type IdleClient struct {
	Options *Options
}

// CacheMiss says that no stored pair can be used, even after validation:
// send Request to the origin and pass its response to Next.
type CacheMiss struct {
	// Request is the request to send: the caller's request, unchanged,
	// unless Partial is set.
	Request model.Request
	// Partial, when not nil, says that stored partial responses hold part
	// of the range the caller asked for, and that Request asks the origin
	// only for the rest (RFC 9111 §3.3): pass the origin's response to
	// Join to learn how to answer the caller.
	Partial *PartialMiss
	Reason  Reason
	opts    *Options
	sentAt  time.Time
	// original is the caller's request, when Partial is set.
	original model.Request
}

// StoreAndUse says that the origin's response may be stored: store
// Response (under the request's key) and use it to answer the request.
type StoreAndUse struct {
	// Response is the origin's response with the header to store and to
	// send: hop-by-hop and Connection-listed fields removed, private=
	// fields removed by a shared cache, and a Date added when the origin
	// sent none (RFC 9111 §3.1, §5.2.2.7; RFC 9110 §6.6.1). Body is the
	// origin's body, unread.
	Response model.Response
	// TTL is how long storage should keep the pair: the request's
	// Options.TTL, so zero means the storage default. The state machine
	// does not shorten a pair's storage life on its own, since a stale
	// pair can still be revalidated or served stale.
	TTL time.Duration
	// Age is the response's age as it arrived: its corrected initial age
	// (RFC 9111 §4.2.3), from its Date and Age fields and from the time
	// the origin took to answer. When it is a second or more, send the
	// response with an Age field of that many whole seconds (Response's
	// header keeps the origin's Age: the stored pair's age is computed
	// from it). When the origin took a second or more, Response's header
	// also records the request and response times (see the package
	// documentation on times) so that later hits count the delay.
	Age time.Duration
	// MaxTTL, if positive, is how long the stored pair can be of any use
	// (model.RequestOptions.MaxTTL): a response without a validator can be
	// neither revalidated nor freshened, so once stale beyond its
	// stale-while-revalidate and stale-if-error windows (its freshness
	// lifetime less its age, plus the longer window) it is never served
	// again. Zero when it has a validator, or when AllowStale (or
	// ForceCache) may serve it however stale.
	MaxTTL time.Duration
	Reason Reason
}

// CouldNotBeStored says that the origin's response must not (or need not)
// be stored: use Response as it is and store nothing.
type CouldNotBeStored struct {
	Response model.Response
	Reason   Reason
}

// Served is a response built from a stored pair: what FromCache and
// ServeStale send.
type Served struct {
	// Pair is the stored pair whose response is used; its body is the
	// content to send (or the part of it Range names).
	Pair model.CompletePair
	// Status is the status to send: the stored status, 206 for a byte
	// range, 304 when the request's own conditions matched, or 416 for
	// an unsatisfiable range.
	Status int
	// Header is the header to send: the stored fields without hop-by-hop
	// fields, without the no-cache=fields (when not validated), with a
	// generated Age (RFC 9111 §5.1) and, for 206 and 416, the
	// Content-Range and Content-Length of the part. It is a new map, or,
	// with Options.ReuseHeaders, Pair.Response.Header itself, changed so.
	Header http.Header
	// Range is the part of the stored body to send for a 206; nil means
	// the whole body, or none for 304, 416 and a HEAD request.
	Range *ByteRange
	// Age is the stored response's current age and Lifetime its freshness
	// lifetime (RFC 9111 §4.2), for Cache-Status and logging.
	Age, Lifetime time.Duration
}

// FromCache says to answer the request from a stored pair, without
// contacting the origin (except for a background revalidation).
type FromCache struct {
	Served
	// Stale reports that the response is stale and served anyway, as
	// max-stale or stale-while-revalidate allow.
	Stale bool
	// Revalidate, when not nil, asks the caller to validate the stored
	// response in the background (stale-while-revalidate, RFC 5861 §3):
	// send Revalidate.Request and handle its Next like any other
	// revalidation, without waiting for it to answer this request.
	Revalidate *NeedRevalidation
	Reason     Reason
}

// NeedRevalidation says that stored pairs may be used once the origin
// validates them: send Request (a conditional request) and pass the
// origin's response to Next, or the failure to reach it to OnError.
type NeedRevalidation struct {
	// Request is the caller's request with a new header: If-None-Match
	// with the entity-tags of the stored pairs and If-Modified-Since with
	// the Last-Modified of the newest, replacing any the caller sent. It
	// is unconditional when no stored pair has a validator.
	Request model.Request
	// Pairs are the stored pairs the request nominates, newest first.
	Pairs  []model.CompletePair
	Reason Reason

	opts     *Options
	original model.Request
	sentAt   time.Time
}

// NeedToBeUpdated says that the origin validated stored pairs with a 304,
// or a HEAD response described them: write each of Updates back
// (storage's UpdatePair), remove the pairs of Invalidate, then call Next
// to answer the request.
type NeedToBeUpdated struct {
	// Updates are the stored pairs the 304 identifies (RFC 9111 §4.3.4),
	// or the GET responses a HEAD response matches (§4.3.5), with their
	// freshened Response.Header; nothing else is changed.
	Updates []model.CompletePair
	// Invalidate are the stored pairs a HEAD response shows out of date
	// (§4.3.5); it is empty after a 304.
	Invalidate []model.PairID
	Reason     Reason
	next       *FromCache
}

// InvalidatePairs says that stored pairs are superseded by a full
// response: remove them, then call Next to learn whether to store the new
// response.
type InvalidatePairs struct {
	PairIDs []model.PairID
	Reason  Reason
	next    StoreNext
}

// ServeStale says to answer from a stale stored pair because the origin
// failed (a 500, 502, 503 or 504, or no answer at all) and staleness is
// allowed: by stale-if-error (RFC 5861 §4), max-stale, or AllowStale when
// the origin is unreachable (RFC 9111 §4.2.4).
type ServeStale struct {
	Served
	// Err is the error passed to OnError, or nil after an error status.
	Err error
	// Disconnected reports that nothing but AllowStale allows the stale
	// response: the cache serves it because it is disconnected (RFC 9111
	// §4.2.4), not because the client or origin allowed it.
	Disconnected bool
	Reason       Reason
}

// GatewayTimeout says to answer with a 504 without a stored response:
// only-if-cached found nothing usable (RFC 9111 §5.2.1.7), or the origin
// failed and no stored response may be served in its place (§4.2.4,
// §5.2.2.2). A client cache may return Err to its caller instead.
type GatewayTimeout struct {
	// Status is always 504.
	Status int
	// Err is the error passed to OnError, if any.
	Err    error
	Reason Reason
}

// WriteThrough says that the request's method is unsafe and not cached:
// send Request to the origin and pass its response to Next to learn what
// to invalidate (RFC 9111 §4, §4.4).
type WriteThrough struct {
	Request model.Request
	Reason  Reason
	opts    *Options
	sentAt  time.Time
}

// InvalidateURIs says to invalidate (remove) every stored pair for
// Targets, then use Response as it is (RFC 9111 §4.4) or, when Store is
// not nil, store it first.
type InvalidateURIs struct {
	Targets  []Target
	Response model.Response
	// Store, when not nil, says that the response to a POST may answer
	// later GET requests for its target URI (RFC 9110 §9.3.3): once the
	// targets are invalidated, store Store.Response as the response to
	// StoreRequest, a GET of that URI, and use it.
	Store        *StoreAndUse
	StoreRequest model.Request
	Reason       Reason
}

// Target names stored pairs to invalidate: those of requests with Method
// for the absolute URL. The caller derives the cache key from them.
type Target struct {
	Method string
	URL    string
}

// Why methods.

func (s *CacheMiss) Why() Reason        { return s.Reason }
func (s *StoreAndUse) Why() Reason      { return s.Reason }
func (s *CouldNotBeStored) Why() Reason { return s.Reason }
func (s *FromCache) Why() Reason        { return s.Reason }
func (s *NeedRevalidation) Why() Reason { return s.Reason }
func (s *NeedToBeUpdated) Why() Reason  { return s.Reason }
func (s *InvalidatePairs) Why() Reason  { return s.Reason }
func (s *ServeStale) Why() Reason       { return s.Reason }
func (s *GatewayTimeout) Why() Reason   { return s.Reason }
func (s *WriteThrough) Why() Reason     { return s.Reason }
func (s *InvalidateURIs) Why() Reason   { return s.Reason }

func (*CacheMiss) isState()        {}
func (*StoreAndUse) isState()      {}
func (*CouldNotBeStored) isState() {}
func (*FromCache) isState()        {}
func (*NeedRevalidation) isState() {}
func (*NeedToBeUpdated) isState()  {}
func (*InvalidatePairs) isState()  {}
func (*ServeStale) isState()       {}
func (*GatewayTimeout) isState()   {}
func (*WriteThrough) isState()     {}
func (*InvalidateURIs) isState()   {}

func (*CacheMiss) isIdleNext()        {}
func (*FromCache) isIdleNext()        {}
func (*NeedRevalidation) isIdleNext() {}
func (*GatewayTimeout) isIdleNext()   {}
func (*WriteThrough) isIdleNext()     {}

func (*StoreAndUse) isStoreNext()      {}
func (*CouldNotBeStored) isStoreNext() {}

func (*NeedToBeUpdated) isRevalidationNext()  {}
func (*InvalidatePairs) isRevalidationNext()  {}
func (*CacheMiss) isRevalidationNext()        {}
func (*StoreAndUse) isRevalidationNext()      {}
func (*CouldNotBeStored) isRevalidationNext() {}
func (*ServeStale) isRevalidationNext()       {}

func (*ServeStale) isErrorNext()     {}
func (*GatewayTimeout) isErrorNext() {}

func (*InvalidateURIs) isWriteThroughNext()   {}
func (*CouldNotBeStored) isWriteThroughNext() {}

// Next returns the state that follows the stored pairs' update: the
// request answered from the freshened pair.
func (s *NeedToBeUpdated) Next() *FromCache { return s.next }

// Next returns the state that follows the removal: whether to store the
// new response.
func (s *InvalidatePairs) Next() StoreNext { return s.next }

// Next says what to do with the origin's response to a cache miss: store
// it or not (RFC 9111 §3). Call it as soon as the response head arrives:
// the clock's reading then is the response time, and the time IdleClient
// returned the CacheMiss the request time (RFC 9111 §4.2.3). It reads
// only resp's status and header.
func (s *CacheMiss) Next(resp model.Response) StoreNext {
	return s.opts.store(s.Request, resp, s.sentAt, s.opts.now())
}

// Next says what to invalidate after the origin answered an unsafe
// request: the target URI and same-origin Location and Content-Location,
// for a non-error (2xx or 3xx) response (RFC 9111 §4.4); nothing otherwise.
// A 200 to a POST with explicit freshness whose Content-Location is the
// target URI is also to be stored for later GETs (RFC 9110 §9.3.3). Call
// it as soon as the response head arrives. It reads only resp's status
// and header.
func (s *WriteThrough) Next(resp model.Response) WriteThroughNext {
	if resp.Status >= 200 && resp.Status < 400 {
		inv := &InvalidateURIs{
			Targets:  InvalidationTargets(s.Request, resp, s.opts),
			Response: resp,
			Reason:   why("non-error response to an unsafe method", "RFC 9111 §4.4"),
		}
		inv.Store, inv.StoreRequest = s.opts.reusePost(s.Request, resp, s.sentAt, s.opts.now())
		return inv
	}
	return &CouldNotBeStored{
		Response: resp,
		Reason:   why("error response to an unsafe method invalidates nothing", "RFC 9111 §4.4"),
	}
}

// miss builds a CacheMiss, sent now.
func (o *Options) miss(req model.Request, r Reason) *CacheMiss {
	return &CacheMiss{Request: req, Reason: r, opts: o, sentAt: o.now()}
}
