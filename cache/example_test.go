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
