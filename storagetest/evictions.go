package storagetest

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hishel-go/hishel/model"
)

// Stats.Evicted counts the live pairs the store removed to keep within
// its bounds since it was opened: beyond MaxPairs, beyond MaxBytes (a pair
// over the budget on its own included) and beyond MaxVariants under one
// key. Soft-deleted pairs reclaimed early for MaxBytes, pairs the sweep
// removes for their TTL, retention or age, and pairs removed by Remove,
// Delete or Clear do not count; Clear does not reset the counter.
func testEvictions(t *testing.T, open Opener) {
	ctx := context.Background()
	evicted := func(t *testing.T, s Store, when string, want int64) {
		t.Helper()
		if err := s.Sync(ctx); err != nil {
			t.Fatalf("Sync() error = %v", err)
		}
		st, err := s.Stats(ctx)
		if err != nil {
			t.Fatalf("Stats() error = %v", err)
		}
		if st.Evicted != want {
			t.Errorf("%s: Stats().Evicted = %d; want %d", when, st.Evicted, want)
		}
	}
	stored := func(t *testing.T, s Store, c *Clock, body string, keys ...string) []model.CompletePair {
		t.Helper()
		var out []model.CompletePair
		for _, k := range keys {
			out = append(out, store(t, s, getReq("https://example.com/"+k), okResp(body), k))
			c.Advance(time.Second)
		}
		return out
	}
	t.Run("MaxPairs", func(t *testing.T) {
		c := NewClock()
		s := open(t, Options{Now: c.Now, MaxPairs: 2})
		evicted(t, s, "opened", 0)
		ps := stored(t, s, c, "x", "a", "b")
		evicted(t, s, "at the cap", 0)
		stored(t, s, c, "x", "c", "d")
		evicted(t, s, "two beyond the cap", 2)
		if err := s.Remove(ctx, ps[0].ID); err != nil { // already evicted: a no-op
			t.Fatal(err)
		}
		if _, err := s.Delete(ctx, model.Filter{Keys: []string{"c"}}); err != nil {
			t.Fatal(err)
		}
		evicted(t, s, "after Remove and Delete", 2)
		if err := s.Clear(ctx); err != nil {
			t.Fatal(err)
		}
		evicted(t, s, "after Clear (which neither counts nor resets)", 2)
		stored(t, s, c, "x", "e", "f", "g")
		evicted(t, s, "one more beyond the cap", 3)
		if n := count(t, s, "e"); n != 0 {
			t.Errorf("GetPairs(e) = %d pairs; want the least recently used evicted", n)
		}
	})
	t.Run("MaxBytes", func(t *testing.T) {
		kb := strings.Repeat("x", 1000)
		get := 1000 + pairHead(getReq("https://example.com/a"), okResp(kb), "a")
		c := NewClock()
		s := open(t, Options{Now: c.Now, MaxBytes: 2 * get})
		stored(t, s, c, kb, "a", "b")
		evicted(t, s, "within the budget", 0)
		last := stored(t, s, c, kb, "c")[0]
		evicted(t, s, "one pair beyond the budget", 1)
		if err := s.Remove(ctx, last.ID); err != nil {
			t.Fatal(err)
		}
		stored(t, s, c, kb, "d")
		evicted(t, s, "a soft-deleted pair reclaimed for the budget", 1)
		stored(t, s, c, kb+kb, "e")
		evicted(t, s, "a large pair that takes the place of two", 3)
		if st := mustStats(t, s); st.Pairs != 1 { // not GetPairs: a read would change the order
			t.Errorf("Stats().Pairs = %d; want 1", st.Pairs)
		}
		stored(t, s, c, strings.Repeat(kb, 3), "f")
		evicted(t, s, "a pair over the budget on its own (and the one before it)", 5)
	})
	t.Run("MaxVariants", func(t *testing.T) {
		c := NewClock()
		s := open(t, Options{Now: c.Now, MaxVariants: 2})
		stored(t, s, c, "other", "other")
		for i := range 5 {
			req := getReq("https://example.com/v")
			req.Header = http.Header{"Accept-Language": {fmt.Sprint("lang-", i)}}
			store(t, s, req, okResp(fmt.Sprint("body-", i)), "k")
			c.Advance(time.Second)
		}
		evicted(t, s, "five variants under a cap of two", 3)
		if n := count(t, s, "other"); n != 1 {
			t.Errorf("GetPairs(other) = %d pairs; want 1", n)
		}
	})
	t.Run("NotTheSweep", func(t *testing.T) {
		c := NewClock()
		s := open(t, Options{Now: c.Now, MaxPairs: 10, MaxBytes: 1 << 20, DefaultTTL: time.Minute,
			DeletedRetention: time.Hour, IncompleteAge: time.Hour})
		if _, err := s.CreatePair(ctx, getReq("https://example.com/abandoned")); err != nil {
			t.Fatal(err)
		}
		ps := stored(t, s, c, "x", "a", "b", "c")
		if err := s.Remove(ctx, ps[0].ID); err != nil {
			t.Fatal(err)
		}
		c.Advance(2 * time.Minute)
		if res := mustSweep(t, s); res.Expired != 2 {
			t.Errorf("Cleanup() = %+v; want 2 expired", res)
		}
		c.Advance(2 * time.Hour)
		if res := mustSweep(t, s); res.Purged != 3 || res.Abandoned != 1 {
			t.Errorf("Cleanup() = %+v; want 3 purged, 1 abandoned", res)
		}
		evicted(t, s, "after sweeps that expired, purged and reclaimed", 0)
	})
}
