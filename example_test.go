package hishel_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/hishel-go/hishel"
	"github.com/hishel-go/hishel/cache"
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
