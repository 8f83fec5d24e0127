package hishel_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/hishel-go/hishel"
	"github.com/hishel-go/hishel/cache"
	"github.com/hishel-go/hishel/model"
)

// A client whose responses are cached as RFC 9111 says.
func ExampleNewTransport() {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprint(w, "hello")
	}))
	defer origin.Close()
	store, err := cache.OpenMemory(context.Background(), nil) // or cache.OpenBolt
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	tr, _ := hishel.NewTransport(&hishel.Options{Storage: store})
	defer tr.Close()
	client := &http.Client{Transport: tr}
	for range 2 {
		resp, err := client.Get(origin.URL)
		if err != nil {
			log.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		// Cache-Status (RFC 9211) says what the cache did; its first
		// parameter is hit or fwd (forwarded to the origin).
		status := strings.Split(resp.Header.Get("Cache-Status"), ";")
		fmt.Println(string(body), "|", strings.TrimSpace(status[1]))
	}
	// Output:
	// hello | fwd=uri-miss
	// hello | hit
}

// A handler behind a shared cache.
func ExampleMiddleware() {
	calls := 0
	page := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		w.Header().Set("Cache-Control", "s-maxage=300")
		fmt.Fprint(w, "expensive page")
	})
	store, _ := cache.OpenMemory(context.Background(), nil)
	defer store.Close()
	h, err := hishel.Middleware(page, &hishel.Options{Storage: store})
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()
	srv := httptest.NewServer(h)
	defer srv.Close()
	for range 3 {
		resp, _ := http.Get(srv.URL)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	fmt.Println("handler calls:", calls)
	// Output: handler calls: 1
}

// exampleOrigin is a local origin for the examples: it answers every path
// with the path and its X-Tenant, fresh for a minute, and counts requests.
func exampleOrigin() (*httptest.Server, *int) {
	n := new(int)
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		*n++
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprint(w, r.URL.Path, r.Header.Get("X-Tenant"))
	})), n
}

// exampleTransport returns a Transport on a Memory store configured by
// opts, a function that GETs a URL through it and returns its
// Cache-Status without this cache's name, and one that closes both.
func exampleTransport(opts hishel.Options) (*hishel.Transport, func(url string, hdr ...string) string, func()) {
	store, err := cache.OpenMemory(context.Background(), nil)
	if err != nil {
		log.Fatal(err)
	}
	opts.Storage = store
	tr, err := hishel.NewTransport(&opts)
	if err != nil {
		log.Fatal(err)
	}
	get := func(url string, hdr ...string) string {
		req, _ := http.NewRequest("GET", url, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := tr.RoundTrip(req)
		if err != nil {
			log.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return strings.TrimPrefix(resp.Header.Get("Cache-Status"), "hishel; ")
	}
	return tr, get, func() { tr.Close(); store.Close() }
}

// Invalidate removes every stored response of a URL: every method and
// every variant.
func ExampleTransport_Invalidate() {
	origin, _ := exampleOrigin()
	defer origin.Close()
	tr, get, done := exampleTransport(hishel.Options{})
	defer done()

	get(origin.URL + "/price")
	fmt.Println(get(origin.URL + "/price")[:3])
	n, err := tr.Invalidate(context.Background(), origin.URL+"/price")
	fmt.Println("removed", n, err)
	fmt.Println(get(origin.URL + "/price")[:12])
	// Output:
	// hit
	// removed 1 <nil>
	// fwd=uri-miss
}

// Keys without tracking parameters, and one entry per tenant.
func ExampleOptions_keyShaping() {
	origin, calls := exampleOrigin()
	defer origin.Close()
	_, get, done := exampleTransport(hishel.Options{
		IgnoreParams: []string{"utm_*"},    // out of keys and stored URLs
		MatchHeaders: []string{"X-Tenant"}, // one entry per value
	})
	defer done()

	get(origin.URL+"/home?utm_source=mail", "X-Tenant", "a")
	get(origin.URL+"/home?utm_source=ad", "X-Tenant", "a") // a hit: same key
	get(origin.URL+"/home", "X-Tenant", "b")               // a miss: another tenant
	fmt.Println("origin calls:", *calls)
	// Output: origin calls: 2
}

// URL rules: some URLs never cached, others stored for a set time.
func ExampleURLRule() {
	origin, calls := exampleOrigin()
	defer origin.Close()
	host := strings.TrimPrefix(origin.URL, "http://")
	_, get, done := exampleTransport(hishel.Options{URLRules: []hishel.URLRule{
		{Pattern: host + "/live/", NoCache: true},
		{Pattern: host + "/*.json", TTL: 10 * time.Minute},
		{Pattern: host, TTL: model.NoExpiry},
	}})
	defer done()

	fmt.Println(get(origin.URL + "/live/feed"))
	fmt.Println(get(origin.URL + "/live/feed"))
	get(origin.URL + "/data.json")
	fmt.Println(get(origin.URL + "/data.json")[:3])
	fmt.Println("origin calls:", *calls)
	// Output:
	// fwd=bypass; fwd-status=200; detail=url-rule
	// fwd=bypass; fwd-status=200; detail=url-rule
	// hit
	// origin calls: 3
}

// A filter that keeps some responses out of the cache.
func ExampleOptions_storeFilter() {
	origin, calls := exampleOrigin()
	defer origin.Close()
	_, get, done := exampleTransport(hishel.Options{
		StoreFilter: func(req *http.Request, resp *http.Response) bool {
			return !strings.HasPrefix(req.URL.Path, "/account")
		},
	})
	defer done()

	fmt.Println(get(origin.URL + "/account"))
	get(origin.URL + "/account")
	fmt.Println("origin calls:", *calls)
	// Output:
	// fwd=uri-miss; fwd-status=200; detail=filtered
	// origin calls: 2
}

// Per request, through the context: force a refresh, or never go to the
// origin.
func ExampleWithRefresh() {
	origin, calls := exampleOrigin()
	defer origin.Close()
	tr, _, done := exampleTransport(hishel.Options{})
	defer done()
	client := &http.Client{Transport: tr}
	get := func(ctx context.Context) string {
		req, _ := http.NewRequestWithContext(ctx, "GET", origin.URL+"/news", nil)
		resp, err := client.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return fmt.Sprint(resp.StatusCode, " ", strings.TrimPrefix(resp.Header.Get("Cache-Status"), "hishel; "))
	}
	ctx := context.Background()
	fmt.Println(get(hishel.WithOnlyIfCached(ctx))) // nothing stored, and the origin is not asked
	get(ctx)
	fmt.Println(get(hishel.WithRefresh(ctx))) // stored and fresh, but asked again
	fmt.Println(get(hishel.WithOnlyIfCached(ctx))[:7])
	fmt.Println("origin calls:", *calls)
	// Output:
	// 504 detail=only-if-cached
	// 200 fwd=request; fwd-status=200; stored
	// 200 hit
	// origin calls: 2
}
