package cache_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"

	"github.com/hishel-go/hishel/cache"
	"github.com/hishel-go/hishel/model"
)

// A memory tier in front of a bbolt file: the first read of a key goes to
// the file and copies the pair into memory as its body is read; the reads
// after it are answered from memory. The file stays the source of truth.
func ExampleTiered() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "hishel-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	lower, err := cache.OpenBolt(ctx, &cache.BoltOptions{Path: filepath.Join(dir, "cache.db")})
	if err != nil {
		log.Fatal(err)
	}
	store, err := cache.OpenTiered(ctx, lower, &cache.TieredOptions{MaxBytes: 16 << 20})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close() // closes the file too

	inc, err := store.CreatePair(ctx, model.Request{Method: "GET", URL: "https://example.com/"})
	if err != nil {
		log.Fatal(err)
	}
	cp, err := store.AddResponse(ctx, inc.ID, model.Response{Status: 200, Body: model.StringBody("hello")}, "GET https://example.com/")
	if err != nil {
		log.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, cp.Response.Body); err != nil { // stored in the file
		log.Fatal(err)
	}
	for range 2 { // from the file, then from memory
		pairs, err := store.GetPairs(ctx, "GET https://example.com/")
		if err != nil {
			log.Fatal(err)
		}
		body, err := io.ReadAll(pairs[0].Response.Body)
		if err != nil {
			log.Fatal(err)
		}
		pairs[0].Close()
		fmt.Printf("%d pair: %s\n", len(pairs), body)
	}
	st, err := store.Stats(ctx) // the lower tier's: what the storage holds
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("pairs in the file:", st.Pairs)
	// Output:
	// 1 pair: hello
	// 1 pair: hello
	// pairs in the file: 1
}
