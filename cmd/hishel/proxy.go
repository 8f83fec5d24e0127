package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hishel-go/hishel"
	"github.com/hishel-go/hishel/cache"
	"github.com/hishel-go/hishel/statemachine"
)

// shutdownTimeout bounds how long the proxy waits for requests in flight
// when it is stopped.
const shutdownTimeout = 10 * time.Second

func cmdProxy(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("proxy")
	listen := fs.String("listen", "127.0.0.1:8080", "listen on `ADDR` (host:port; port 0 picks a free port)")
	upstream := fs.String("upstream", "", "forward to the origin at `URL`, such as http://127.0.0.1:9000 (required)")
	sf := addStoreFlags(fs, "bbolt cache file `PATH` (default: hishel/hishel_cache.db under the user cache directory); shorthand for -store bolt:///PATH")
	shared := fs.Bool("shared", false, "act as a shared cache (RFC 9111): honour s-maxage and private, keep Authorization responses out")
	maxBody := fs.Int64("max-body", 0, "store no response body larger than `N` bytes; larger ones pass through (0: no limit)")
	staleIfDisconnected := fs.Bool("stale-if-disconnected", true, "when the origin cannot be reached (connection refused or reset, no answer within -origin-timeout), answer from a stale stored response unless its directives or the request's forbid it (RFC 9111 §4.2.4); Cache-Status says detail=stale-if-disconnected")
	originTimeout := fs.Duration("origin-timeout", 30*time.Second, "give up on an origin whose response head takes longer than `D` (0: no limit)")
	targeted := fs.String("targeted-fields", "", "with -shared, the targeted cache-control `FIELDS` (RFC 9213), comma-separated, obeyed before CDN-Cache-Control, such as Hishel-Cache-Control")
	verbose := fs.Bool("v", false, "log every cache decision on standard error")
	metricsAddr := fs.String("metrics", "", "serve Prometheus metrics at http://`ADDR`/metrics (host:port; port 0 picks a free port): responses by outcome, revalidations, stores, store failures, stored bytes, lookup and store latency, the store's counters")
	if _, err := parseFlags(fs, "proxy", args, 0, stdout); err != nil {
		return err
	}
	target, err := parseUpstream(*upstream)
	if err != nil {
		return err
	}
	if *maxBody < 0 {
		return &usageError{cmd: "proxy", msg: "-max-body must not be negative"}
	}
	if *originTimeout < 0 {
		return &usageError{cmd: "proxy", msg: "-origin-timeout must not be negative"}
	}
	fields, err := targetedFields(*targeted)
	if err != nil {
		return err
	}
	if len(fields) > 0 && !*shared {
		return &usageError{cmd: "proxy", msg: "-targeted-fields needs -shared: a private cache obeys no targeted field (RFC 9213)"}
	}

	var store cache.Store
	u, dbName, err := sf.storeURL("proxy", func(string) url.Values { return nil })
	switch {
	case err != nil:
		return err
	case u == nil: // the default file
		dbName = defaultDBPath()
		store, err = cache.OpenBolt(ctx, nil)
	default:
		store, err = cache.Open(ctx, u.String())
	}
	if err != nil {
		return dbError(dbName, err)
	}
	defer store.Close()

	origin := http.DefaultTransport.(*http.Transport).Clone()
	origin.ResponseHeaderTimeout = *originTimeout
	defer origin.CloseIdleConnections()
	opts := &hishel.Options{
		Transport: origin,
		Storage:   store,
		Cache: statemachine.Options{Shared: *shared, AllowStale: *staleIfDisconnected,
			TargetedFields: fields},
		MaxBodySize: *maxBody,
	}
	if *verbose {
		opts.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	var stopMetrics func()
	if *metricsAddr != "" {
		if stopMetrics, err = serveMetrics(*metricsAddr, store, opts, stderr); err != nil {
			return err
		}
		defer stopMetrics()
	}
	tr, err := hishel.NewTransport(opts)
	if err != nil {
		return fmt.Errorf("%s proxy: %w", programName, err)
	}
	defer tr.Close()

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("%s proxy: %w; pick another -listen address", programName, err)
	}
	errLog := log.New(stderr, programName+" proxy: ", log.LstdFlags)
	srv := &http.Server{
		Handler:           newProxy(target, tr, errLog),
		ErrorLog:          errLog,
		ReadHeaderTimeout: 30 * time.Second,
	}
	fmt.Fprintf(stderr, "%s proxy: listening on http://%s, forwarding to %s, cache %s\n", programName, ln.Addr(), target, dbName)

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("%s proxy: %w", programName, err)
	case <-ctx.Done():
	}
	fmt.Fprintf(stderr, "%s proxy: shutting down\n", programName)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	shutErr := srv.Shutdown(sctx)
	if errors.Is(shutErr, context.DeadlineExceeded) {
		_ = srv.Close()
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("%s proxy: %w", programName, err)
	}
	if err := tr.Close(); err != nil {
		return fmt.Errorf("%s proxy: closing the transport: %w", programName, err)
	}
	if err := store.Close(); err != nil {
		return fmt.Errorf("%s proxy: closing the cache: %w", programName, err)
	}
	if shutErr != nil {
		return fmt.Errorf("%s proxy: requests still in flight after %v were cut off", programName, shutdownTimeout)
	}
	fmt.Fprintf(stderr, "%s proxy: stopped\n", programName)
	return nil
}

// targetedFields checks the -targeted-fields flag: field names (tokens),
// comma-separated.
func targetedFields(list string) ([]string, error) {
	var out []string
	for _, f := range strings.Split(list, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		if strings.IndexFunc(f, func(r rune) bool {
			return r > 0x7e || r <= ' ' || strings.ContainsRune("\"(),/:;<=>?@[\\]{}", r)
		}) >= 0 {
			return nil, &usageError{cmd: "proxy", msg: fmt.Sprintf("bad -targeted-fields %q: %q is not a field name", list, f)}
		}
		out = append(out, f)
	}
	return out, nil
}

// defaultDBPath names the file cache.OpenBolt opens when no path is given.
func defaultDBPath() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "the default cache file"
	}
	return filepath.Join(dir, "hishel", "hishel_cache.db")
}

// parseUpstream checks the -upstream flag.
func parseUpstream(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, &usageError{cmd: "proxy", msg: "-upstream URL is required: the origin to forward to, such as http://127.0.0.1:9000"}
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, &usageError{cmd: "proxy", msg: fmt.Sprintf("bad -upstream %q: want an absolute http:// or https:// URL, such as http://127.0.0.1:9000", raw)}
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, &usageError{cmd: "proxy", msg: fmt.Sprintf("bad -upstream %q: a query or fragment is not allowed; give a scheme, host and optional path prefix", raw)}
	}
	return u, nil
}

// newProxy returns the reverse proxy to target through the caching
// transport tr. httputil.ReverseProxy forwards every method, removes the
// hop-by-hop fields both ways and passes 1xx responses on (tr hands the
// request's context, with its httptrace hooks, to the origin transport).
func newProxy(target *url.URL, tr http.RoundTripper, errLog *log.Logger) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.SetXForwarded()
		},
		Transport: tr,
		ErrorLog:  errLog,
	}
}
