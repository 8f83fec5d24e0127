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
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/hishel-go/hishel"
	"github.com/hishel-go/hishel/cache"
	"github.com/hishel-go/hishel/statemachine"
)

// shutdownTimeout bounds how long the proxy waits for requests in flight
// when it is stopped.
const shutdownTimeout = 10 * time.Second

// proxyConfig is what the proxy's flags say, beyond the cache file.
type proxyConfig struct {
	target *url.URL
	shared bool
	// staleIfDisconnected and targeted are the state machine's
	// AllowStale and TargetedFields.
	staleIfDisconnected bool
	targeted            []string
	// Client side.
	readHeaderTimeout time.Duration
	idleTimeout       time.Duration
	maxHeaderBytes    int
	// Origin side; headerTimeout zero: none.
	dialTimeout   time.Duration
	tlsTimeout    time.Duration
	headerTimeout time.Duration
	idleConns     int
	idleConnTime  time.Duration
	// forwardHost sends the client's Host as X-Forwarded-Host, and keys
	// on it too.
	forwardHost bool
	setCookie   hishel.SetCookiePolicy
	credKey     []byte
	maxBody     int64
	// instrument, if not nil, adds hooks to the Transport's options
	// (-metrics).
	instrument func(*hishel.Options)
}

// Defaults of the proxy's timeouts and limits.
const (
	defaultReadHeaderTimeout = 10 * time.Second
	defaultIdleTimeout       = 2 * time.Minute
	defaultMaxHeaderBytes    = 64 << 10
	defaultDialTimeout       = 10 * time.Second
	defaultTLSTimeout        = 10 * time.Second
	defaultHeaderTimeout     = 30 * time.Second
	defaultIdleConns         = 256
	defaultIdleConnTime      = 90 * time.Second
)

// defaultProxyMaxBytes is the proxy's default -max-bytes: a proxy left
// running does not fill the disk.
const defaultProxyMaxBytes = 1 << 30

