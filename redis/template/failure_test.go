package template

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/hishel-go/hishel/internal/testserver"
	"github.com/hishel-go/hishel/model"
)

// A Redis that is stopped or paused fails calls with ErrUnavailable within
// the timeout, the calls after it at once, and the storage works again
// once Redis is back: a stopped server restarts empty (no persistence), a
// paused one keeps its data.
func TestUnavailable(t *testing.T) {
	// The timeout leaves room for a loaded machine; the checks allow it
	// and a second more.
	const timeout, retry = time.Second, 300 * time.Millisecond
	srv, proc := testserver.OwnRedis(t)
	s := open(t, srv, RedisOptions{Timeout: timeout, RetryAfter: retry})
	ctx := context.Background()
	store(t, s, getReq("u"), okResp([]byte("before")), "k")

	// unavailable checks that GetPairs fails with ErrUnavailable within
	// limit, and the call after it at once.
	unavailable := func(what string, limit time.Duration) {
		t.Helper()
		start := time.Now()
		_, err := s.GetPairs(ctx, "k")
		if took := time.Since(start); !errors.Is(err, model.ErrUnavailable) || took > limit {
			t.Errorf("%s: GetPairs() = %v after %v; want ErrUnavailable within %v", what, err, took, limit)
		}
		start = time.Now()
		_, err = s.CreatePair(ctx, getReq("u"))
		if took := time.Since(start); !errors.Is(err, model.ErrUnavailable) || took > 50*time.Millisecond {
			t.Errorf("%s: CreatePair() just after = %v after %v; want ErrUnavailable at once", what, err, took)
		}
	}
	// back waits for the storage to answer again and checks what it holds.
	back := func(what string, want int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			ps, err := s.GetPairs(ctx, "k")
			if err == nil {
				for _, p := range ps {
					p.Close()
				}
				if len(ps) != want {
					t.Errorf("%s: GetPairs() = %d pairs; want %d", what, len(ps), want)
				}
				return
			}
			if !errors.Is(err, model.ErrUnavailable) || time.Now().After(deadline) {
				t.Fatalf("%s: GetPairs() = %v; want Redis used again", what, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	if err := proc.Pause(); err != nil {
		t.Fatal(err)
	}
	unavailable("paused", timeout+time.Second)
	// A body being read from a paused Redis fails too, never ends short.
	if err := proc.Resume(); err != nil {
		t.Fatal(err)
	}
	back("resumed", 1)

	if err := proc.Stop(); err != nil {
		t.Fatal(err)
	}
	unavailable("stopped", timeout+time.Second)
	if err := proc.Start(); err != nil {
		t.Fatal(err)
	}
	back("restarted (empty)", 0)
	store(t, s, getReq("u"), okResp([]byte("after")), "k")
	back("stored again", 1)
}

// A body stream whose Redis goes away fails (the pair is not stored); a
// stored body read while Redis is paused fails with ErrUnavailable: never
// a short body.
func TestUnavailableWhileStreaming(t *testing.T) {
	srv, proc := testserver.OwnRedis(t)
	s := open(t, srv, RedisOptions{Timeout: 2 * time.Second, RetryAfter: 300 * time.Millisecond, ChunkSize: 16 << 10})
	ctx := context.Background()
	body := pattern(4<<20, 9)
	store(t, s, getReq("u"), okResp(body), "k")
	ps, err := s.GetPairs(ctx, "k")
	if err != nil || len(ps) != 1 {
		t.Fatalf("GetPairs() = %d, %v", len(ps), err)
	}
	inc, err := s.CreatePair(ctx, getReq("u"))
	if err != nil {
		t.Fatal(err)
	}
	cp, err := s.AddResponse(ctx, inc.ID, okResp(body), "k2")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(cp.Response.Body, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(ps[0].Response.Body, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	if err := proc.Pause(); err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(ps[0].Response.Body); !errors.Is(err, model.ErrUnavailable) {
		t.Errorf("reading a stored body from a paused Redis = %d more bytes, %v; want ErrUnavailable", len(got), err)
	}
	if _, err := io.ReadAll(cp.Response.Body); !errors.Is(err, model.ErrAborted) || !errors.Is(err, model.ErrUnavailable) {
		t.Errorf("storing a body into a paused Redis: error = %v; want ErrAborted and ErrUnavailable", err)
	}
	if err := proc.Resume(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if ps, err := s.GetPairs(ctx, "k2"); err != nil || len(ps) != 0 {
		t.Errorf("GetPairs(k2) after the failed stream = %d pairs, %v; want none", len(ps), err)
	}
}
