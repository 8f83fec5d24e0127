package hishel_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hishel-go/hishel"
	"github.com/hishel-go/hishel/cache"
)

// BenchmarkCollapseSlowLeader measures what a slow client of a collapsed
// miss costs the others: per op, a leader reads a 64 KiB response 1 KiB
// every 10 ms (about 0.7 s), and five followers of the same miss read it as
// fast as they can. "follower-ms" is the followers' median time to the
// whole body, "leader-ms" the leader's. Run it with -benchtime 3x.
func BenchmarkCollapseSlowLeader(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 64<<10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Write(body)
	}))
	defer srv.Close()
	s, err := cache.OpenMemory(context.Background(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	tr, err := hishel.NewTransport(&hishel.Options{Storage: s})
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	c := &http.Client{Transport: tr}
	var followers, leaders []time.Duration
	for i := 0; i < b.N; i++ {
		url := srv.URL + "/r" + strconv.Itoa(i)
		start := time.Now()
		resp, err := c.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		leaderDone := make(chan time.Duration, 1)
		go func() {
			buf := make([]byte, 1<<10)
			for {
				if _, err := io.ReadFull(resp.Body, buf); err != nil {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			resp.Body.Close()
			leaderDone <- time.Since(start)
		}()
		var mu sync.Mutex
		var wg sync.WaitGroup
		for range 5 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				t0 := time.Now()
				r, err := c.Get(url)
				if err != nil {
					b.Error(err)
					return
				}
				n, _ := io.Copy(io.Discard, r.Body)
				r.Body.Close()
				if n != int64(len(body)) {
					b.Errorf("follower got %d bytes", n)
				}
				mu.Lock()
				followers = append(followers, time.Since(t0))
				mu.Unlock()
			}()
		}
		wg.Wait()
		leaders = append(leaders, <-leaderDone)
	}
	ms := func(ds []time.Duration) float64 {
		slices.Sort(ds)
		return float64(ds[len(ds)/2]) / float64(time.Millisecond)
	}
	b.ReportMetric(ms(followers), "follower-ms")
	b.ReportMetric(ms(leaders), "leader-ms")
}