func cmdProxy(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("proxy")
	listen := fs.String("listen", "127.0.0.1:8080", "listen on `ADDR` (host:port; port 0 picks a free port)")
	upstream := fs.String("upstream", "", "forward to the origin at `URL`, such as http://127.0.0.1:9000 (required)")
	sf := addStoreFlags(fs, "bbolt cache file `PATH` (default: hishel/hishel_cache.db under the user cache directory); shorthand for -store bolt:///PATH")
	shared := fs.Bool("shared", false, "act as a shared cache (RFC 9111): honour s-maxage and private, keep Authorization responses out")
	maxBody := fs.Int64("max-body", 0, "store no response body larger than `N` bytes; larger ones pass through (0: no limit)")
	cfg := proxyConfig{}
	fs.DurationVar(&cfg.readHeaderTimeout, "read-header-timeout", defaultReadHeaderTimeout, "close a client connection that has not sent a request head within `D`")
	fs.DurationVar(&cfg.idleTimeout, "idle-timeout", defaultIdleTimeout, "close a client connection idle between requests for `D`")
	fs.IntVar(&cfg.maxHeaderBytes, "max-header-bytes", defaultMaxHeaderBytes, "refuse a request head larger than `N` bytes (431)")
	fs.DurationVar(&cfg.dialTimeout, "upstream-dial-timeout", defaultDialTimeout, "give up connecting to the origin after `D`")
	fs.DurationVar(&cfg.tlsTimeout, "upstream-tls-timeout", defaultTLSTimeout, "give up the TLS handshake with the origin after `D`")
	fs.DurationVar(&cfg.headerTimeout, "origin-timeout", defaultHeaderTimeout,
		"give up on an origin whose response head takes longer than `D`: answer 504, or a stale response where allowed (0: no limit)")
	fs.IntVar(&cfg.idleConns, "upstream-idle-conns", defaultIdleConns, "keep up to `N` idle connections to the origin for reuse")
	fs.DurationVar(&cfg.idleConnTime, "upstream-idle-conn-timeout", defaultIdleConnTime, "close an idle connection to the origin after `D`")
	fs.BoolVar(&cfg.forwardHost, "forward-host", false,
		"send the client's Host to the origin as X-Forwarded-Host, and key the cache on it (off: the origin never sees a client-chosen host)")
	setCookie := fs.String("set-cookie", "store",
		"what to do with a storable response that sets a cookie: `store`, strip (store it without Set-Cookie) or bypass (do not store it)")
	credFile := fs.String("credential-key-file", "",
		"read the key that hashes stored credentials from `FILE` (16 bytes or more); proxies sharing a cache share it (default: a random key per run)")
	fs.BoolVar(&cfg.staleIfDisconnected, "stale-if-disconnected", true, "when the origin cannot be reached (connection refused or reset, no answer within -origin-timeout), answer from a stale stored response unless its directives or the request's forbid it (RFC 9111 §4.2.4); Cache-Status says detail=stale-if-disconnected")
	targeted := fs.String("targeted-fields", "", "with -shared, the targeted cache-control `FIELDS` (RFC 9213), comma-separated, obeyed before CDN-Cache-Control, such as Hishel-Cache-Control")
	maxBytes := fs.Int64("max-bytes", defaultProxyMaxBytes, "keep at most `N` bytes in the cache (keys, URLs, heads and bodies); the least recently used pairs go beyond it (0: no budget; a -store URL's max-bytes wins)")
	ttl := fs.Duration("ttl", 0, "remove a pair `D` after it was stored or last read, however fresh (0: when HTTP no longer allows using it, or the budget needs room; a -store URL's ttl wins)")
	rebuild := fs.Bool("rebuild", true, "move a damaged bbolt cache file aside and start with an empty one (false: exit with status 1; a -store URL's rebuild wins)")
	verbose := fs.Bool("v", false, "log every cache decision on standard error")
	metricsAddr := fs.String("metrics", "", "serve Prometheus metrics at http://`ADDR`/metrics (host:port; port 0 picks a free port): responses by outcome, revalidations, stores, store failures, stored bytes, lookup and store latency, the store's counters and evictions")
	if _, err := parseFlags(fs, "proxy", args, 0, stdout); err != nil {
		return err
	}
	target, err := parseUpstream(*upstream)
	if err != nil {
		return err
	}
	switch {
	case *maxBody < 0:
		return &usageError{cmd: "proxy", msg: "-max-body must not be negative"}
	case *maxBytes < 0:
		return &usageError{cmd: "proxy", msg: "-max-bytes must not be negative"}
	case *ttl < 0:
		return &usageError{cmd: "proxy", msg: "-ttl must not be negative"}
	}
	if cfg.headerTimeout < 0 {
		return &usageError{cmd: "proxy", msg: "-origin-timeout must not be negative"}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"-read-header-timeout", cfg.readHeaderTimeout}, {"-idle-timeout", cfg.idleTimeout},
		{"-upstream-dial-timeout", cfg.dialTimeout}, {"-upstream-tls-timeout", cfg.tlsTimeout},
		{"-upstream-idle-conn-timeout", cfg.idleConnTime}} {
		if d.v <= 0 {
			return &usageError{cmd: "proxy", msg: d.name + " must be positive"}
		}
	}
	if cfg.targeted, err = targetedFields(*targeted); err != nil {
		return err
	}
	if len(cfg.targeted) > 0 && !*shared {
		return &usageError{cmd: "proxy", msg: "-targeted-fields needs -shared: a private cache obeys no targeted field (RFC 9213)"}
	}
	if cfg.maxHeaderBytes <= 0 || cfg.idleConns < 0 {
		return &usageError{cmd: "proxy", msg: "-max-header-bytes must be positive and -upstream-idle-conns not negative"}
	}
	if cfg.setCookie, err = hishel.ParseSetCookiePolicy(*setCookie); err != nil {
		return &usageError{cmd: "proxy", msg: "bad -set-cookie: want store, strip or bypass"}
	}
	if *credFile != "" {
		if cfg.credKey, err = os.ReadFile(*credFile); err != nil {
			return fmt.Errorf("%s proxy: -credential-key-file: %w", programName, err)
		}
		if len(cfg.credKey) < 16 {
			return &usageError{cmd: "proxy", msg: fmt.Sprintf("-credential-key-file %s holds %d bytes; want 16 or more", *credFile, len(cfg.credKey))}
		}
	}
	cfg.target, cfg.shared, cfg.maxBody = target, *shared, *maxBody

	// The store's budget, TTL and, for a bbolt file, Rebuild come from the
	// flags, unless a -store URL sets them itself. A file moved aside is
	// logged on standard error (slog's default logger for a -store URL).
	params := func(scheme string) url.Values {
		v := proxyParams(scheme)
		if v == nil {
			v = url.Values{}
		}
		v.Set("max-bytes", strconv.FormatInt(*maxBytes, 10))
		if *ttl > 0 {
			v.Set("ttl", ttl.String())
		}
		if scheme == "bolt" {
			v.Set("rebuild", strconv.FormatBool(*rebuild))
		}
		return v
	}
	var store cache.Store
	u, dbName, err := sf.storeURL("proxy", params)
	switch {
	case err != nil:
		return err
	case u == nil: // the default file
		dbName = defaultDBPath()
		store, err = cache.OpenBolt(ctx, &cache.BoltOptions{MaxBytes: *maxBytes, DefaultTTL: *ttl, Rebuild: *rebuild,
			Logger: slog.New(slog.NewTextHandler(stderr, nil))})
	default:
		store, err = cache.Open(ctx, u.String())
	}
	if err != nil {
		return dbError(dbName, err)
	}
	defer store.Close()

	if *metricsAddr != "" {
		instrument, stop, err := serveMetrics(*metricsAddr, store, stderr)
		if err != nil {
			return err
		}
		defer stop()
		cfg.instrument = instrument
	}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("%s proxy: %w; pick another -listen address", programName, err)
	}
	fmt.Fprintf(stderr, "%s proxy: listening on http://%s, forwarding to %s, cache %s\n", programName, ln.Addr(), target, dbName)
	setProxyGC(os.Getenv("GOGC"))
	if err := runProxy(ctx, &cfg, store, ln, stderr, *verbose); err != nil {
		return err
	}
	if err := store.Close(); err != nil {
		return fmt.Errorf("%s proxy: closing the cache: %w", programName, err)
	}
	fmt.Fprintf(stderr, "%s proxy: stopped\n", programName)
	return nil
}

