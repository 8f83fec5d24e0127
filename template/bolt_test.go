package template

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/hishel-go/hishel/internal/testclock"
	"github.com/hishel-go/hishel/model"
)

func newClock() *testclock.Clock { return testclock.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) }

// openBolt opens a Bolt in a temporary directory, closed at the end of the
// test. Background sweeping is off unless opts says otherwise.
func openBolt(tb testing.TB, opts *BoltOptions) *Bolt {
	tb.Helper()
	var o BoltOptions
	if opts != nil {
		o = *opts
	}
	if o.Path == "" {
		o.Path = filepath.Join(tb.TempDir(), "cache.db")
	}
	if o.SweepInterval == 0 {
		o.SweepInterval = -1
	}
	s, err := OpenBolt(context.Background(), &o)
	if err != nil {
		tb.Fatalf("OpenBolt: %v", err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

// store creates and completes a pair, draining both bodies.
func store(tb testing.TB, s *Bolt, req model.Request, resp model.Response, key string, opts ...model.CreateOption) model.CompletePair {
	tb.Helper()
	ctx := context.Background()
	inc, err := s.CreatePair(ctx, req, opts...)
	if err != nil {
		tb.Fatalf("CreatePair: %v", err)
	}
	if _, err := io.Copy(io.Discard, inc.Request.Body); err != nil {
		tb.Fatalf("read request body: %v", err)
	}
	cp, err := s.AddResponse(ctx, inc.ID, resp, key)
	if err != nil {
		tb.Fatalf("AddResponse: %v", err)
	}
	if _, err := io.Copy(io.Discard, cp.Response.Body); err != nil {
		tb.Fatalf("read response body: %v", err)
	}
	return cp
}

func getReq(url string) model.Request {
	return model.Request{Method: "GET", URL: url, Header: http.Header{"Accept": {"*/*"}}}
}

func okResp(body string) model.Response {
	return model.Response{Status: 200, Header: http.Header{"Content-Type": {"text/plain"}}, Body: model.StringBody(body)}
}

// bodies reads both bodies of every pair.
func bodies(tb testing.TB, pairs []model.CompletePair) []string {
	tb.Helper()
	var out []string
	for _, p := range pairs {
		req, err := model.ReadAll(p.Request.Body)
		if err != nil {
			tb.Fatalf("read stored request body: %v", err)
		}
		resp, err := model.ReadAll(p.Response.Body)
		if err != nil {
			tb.Fatalf("read stored response body: %v", err)
		}
		out = append(out, string(req)+"|"+string(resp))
	}
	return out
}

func mustGet(tb testing.TB, s *Bolt, key string) []model.CompletePair {
	tb.Helper()
	ps, err := s.GetPairs(context.Background(), key)
	if err != nil {
		tb.Fatalf("GetPairs(%q): %v", key, err)
	}
	return ps
}

func mustStats(tb testing.TB, s *Bolt) model.Stats {
	tb.Helper()
	st, err := s.Stats(context.Background())
	if err != nil {
		tb.Fatalf("Stats: %v", err)
	}
	return st
}

func TestBoltTTL(t *testing.T) {
	// Every step advances the clock and calls GetPairs, which is an access.
	type step struct {
		advance time.Duration
		want    bool // visible
	}
	tests := []struct {
		name  string
		opts  BoltOptions
		req   model.RequestOptions
		steps []step
	}{
		{"no ttl never expires", BoltOptions{}, model.RequestOptions{},
			[]step{{advance: 1000 * time.Hour, want: true}}},
		{"default ttl", BoltOptions{DefaultTTL: time.Hour, RefreshTTLOnAccess: model.NoRefresh}, model.RequestOptions{},
			[]step{{advance: 59 * time.Minute, want: true}, {advance: time.Minute, want: false}}},
		{"default ttl refreshed on access", BoltOptions{DefaultTTL: time.Hour}, model.RequestOptions{},
			[]step{{advance: 59 * time.Minute, want: true}, {advance: 59 * time.Minute, want: true}, {advance: time.Hour, want: false}}},
		{"request ttl overrides", BoltOptions{DefaultTTL: time.Hour, RefreshTTLOnAccess: model.NoRefresh}, model.RequestOptions{TTL: 2 * time.Hour},
			[]step{{advance: 90 * time.Minute, want: true}, {advance: 30 * time.Minute, want: false}}},
		{"request no expiry", BoltOptions{DefaultTTL: time.Hour}, model.RequestOptions{TTL: model.NoExpiry},
			[]step{{advance: 1000 * time.Hour, want: true}}},
		{"request no refresh", BoltOptions{DefaultTTL: time.Hour}, model.RequestOptions{Refresh: model.NoRefresh},
			[]step{{advance: 59 * time.Minute, want: true}, {advance: time.Minute, want: false}}},
		{"request refresh", BoltOptions{DefaultTTL: time.Hour, RefreshTTLOnAccess: model.NoRefresh}, model.RequestOptions{Refresh: model.RefreshOnAccess},
			[]step{{advance: 59 * time.Minute, want: true}, {advance: 59 * time.Minute, want: true}}},
	}
	for _, tt := range tests {
		for _, reopen := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/reopen=%v", tt.name, reopen), func(t *testing.T) {
				c := newClock()
				opts := tt.opts
				opts.Now = c.Now
				opts.Path = filepath.Join(t.TempDir(), "ttl.db")
				s := openBolt(t, &opts)
				req := getReq("u")
				req.Options = tt.req
				store(t, s, req, okResp("x"), "k")
				for i, st := range tt.steps {
					c.Advance(st.advance)
					if reopen {
						// Close writes pending access times; the TTL
						// rules must hold across the reopen.
						if err := s.Close(); err != nil {
							t.Fatal(err)
						}
						s = openBolt(t, &opts)
					}
					ps := mustGet(t, s, "k")
					bodies(t, ps)
					if got := len(ps) == 1; got != st.want {
						t.Fatalf("step %d: visible = %v; want %v", i, got, st.want)
					}
				}
			})
		}
	}
}
