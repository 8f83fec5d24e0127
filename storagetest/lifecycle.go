package storagetest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hishel-go/hishel/model"
	"github.com/hishel-go/hishel/template"
)

// TTLs: the storage's default, refreshed on access unless turned off, and
// overridden per request; a sweep soft-deletes exactly what GetPairs stopped
// serving.
func testTTL(t *testing.T, open Opener) {
	// Every step advances the clock and calls GetPairs, which is an access.
	type step struct {
		advance time.Duration
		want    bool // served
	}
	tests := []struct {
		name        string
		opts        Options
		req         model.RequestOptions
		wantTTL     time.Duration
		wantRefresh bool
		steps       []step
	}{
		{"no ttl never expires", Options{}, model.RequestOptions{}, 0, true,
			[]step{{advance: 1000 * time.Hour, want: true}}},
		{"default NoExpiry never expires", Options{DefaultTTL: model.NoExpiry}, model.RequestOptions{}, 0, true,
			[]step{{advance: 1000 * time.Hour, want: true}}},
		{"default ttl", Options{DefaultTTL: time.Hour, RefreshTTLOnAccess: model.NoRefresh}, model.RequestOptions{}, time.Hour, false,
			[]step{{advance: 59 * time.Minute, want: true}, {advance: time.Minute, want: false}}},
		{"default ttl refreshed on access", Options{DefaultTTL: time.Hour}, model.RequestOptions{}, time.Hour, true,
			[]step{{advance: 59 * time.Minute, want: true}, {advance: 59 * time.Minute, want: true}, {advance: time.Hour, want: false}}},
		{"explicit RefreshOnAccess", Options{DefaultTTL: time.Hour, RefreshTTLOnAccess: model.RefreshOnAccess}, model.RequestOptions{}, time.Hour, true,
			[]step{{advance: 59 * time.Minute, want: true}, {advance: 59 * time.Minute, want: true}, {advance: time.Hour, want: false}}},
		{"request ttl overrides", Options{DefaultTTL: time.Hour, RefreshTTLOnAccess: model.NoRefresh}, model.RequestOptions{TTL: 2 * time.Hour}, 2 * time.Hour, false,
			[]step{{advance: 90 * time.Minute, want: true}, {advance: 30 * time.Minute, want: false}}},
		{"request ttl without default", Options{}, model.RequestOptions{TTL: time.Minute, Refresh: model.NoRefresh}, time.Minute, false,
			[]step{{advance: 59 * time.Second, want: true}, {advance: time.Second, want: false}}},
		{"request no expiry", Options{DefaultTTL: time.Hour}, model.RequestOptions{TTL: model.NoExpiry}, 0, true,
			[]step{{advance: 1000 * time.Hour, want: true}}},
		{"request no refresh", Options{DefaultTTL: time.Hour}, model.RequestOptions{Refresh: model.NoRefresh}, time.Hour, false,
			[]step{{advance: 59 * time.Minute, want: true}, {advance: time.Minute, want: false}}},
		{"request refresh", Options{DefaultTTL: time.Hour, RefreshTTLOnAccess: model.NoRefresh}, model.RequestOptions{Refresh: model.RefreshOnAccess}, time.Hour, true,
			[]step{{advance: 59 * time.Minute, want: true}, {advance: 59 * time.Minute, want: true}, {advance: 61 * time.Minute, want: false}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewClock()
			opts := tt.opts
			opts.Now = c.Now
			s := open(t, opts)
			req := getReq("u")
			req.Options = tt.req
			cp := store(t, s, req, okResp("x"), "k")
			if cp.Meta.TTL != tt.wantTTL || cp.Meta.Refresh != tt.wantRefresh {
				t.Errorf("stored Meta TTL, Refresh = %v, %v; want %v, %v", cp.Meta.TTL, cp.Meta.Refresh, tt.wantTTL, tt.wantRefresh)
			}
			last := true
			for i, st := range tt.steps {
				c.Advance(st.advance)
				ps := mustGet(t, s, "k")
				bodies(t, ps)
				if got := len(ps) == 1; got != st.want {
					t.Fatalf("step %d (+%v): served = %v; want %v", i, st.advance, got, st.want)
				}
				if st.want && tt.wantTTL > 0 {
					if want := c.Now().Add(tt.wantTTL); tt.wantRefresh && !ps[0].Meta.Expires.Equal(want) {
						t.Errorf("step %d: Meta.Expires = %v; want %v (refreshed)", i, ps[0].Meta.Expires, want)
					}
				}
				last = st.want
			}
			want := model.SweepResult{}
			wantSt := model.Stats{Pairs: 1, Bytes: 1}
			if !last {
				want.Expired = 1
				wantSt = model.Stats{Deleted: 1, Bytes: 1}
			}
			if res := mustSweep(t, s); res != want {
				t.Errorf("Cleanup() = %+v; want %+v", res, want)
			}
			wantStats(t, "after the sweep", mustStats(t, s), wantSt)
		})
	}
}