// proxyGCPercent is the garbage collector's target percentage (GOGC) in
// hishel proxy when the environment sets none.
const proxyGCPercent = 400

// setProxyGC paces the garbage collector for a proxy, unless gogc (the
// GOGC environment variable) sets it: a proxy's live heap is small (its
// pairs live in the cache file), so at Go's default of 100 it collects
// after every few megabytes allocated, a few hundred requests; at 400 it
// collects about a quarter as often, for a heap that grows to five times
// the live one. In the same process, that took a third off a 1 KiB hit's
// CPU time (BenchmarkProxyHit, GOGC=100 against 400).
func setProxyGC(gogc string) {
	if gogc == "" {
		debug.SetGCPercent(proxyGCPercent)
	}
}

// runProxy serves the proxy on ln, caching in store, until ctx ends, and
// then shuts it down. Failed stores are logged on stderr at Warn, and with
// verbose every decision at Debug.
func runProxy(ctx context.Context, cfg *proxyConfig, store hishel.Storage, ln net.Listener, stderr io.Writer, verbose bool) error {
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	origin := cfg.originTransport()
	defer origin.CloseIdleConnections()
	opts := cfg.options(origin, store, logger)
	if cfg.instrument != nil {
		cfg.instrument(opts)
	}
	tr, err := hishel.NewTransport(opts)
	if err != nil {
		_ = ln.Close()
		return fmt.Errorf("%s proxy: %w", programName, err)
	}
	defer tr.Close()
	errLog := log.New(stderr, programName+" proxy: ", log.LstdFlags)
	srv := cfg.server(tr, errLog)

	served := make(chan error, 1)
	go func() { served <- srv.Serve(heldListener{ln}) }()
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
	if shutErr != nil {
		return fmt.Errorf("%s proxy: requests still in flight after %v were cut off", programName, shutdownTimeout)
	}
	return nil
}

