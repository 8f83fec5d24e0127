package metrics

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
)

// Prometheus descriptions of the metrics (see the package documentation).
var (
	descResponses = prometheus.NewDesc("hishel_responses_total",
		"Responses of the hishel Transport by outcome: hit, stale, revalidated, miss, pass, error.", []string{"outcome"}, nil)
	descRevalidations = prometheus.NewDesc("hishel_revalidations_total",
		"Conditional requests for stored responses sent to the origin.", nil, nil)
	descStores = prometheus.NewDesc("hishel_stores_total",
		"Response bodies stored completely.", nil, nil)
	descStoreFailures = prometheus.NewDesc("hishel_store_failures_total",
		"Response bodies whose storing did not complete (storage or origin failure, too large, closed early).", nil, nil)
	descStoredBytes = prometheus.NewDesc("hishel_stored_bytes_total",
		"Response body bytes of completely stored bodies.", nil, nil)
	descLookup = prometheus.NewDesc("hishel_lookup_duration_seconds",
		"Storage lookups of a cache key (heads only).", nil, nil)
	descStore = prometheus.NewDesc("hishel_store_duration_seconds",
		"Storing a response body, from its start to its end (the origin and the reader included).", nil, nil)
	descPairs = prometheus.NewDesc("hishel_storage_pairs",
		"Live complete pairs in the storage.", nil, nil)
	descIncomplete = prometheus.NewDesc("hishel_storage_incomplete_pairs",
		"Pairs still being stored.", nil, nil)
	descDeleted = prometheus.NewDesc("hishel_storage_deleted_pairs",
		"Soft-deleted pairs awaiting reclamation.", nil, nil)
	descBytes = prometheus.NewDesc("hishel_storage_bytes",
		"Bytes stored.", nil, nil)
	descEvictions = prometheus.NewDesc("hishel_storage_evictions_total",
		"Live pairs the store evicted since it was opened to keep within MaxBytes, MaxPairs and MaxVariants (least recently used first).", nil, nil)
	descStatsErrors = prometheus.NewDesc("hishel_storage_stats_errors_total",
		"Collections whose Stats call failed; the storage gauges were left out of them.", nil, nil)
)

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descResponses, descRevalidations, descStores, descStoreFailures,
		descStoredBytes, descLookup, descStore} {
		ch <- d
	}
	if m.opts.Store != nil {
		for _, d := range []*prometheus.Desc{descPairs, descIncomplete, descDeleted, descBytes, descEvictions, descStatsErrors} {
			ch <- d
		}
	}
}

// Collect implements prometheus.Collector. With Options.Store it calls
// its Stats, for at most Options.StatsTimeout.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	for _, o := range outcomes {
		ch <- prometheus.MustNewConstMetric(descResponses, prometheus.CounterValue, float64(m.responses[o].Load()), o.String())
	}
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	counter(descRevalidations, m.revalidations.Load())
	counter(descStores, m.stores.Load())
	counter(descStoreFailures, m.storeFailures.Load())
	counter(descStoredBytes, m.storedBytes.Load())
	for d, h := range map[*prometheus.Desc]*histogram{descLookup: &m.lookup, descStore: &m.store} {
		n, sum, buckets := h.cumulative()
		ch <- prometheus.MustNewConstHistogram(d, n, sum, buckets)
	}
	if m.opts.Store == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), m.opts.StatsTimeout)
	defer cancel()
	st, err := m.opts.Store.Stats(ctx)
	if err != nil {
		m.statsErrors.Add(1)
	} else {
		gauge := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
		}
		gauge(descPairs, float64(st.Pairs))
		gauge(descIncomplete, float64(st.Incomplete))
		gauge(descDeleted, float64(st.Deleted))
		gauge(descBytes, float64(st.Bytes))
		counter(descEvictions, uint64(max(st.Evicted, 0)))
	}
	counter(descStatsErrors, m.statsErrors.Load())
}
