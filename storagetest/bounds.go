package storagetest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hishel-go/hishel/model"
	"github.com/hishel-go/hishel/template"
)

// MaxVariants caps the complete pairs kept under one key: completing one
// more evicts the least recently used others beyond the cap (GetPairs
// reads every variant of its key, so among variants the oldest go first);
// the default is template.DefaultMaxVariants and a negative cap is none.
// Other keys are not touched.
func testVariantCap(t *testing.T, open Opener) {
	variant := func(i int) model.Request {
		r := getReq("https://example.com/v")
		r.Header = http.Header{"Accept-Language": {fmt.Sprint("lang-", i)}}
		return r
	}
	tests := []struct {
		name        string
		maxVariants int
		stored      int
		want        int // variants kept: the last ones stored
	}{
		{"default cap", 0, template.DefaultMaxVariants + 3, template.DefaultMaxVariants},
		{"cap of three", 3, 5, 3},
		{"cap of one", 1, 4, 1},
		{"no cap", -1, template.DefaultMaxVariants + 8, template.DefaultMaxVariants + 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewClock()
			s := open(t, Options{Now: c.Now, MaxVariants: tt.maxVariants})
			store(t, s, getReq("https://example.com/other"), okResp("other"), "other")
			var want []string
			for i := range tt.stored {
				c.Advance(time.Second)
				if i%4 == 3 {
					getBodies(t, s, "k") // reads count, but touch every variant
				}
				body := fmt.Sprint("body-", i)
				store(t, s, variant(i), okResp(body), "k")
				if i >= tt.stored-tt.want {
					want = append([]string{"|" + body}, want...) // newest first
				}
			}
			if got := getBodies(t, s, "k"); !slices.Equal(got, want) {
				t.Errorf("GetPairs(k) after %d variants = %q; want the last %d: %q", tt.stored, short(got), tt.want, short(want))
			}
			if n := count(t, s, "other"); n != 1 {
				t.Errorf("GetPairs(other) = %d pairs; want 1: the cap is per key", n)
			}
			if st := mustStats(t, s); st.Pairs != tt.want+1 {
				t.Errorf("Stats().Pairs = %d; want %d", st.Pairs, tt.want+1)
			}
		})
	}
}

// MaxBytes and Stats.Bytes count every byte of a pair: its key, method,
// URL, header fields and bodies. A pair whose heads alone exceed the budget
// is not kept; UpdatePair's changes to the heads count.
func testBudgetCountsHeads(t *testing.T, open Opener) {
	ctx := context.Background()
	t.Run("exact count", func(t *testing.T) {
		s := open(t, Options{})
		req := getReq("https://example.com/path?q=1")
		req.Header = http.Header{"Accept": {"text/html", "*/*"}, "X-Long": {strings.Repeat("r", 3000)}}
		resp := okResp("response body")
		resp.Header = http.Header{"Content-Type": {"text/plain"}, "Set-Cookie": {strings.Repeat("c", 2000)}}
		const key = "GET https://example.com/path?q=1"
		cp := store(t, s, req, resp, key)
		want := int64(len("response body")) + pairHead(req, resp, key)
		st, err := s.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Bytes != want {
			t.Errorf("Stats().Bytes = %d; want %d: the body and the key, method, URL and header fields", st.Bytes, want)
		}
		next := cp
		next.Response.Header = http.Header{"Content-Type": {"text/plain"}}
		next.Key = "k2"
		if _, err := s.UpdatePair(ctx, cp.ID, next); err != nil {
			t.Fatal(err)
		}
		want = int64(len("response body")) + pairHead(req, next.Response, "k2")
		if st, err := s.Stats(ctx); err != nil || st.Bytes != want {
			t.Errorf("after UpdatePair shrank the heads: Stats().Bytes = %d, %v; want %d", st.Bytes, err, want)
		}
	})
	t.Run("large heads are evicted", func(t *testing.T) {
		c := NewClock()
		const budget = 64 << 10
		s := open(t, Options{Now: c.Now, MaxBytes: budget})
		big := getReq("https://example.com/big")
		big.Header = http.Header{"X-Big": {strings.Repeat("h", 20<<10)}} // 20 KiB of head, 1 byte of body
		for i := range 10 {
			c.Advance(time.Second)
			store(t, s, big, okResp("x"), fmt.Sprint("big", i))
		}
		st, err := s.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Bytes > budget || st.Pairs != 3 {
			t.Errorf("10 pairs of 20 KiB heads under a 64 KiB budget: Stats() = %+v; want 3 pairs, at most %d bytes", st, budget)
		}
		for i := range 7 {
			if n := count(t, s, fmt.Sprint("big", i)); n != 0 {
				t.Errorf("pair big%d is still served; want it evicted", i)
			}
		}
		huge := getReq("https://example.com/huge")
		huge.Header = http.Header{"X-Huge": {strings.Repeat("h", budget)}}
		store(t, s, huge, okResp("x"), "huge")
		if n := count(t, s, "huge"); n != 0 {
			t.Errorf("a pair whose heads exceed MaxBytes is served; want it not kept")
		}
		if st, err := s.Stats(ctx); err != nil || st.Bytes > budget {
			t.Errorf("after a pair larger than the budget: Stats() = %+v, %v; want at most %d bytes", st, err, budget)
		}
	})
}

