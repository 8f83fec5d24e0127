package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hishel-go/hishel"
	"github.com/hishel-go/hishel/cache"
	"github.com/hishel-go/hishel/cacheasync"
	"github.com/hishel-go/hishel/model"
)

// asyncPairs is how many pairs the demo writes and reads through the async
// API.
const asyncPairs = 32

func cmdDemo(ctx context.Context, args []string, stdout, _ io.Writer) (err error) {
	fs := newFlagSet("demo")
	keep := fs.Bool("keep", false, "keep the temporary directory with the cache file, and print its path")
	if _, err := parseFlags(fs, "demo", args, 0, stdout); err != nil {
		return err
	}
	d, err := startDemo(ctx, stdout)
	if err != nil {
		return fmt.Errorf("%s demo: %w", programName, err)
	}
	defer func() {
		if cerr := d.close(*keep); err == nil && cerr != nil {
			err = fmt.Errorf("%s demo: %w", programName, cerr)
		}
	}()
	if err := d.run(ctx); err != nil {
		return fmt.Errorf("%s demo: %w", programName, err)
	}
	return nil
}

// demo is the state of one run of the demo: an origin server, a cache file
// in a temporary directory, and a client whose transport is a
// hishel.Transport over that file.
type demo struct {
	out      io.Writer
	dir      string
	path     string // the cache file
	base     string // the origin's URL
	srv      *http.Server
	served   chan error
	requests atomic.Int64 // requests the origin received
	store    *cache.Bolt
	async    *cacheasync.Bolt // nil until the async part runs
	upstream *http.Transport
	tr       *hishel.Transport
	client   *http.Client
	step     int

	mu     sync.Mutex
	states []string // decisions of the current request
}

func startDemo(ctx context.Context, out io.Writer) (_ *demo, err error) {
	d := &demo{out: out}
	if d.dir, err = os.MkdirTemp("", "hishel-demo-"); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = d.close(false)
		}
	}()
	d.path = filepath.Join(d.dir, "cache.db")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return d, err
	}
	d.base = "http://" + ln.Addr().String()
	d.srv = &http.Server{Handler: d.origin(), ReadHeaderTimeout: 10 * time.Second}
	d.served = make(chan error, 1)
	go func() { d.served <- d.srv.Serve(ln) }()

	if d.store, err = cache.OpenBolt(ctx, &cache.BoltOptions{Path: d.path}); err != nil {
		return d, err
	}
	d.upstream = http.DefaultTransport.(*http.Transport).Clone()
	d.tr, err = hishel.NewTransport(&hishel.Options{
		Transport: d.upstream,
		Storage:   d.store,
		OnDecision: func(dec hishel.Decision) {
			d.mu.Lock()
			d.states = append(d.states, dec.State)
			d.mu.Unlock()
		},
	})
	if err != nil {
		return d, err
	}
	d.client = &http.Client{Transport: d.tr}
	return d, nil
}

// origin is the demo's origin server.
func (d *demo) origin() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /fresh", func(w http.ResponseWriter, r *http.Request) {
		d.requests.Add(1)
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "fresh for a minute\n")
	})
	mux.HandleFunc("GET /validate", func(w http.ResponseWriter, r *http.Request) {
		d.requests.Add(1)
		const etag = `"v1"`
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("ETag", etag)
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "stored, but checked with the origin on every use\n")
	})
	mux.HandleFunc("GET /vary", func(w http.ResponseWriter, r *http.Request) {
		d.requests.Add(1)
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Vary", "Accept-Language")
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if strings.HasPrefix(r.Header.Get("Accept-Language"), "fr") {
			w.Header().Set("Content-Language", "fr")
			io.WriteString(w, "bonjour\n")
			return
		}
		w.Header().Set("Content-Language", "en")
		io.WriteString(w, "hello\n")
	})
	return mux
}

func (d *demo) run(ctx context.Context) error {
	fmt.Fprintf(d.out, "hishel demo: an origin on %s, a bbolt cache at %s\n", d.base, d.path)
	fmt.Fprintf(d.out, "\nhishel.Transport (an http.RoundTripper) in front of the origin:\n")
	steps := []struct {
		title, path, lang string
	}{
		{"miss: the cache is empty, the origin answers, the response is stored (Cache-Control: max-age=60)", "/fresh", ""},
		{"hit: the same request again, answered from the cache; the origin is not asked", "/fresh", ""},
		{"miss: a response with an ETag and Cache-Control: no-cache is stored", "/validate", ""},
		{"revalidation: the stored response is checked with If-None-Match; the origin answers 304 Not Modified and the cache serves its copy", "/validate", ""},
		{"Vary miss: Vary: Accept-Language, first variant (en)", "/vary", "en"},
		{"Vary miss: a second variant (fr) is stored next to the first", "/vary", "fr"},
		{"Vary hit: en is answered from its own variant", "/vary", "en"},
		{"Vary hit: fr is answered from its own variant", "/vary", "fr"},
	}
	for _, s := range steps {
		if err := d.get(ctx, s.title, s.path, s.lang); err != nil {
			return err
		}
	}
	key, err := hishel.URLKey(http.MethodGet, d.base+"/vary")
	if err != nil {
		return err
	}
	variants, err := d.store.GetPairs(ctx, key)
	if err != nil {
		return err
	}
	for _, p := range variants {
		_ = p.Close()
	}
	fmt.Fprintf(d.out, "   Vary: %d variants stored under the one key %q\n", len(variants), key)
	if err := d.asyncPart(ctx); err != nil {
		return err
	}
	st, err := d.store.Stats(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "\nThe cache now holds %d pairs, %d body bytes; the origin received %d requests in all.\n",
		st.Pairs, st.Bytes, d.requests.Load())
	return nil
}

