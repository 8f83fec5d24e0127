package hishel_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hishel-go/hishel"
	"github.com/hishel-go/hishel/cache"
)

func newMiddleware(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int64, *cache.Memory) {
	t.Helper()
	var calls atomic.Int64
	s, err := cache.OpenMemory(context.Background(), &cache.MemoryOptions{SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	mw, err := hishel.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		h(w, r)
	}), &hishel.Options{Storage: s})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mw.Close() })
	srv := httptest.NewServer(mw)
	t.Cleanup(srv.Close)
	return srv, &calls, s
}

func fetch(t *testing.T, method, url string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func TestMiddlewareCaches(t *testing.T) {
	srv, calls, _ := newMiddleware(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprint(w, "page "+r.URL.Path)
	})
	for i := range 3 {
		resp, body := fetch(t, "GET", srv.URL+"/a")
		if body != "page /a" {
			t.Fatalf("GET %d body %q", i, body)
		}
		if cs := resp.Header.Get("Cache-Status"); i > 0 && !strings.HasPrefix(cs, "hishel; hit") {
			t.Errorf("GET %d Cache-Status %q; want a hit", i, cs)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("handler ran %d times; want 1", n)
	}
	fetch(t, "POST", srv.URL+"/a")
	fetch(t, "GET", srv.URL+"/a")
	if n := calls.Load(); n != 3 {
		t.Errorf("after POST, handler ran %d times; want 3 (invalidated)", n)
	}
}

func TestMiddlewareShared(t *testing.T) {
	srv, calls, _ := newMiddleware(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "private, max-age=60")
		fmt.Fprint(w, "for one user")
	})
	fetch(t, "GET", srv.URL)
	fetch(t, "GET", srv.URL)
	if n := calls.Load(); n != 2 {
		t.Errorf("private responses: handler ran %d times; want 2 (a shared cache never stores them)", n)
	}
}

func TestMiddlewareStreams(t *testing.T) {
	proceed := make(chan struct{})
	srv, _, _ := newMiddleware(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprint(w, "first part;")
		w.(http.Flusher).Flush()
		<-proceed
		fmt.Fprint(w, "second part")
	})
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, len("first part;"))
	done := make(chan error, 1)
	go func() { _, err := io.ReadFull(resp.Body, buf); done <- err }()
	select {
	case err := <-done:
		if err != nil || string(buf) != "first part;" {
			t.Fatalf("first part = %q, %v", buf, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the first part did not reach the client before the handler finished")
	}
	close(proceed)
	rest, _ := io.ReadAll(resp.Body)
	if string(rest) != "second part" {
		t.Errorf("rest = %q", rest)
	}
}

func TestMiddlewareHandlerPanics(t *testing.T) {
	srv, _, _ := newMiddleware(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprint(w, "partial")
		panic("handler bug")
	})
	resp, err := http.Get(srv.URL)
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err == nil {
		t.Errorf("a panicking handler's cut body read without error")
	}
	srv2, calls, _ := newMiddleware(t, func(w http.ResponseWriter, r *http.Request) { panic("early") })
	resp, body := fetch(t, "GET", srv2.URL)
	if resp.StatusCode != http.StatusInternalServerError || calls.Load() != 1 {
		t.Errorf("early panic: status %d body %q; want 500", resp.StatusCode, body)
	}
}

// A client that disconnects half-way, the only one, leaves nothing
// stored: the fetch is abandoned and the handler's context cancelled.
func TestMiddlewareClientDisconnects(t *testing.T) {
	var second atomic.Bool
	srv, calls, store := newMiddleware(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		chunk := make([]byte, 32<<10)
		for i := range 256 { // 8 MiB, more than the socket buffers hold
			if i == 8 && !second.Load() {
				// The rest comes once the fetch is abandoned (it never
				// does) or after a minute.
				select {
				case <-r.Context().Done():
					return
				case <-time.After(time.Minute):
				}
			}
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	resp, err := http.Get(srv.URL + "/big")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close() // drops the connection mid-body
	// Give the handler time to notice; the pair must never appear.
	key, _ := hishel.URLKey("GET", srv.URL+"/big")
	for range 10 {
		time.Sleep(50 * time.Millisecond)
		ps, err := store.GetPairs(context.Background(), key)
		if err != nil {
			t.Fatal(err)
		}
		if len(ps) != 0 {
			t.Fatalf("a body the client abandoned was stored")
		}
	}
	// The next request goes to the handler again.
	second.Store(true)
	fetch(t, "GET", srv.URL+"/big")
	if n := calls.Load(); n != 2 {
		t.Errorf("handler ran %d times; want 2", n)
	}
}
