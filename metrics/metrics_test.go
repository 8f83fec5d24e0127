package metrics_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/hishel-go/hishel"
	"github.com/hishel-go/hishel/cache"
	"github.com/hishel-go/hishel/metrics"
)

// fixture is a Transport over a Memory store, instrumented by m, in front
// of an origin whose /fail path answers 500 after its first response.
type fixture struct {
	m      *metrics.Metrics
	client *http.Client
	url    string
	store  *cache.Memory
	other  atomic.Int64 // calls of a hook set before Instrument
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixtureWith(t, nil)
}

// newFixtureWith is newFixture over a Memory store opened with opts.
func newFixtureWith(t *testing.T, storeOpts *cache.MemoryOptions) *fixture {
	t.Helper()
	ctx := context.Background()
	store, err := cache.OpenMemory(ctx, storeOpts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	var served atomic.Int64
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fail" && served.Add(1) > 1 {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		if r.Header.Get("If-None-Match") == `"v"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", `"v"`)
		switch r.URL.Path {
		case "/fresh":
			w.Header().Set("Cache-Control", "max-age=600")
		case "/fail":
			w.Header().Set("Cache-Control", "max-age=0, stale-if-error=600")
		default:
			w.Header().Set("Cache-Control", "no-cache")
		}
		io.WriteString(w, "0123456789")
	}))
	t.Cleanup(origin.Close)
	f := &fixture{m: metrics.New(&metrics.Options{Store: store}), url: origin.URL, store: store}
	opts := &hishel.Options{Storage: store, Trace: &hishel.Trace{
		Response: func(context.Context, hishel.ResponseInfo) { f.other.Add(1) },
	}}
	f.m.Instrument(opts)
	tr, err := hishel.NewTransport(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	f.client = &http.Client{Transport: tr}
	return f
}