// originTransport returns the transport to the origin: dial, TLS and
// response head timeouts, and idle connections kept for a proxy's load
// (http.DefaultTransport keeps 2 per host, so that a busy proxy opened a
// new connection for most misses).
func (c *proxyConfig) originTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: c.dialTimeout, KeepAlive: 30 * time.Second}).DialContext
	t.TLSHandshakeTimeout = c.tlsTimeout
	t.ResponseHeaderTimeout = c.headerTimeout
	t.MaxIdleConns = max(c.idleConns, t.MaxIdleConns)
	t.MaxIdleConnsPerHost = c.idleConns
	t.IdleConnTimeout = c.idleConnTime
	return t
}

// options returns the caching transport's options. The logger's level says whether decisions are logged (Debug) or only
// storage failures (Warn).
func (c *proxyConfig) options(origin http.RoundTripper, store hishel.Storage, logger *slog.Logger) *hishel.Options {
	o := &hishel.Options{
		Transport:     origin,
		Storage:       store,
		Cache:         statemachine.Options{Shared: c.shared, AllowStale: c.staleIfDisconnected, TargetedFields: c.targeted},
		MaxBodySize:   c.maxBody,
		SetCookie:     c.setCookie,
		CredentialKey: c.credKey,
		Logger:        logger,
	}
	if c.forwardHost {
		// The origin sees the client's host: the key must too, or one
		// client's host would be served to every other.
		o.Key = func(req *http.Request) (string, error) {
			k, err := hishel.DefaultKey(req)
			return k + " forwarded-host=" + req.Header.Get("X-Forwarded-Host"), err
		}
	}
	return o
}

// server returns the proxy's HTTP server through tr: client timeouts and
// the head size limit from c.
func (c *proxyConfig) server(tr http.RoundTripper, errLog *log.Logger) *http.Server {
	return &http.Server{
		Handler:           newProxy(c.target, tr, errLog, c.forwardHost),
		ErrorLog:          errLog,
		ReadHeaderTimeout: c.readHeaderTimeout,
		IdleTimeout:       c.idleTimeout,
		MaxHeaderBytes:    c.maxHeaderBytes,
		ConnContext:       withHeldConn,
	}
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

// proxyParams are the store URL parameters the proxy sets unless the URL
// does: on Redis, a fleet of proxies shares the store, and each replaces
// the older copies of a variant it stores (two proxies that miss the same
// URL at once each fetch and store it).
func proxyParams(scheme string) url.Values {
	if scheme == "redis" {
		return url.Values{"replace-variants": {"true"}}
	}
	return nil
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
// The client's Host reaches the origin (as X-Forwarded-Host) only with
// forwardHost, and then the key includes it: what the proxy forwards is
// what it keys on. An origin that fails or does not answer in time gets
// the client a 502 or 504 with a Cache-Status that says so.
//
// A hit does not go through the reverse proxy: the handler builds the
// request the reverse proxy would send, asks the Transport for a stored
// response (hishel.Transport.HitHeader) and writes it itself (see hitProxy).
func newProxy(target *url.URL, tr http.RoundTripper, errLog *log.Logger, forwardHost bool) http.Handler {
	rewrite := func(r *httputil.ProxyRequest) {
		r.SetURL(target)
		r.SetXForwarded()
		if !forwardHost {
			r.Out.Header.Del("X-Forwarded-Host")
		}
	}
	rp := &httputil.ReverseProxy{
		Rewrite:      rewrite,
		Transport:    tr,
		ErrorLog:     errLog,
		ErrorHandler: hishel.ServeError,
		BufferPool:   copyBuffers{},
	}
	if h, ok := tr.(hitter); ok {
		return &hitProxy{rp: rp, target: target, forwardHost: forwardHost, tr: h}
	}
	return rp
}
