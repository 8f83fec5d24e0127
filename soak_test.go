package hishel_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/hishel-go/hishel"
	"github.com/hishel-go/hishel/backend"
	"github.com/hishel-go/hishel/cache"
	"github.com/hishel-go/hishel/cacheasync"
	"github.com/hishel-go/hishel/model"
	"go.uber.org/goleak"
)

var soakDuration = flag.Duration("soak.duration", 3*time.Second, "how long TestSoak runs")

// TestSoak runs 64 goroutines of mixed blocking and async storage
// operations and Transport traffic with cancellations on one bbolt file,
// for -soak.duration. Afterwards no goroutine is left behind, the counters
// agree with a full scan, and bbolt's consistency check passes.
func TestSoak(t *testing.T) {
	noLeaks := goleak.IgnoreCurrent()
	path := filepath.Join(t.TempDir(), "soak.db")
	ctx := context.Background()
	blocking, err := cache.OpenBolt(ctx, &cache.BoltOptions{Path: path, DefaultTTL: 2 * time.Second, SweepInterval: 200 * time.Millisecond, MaxBytes: 32 << 20})
	if err != nil {
		t.Fatal(err)
	}
	async := cacheasync.WrapBolt(blocking.Template(), &cacheasync.Options{MaxInFlight: 16})
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := len(r.URL.Path) * 997 % (200 << 10)
		switch r.URL.Path[len(r.URL.Path)-1] % 3 {
		case 0:
			w.Header().Set("Cache-Control", "max-age=1")
		case 1:
			w.Header().Set("Cache-Control", "no-cache")
			w.Header().Set("ETag", `"x"`)
			if r.Header.Get("If-None-Match") == `"x"` {
				w.WriteHeader(http.StatusNotModified)
				return
			}
		default:
			w.Header().Set("Cache-Control", "max-age=60, stale-while-revalidate=60")
			w.Header().Set("Vary", "Accept-Language")
		}
		w.Write(bytes.Repeat([]byte{'o'}, n))
	}))
	tr, err := hishel.NewTransport(&hishel.Options{Storage: blocking})
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: tr}

	deadline := time.Now().Add(*soakDuration)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 7))
			for i := 0; time.Now().Before(deadline); i++ {
				var err error
				switch w % 4 {
				case 0:
					err = soakBlocking(ctx, blocking, r)
				case 1:
					err = soakAsync(ctx, async, r)
				default:
					err = soakHTTP(client, origin.URL, r)
				}
				if err != nil {
					errs <- fmt.Errorf("worker %d step %d: %w", w, i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if err := blocking.Sync(ctx); err != nil {
		t.Fatal(err)
	}

	// The counters agree with a full scan. Bodies here are under 1 MiB, so
	// an incomplete pair holds no stored body bytes; every pair's heads
	// count (see model.Stats.Bytes).
	var want model.Stats
	for p, err := range blocking.Pairs(ctx, model.Filter{}) {
		if err != nil {
			t.Fatal(err)
		}
		want.Bytes += backend.HeadBytes(p.Key, p.Request.Method, p.Request.URL, p.Request.Header, p.Response.Header)
		switch p.State {
		case model.StateComplete:
			want.Pairs++
			want.Bytes += p.Meta.RequestSize + p.Meta.ResponseSize
		case model.StateDeleted:
			want.Deleted++
			want.Bytes += p.Meta.RequestSize + p.Meta.ResponseSize
		case model.StateIncomplete:
			want.Incomplete++
		}
	}
	got, err := blocking.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Evicted counts removals since open; no scan can see pairs that are
	// gone, so it is only checked for sign.
	if got.Evicted < 0 {
		t.Errorf("Stats.Evicted = %d", got.Evicted)
	}
	want.Evicted = got.Evicted
	if got != want {
		t.Errorf("Stats = %+v; a full scan finds %+v", got, want)
	}
	t.Logf("after %v: %+v", *soakDuration, got)
	if err := async.Close(); err != nil { // closes the store too
		t.Fatal(err)
	}
	origin.Close()
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()

	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	err = db.View(func(tx *bbolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return nil
	})
	db.Close()
	if err != nil {
		t.Errorf("bbolt consistency check: %v", err)
	}

	goleak.VerifyNone(t, noLeaks)
}

func soakKey(r *rand.Rand) string { return fmt.Sprint("soak-", r.IntN(32)) }

func soakBlocking(ctx context.Context, s *cache.Bolt, r *rand.Rand) error {
	switch r.IntN(5) {
	case 0, 1:
		inc, err := s.CreatePair(ctx, model.Request{Method: "GET", URL: "u", Body: model.BytesBody(make([]byte, r.IntN(1000)))})
		if err != nil {
			return err
		}
		if _, err := io.Copy(io.Discard, inc.Request.Body); err != nil {
			return err
		}
		cp, err := s.AddResponse(ctx, inc.ID, model.Response{Status: 200, Body: model.BytesBody(make([]byte, r.IntN(100<<10)))}, soakKey(r))
		if err != nil {
			return err
		}
		if r.IntN(4) == 0 {
			return cp.Response.Body.Close() // abandoned: not stored
		}
		_, err = io.Copy(io.Discard, cp.Response.Body)
		return err
	case 2:
		ps, err := s.GetPairs(ctx, soakKey(r))
		if err != nil {
			return err
		}
		for _, p := range ps {
			if _, err := io.Copy(io.Discard, p.Response.Body); err != nil && !errors.Is(err, model.ErrRemoved) {
				return err
			}
			p.Close()
		}
		return nil
	case 3:
		ps, err := s.GetPairs(ctx, soakKey(r))
		if err != nil || len(ps) == 0 {
			return err
		}
		for _, p := range ps {
			p.Close()
		}
		return s.Remove(ctx, ps[0].ID)
	default:
		_, err := s.Cleanup(ctx)
		return err
	}
}

func soakAsync(ctx context.Context, s *cacheasync.Bolt, r *rand.Rand) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	inc, err := s.CreatePair(ctx, model.Request{Method: "GET", URL: "u"}).Await(ctx)
	if err != nil {
		return err
	}
	cp, err := s.AddResponse(ctx, inc.ID, model.Response{Status: 200, Body: model.BytesBody(make([]byte, r.IntN(100<<10)))}, soakKey(r)).Await(ctx)
	if err != nil {
		return err
	}
	for c := range cp.Response.Body.Chunks(ctx) {
		if c.Err != nil {
			return c.Err
		}
	}
	ps, err := s.GetPairs(ctx, soakKey(r)).Await(ctx)
	if err != nil {
		return err
	}
	for i, p := range ps {
		if i == 0 && r.IntN(2) == 0 {
			ch := p.Response.Body.Chunks(ctx)
			<-ch
			cancel() // abandon the channel half-way
			for range ch {
			}
			continue
		}
		p.Close()
	}
	return nil
}

func soakHTTP(c *http.Client, base string, r *rand.Rand) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	method := "GET"
	if r.IntN(10) == 0 {
		method = "POST"
	}
	req, _ := http.NewRequestWithContext(ctx, method, fmt.Sprint(base, "/p", r.IntN(24)), nil)
	req.Header.Set("Accept-Language", fmt.Sprint("l", r.IntN(3)))
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if r.IntN(5) == 0 {
		io.ReadFull(resp.Body, make([]byte, 100))
		cancel() // the caller goes away mid-body
		return nil
	}
	_, err = io.Copy(io.Discard, resp.Body)
	return err
}
