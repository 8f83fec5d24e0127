package cacheasync_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hishel-go/hishel/cache"
	"github.com/hishel-go/hishel/cacheasync"
	"github.com/hishel-go/hishel/model"
)

// The benchmarks here compare the async API with the blocking one in the
// same process; each reports the blocking baseline's ns/op and the ratio.

func benchReq() model.Request {
	return model.Request{Method: "GET", URL: "https://example.com/resource", Header: http.Header{"Accept": {"*/*"}}}
}

func benchResp(body []byte) model.Response {
	return model.Response{Status: 200, Header: http.Header{"Content-Type": {"application/octet-stream"}}, Body: model.BytesBody(body)}
}

// storeBlocking writes one pair through the blocking API.
func storeBlocking(ctx context.Context, s *cache.Bolt, key string, body []byte) error {
	inc, err := s.CreatePair(ctx, benchReq())
	if err != nil {
		return err
	}
	cp, err := s.AddResponse(ctx, inc.ID, benchResp(body), key)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, cp.Response.Body)
	return err
}

// storeAsync writes one pair through the async API: each step is a future,
// and the response body is stored as its chunks are drained from a channel.
func storeAsync(ctx context.Context, s *cacheasync.Bolt, key string, body []byte) error {
	inc, err := s.CreatePair(ctx, benchReq()).Await(ctx)
	if err != nil {
		return err
	}
	cp, err := s.AddResponse(ctx, inc.ID, benchResp(body), key).Await(ctx)
	if err != nil {
		return err
	}
	for c := range cp.Response.Body.Chunks(ctx) {
		if c.Err != nil {
			return c.Err
		}
	}
	return nil
}

// inFlight runs n calls of fn with `window` of them in flight at once.
func inFlight(n, window int, fn func(i int) error) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	next := make(chan int)
	for range window {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(i); err != nil {
					mu.Lock()
					first = err
					mu.Unlock()
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}

// BenchmarkPairWritesAsyncVsBlocking stores pairs durably on one bbolt file:
// 1, 8 or 32 async pair writes in flight against a loop of blocking ones. The
// "x-blocking" metric is how many times faster the async pipeline is.
func BenchmarkPairWritesAsyncVsBlocking(b *testing.B) {
	for _, tc := range []struct{ size, window int }{{1 << 10, 1}, {1 << 10, 8}, {1 << 10, 32}, {64 << 10, 32}} {
		size, window := tc.size, tc.window
		b.Run(fmt.Sprintf("body=%dKiB/in-flight=%d", size>>10, window), func(b *testing.B) {
			ctx := context.Background()
			body := bytes.Repeat([]byte("x"), size)
			path := filepath.Join(b.TempDir(), "cache.db")
			as, err := cacheasync.OpenBolt(ctx, &cacheasync.BoltOptions{Path: path, SweepInterval: -1}, &cacheasync.Options{MaxInFlight: 64})
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(size))
			b.ResetTimer()
			start := time.Now()
			err = inFlight(b.N, window, func(i int) error { return storeAsync(ctx, as, fmt.Sprint("a", i), body) })
			async := time.Since(start)
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			if err := as.Close(); err != nil {
				b.Fatal(err)
			}
			bs, err := cache.OpenBolt(ctx, &cache.BoltOptions{Path: path, SweepInterval: -1})
			if err != nil {
				b.Fatal(err)
			}
			defer bs.Close()
			start = time.Now()
			for i := range b.N {
				if err := storeBlocking(ctx, bs, fmt.Sprint("b", i), body); err != nil {
					b.Fatal(err)
				}
			}
			blocking := time.Since(start)
			b.ReportMetric(float64(blocking.Nanoseconds())/float64(b.N), "blocking-ns/op")
			b.ReportMetric(float64(blocking)/float64(async), "x-blocking")
		})
	}
}

// BenchmarkHitAsyncVsBlocking serves a stored 1 KiB pair from the memory
// backend: GetPairs and the whole response body, through the blocking API
// and through the async one (awaiting the future, then reading the body
// the same way, or as the channel of Body.Chunks). The "x-blocking" metric
// is the async hit's cost relative to the blocking hit.
func BenchmarkHitAsyncVsBlocking(b *testing.B) {
	ctx := context.Background()
	body := bytes.Repeat([]byte("x"), 1<<10)
	ms, err := cache.OpenMemory(ctx, &cache.MemoryOptions{SweepInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer ms.Close()
	inc, _ := ms.CreatePair(ctx, benchReq())
	cp, _ := ms.AddResponse(ctx, inc.ID, benchResp(body), "k")
	if _, err := io.Copy(io.Discard, cp.Response.Body); err != nil {
		b.Fatal(err)
	}
	as := cacheasync.WrapMemory(ms.Template(), nil)
	defer as.Close()

	blockingHit := func() error {
		ps, err := ms.GetPairs(ctx, "k")
		if err != nil || len(ps) != 1 {
			return fmt.Errorf("GetPairs: %d, %v", len(ps), err)
		}
		_, err = io.Copy(io.Discard, ps[0].Response.Body)
		return err
	}
	// channels: the async style end to end (a future, then Body.Chunks);
	// call: the same body reading as the blocking hit, so that only the
	// call's overhead (the future) differs.
	asyncHits := map[string]func() error{
		"channels": func() error {
			ps, err := as.GetPairs(ctx, "k").Await(ctx)
			if err != nil || len(ps) != 1 {
				return fmt.Errorf("GetPairs: %d, %v", len(ps), err)
			}
			for c := range ps[0].Response.Body.Chunks(ctx) {
				if c.Err != nil {
					return c.Err
				}
			}
			return nil
		},
		"call": func() error {
			ps, err := as.GetPairs(ctx, "k").Await(ctx)
			if err != nil || len(ps) != 1 {
				return fmt.Errorf("GetPairs: %d, %v", len(ps), err)
			}
			_, err = io.Copy(io.Discard, ps[0].Response.Body)
			return err
		},
	}
	for _, style := range []string{"call", "channels"} {
		b.Run(style, func(b *testing.B) { compareHits(b, asyncHits[style], blockingHit) })
	}
}

// compareHits times asyncHit and blockingHit b.N times each, interleaved in
// rounds so that machine noise hits both alike.
func compareHits(b *testing.B, asyncHit, blockingHit func() error) {
	b.ReportAllocs()
	b.ResetTimer()
	var async, blocking time.Duration
	// Interleave the two in rounds so that machine noise hits both alike.
	const round = 64
	for done := 0; done < b.N; done += round {
		n := min(round, b.N-done)
		t0 := time.Now()
		for range n {
			if err := asyncHit(); err != nil {
				b.Fatal(err)
			}
		}
		t1 := time.Now()
		for range n {
			if err := blockingHit(); err != nil {
				b.Fatal(err)
			}
		}
		async += t1.Sub(t0)
		blocking += time.Since(t1)
	}
	b.ReportMetric(float64(blocking.Nanoseconds())/float64(b.N), "blocking-ns/op")
	b.ReportMetric(float64(async)/float64(blocking), "x-blocking")
}