// get sends one GET through the Transport, reads the body to its end (which
// is when a miss is stored) and prints what happened.
func (d *demo) get(ctx context.Context, title, path, lang string) error {
	d.step++
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.base+path, nil)
	if err != nil {
		return err
	}
	if lang != "" {
		req.Header.Set("Accept-Language", lang)
	}
	d.mu.Lock()
	d.states = d.states[:0]
	d.mu.Unlock()
	before := d.requests.Load()
	start := time.Now()
	resp, err := d.client.Do(req)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	if err != nil {
		return err
	}
	d.mu.Lock()
	states := strings.Join(d.states, " -> ")
	d.mu.Unlock()
	after := d.requests.Load()

	fmt.Fprintf(d.out, "\n%d. %s\n", d.step, title)
	line := "   GET " + path
	if lang != "" {
		line += "  Accept-Language: " + lang
	}
	fmt.Fprintln(d.out, line)
	fmt.Fprintf(d.out, "   -> %s, body %q\n", resp.Status, strings.TrimSpace(string(body)))
	fmt.Fprintf(d.out, "   Cache-Status: %s\n", strings.Join(resp.Header.Values("Cache-Status"), ", "))
	fmt.Fprintf(d.out, "   state machine: %s\n", states)
	fmt.Fprintf(d.out, "   origin requests: %d (+%d), took %v\n", after, after-before, roundDuration(took))
	return nil
}