// MaxTTL bounds a pair's life from its completion, whatever its TTL and
// however often it is read; a negative MaxTTL is ErrInvalid.
func testMaxTTL(t *testing.T, open Opener) {
	ctx := context.Background()
	tests := []struct {
		name       string
		defaultTTL time.Duration
		reqTTL     time.Duration
		maxTTL     time.Duration
		readAt     []time.Duration // reads, from completion
		aliveAt    time.Duration   // served then
		goneAt     time.Duration   // not served then, and swept
	}{
		{"caps no expiry", 0, 0, 10 * time.Second, nil, 9 * time.Second, 10 * time.Second},
		{"caps a longer default", time.Hour, 0, 10 * time.Second, nil, 9 * time.Second, 11 * time.Second},
		{"caps refresh on access", 8 * time.Second, 0, 10 * time.Second, []time.Duration{5 * time.Second, 9 * time.Second}, 9 * time.Second, 10 * time.Second},
		{"a shorter ttl wins (read at 4s: expires at 9s)", 0, 5 * time.Second, time.Hour, nil, 4 * time.Second, 9 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewClock()
			s := open(t, Options{Now: c.Now, DefaultTTL: tt.defaultTTL})
			start := c.Now()
			req := getReq("u")
			req.Options = model.RequestOptions{TTL: tt.reqTTL, MaxTTL: tt.maxTTL}
			store(t, s, req, okResp("x"), "k")
			for _, at := range tt.readAt {
				c.Advance(start.Add(at).Sub(c.Now()))
				if n := count(t, s, "k"); n != 1 {
					t.Fatalf("GetPairs at %v = %d pairs; want 1", at, n)
				}
			}
			c.Advance(start.Add(tt.aliveAt).Sub(c.Now()))
			if n := count(t, s, "k"); n != 1 {
				t.Fatalf("GetPairs at %v = %d pairs; want 1", tt.aliveAt, n)
			}
			c.Advance(start.Add(tt.goneAt).Sub(c.Now()))
			if n := count(t, s, "k"); n != 0 {
				t.Errorf("GetPairs at %v = %d pairs; want none: MaxTTL %v (ttl %v, default %v)", tt.goneAt, n, tt.maxTTL, tt.reqTTL, tt.defaultTTL)
			}
			if res := mustSweep(t, s); res.Expired != 1 {
				t.Errorf("Cleanup() at %v = %+v; want the pair expired", tt.goneAt, res)
			}
		})
	}
	t.Run("negative", func(t *testing.T) {
		s := open(t, Options{})
		req := getReq("u")
		req.Options.MaxTTL = -time.Second
		if _, err := s.CreatePair(ctx, req); !errors.Is(err, model.ErrInvalid) {
			t.Errorf("CreatePair(MaxTTL < 0) error = %v; want ErrInvalid", err)
		}
	})
}
