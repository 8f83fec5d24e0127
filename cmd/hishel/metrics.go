package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hishel-go/hishel"
	"github.com/hishel-go/hishel/cache"
	"github.com/hishel-go/hishel/metrics"
)

// serveMetrics serves the metrics of store and of the Transport whose
// options instrument adds hooks to, with the Go runtime's and the
// process's, at http://addr/metrics from a goroutine of its own, until
// stop is called.
func serveMetrics(addr string, store cache.Store, stderr io.Writer) (instrument func(*hishel.Options), stop func(), err error) {
	m := metrics.New(&metrics.Options{Store: store})
	reg := prometheus.NewRegistry()
	reg.MustRegister(m, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	errLog := log.New(stderr, programName+" proxy: metrics: ", log.LstdFlags)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: errLog}))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("%s proxy: -metrics: %w; pick another address", programName, err)
	}
	srv := &http.Server{Handler: mux, ErrorLog: errLog, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			errLog.Print(err)
		}
	}()
	fmt.Fprintf(stderr, "%s proxy: metrics at http://%s/metrics\n", programName, ln.Addr())
	return m.Instrument, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}, nil
}
