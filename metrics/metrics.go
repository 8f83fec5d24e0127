// Package metrics exports what a hishel.Transport does, and what its
// storage holds, as Prometheus metrics and as OpenTelemetry metrics: the
// two things Go services scrape. It lives in a module of its own, so that
// only its users compile the Prometheus and OpenTelemetry libraries.
//
//	m := metrics.New(&metrics.Options{Store: store})
//	opts := &hishel.Options{Storage: store}
//	m.Instrument(opts)                      // sets opts.Trace
//	tr, _ := hishel.NewTransport(opts)
//	prometheus.MustRegister(m)              // a prometheus.Collector
//	m.RegisterOTel(otel.Meter("hishel"))    // and/or OpenTelemetry instruments
//
// # What it measures
//
// From the Transport's Trace (see hishel.Trace):
//
//	hishel_responses_total{outcome}        responses by outcome: hit, stale, revalidated, miss, pass, error
//	hishel_revalidations_total             conditional requests for stored responses sent to the origin
//	hishel_stores_total                    response bodies stored completely
//	hishel_store_failures_total            response bodies whose storing did not complete
//	hishel_stored_bytes_total              response body bytes stored (completely stored bodies)
//	hishel_lookup_duration_seconds         storage lookups (GetPairs, heads only): histogram
//	hishel_store_duration_seconds          storing a body, start to end (origin and reader included): histogram
//
// and, at each collection, from the store's Stats:
//
//	hishel_storage_pairs                   live complete pairs
//	hishel_storage_incomplete_pairs        pairs still being stored
//	hishel_storage_deleted_pairs           soft-deleted pairs awaiting reclamation
//	hishel_storage_bytes                   bytes stored
//	hishel_storage_evictions_total         live pairs the store evicted to keep within MaxBytes, MaxPairs, MaxVariants
//
// Evictions are model.Stats.Evicted: a counter the store keeps from the
// moment it is opened (per process: on a storage several processes share,
// each counts the pairs it evicted). It counts complete pairs removed for
// a bound, least recently used first: beyond MaxBytes or MaxPairs, and
// the variants beyond MaxVariants under one key. Pairs the sweep removes
// because they expired, were deleted long enough ago, were abandoned
// incomplete or were found damaged, and soft-deleted pairs reclaimed
// early to fit MaxBytes, are not evictions.
//
// OpenTelemetry gets the same, named hishel.responses, hishel.revalidations,
// hishel.stores, hishel.store.failures, hishel.stored.bytes,
// hishel.lookup.duration, hishel.store.duration, hishel.storage.pairs,
// hishel.storage.incomplete_pairs, hishel.storage.deleted_pairs,
// hishel.storage.bytes and hishel.storage.evictions, with the outcome as
// the attribute "outcome".
//
// # Concurrency
//
// A Metrics is safe for concurrent use; its hooks add to atomic counters
// and never block. It owns no goroutine.
package metrics

import (
	"context"
	"math"
	"slices"
	"sync/atomic"
	"time"

	"github.com/hishel-go/hishel"
	"github.com/hishel-go/hishel/model"
)

// DefaultBuckets are the latency histograms' bucket upper bounds, in
// seconds: from 50µs (a hit from memory) to 10s (a slow origin).
var DefaultBuckets = []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// StatsReader is what Metrics reads the storage gauges and the evictions
// counter from: the Stats method of every store of package cache
// (cache.Store).
type StatsReader interface {
	Stats(ctx context.Context) (model.Stats, error)
}

// Options configure a Metrics. A nil *Options means the defaults.
type Options struct {
	// Store, if not nil, is read with Stats at each collection for the
	// storage gauges and the evictions counter.
	Store StatsReader
	// Buckets are the latency histograms' bucket upper bounds, in
	// seconds, increasing. Default DefaultBuckets.
	Buckets []float64
	// StatsTimeout bounds a Stats call made for a Prometheus collection
	// (an OpenTelemetry collection passes its own context). Default 5s.
	StatsTimeout time.Duration
}

// outcomes are the Transport's outcomes, in label order.
var outcomes = []hishel.Outcome{hishel.OutcomeHit, hishel.OutcomeStale, hishel.OutcomeRevalidated,
	hishel.OutcomeMiss, hishel.OutcomePass, hishel.OutcomeError}

// Metrics counts what a Transport does. Feed it with Instrument or Trace;
// export it with Prometheus (it is a prometheus.Collector) or
// OpenTelemetry (RegisterOTel), or both.
type Metrics struct {
	opts Options

	responses     [int(hishel.OutcomeError) + 1]atomic.Uint64 // by Outcome
	revalidations atomic.Uint64
	stores        atomic.Uint64
	storeFailures atomic.Uint64
	storedBytes   atomic.Uint64
	statsErrors   atomic.Uint64
	lookup, store histogram

	otel atomic.Pointer[otelInstruments] // set by RegisterOTel
}

