package metrics_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"

	"github.com/hishel-go/hishel"
	"github.com/hishel-go/hishel/cache"
	"github.com/hishel-go/hishel/metrics"
)

// Instrument a Transport: a miss, then two hits, as the counters see them.
// Register m with Prometheus (it is a prometheus.Collector) or with an
// OpenTelemetry meter (RegisterOTel) to export them.
func ExampleMetrics() {
	ctx := context.Background()
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, "hello")
	}))
	defer origin.Close()
	store, err := cache.OpenMemory(ctx, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	m := metrics.New(&metrics.Options{Store: store})
	opts := &hishel.Options{Storage: store}
	m.Instrument(opts)
	tr, err := hishel.NewTransport(opts)
	if err != nil {
		log.Fatal(err)
	}
	defer tr.Close()
	client := &http.Client{Transport: tr}
	for range 3 {
		resp, err := client.Get(origin.URL)
		if err != nil {
			log.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body) // read to its end: stored
		resp.Body.Close()
	}
	s := m.Snapshot()
	fmt.Println("misses:", s.Responses[hishel.OutcomeMiss], "hits:", s.Responses[hishel.OutcomeHit])
	fmt.Println("stores:", s.Stores, "bytes:", s.StoredBytes)
	// Output:
	// misses: 1 hits: 2
	// stores: 1 bytes: 5
}