// A sweep soft-deletes expired pairs, purges soft-deleted pairs past their
// retention and abandons incomplete pairs past their age, and says so
// exactly.
func testSweep(t *testing.T, open Opener) {
	tests := []struct {
		name                     string
		retention, incompleteAge time.Duration // options; zero: defaults
	}{
		{"defaults", 0, 0},
		{"custom ages", 2 * time.Hour, 10 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			retention, incompleteAge := tt.retention, tt.incompleteAge
			if retention == 0 {
				retention = template.DefaultDeletedRetention
			}
			if incompleteAge == 0 {
				incompleteAge = template.DefaultIncompleteAge
			}
			c := NewClock()
			s := open(t, Options{Now: c.Now, DefaultTTL: time.Hour, RefreshTTLOnAccess: model.NoRefresh,
				DeletedRetention: tt.retention, IncompleteAge: tt.incompleteAge})
			store(t, s, getReq("u"), okResp("expires"), "a")
			keep := getReq("u")
			keep.Options.TTL = model.NoExpiry
			store(t, s, keep, okResp("keeps"), "b")
			old, err := s.CreatePair(ctx, getReq("u")) // never completed
			if err != nil {
				t.Fatal(err)
			}
			sweep := func(when string, want model.SweepResult, wantSt model.Stats) {
				t.Helper()
				if got := mustSweep(t, s); got != want {
					t.Errorf("%s: Cleanup() = %+v; want %+v", when, got, want)
				}
				wantStats(t, when, mustStats(t, s), wantSt)
			}
			sweep("at once", model.SweepResult{}, model.Stats{Pairs: 2, Incomplete: 1, Bytes: 12})

			// The expiry is an hour; incomplete pairs are abandoned at
			// incompleteAge. Sweep at a minute past both, with a younger
			// incomplete pair created half an incompleteAge before.
			at := max(time.Hour, incompleteAge) + time.Minute
			c.Advance(at - incompleteAge/2)
			if _, err := s.CreatePair(ctx, getReq("u")); err != nil {
				t.Fatal(err)
			}
			c.Advance(incompleteAge / 2)
			sweep("past expiry and incomplete age", model.SweepResult{Expired: 1, Abandoned: 1},
				model.Stats{Pairs: 1, Incomplete: 1, Deleted: 1, Bytes: 12})
			if n := count(t, s, "a"); n != 0 {
				t.Errorf("GetPairs() serves an expired pair")
			}
			if _, err := s.AddResponse(ctx, old.ID, okResp("late"), "c"); !errors.Is(err, model.ErrNotFound) {
				t.Errorf("AddResponse(abandoned pair) error = %v; want ErrNotFound", err)
			}
			if got := mustSweep(t, s); got != (model.SweepResult{}) {
				t.Errorf("second Cleanup() = %+v; want nothing done", got)
			}

			// The expired pair was soft-deleted by that sweep.
			c.Advance(retention - 2*time.Minute)
			sweep("just before the retention ends", model.SweepResult{Abandoned: 1}, model.Stats{Pairs: 1, Deleted: 1, Bytes: 12})
			c.Advance(2 * time.Minute)
			sweep("past the retention", model.SweepResult{Purged: 1}, model.Stats{Pairs: 1, Bytes: 5})
			if got := getBodies(t, s, "b"); len(got) != 1 || got[0] != "|keeps" {
				t.Errorf("pair without expiry = %q; want [|keeps]", got)
			}
			if ps := infos(t, s); len(ps) != 1 {
				t.Errorf("Pairs() lists %d pairs; want 1", len(ps))
			}
		})
	}
}

