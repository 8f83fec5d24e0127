package cache_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"

	"github.com/hishel-go/hishel/cache"
	"github.com/hishel-go/hishel/model"
)

// The blocking API: every call returns its result. Store a pair (reading
// the response body to its end is what stores it), then serve it by key and
// read its body back as an io.Reader. Compare the same flow with futures
// and channels in package cacheasync.
func ExampleBolt() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "hishel-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	store, err := cache.OpenBolt(ctx, &cache.BoltOptions{Path: filepath.Join(dir, "cache.db")})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	const key = "GET https://example.com/users"
	inc, err := store.CreatePair(ctx, model.Request{Method: "GET", URL: "https://example.com/users"})
	if err != nil {
		log.Fatal(err)
	}
	cp, err := store.AddResponse(ctx, inc.ID, model.Response{
		Status: 200,
		Header: http.Header{"Content-Type": {"application/json"}},
		Body:   model.StringBody(`{"users": ["alice", "bob"]}`),
	}, key)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, cp.Response.Body); err != nil { // stores the body
		log.Fatal(err)
	}

	pairs, err := store.GetPairs(ctx, key)
	if err != nil {
		log.Fatal(err)
	}
	for _, p := range pairs {
		body, err := io.ReadAll(p.Response.Body)
		p.Close()
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(p.Response.Status, p.Response.Header.Get("Content-Type"), string(body))
	}
	// Output: 200 application/json {"users": ["alice", "bob"]}
}

// A Memory store follows the same rules; errors are the same values in
// every package, so callers branch on them with errors.Is.
func ExampleMemory() {
	ctx := context.Background()
	store, err := cache.OpenMemory(ctx, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	_, err = store.AddResponse(ctx, model.NewPairID(), model.Response{Status: 200}, "key")
	fmt.Println(errors.Is(err, cache.ErrNotFound))
	// Output: true
}

// Open opens a store by URL, with the backend registered for its scheme
// and options from its query; a backend outside this package registers
// its scheme when imported (import _ "github.com/hishel-go/hishel/sqlite").
func ExampleOpen() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "hishel-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	store, err := cache.Open(ctx, "bolt://"+filepath.ToSlash(filepath.Join(dir, "cache.db"))+"?ttl=1h&max-bytes=512MiB")
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	mem, err := cache.Open(ctx, "memory://?max-pairs=128")
	if err != nil {
		log.Fatal(err)
	}
	defer mem.Close()

	_, err = cache.Open(ctx, "nosuch:///x")
	fmt.Println(errors.Is(err, cache.ErrInvalid))
	fmt.Printf("%T %T\n", store, mem)
	// Output:
	// true
	// *cache.Bolt *cache.Memory
}

// Find pairs with a filter and delete them: Pairs lists what a
// model.Filter matches (here every pair of one URL, whatever its method or
// variant), and Delete soft-deletes the same and says how many.
func ExampleBolt_Delete() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "hishel-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	store, err := cache.OpenBolt(ctx, &cache.BoltOptions{Path: filepath.Join(dir, "cache.db")})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	for _, r := range []struct{ method, url, lang string }{
		{"GET", "https://example.com/users", "en"},
		{"GET", "https://example.com/users", "fr"},
		{"HEAD", "https://example.com/users", "en"},
		{"GET", "https://example.com/orders", "en"},
	} {
		inc, err := store.CreatePair(ctx, model.Request{Method: r.method, URL: r.url, Header: http.Header{"Accept-Language": {r.lang}}})
		if err != nil {
			log.Fatal(err)
		}
		cp, err := store.AddResponse(ctx, inc.ID, model.Response{Status: 200, Body: model.StringBody("…")}, "GET "+r.url)
		if err != nil {
			log.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, cp.Response.Body); err != nil {
			log.Fatal(err)
		}
	}

	users := model.Filter{URL: "https://EXAMPLE.com:443/users"} // compared as keys compare URLs
	for p, err := range store.Pairs(ctx, users) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(p.Request.Method, p.Request.URL, p.Request.Header.Get("Accept-Language"))
	}
	n, err := store.Delete(ctx, users)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("deleted", n)
	n, _ = store.Delete(ctx, model.Filter{Expired: true}) // what the next sweep would expire
	fmt.Println("expired", n)
	// Unordered output:
	// GET https://example.com/users en
	// GET https://example.com/users fr
	// HEAD https://example.com/users en
	// deleted 3
	// expired 0
}
