package hishel_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/hishel-go/hishel"
	"github.com/hishel-go/hishel/cache"
	"github.com/hishel-go/hishel/model"
)

// BenchmarkTransportHitVariants serves a hit for a URL stored with n Vary
// variants (Accept-Language), against a hit for a URL stored with one, in
// interleaved rounds (see compare): "x-one" is the time of the hit among n
// variants over the time of the one-variant hit. With the default MaxVariants the store
// keeps 32 of them, however many were stored; with no cap it keeps all.
// The stores are bolt with NoSync (so that 10,000 variants store quickly;
// a hit does not commit) and memory.
func BenchmarkTransportHitVariants(b *testing.B) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Header().Set("Vary", "Accept-Language")
		fmt.Fprintf(w, "body for %s", r.Header.Get("Accept-Language"))
	}))
	b.Cleanup(origin.Close)
	stores := []struct {
		name string
		open func(b *testing.B, maxVariants int) hishel.Storage
	}{
		{"bolt-nosync", func(b *testing.B, maxVariants int) hishel.Storage {
			s, err := cache.OpenBolt(context.Background(), &cache.BoltOptions{Path: filepath.Join(b.TempDir(), "c.db"),
				SweepInterval: -1, NoSync: true, MaxVariants: maxVariants})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			return s
		}},
		{"memory", func(b *testing.B, maxVariants int) hishel.Storage {
			s, err := cache.OpenMemory(context.Background(), &cache.MemoryOptions{SweepInterval: -1, MaxVariants: maxVariants})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			return s
		}},
	}
	fetch := func(c *http.Client, url, lang string) error {
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("Accept-Language", lang)
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return err
	}
	for _, st := range stores {
		for _, capName := range []string{"default-cap", "no-cap"} {
			maxVariants := 0
			if capName == "no-cap" {
				maxVariants = -1
			}
			for _, n := range []int{1, 100, 10_000} {
				if capName == "no-cap" && n == 1 {
					continue // the same as with the default cap
				}
				b.Run(fmt.Sprintf("%s/%s/variants=%d", st.name, capName, n), func(b *testing.B) {
					s := st.open(b, maxVariants)
					tr, err := hishel.NewTransport(&hishel.Options{Storage: s})
					if err != nil {
						b.Fatal(err)
					}
					b.Cleanup(func() { tr.Close() })
					c := &http.Client{Transport: tr}
					many, one := origin.URL+"/many", origin.URL+"/one"
					// The variants are stored as the Transport stores them, but
					// through the storage: a miss reads every variant stored
					// before it, and 10,000 misses would take minutes.
					req, err := http.NewRequest(http.MethodGet, many, nil)
					if err != nil {
						b.Fatal(err)
					}
					key, err := hishel.DefaultKey(req)
					if err != nil {
						b.Fatal(err)
					}
					for i := range n {
						lang := fmt.Sprint("lang-", i)
						storeVariant(b, s, key, many, lang)
					}
					if err := fetch(c, one, "lang-0"); err != nil {
						b.Fatal(err)
					}
					hit := fmt.Sprint("lang-", n-1) // the newest: kept under any cap
					for _, u := range []string{many, one} {
						if err := fetch(c, u, map[string]string{many: hit, one: "lang-0"}[u]); err != nil {
							b.Fatal(err)
						}
					}
					compareWith(b, func(int) error { return fetch(c, many, hit) }, func(int) error { return fetch(c, one, "lang-0") }, "one")
				})
			}
		}
	}
}

// storeVariant stores the pair the Transport would store for a GET of url
// with Accept-Language lang from the benchmark's origin.
func storeVariant(b *testing.B, s hishel.Storage, key, url, lang string) {
	ctx := context.Background()
	inc, err := s.CreatePair(ctx, model.Request{Method: "GET", URL: url, Header: http.Header{"Accept-Language": {lang}}})
	if err != nil {
		b.Fatal(err)
	}
	body := "body for " + lang
	cp, err := s.AddResponse(ctx, inc.ID, model.Response{Status: 200, Header: http.Header{
		"Cache-Control": {"max-age=3600"}, "Vary": {"Accept-Language"}, "Date": {time.Now().UTC().Format(http.TimeFormat)},
		"Content-Length": {fmt.Sprint(len(body))}, "Content-Type": {"text/plain; charset=utf-8"},
	}, Body: model.StringBody(body)}, key)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, cp.Response.Body); err != nil {
		b.Fatal(err)
	}
}