// asyncPart uses the same store through the async API: it reads back a
// pair the Transport stored, then writes and reads asyncPairs pairs, all in
// flight at once, through futures and Body.Chunks.
func (d *demo) asyncPart(ctx context.Context) error {
	d.async = cacheasync.WrapBolt(d.store.Template(), &cacheasync.Options{MaxInFlight: asyncPairs})
	fmt.Fprintf(d.out, "\ncacheasync (futures and channels) on the same bbolt store:\n")

	// The pair the Transport stored for /fresh, read through the async API.
	d.step++
	key, err := hishel.URLKey(http.MethodGet, d.base+"/fresh")
	if err != nil {
		return err
	}
	start := time.Now()
	pairs, err := d.async.GetPairs(ctx, key).Await(ctx)
	if err != nil {
		return err
	}
	if len(pairs) == 0 {
		return fmt.Errorf("async GetPairs(%q) found no pair; the Transport should have stored one", key)
	}
	n, err := drainChunks(ctx, pairs[0].Response.Body)
	for _, p := range pairs {
		_ = p.Close()
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "\n%d. async hit: GetPairs(%q).Await -> %d pair, status %d, %d body bytes through Body.Chunks, took %v\n",
		d.step, key, len(pairs), pairs[0].Response.Status, n, roundDuration(time.Since(start)))

	payload := bytes.Repeat([]byte("hishel-"), 1024/7+1)[:1024]
	keys := make([]string, asyncPairs)
	reqs := make([]model.Request, asyncPairs)
	for i := range keys {
		u := fmt.Sprintf("%s/async/%d", d.base, i)
		reqs[i] = model.Request{Method: http.MethodGet, URL: u, Header: http.Header{}}
		if keys[i], err = hishel.URLKey(http.MethodGet, u); err != nil {
			return err
		}
	}
	resp := func() model.Response {
		return model.Response{Status: http.StatusOK,
			Header: http.Header{"Content-Type": {"text/plain"}, "Cache-Control": {"max-age=60"}},
			Body:   model.BytesBody(payload)}
	}

	// Writes: every CreatePair is in flight at once; each AddResponse starts
	// as soon as its pair exists; each body is stored as Body.Chunks reads it.
	d.step++
	start = time.Now()
	created := make([]cacheasync.Future[model.IncompletePair], asyncPairs)
	for i := range created {
		created[i] = d.async.CreatePair(ctx, reqs[i])
	}
	added := make([]cacheasync.Future[model.CompletePair], asyncPairs)
	for i, f := range created {
		inc, err := f.Await(ctx)
		if err != nil {
			return fmt.Errorf("async CreatePair: %w", err)
		}
		added[i] = d.async.AddResponse(ctx, inc.ID, resp(), keys[i])
	}
	streams := make([]<-chan model.Chunk, asyncPairs)
	for i, f := range added {
		cp, err := f.Await(ctx)
		if err != nil {
			return fmt.Errorf("async AddResponse: %w", err)
		}
		streams[i] = cp.Response.Body.Chunks(ctx)
	}
	written, err := consumeAll(streams)
	if err != nil {
		return fmt.Errorf("async store: %w", err)
	}
	asyncWrite := time.Since(start)
	fmt.Fprintf(d.out, "\n%d. async writes: %d pairs (%d body bytes) stored through CreatePair/AddResponse futures and Body.Chunks, all in flight at once: took %v\n",
		d.step, asyncPairs, written, roundDuration(asyncWrite))

	// Reads: every GetPairs is in flight at once.
	d.step++
	start = time.Now()
	got := make([]cacheasync.Future[[]model.CompletePair], asyncPairs)
	for i := range got {
		got[i] = d.async.GetPairs(ctx, keys[i])
	}
	streams = streams[:0]
	var found int
	for _, f := range got {
		ps, err := f.Await(ctx)
		if err != nil {
			return fmt.Errorf("async GetPairs: %w", err)
		}
		for j, p := range ps {
			_ = p.Request.Body.Close()
			if j == 0 {
				found++
				streams = append(streams, p.Response.Body.Chunks(ctx))
			} else {
				_ = p.Response.Body.Close()
			}
		}
	}
	read, err := consumeAll(streams)
	if err != nil {
		return fmt.Errorf("async read: %w", err)
	}
	fmt.Fprintf(d.out, "\n%d. async reads: %d of %d pairs found, %d body bytes read back through GetPairs futures and Body.Chunks: took %v\n",
		d.step, found, asyncPairs, read, roundDuration(time.Since(start)))
	if found != asyncPairs || read != written {
		return fmt.Errorf("async read back %d pairs, %d bytes; want %d pairs, %d bytes", found, read, asyncPairs, written)
	}

	// The same writes, one after the other, through the blocking API.
	d.step++
	start = time.Now()
	for i := range asyncPairs {
		u := fmt.Sprintf("%s/blocking/%d", d.base, i)
		key, err := hishel.URLKey(http.MethodGet, u)
		if err != nil {
			return err
		}
		inc, err := d.store.CreatePair(ctx, model.Request{Method: http.MethodGet, URL: u, Header: http.Header{}})
		if err != nil {
			return err
		}
		cp, err := d.store.AddResponse(ctx, inc.ID, resp(), key)
		if err != nil {
			return err
		}
		if _, err := io.Copy(io.Discard, cp.Response.Body); err != nil {
			return err
		}
	}
	blocking := time.Since(start)
	fmt.Fprintf(d.out, "\n%d. for comparison, the same %d writes one after the other through the blocking API (package cache): took %v (%.1fx the async time; concurrent writers share bbolt commits)\n",
		d.step, asyncPairs, roundDuration(blocking), float64(blocking)/float64(max(asyncWrite, time.Microsecond)))
	return nil
}

// drainChunks reads b to its end through Body.Chunks and returns its size.
func drainChunks(ctx context.Context, b *model.Body) (int64, error) {
	var n int64
	for c := range b.Chunks(ctx) {
		if c.Err != nil {
			return n, c.Err
		}
		n += int64(len(c.Data))
	}
	return n, nil
}

// consumeAll reads every chunk stream to its end and returns the bytes
// read; it reads all of them even after an error, so that no producer is
// left blocked.
func consumeAll(streams []<-chan model.Chunk) (int64, error) {
	var n int64
	var errs []error
	for _, ch := range streams {
		for c := range ch {
			if c.Err != nil {
				errs = append(errs, c.Err)
			}
			n += int64(len(c.Data))
		}
	}
	return n, errors.Join(errs...)
}

func roundDuration(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}

// close stops the origin, closes the transport and the store, and removes
// the temporary directory unless keep.
func (d *demo) close(keep bool) error {
	var errs []error
	if d.tr != nil {
		errs = append(errs, d.tr.Close())
	}
	if d.upstream != nil {
		d.upstream.CloseIdleConnections()
	}
	if d.async != nil {
		errs = append(errs, d.async.Close()) // also closes the store
	}
	if d.store != nil {
		errs = append(errs, d.store.Close())
	}
	if d.srv != nil {
		errs = append(errs, d.srv.Close())
		if err := <-d.served; !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, err)
		}
	}
	if d.dir != "" {
		if keep {
			fmt.Fprintf(d.out, "\nKept %s; inspect it with 'hishel ls -db %s'.\n", d.dir, d.path)
		} else {
			errs = append(errs, os.RemoveAll(d.dir))
		}
	}
	return errors.Join(errs...)
}