func (f *fixture) get(t *testing.T, path string) {
	t.Helper()
	resp, err := f.client.Get(f.url + path)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// traffic makes: 3 misses (each stored), 2 hits, 1 revalidation (304),
// 1 stale (stale-if-error on a 500: a revalidation too) and 1 pass, a
// POST, which invalidates the pair of /fresh (RFC 9111 §4.4).
func (f *fixture) traffic(t *testing.T) {
	f.get(t, "/fresh") // miss
	f.get(t, "/fresh") // hit
	f.get(t, "/fresh") // hit
	f.get(t, "/check") // miss
	f.get(t, "/check") // revalidated
	f.get(t, "/fail")  // miss
	f.get(t, "/fail")  // stale
	resp, err := f.client.Post(f.url+"/fresh", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

func TestSnapshot(t *testing.T) {
	f := newFixture(t)
	f.traffic(t)
	s := f.m.Snapshot()
	want := map[hishel.Outcome]uint64{hishel.OutcomeHit: 2, hishel.OutcomeMiss: 3, hishel.OutcomeRevalidated: 1,
		hishel.OutcomeStale: 1, hishel.OutcomePass: 1, hishel.OutcomeError: 0}
	for o, n := range want {
		if s.Responses[o] != n {
			t.Errorf("Responses[%v] = %d; want %d", o, s.Responses[o], n)
		}
	}
	if s.Stores != 3 || s.StoreFailures != 0 || s.StoredBytes != 30 || s.Revalidations != 2 {
		t.Errorf("Snapshot = %+v; want 3 stores of 30 bytes, no failure, 2 revalidations", s)
	}
	if s.Lookups < 7 || s.StoreTimes != 3 {
		t.Errorf("Snapshot: %d lookups, %d store times; want at least 7 and 3", s.Lookups, s.StoreTimes)
	}
	if n := f.other.Load(); n != 8 {
		t.Errorf("the hook set before Instrument was called %d times; want 8", n)
	}
}

func TestPrometheus(t *testing.T) {
	f := newFixture(t)
	f.traffic(t)
	const want = `
# HELP hishel_responses_total Responses of the hishel Transport by outcome: hit, stale, revalidated, miss, pass, error.
# TYPE hishel_responses_total counter
hishel_responses_total{outcome="error"} 0
hishel_responses_total{outcome="hit"} 2
hishel_responses_total{outcome="miss"} 3
hishel_responses_total{outcome="pass"} 1
hishel_responses_total{outcome="revalidated"} 1
hishel_responses_total{outcome="stale"} 1
# HELP hishel_stores_total Response bodies stored completely.
# TYPE hishel_stores_total counter
hishel_stores_total 3
# HELP hishel_stored_bytes_total Response body bytes of completely stored bodies.
# TYPE hishel_stored_bytes_total counter
hishel_stored_bytes_total 30
# HELP hishel_storage_pairs Live complete pairs in the storage.
# TYPE hishel_storage_pairs gauge
hishel_storage_pairs 2
`
	if err := testutil.CollectAndCompare(f.m, strings.NewReader(want), "hishel_responses_total", "hishel_stores_total",
		"hishel_stored_bytes_total", "hishel_storage_pairs"); err != nil {
		t.Error(err)
	}
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(f.m); err != nil {
		t.Fatalf("Register: %v", err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	got := map[string]bool{}
	for _, mf := range mfs {
		got[mf.GetName()] = true
		if mf.GetName() == "hishel_store_duration_seconds" {
			if h := mf.GetMetric()[0].GetHistogram(); h.GetSampleCount() != 3 || len(h.GetBucket()) != len(metrics.DefaultBuckets) {
				t.Errorf("store histogram: %d samples, %d buckets; want 3, %d", h.GetSampleCount(), len(h.GetBucket()), len(metrics.DefaultBuckets))
			}
		}
	}
	for _, name := range []string{"hishel_responses_total", "hishel_revalidations_total", "hishel_stores_total",
		"hishel_store_failures_total", "hishel_stored_bytes_total", "hishel_lookup_duration_seconds",
		"hishel_store_duration_seconds", "hishel_storage_pairs", "hishel_storage_incomplete_pairs",
		"hishel_storage_deleted_pairs", "hishel_storage_bytes", "hishel_storage_evictions_total",
		"hishel_storage_stats_errors_total"} {
		if !got[name] {
			t.Errorf("Gather() has no %s", name)
		}
	}
	// A closed store: the gauges are left out and the error is counted.
	f.store.Close()
	if n := testutil.CollectAndCount(f.m, "hishel_storage_pairs"); n != 0 {
		t.Errorf("after Close, hishel_storage_pairs has %d samples; want 0", n)
	}
	if v := testutil.ToFloat64(collectorOf(f.m, "hishel_storage_stats_errors_total")); v != 2 {
		t.Errorf("hishel_storage_stats_errors_total = %v; want 2 (two collections)", v)
	}
}

// collectorOf is c restricted to the metric named name.
func collectorOf(c prometheus.Collector, name string) prometheus.Collector {
	return filtered{c, name}
}

type filtered struct {
	c    prometheus.Collector
	name string
}

func (f filtered) Describe(ch chan<- *prometheus.Desc) { f.c.Describe(ch) }
func (f filtered) Collect(ch chan<- prometheus.Metric) {
	all := make(chan prometheus.Metric)
	go func() { f.c.Collect(all); close(all) }()
	for m := range all {
		if strings.Contains(m.Desc().String(), `"`+f.name+`"`) {
			ch <- m
		}
	}
}

// registerOTel registers m's instruments with a meter provider read by
// the reader it returns; both end with t.
func registerOTel(t *testing.T, m *metrics.Metrics) *sdkmetric.ManualReader {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { provider.Shutdown(context.Background()) })
	reg, err := m.RegisterOTel(provider.Meter("hishel"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Unregister() })
	return reader
}

func TestOpenTelemetry(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	reader := registerOTel(t, f.m)
	f.traffic(t)

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	sums := map[string]int64{}
	hists := map[string]uint64{}
	for _, sm := range rm.ScopeMetrics {
		for _, mt := range sm.Metrics {
			switch d := mt.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					name := mt.Name
					if o, ok := p.Attributes.Value("outcome"); ok {
						name += "/" + o.AsString()
					}
					sums[name] = p.Value
				}
			case metricdata.Gauge[int64]:
				sums[mt.Name] = d.DataPoints[0].Value
			case metricdata.Histogram[float64]:
				hists[mt.Name] = d.DataPoints[0].Count
			}
		}
	}
	want := map[string]int64{"hishel.responses/hit": 2, "hishel.responses/miss": 3, "hishel.responses/revalidated": 1,
		"hishel.responses/stale": 1, "hishel.responses/pass": 1, "hishel.responses/error": 0,
		"hishel.revalidations": 2, "hishel.stores": 3, "hishel.store.failures": 0, "hishel.stored.bytes": 30,
		"hishel.storage.pairs": 2, "hishel.storage.incomplete_pairs": 0, "hishel.storage.deleted_pairs": 1,
		"hishel.storage.evictions": 0}
	for name, v := range want {
		if got, ok := sums[name]; !ok || got != v {
			t.Errorf("%s = %d (reported: %v); want %d", name, got, ok, v)
		}
	}
	if sums["hishel.storage.bytes"] < 30 {
		t.Errorf("hishel.storage.bytes = %d; want at least the 30 body bytes", sums["hishel.storage.bytes"])
	}
	if hists["hishel.store.duration"] != 3 || hists["hishel.lookup.duration"] < 7 {
		t.Errorf("histogram counts = %v; want 3 stores and at least 7 lookups", hists)
	}
	if _, err := metrics.New(nil).RegisterOTel(nil); err == nil {
		t.Error("RegisterOTel(nil) succeeded")
	}
}

func TestChain(t *testing.T) {
	var a, b int
	ta := &hishel.Trace{Lookup: func(context.Context, hishel.LookupInfo) { a++ }}
	tb := &hishel.Trace{Lookup: func(context.Context, hishel.LookupInfo) { b++ }, Stored: func(context.Context, hishel.StoreInfo) { b++ }}
	c := metrics.Chain(ta, tb)
	c.Lookup(context.Background(), hishel.LookupInfo{})
	c.Stored(context.Background(), hishel.StoreInfo{})
	if a != 1 || b != 2 || c.Response != nil {
		t.Errorf("Chain: a=%d b=%d, Response set %v; want 1, 2, false", a, b, c.Response != nil)
	}
	if metrics.Chain(nil, tb) != tb || metrics.Chain(ta, nil) != ta {
		t.Error("Chain with a nil Trace is not the other")
	}
}

// TestEvictions checks that the store's evictions (model.Stats.Evicted)
// are exported, as a Prometheus counter and an OpenTelemetry one: a store
// capped at one pair evicts the older pair for each new response stored.
func TestEvictions(t *testing.T) {
	ctx := context.Background()
	f := newFixtureWith(t, &cache.MemoryOptions{MaxPairs: 1})
	reader := registerOTel(t, f.m)
	otelEvictions := func() int64 {
		t.Helper()
		var rm metricdata.ResourceMetrics
		if err := reader.Collect(ctx, &rm); err != nil {
			t.Fatal(err)
		}
		for _, sm := range rm.ScopeMetrics {
			for _, mt := range sm.Metrics {
				if mt.Name != "hishel.storage.evictions" {
					continue
				}
				sum, ok := mt.Data.(metricdata.Sum[int64])
				if !ok || !sum.IsMonotonic || len(sum.DataPoints) != 1 {
					t.Fatalf("hishel.storage.evictions = %#v; want one monotonic sum", mt.Data)
				}
				return sum.DataPoints[0].Value
			}
		}
		t.Fatal("no hishel.storage.evictions reported")
		return 0
	}
	const help = `
# HELP hishel_storage_evictions_total Live pairs the store evicted since it was opened to keep within MaxBytes, MaxPairs and MaxVariants (least recently used first).
# TYPE hishel_storage_evictions_total counter
`
	for i, path := range []string{"/fresh", "/check", "/fail", "/fresh"} {
		f.get(t, path) // a miss, stored: the pair stored before it goes
		want := help + fmt.Sprintf("hishel_storage_evictions_total %d\n", i)
		if err := testutil.CollectAndCompare(f.m, strings.NewReader(want), "hishel_storage_evictions_total"); err != nil {
			t.Errorf("after %d responses stored: %v", i+1, err)
		}
		if got := otelEvictions(); got != int64(i) {
			t.Errorf("after %d responses stored: hishel.storage.evictions = %d; want %d", i+1, got, i)
		}
	}
	if st, err := f.store.Stats(ctx); err != nil || st.Pairs != 1 || st.Evicted != 3 {
		t.Errorf("Stats() = %+v, %v; want 1 pair, 3 evicted", st, err)
	}
}
