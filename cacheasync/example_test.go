package cacheasync_test

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"net/http"
	"os"
	"path/filepath"

	"github.com/hishel-go/hishel/cacheasync"
	"github.com/hishel-go/hishel/model"
)

// The async API: every call returns a future at once, and bodies are
// channels. The response body comes in on a channel fed by a producer
// (model.ChanBody) and is stored as it is read out again as a channel
// (Body.Chunks); a stored body streams back the same way. Compare the same
// flow with blocking calls in package cache.
func ExampleBolt() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // ends the producer and the body goroutines if we stop early
	dir, err := os.MkdirTemp("", "hishel-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	store, err := cacheasync.OpenBolt(ctx, &cacheasync.BoltOptions{Path: filepath.Join(dir, "cache.db")}, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	// A producer of the response body, such as a network read.
	in := make(chan model.Chunk)
	go func() {
		defer close(in)
		for _, part := range []string{`{"users": `, `["alice", `, `"bob"]}`} {
			select {
			case in <- model.Chunk{Data: []byte(part)}:
			case <-ctx.Done():
				return
			}
		}
	}()

	const key = "GET https://example.com/users"
	inc, err := store.CreatePair(ctx, model.Request{Method: "GET", URL: "https://example.com/users"}).Await(ctx)
	if err != nil {
		log.Fatal(err)
	}
	cp, err := store.AddResponse(ctx, inc.ID, model.Response{
		Status: 200,
		Header: http.Header{"Content-Type": {"application/json"}},
		Body:   model.ChanBody(in),
	}, key).Await(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for c := range cp.Response.Body.Chunks(ctx) { // passing the body on stores it
		if c.Err != nil {
			log.Fatal(c.Err)
		}
	}

	pairs, err := store.GetPairs(ctx, key).Await(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, p := range pairs {
		var body bytes.Buffer
		for c := range p.Response.Body.Chunks(ctx) {
			if c.Err != nil {
				log.Fatal(c.Err)
			}
			body.Write(c.Data)
		}
		p.Close()
		fmt.Println(p.Response.Status, p.Response.Header.Get("Content-Type"), body.String())
	}
	// Output: 200 application/json {"users": ["alice", "bob"]}
}

// A listing is a Stream: a channel of results, filled one pair ahead of
// the consumer, closed after the last; an error arrives in-band.
func ExampleMemory_Pairs() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // a consumer that stops early ends the stream's goroutine
	store, err := cacheasync.OpenMemory(ctx, nil, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	for _, url := range []string{"https://example.com/a", "https://example.com/b"} {
		inc, err := store.CreatePair(ctx, model.Request{Method: "GET", URL: url}).Await(ctx)
		if err != nil {
			log.Fatal(err)
		}
		if _, err := store.AddResponse(ctx, inc.ID, model.Response{Status: 200}, "GET "+url).Await(ctx); err != nil {
			log.Fatal(err)
		}
	}
	for r := range store.Pairs(ctx, model.Filter{KeyPrefix: "GET https://example.com/"}) {
		if r.Err != nil {
			log.Fatal(r.Err)
		}
		fmt.Println(r.Value.State, r.Value.Key)
	}
	n, err := store.Delete(ctx, model.Filter{URL: "https://example.com/a"}).Await(ctx)
	fmt.Println("deleted", n, err)
	// Unordered output:
	// complete GET https://example.com/a
	// complete GET https://example.com/b
	// deleted 1 <nil>
}
