package hishel

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hishel-go/hishel/model"
)

// Trace holds functions that a Transport calls as it works, for metrics
// and tracing, in the manner of net/http/httptrace.ClientTrace: any field
// may be nil, and a nil Options.Trace (the default) costs nothing. The
// functions are called from the goroutines doing the work, concurrently
// (a stored body ends in the goroutine of its reader), with the request's
// context; they must be quick and must not block. Package
// github.com/hishel-go/hishel/metrics turns them into Prometheus and
// OpenTelemetry metrics.
//
// Options.OnDecision reports what the state machine decided; Trace reports
// what came of it: the lookups, the stores and each response's outcome.
type Trace struct {
	// Lookup is called after every storage lookup of a key (GetPairs), on
	// the request path and for background revalidations.
	Lookup func(context.Context, LookupInfo)
	// Stored is called once for every response body the Transport set out
	// to store, when the body ends: stored completely, or not.
	Stored func(context.Context, StoreInfo)
	// Response is called once for every RoundTrip, when it returns.
	Response func(context.Context, ResponseInfo)
}

// LookupInfo describes a storage lookup.
type LookupInfo struct {
	// Key is the cache key looked up.
	Key string
	// Pairs is the number of stored pairs found under it.
	Pairs int
	// Duration is how long the lookup took (heads only; bodies are read
	// as they are served).
	Duration time.Duration
	// Err is the storage's error, if the lookup failed.
	Err error
}

// StoreInfo describes a response body the Transport stored, or tried to.
type StoreInfo struct {
	// Key is the cache key the pair is stored under.
	Key string
	// Bytes is the number of response body bytes that went into storage.
	Bytes int64
	// Duration is the time from the start of storing to the end of the
	// body: it includes the time the origin and the reader took.
	Duration time.Duration
	// Err is nil when the pair was stored; otherwise why it was not: the
	// storage's error, the origin's, errors.Is model.ErrAborted for a
	// body closed before its end, or a body larger than MaxBodySize.
	Err error
}

// Outcome is what a Transport answered a request with, as its
// Cache-Status field says (RFC 9211).
type Outcome uint8

const (
	// OutcomeHit: a fresh stored response; the origin was not contacted.
	OutcomeHit Outcome = iota + 1
	// OutcomeStale: a stale stored response (stale-while-revalidate,
	// stale-if-error, or the origin could not be reached).
	OutcomeStale
	// OutcomeRevalidated: the origin confirmed a stored response (304),
	// which was served.
	OutcomeRevalidated
	// OutcomeMiss: the origin's response, for a cacheable request (stored
	// or not, and also when a revalidation brought a new response).
	OutcomeMiss
	// OutcomePass: the origin's response to a request the cache does not
	// answer (an unsafe method, a request that could not be keyed, one
	// a URL rule keeps from the cache: Cache-Status fwd=method or
	// fwd=bypass).
	OutcomePass
	// OutcomeError: no response; RoundTrip returned an error.
	OutcomeError
)

// String returns the outcome's lower-case name, as metrics label it.
func (o Outcome) String() string {
	switch o {
	case OutcomeHit:
		return "hit"
	case OutcomeStale:
		return "stale"
	case OutcomeRevalidated:
		return "revalidated"
	case OutcomeMiss:
		return "miss"
	case OutcomePass:
		return "pass"
	case OutcomeError:
		return "error"
	}
	return "Outcome(" + strconv.Itoa(int(o)) + ")"
}

// ResponseInfo describes what a RoundTrip returned.
type ResponseInfo struct {
	Request *http.Request
	Outcome Outcome
	// Revalidation reports whether a request for a stored response went
	// to the origin (Cache-Status fwd=stale):
	// with OutcomeRevalidated, OutcomeMiss or, when the origin failed or
	// could not be reached, OutcomeStale.
	Revalidation bool
	// Stored reports whether the response is being stored as it is read
	// (Cache-Status "stored"); Trace.Stored reports the end.
	Stored bool
	// Status is the response's status code; zero with OutcomeError.
	Status int
	// Duration is the time RoundTrip took: to the response's head, not
	// its body.
	Duration time.Duration
	Err      error
}

// traceResponse reports what RoundTrip returned to the Response hook.
func (t *Transport) traceResponse(req *http.Request, start time.Time, resp *http.Response, err error) {
	info := ResponseInfo{Request: req, Duration: time.Since(start), Err: err, Outcome: OutcomeError}
	if resp != nil {
		info.Status = resp.StatusCode
		info.Outcome, info.Revalidation, info.Stored = outcomeOf(resp.Header)
	}
	t.opts.Trace.Response(req.Context(), info)
}