// A sweep that abandons a pair whose body is still being stored aborts that
// stream and reclaims what it stored.
func testSweepWhileStreaming(t *testing.T, open Opener) {
	ctx := context.Background()
	c := NewClock()
	s := open(t, Options{Now: c.Now, ChunkSize: 16 << 10})
	body := pattern(abortSize, 7)
	inc, err := s.CreatePair(ctx, model.Request{Method: "PUT", URL: "u", Body: model.BytesBody(body)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(inc.Request.Body, make([]byte, abortSize/2)); err != nil {
		t.Fatal(err)
	}
	c.Advance(template.DefaultIncompleteAge + time.Minute)
	if res := mustSweep(t, s); res != (model.SweepResult{Abandoned: 1}) {
		t.Errorf("Cleanup() = %+v; want 1 abandoned", res)
	}
	wantStats(t, "after the sweep", mustStats(t, s), model.Stats{})
	if _, err := io.ReadAll(inc.Request.Body); !errors.Is(err, model.ErrAborted) {
		t.Errorf("reading the abandoned body on: error = %v; want ErrAborted", err)
	}
	wantStats(t, "after the stream failed", syncedStats(t, s), model.Stats{})
	if ps := infos(t, s); len(ps) != 0 {
		t.Errorf("Pairs() lists %d pairs; want none", len(ps))
	}
}

// The sweep also runs in the background when asked to.
func testBackgroundSweep(t *testing.T, open Opener) {
	c := NewClock()
	s := open(t, Options{Now: c.Now, DefaultTTL: time.Minute, SweepInterval: 5 * time.Millisecond})
	store(t, s, getReq("u"), okResp("x"), "k")
	c.Advance(2 * time.Minute)
	deadline := time.Now().Add(10 * time.Second)
	for mustStats(t, s).Deleted != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("background sweep did not soft-delete the expired pair: Stats() = %+v", mustStats(t, s))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Beyond MaxBytes, soft-deleted pairs go first, then the least recently
// used (stored or read) complete pairs; Stats.Evicted counts the complete
// ones.
func testSizeBudget(t *testing.T, open Opener) {
	ctx := context.Background()
	kb := strings.Repeat("x", 1000)
	// Budgets count heads too (see headBytes): a GET pair of the tests
	// holds a 1000-byte body and head bytes more; a POST one 500 more.
	get := 1000 + pairHead(getReq("u"), okResp(kb), "a")
	post := 1500 + pairHead(model.Request{Method: "POST", URL: "u", Header: getReq("u").Header}, okResp(kb), "a")
	tests := []struct {
		name      string
		maxBytes  int64
		run       func(t *testing.T, s Store, c *Clock)
		want      map[string]int // pairs served per key
		wantStats model.Stats
	}{
		{"least recently used goes", 3 * get, func(t *testing.T, s Store, c *Clock) {
			for _, k := range []string{"a", "b", "c"} {
				store(t, s, getReq("u"), okResp(kb), k)
				c.Advance(time.Second)
			}
			getBodies(t, s, "a") // a is now the most recently used
			c.Advance(time.Second)
			store(t, s, getReq("u"), okResp(kb), "d")
		}, map[string]int{"a": 1, "b": 0, "c": 1, "d": 1}, model.Stats{Pairs: 3, Bytes: 3000, Evicted: 1}},
		{"several go for a large pair", 3 * get, func(t *testing.T, s Store, c *Clock) {
			for _, k := range []string{"a", "b", "c"} {
				store(t, s, getReq("u"), okResp(kb), k)
				c.Advance(time.Second)
			}
			store(t, s, getReq("u"), okResp(kb+kb), "d")
		}, map[string]int{"a": 0, "b": 0, "c": 1, "d": 1}, model.Stats{Pairs: 2, Bytes: 3000, Evicted: 2}},
		{"request bodies count", 2 * post, func(t *testing.T, s Store, c *Clock) {
			for _, k := range []string{"a", "b"} {
				req := getReq("u")
				req.Method, req.Body = "POST", model.StringBody(kb[:500])
				store(t, s, req, okResp(kb), k)
				c.Advance(time.Second)
			}
			store(t, s, getReq("u"), okResp(kb), "c")
		}, map[string]int{"a": 0, "b": 1, "c": 1}, model.Stats{Pairs: 2, Bytes: 2500, Evicted: 1}},
		{"soft-deleted go first", 3 * get, func(t *testing.T, s Store, c *Clock) {
			var last model.CompletePair
			for _, k := range []string{"a", "b", "c"} {
				last = store(t, s, getReq("u"), okResp(kb), k)
				c.Advance(time.Second)
			}
			if err := s.Remove(ctx, last.ID); err != nil {
				t.Fatal(err)
			}
			store(t, s, getReq("u"), okResp(kb), "d")
		}, map[string]int{"a": 1, "b": 1, "c": 0, "d": 1}, model.Stats{Pairs: 3, Bytes: 3000}},
		{"a pair over the budget is not kept", 500, func(t *testing.T, s Store, c *Clock) {
			store(t, s, getReq("u"), okResp(kb), "a")
		}, map[string]int{"a": 0}, model.Stats{Evicted: 1}},
		{"no budget", 0, func(t *testing.T, s Store, c *Clock) {
			for i := range 10 {
				store(t, s, getReq("u"), okResp(kb), fmt.Sprint(i))
			}
		}, map[string]int{"0": 1, "9": 1}, model.Stats{Pairs: 10, Bytes: 10000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewClock()
			s := open(t, Options{Now: c.Now, MaxBytes: tt.maxBytes})
			tt.run(t, s, c)
			wantStats(t, "after the stores", mustStats(t, s), tt.wantStats)
			for k, want := range tt.want {
				if got := count(t, s, k); got != want {
					t.Errorf("GetPairs(%q) = %d pairs; want %d", k, got, want)
				}
			}
			if res := mustSweep(t, s); res != (model.SweepResult{}) {
				t.Errorf("Cleanup() = %+v; want nothing left to evict", res)
			}
			var sum int64
			for _, p := range infos(t, s) {
				sum += p.Meta.RequestSize + p.Meta.ResponseSize
			}
			if tt.maxBytes > 0 && sum > tt.maxBytes {
				t.Errorf("pairs listed hold %d bytes; want at most %d", sum, tt.maxBytes)
			}
		})
	}
}

// Beyond MaxPairs, the least recently used (stored or read) complete pairs
// go, at once: variants of one key count one each; incomplete and
// soft-deleted pairs do not count. Stats.Evicted counts the pairs that
// went.
func testMaxPairs(t *testing.T, open Opener) {
	ctx := context.Background()
	tests := []struct {
		name      string
		run       func(t *testing.T, s Store, c *Clock)
		want      map[string]int // pairs served per key
		wantStats model.Stats
	}{
		{"least recently used goes", func(t *testing.T, s Store, c *Clock) {
			for _, k := range []string{"a", "b", "c"} {
				store(t, s, getReq("u"), okResp("x"), k)
				c.Advance(time.Second)
			}
			getBodies(t, s, "a") // a is now the most recently used
			c.Advance(time.Second)
			store(t, s, getReq("u"), okResp("x"), "d")
		}, map[string]int{"a": 1, "b": 0, "c": 1, "d": 1}, model.Stats{Pairs: 3, Bytes: 3, Evicted: 1}},
		{"variants count one each", func(t *testing.T, s Store, c *Clock) {
			for _, b := range []string{"1", "2", "3", "4"} {
				store(t, s, getReq("u"), okResp(b), "k")
				c.Advance(time.Second)
			}
		}, map[string]int{"k": 3}, model.Stats{Pairs: 3, Bytes: 3, Evicted: 1}},
		{"incomplete and removed pairs do not count", func(t *testing.T, s Store, c *Clock) {
			if _, err := s.CreatePair(ctx, getReq("u")); err != nil {
				t.Fatal(err)
			}
			gone := store(t, s, getReq("u"), okResp("x"), "a")
			c.Advance(time.Second)
			if err := s.Remove(ctx, gone.ID); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"b", "c", "d"} {
				store(t, s, getReq("u"), okResp("x"), k)
				c.Advance(time.Second)
			}
		}, map[string]int{"a": 0, "b": 1, "c": 1, "d": 1}, model.Stats{Pairs: 3, Incomplete: 1, Deleted: 1, Bytes: 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewClock()
			s := open(t, Options{Now: c.Now, MaxPairs: 3})
			tt.run(t, s, c)
			wantStats(t, "after the stores", syncedStats(t, s), tt.wantStats)
			for k, want := range tt.want {
				if got := count(t, s, k); got != want {
					t.Errorf("GetPairs(%q) = %d pairs; want %d", k, got, want)
				}
			}
			if res := mustSweep(t, s); res != (model.SweepResult{}) {
				t.Errorf("Cleanup() = %+v; want nothing left to evict", res)
			}
		})
	}
}