// New returns a Metrics with every counter at zero.
func New(opts *Options) *Metrics {
	var o Options
	if opts != nil {
		o = *opts
	}
	if len(o.Buckets) == 0 {
		o.Buckets = DefaultBuckets
	}
	o.Buckets = slices.Clone(o.Buckets)
	if !slices.IsSorted(o.Buckets) {
		slices.Sort(o.Buckets)
	}
	o.Buckets = slices.Compact(o.Buckets)
	if o.StatsTimeout <= 0 {
		o.StatsTimeout = 5 * time.Second
	}
	return &Metrics{opts: o, lookup: newHistogram(o.Buckets), store: newHistogram(o.Buckets)}
}

// Trace returns the hooks that feed m, for hishel.Options.Trace.
func (m *Metrics) Trace() *hishel.Trace {
	return &hishel.Trace{Lookup: m.onLookup, Stored: m.onStored, Response: m.onResponse}
}

// Instrument sets opts.Trace to feed m, calling the hooks opts.Trace
// already had as well.
func (m *Metrics) Instrument(opts *hishel.Options) {
	opts.Trace = Chain(opts.Trace, m.Trace())
}

// Chain returns a Trace that calls the hooks of a, then those of b; nil
// Traces and nil hooks are skipped.
func Chain(a, b *hishel.Trace) *hishel.Trace {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	}
	return &hishel.Trace{
		Lookup:   chain(a.Lookup, b.Lookup),
		Stored:   chain(a.Stored, b.Stored),
		Response: chain(a.Response, b.Response),
	}
}

func chain[I any](f, g func(context.Context, I)) func(context.Context, I) {
	switch {
	case f == nil:
		return g
	case g == nil:
		return f
	}
	return func(ctx context.Context, i I) { f(ctx, i); g(ctx, i) }
}

func (m *Metrics) onLookup(ctx context.Context, i hishel.LookupInfo) {
	s := i.Duration.Seconds()
	m.lookup.observe(s)
	if o := m.otel.Load(); o != nil {
		o.lookup.Record(ctx, s)
	}
}

func (m *Metrics) onStored(ctx context.Context, i hishel.StoreInfo) {
	if i.Err != nil {
		m.storeFailures.Add(1)
	} else {
		m.stores.Add(1)
		m.storedBytes.Add(uint64(max(i.Bytes, 0)))
	}
	s := i.Duration.Seconds()
	m.store.observe(s)
	if o := m.otel.Load(); o != nil {
		o.store.Record(ctx, s)
	}
}

func (m *Metrics) onResponse(_ context.Context, i hishel.ResponseInfo) {
	if int(i.Outcome) < len(m.responses) {
		m.responses[i.Outcome].Add(1)
	}
	if i.Revalidation {
		m.revalidations.Add(1)
	}
}

// Snapshot is the counters of a Metrics at one moment.
type Snapshot struct {
	// Responses counts responses by outcome.
	Responses     map[hishel.Outcome]uint64
	Revalidations uint64
	Stores        uint64
	StoreFailures uint64
	StoredBytes   uint64
	// Lookups and StoreTimes count the latency observations.
	Lookups, StoreTimes uint64
}

// Snapshot returns m's counters now.
func (m *Metrics) Snapshot() Snapshot {
	s := Snapshot{Responses: map[hishel.Outcome]uint64{}, Revalidations: m.revalidations.Load(),
		Stores: m.stores.Load(), StoreFailures: m.storeFailures.Load(), StoredBytes: m.storedBytes.Load(),
		Lookups: m.lookup.count.Load(), StoreTimes: m.store.count.Load()}
	for _, o := range outcomes {
		s.Responses[o] = m.responses[o].Load()
	}
	return s
}

// histogram is a cumulative histogram with fixed buckets, safe for
// concurrent use without a lock.
type histogram struct {
	bounds []float64
	counts []atomic.Uint64 // per bucket (not cumulative); the last is +Inf
	count  atomic.Uint64
	sum    atomic.Uint64 // float64 bits
}

func newHistogram(bounds []float64) histogram {
	return histogram{bounds: bounds, counts: make([]atomic.Uint64, len(bounds)+1)}
}

func (h *histogram) observe(v float64) {
	i, _ := slices.BinarySearch(h.bounds, v) // the first bound >= v
	h.counts[i].Add(1)
	for {
		old := h.sum.Load()
		if h.sum.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			break
		}
	}
	h.count.Add(1)
}

// cumulative returns the count, the sum and the cumulative bucket counts
// by upper bound, as Prometheus wants them.
func (h *histogram) cumulative() (uint64, float64, map[float64]uint64) {
	buckets := make(map[float64]uint64, len(h.bounds))
	var n uint64
	for i, b := range h.bounds {
		n += h.counts[i].Load()
		buckets[b] = n
	}
	n += h.counts[len(h.bounds)].Load()
	return n, math.Float64frombits(h.sum.Load()), buckets
}
