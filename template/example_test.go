package template_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"

	"github.com/hishel-go/hishel/model"
	"github.com/hishel-go/hishel/template"
)

// A pair's life: create it with the request, add the response under a cache
// key, read both bodies (which stores them), then serve it by key.
func ExampleBolt() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "hishel-example")
	defer os.RemoveAll(dir)

	s, err := template.OpenBolt(ctx, &template.BoltOptions{Path: filepath.Join(dir, "cache.db")})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	inc, err := s.CreatePair(ctx, model.Request{Method: "GET", URL: "https://example.com/users"})
	if err != nil {
		log.Fatal(err)
	}
	cp, err := s.AddResponse(ctx, inc.ID, model.Response{
		Status: 200,
		Header: http.Header{"Content-Type": {"application/json"}},
		Body:   model.StringBody(`{"users": ["alice", "bob"]}`),
	}, "GET https://example.com/users")
	if err != nil {
		log.Fatal(err)
	}
	// Reading the body to its end stores it; the pair is now served.
	if _, err := io.Copy(io.Discard, cp.Response.Body); err != nil {
		log.Fatal(err)
	}

	pairs, err := s.GetPairs(ctx, "GET https://example.com/users")
	if err != nil {
		log.Fatal(err)
	}
	for _, p := range pairs {
		body, _ := model.ReadAll(p.Response.Body)
		fmt.Println(p.Response.Status, p.Response.Header.Get("Content-Type"), string(body))
	}
	// Output: 200 application/json {"users": ["alice", "bob"]}
}

// UpdatePairFunc changes a pair in one atomic read-modify-write.
func ExampleBolt_UpdatePairFunc() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "hishel-example")
	defer os.RemoveAll(dir)
	s, err := template.OpenBolt(ctx, &template.BoltOptions{Path: filepath.Join(dir, "cache.db")})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	inc, _ := s.CreatePair(ctx, model.Request{Method: "GET", URL: "https://example.com/"})
	cp, _ := s.AddResponse(ctx, inc.ID, model.Response{Status: 200, Header: http.Header{}}, "old-key")

	updated, err := s.UpdatePairFunc(ctx, cp.ID, func(p model.CompletePair) (model.CompletePair, error) {
		p.Key = "new-key"
		p.Response.Header.Set("X-Revalidated", "yes")
		return p, nil
	})
	if err != nil {
		log.Fatal(err)
	}
	defer updated.Close()
	old, _ := s.GetPairs(ctx, "old-key")
	moved, _ := s.GetPairs(ctx, "new-key")
	fmt.Println(len(old), len(moved), moved[0].Response.Header.Get("X-Revalidated"))
	// Output: 0 1 yes
}
