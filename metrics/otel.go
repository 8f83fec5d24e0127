package metrics

import (
	"context"
	"errors"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// otelInstruments are the synchronous OpenTelemetry instruments, recorded
// as events happen (histograms have no asynchronous kind).
type otelInstruments struct {
	lookup, store metric.Float64Histogram
}

// RegisterOTel creates m's instruments with meter (see the package
// documentation for their names) and registers the callback that reports
// the counters and, with Options.Store, the storage gauges at each
// collection. The latency histograms are recorded from then on. Call it
// once per Metrics; Unregister the returned Registration to stop the
// callback.
func (m *Metrics) RegisterOTel(meter metric.Meter) (metric.Registration, error) {
	if meter == nil {
		return nil, errors.New("hishel metrics: RegisterOTel: nil meter")
	}
	var errs []error
	counter := func(name, unit, desc string) metric.Int64ObservableCounter {
		c, err := meter.Int64ObservableCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	gauge := func(name, unit, desc string) metric.Int64ObservableGauge {
		g, err := meter.Int64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return g
	}
	histogram := func(name, desc string) metric.Float64Histogram {
		h, err := meter.Float64Histogram(name, metric.WithUnit("s"), metric.WithDescription(desc),
			metric.WithExplicitBucketBoundaries(m.opts.Buckets...))
		errs = append(errs, err)
		return h
	}
	responses := counter("hishel.responses", "{response}", "Responses of the hishel Transport by outcome.")
	revalidations := counter("hishel.revalidations", "{request}", "Conditional requests for stored responses sent to the origin.")
	stores := counter("hishel.stores", "{body}", "Response bodies stored completely.")
	failures := counter("hishel.store.failures", "{body}", "Response bodies whose storing did not complete.")
	bytes := counter("hishel.stored.bytes", "By", "Response body bytes of completely stored bodies.")
	inst := &otelInstruments{
		lookup: histogram("hishel.lookup.duration", "Storage lookups of a cache key (heads only)."),
		store:  histogram("hishel.store.duration", "Storing a response body, from its start to its end."),
	}
	observables := []metric.Observable{responses, revalidations, stores, failures, bytes}
	var pairs, incomplete, deleted, stored metric.Int64ObservableGauge
	var evictions metric.Int64ObservableCounter
	if m.opts.Store != nil {
		pairs = gauge("hishel.storage.pairs", "{pair}", "Live complete pairs in the storage.")
		incomplete = gauge("hishel.storage.incomplete_pairs", "{pair}", "Pairs still being stored.")
		deleted = gauge("hishel.storage.deleted_pairs", "{pair}", "Soft-deleted pairs awaiting reclamation.")
		stored = gauge("hishel.storage.bytes", "By", "Bytes stored.")
		evictions = counter("hishel.storage.evictions", "{pair}",
			"Live pairs the store evicted since it was opened to keep within MaxBytes, MaxPairs and MaxVariants.")
		observables = append(observables, pairs, incomplete, deleted, stored, evictions)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("hishel metrics: RegisterOTel: %w", err)
	}
	attrs := make([]metric.ObserveOption, len(m.responses))
	for _, o := range outcomes {
		attrs[o] = metric.WithAttributes(attribute.String("outcome", o.String()))
	}
	reg, err := meter.RegisterCallback(func(ctx context.Context, obs metric.Observer) error {
		for _, o := range outcomes {
			obs.ObserveInt64(responses, int64(m.responses[o].Load()), attrs[o])
		}
		obs.ObserveInt64(revalidations, int64(m.revalidations.Load()))
		obs.ObserveInt64(stores, int64(m.stores.Load()))
		obs.ObserveInt64(failures, int64(m.storeFailures.Load()))
		obs.ObserveInt64(bytes, int64(m.storedBytes.Load()))
		if m.opts.Store == nil {
			return nil
		}
		st, err := m.opts.Store.Stats(ctx)
		if err != nil {
			return fmt.Errorf("hishel metrics: storage stats: %w", err)
		}
		obs.ObserveInt64(pairs, int64(st.Pairs))
		obs.ObserveInt64(incomplete, int64(st.Incomplete))
		obs.ObserveInt64(deleted, int64(st.Deleted))
		obs.ObserveInt64(stored, st.Bytes)
		obs.ObserveInt64(evictions, st.Evicted)
		return nil
	}, observables...)
	if err != nil {
		return nil, fmt.Errorf("hishel metrics: RegisterOTel: %w", err)
	}
	m.otel.Store(inst)
	return reg, nil
}