// outcomeOf reads the Transport's own Cache-Status entry (the last).
func outcomeOf(h http.Header) (o Outcome, revalidation, stored bool) {
	cs := h["Cache-Status"]
	if len(cs) == 0 {
		return OutcomePass, false, false
	}
	entry := cs[len(cs)-1]
	var hit bool
	var fwd, fwdStatus, detail string
	for i, param := range strings.Split(entry, ";") {
		param = strings.TrimSpace(param)
		if i == 0 {
			continue // the cache's name
		}
		name, value, _ := strings.Cut(param, "=")
		switch name {
		case "hit":
			hit = true
		case "fwd":
			fwd = value
		case "detail":
			detail = value
		case "fwd-status":
			fwdStatus = value
		case "stored":
			stored = true
		}
	}
	// A stored response went to the origin for validation: fwd=stale
	// (RFC 9211), answered with a 304 (revalidated), a new response (a
	// miss), an error or nothing (stale-if-error, stale-if-disconnected).
	revalidation = fwd == "stale"
	switch {
	case hit && strings.HasPrefix(detail, "stale"), revalidation && strings.HasPrefix(detail, "stale"):
		return OutcomeStale, revalidation, stored
	case hit:
		return OutcomeHit, revalidation, stored
	case revalidation && fwdStatus == "304":
		return OutcomeRevalidated, revalidation, stored
	case fwd == "method" || fwd == "bypass":
		// An unsafe or uncached method, a request without a key or with
		// a body too large to key on, a URL rule's bypass.
		return OutcomePass, revalidation, stored
	}
	return OutcomeMiss, revalidation, stored
}

// tracedStorage reports a Transport's lookups and stores to its Trace.
// It is the Transport's store only when Options.Trace asks for them.
type tracedStorage struct {
	Storage
	trace *Trace
}

// traceStorage returns s, traced when tr has a Lookup or Stored hook.
func traceStorage(s Storage, tr *Trace) Storage {
	if tr == nil || tr.Lookup == nil && tr.Stored == nil {
		return s
	}
	return &tracedStorage{Storage: s, trace: tr}
}

func (s *tracedStorage) GetPairs(ctx context.Context, key string) ([]model.CompletePair, error) {
	if s.trace.Lookup == nil {
		return s.Storage.GetPairs(ctx, key)
	}
	start := time.Now()
	ps, err := s.Storage.GetPairs(ctx, key)
	s.trace.Lookup(ctx, LookupInfo{Key: key, Pairs: len(ps), Duration: time.Since(start), Err: err})
	return ps, err
}

func (s *tracedStorage) AddResponse(ctx context.Context, id model.PairID, resp model.Response, key string) (model.CompletePair, error) {
	if s.trace.Stored == nil {
		return s.Storage.AddResponse(ctx, id, resp, key)
	}
	start := time.Now()
	cp, err := s.Storage.AddResponse(ctx, id, resp, key)
	if err != nil {
		s.trace.Stored(ctx, StoreInfo{Key: key, Duration: time.Since(start), Err: err})
		return cp, err
	}
	ts := &tracedStore{src: cp.Response.Body, ctx: ctx, key: key, start: start, hook: s.trace.Stored}
	cp.Response.Body = model.NewChunkBody(ts, ts)
	return cp, nil
}

// tracedStore is a response body being stored, which reports its end.
type tracedStore struct {
	src   *model.Body
	ctx   context.Context
	key   string
	start time.Time
	hook  func(context.Context, StoreInfo)

	mu    sync.Mutex
	n     int64
	ended bool
}

func (b *tracedStore) NextChunk() ([]byte, error) {
	c, err := b.src.NextChunk()
	b.passed(len(c), err)
	return c, err
}

func (b *tracedStore) Read(p []byte) (int, error) {
	n, err := b.src.Read(p)
	b.passed(n, err)
	return n, err
}

func (b *tracedStore) passed(n int, err error) {
	b.mu.Lock()
	b.n += int64(n)
	b.mu.Unlock()
	switch {
	case err == io.EOF:
		b.end(nil)
	case err != nil:
		b.end(err)
	}
}

// end reports the body's end, once.
func (b *tracedStore) end(err error) {
	b.mu.Lock()
	if b.ended {
		b.mu.Unlock()
		return
	}
	b.ended = true
	info := StoreInfo{Key: b.key, Bytes: b.n, Duration: time.Since(b.start), Err: err}
	b.mu.Unlock()
	b.hook(b.ctx, info)
}

func (b *tracedStore) Close() error {
	err := b.src.Close()
	b.end(fmt.Errorf("hishel: response body closed before its end: %w", model.ErrAborted))
	return err
}
