package template

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/model"
	"go.uber.org/goleak"
)

// countingTier is a lower tier that counts its GetPairs calls and the
// chunks read from the bodies it returns.
type countingTier struct {
	Tier
	gets   atomic.Int64
	chunks atomic.Int64
	closed atomic.Bool
}

func (c *countingTier) GetPairs(ctx context.Context, key string) ([]model.CompletePair, error) {
	c.gets.Add(1)
	ps, err := c.Tier.GetPairs(ctx, key)
	for i := range ps {
		b := ps[i].Response.Body
		ps[i].Response.Body = model.NewChunkBody(&countingSource{b: b, n: &c.chunks}, b)
	}
	return ps, err
}

func (c *countingTier) Close() error {
	c.closed.Store(true)
	return c.Tier.Close()
}

type countingSource struct {
	b *model.Body
	n *atomic.Int64
}

func (s *countingSource) NextChunk() ([]byte, error) {
	c, err := s.b.NextChunk()
	if len(c) > 0 {
		s.n.Add(1)
	}
	return c, err
}

// openTiered opens a Tiered over a Memory lower tier counted by the
// returned countingTier, with clock c.
func openTiered(tb testing.TB, c interface{ Now() time.Time }, opts TieredOptions) (*Tiered, *countingTier) {
	tb.Helper()
	ctx := context.Background()
	// Cleanups run last first: this one after the Tiered's Close.
	ignore := goleak.IgnoreCurrent()
	tb.Cleanup(func() { goleak.VerifyNone(tb, ignore) })
	mem, err := OpenMemory(ctx, &MemoryOptions{Now: c.Now, SweepInterval: -1, ChunkSize: 16 << 10})
	if err != nil {
		tb.Fatal(err)
	}
	lower := &countingTier{Tier: mem}
	opts.Now = c.Now
	t, err := OpenTiered(ctx, lower, &opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = t.Close() })
	return t, lower
}

// storeTier stores a GET pair under key through s, reading its body.
func storeTier(tb testing.TB, s Tier, key string, body []byte, hdr http.Header) model.CompletePair {
	tb.Helper()
	ctx := context.Background()
	inc, err := s.CreatePair(ctx, model.Request{Method: "GET", URL: "https://example.com/" + key})
	if err != nil {
		tb.Fatal(err)
	}
	cp, err := s.AddResponse(ctx, inc.ID, model.Response{Status: 200, Header: hdr, Body: model.BytesBody(body)}, key)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, cp.Response.Body); err != nil {
		tb.Fatal(err)
	}
	return cp
}

// readPairs returns the response bodies of GetPairs(key), read to the end.
func readPairs(tb testing.TB, s Tier, key string) []string {
	tb.Helper()
	ps, err := s.GetPairs(context.Background(), key)
	if err != nil {
		tb.Fatalf("GetPairs(%q): %v", key, err)
	}
	var out []string
	for _, p := range ps {
		b, err := io.ReadAll(p.Response.Body)
		if err != nil {
			tb.Fatalf("GetPairs(%q): reading a body: %v", key, err)
		}
		_ = p.Close()
		out = append(out, string(b))
	}
	return out
}

// Once a key's pairs are read from the lower tier, GetPairs answers from
// memory until CheckInterval has passed, then asks the lower tier again.
func TestTieredHotHits(t *testing.T) {
	c := newClock()
	s, lower := openTiered(t, c, TieredOptions{CheckInterval: time.Minute})
	storeTier(t, s, "k", []byte("body"), nil)

	for i := range 5 {
		if got := readPairs(t, s, "k"); len(got) != 1 || got[0] != "body" {
			t.Fatalf("read %d: GetPairs = %q; want [body]", i, got)
		}
	}
	if n := lower.gets.Load(); n != 1 {
		t.Errorf("5 reads within CheckInterval: %d lower-tier GetPairs; want 1 (the first)", n)
	}
	c.Advance(time.Minute)
	readPairs(t, s, "k")
	readPairs(t, s, "k")
	if n := lower.gets.Load(); n != 2 {
		t.Errorf("after CheckInterval: %d lower-tier GetPairs; want 2", n)
	}
	// A key the lower tier has nothing under is answered from memory too.
	readPairs(t, s, "none")
	if got := readPairs(t, s, "none"); len(got) != 0 {
		t.Errorf("GetPairs(none) = %q; want nothing", got)
	}
	if n := lower.gets.Load(); n != 3 {
		t.Errorf("after two reads of an empty key: %d lower-tier GetPairs; want 3", n)
	}
}

// Writes under a hot key, removals and updates reach the memory tier: the
// next GetPairs sees them.
func TestTieredWrites(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	s, _ := openTiered(t, c, TieredOptions{CheckInterval: time.Hour})
	first := storeTier(t, s, "k", []byte("one"), nil)
	readPairs(t, s, "k")
	readPairs(t, s, "k") // hot

	c.Advance(time.Second) // newest first
	second := storeTier(t, s, "k", []byte("two"), nil)
	if got := readPairs(t, s, "k"); len(got) != 2 || got[0] != "two" || got[1] != "one" {
		t.Fatalf("after a second store: GetPairs = %q; want [two one]", got)
	}
	if got := readPairs(t, s, "k"); len(got) != 2 || got[0] != "two" {
		t.Fatalf("hot, after a second store: GetPairs = %q; want [two one]", got)
	}

	upd := second
	upd.Response.Header = http.Header{"X-Updated": {"yes"}}
	cp, err := s.UpdatePair(ctx, second.ID, upd)
	if err != nil {
		t.Fatal(err)
	}
	_ = cp.Close()
	ps, err := s.GetPairs(ctx, "k")
	if err != nil || len(ps) != 2 || ps[0].Response.Header.Get("X-Updated") != "yes" {
		t.Fatalf("after UpdatePair: GetPairs = %d pairs, %v; want the updated header first", len(ps), err)
	}
	closePairs(ps)

	if err := s.Remove(ctx, first.ID); err != nil {
		t.Fatal(err)
	}
	if got := readPairs(t, s, "k"); len(got) != 1 || got[0] != "two" {
		t.Fatalf("after Remove: GetPairs = %q; want [two]", got)
	}
	if _, err := s.upper.GetPair(ctx, first.ID); !errors.Is(err, model.ErrNotFound) {
		t.Errorf("memory tier GetPair(removed) error = %v; want ErrNotFound", err)
	}
	if err := s.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	if got := readPairs(t, s, "k"); len(got) != 0 {
		t.Errorf("after Clear: GetPairs = %q; want nothing", got)
	}
	if st, err := s.upper.Stats(ctx); err != nil || st != (model.Stats{}) {
		t.Errorf("after Clear: memory tier Stats = %+v, %v; want empty", st, err)
	}
}

// A pair read from the lower tier is copied into memory chunk by chunk as
// the caller reads it: nothing is read ahead of the caller.
func TestTieredFillStreams(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	s, lower := openTiered(t, c, TieredOptions{MaxBodySize: -1})
	body := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB: 64 chunks of 16 KiB
	storeTier(t, s, "k", body, nil)

	ps, err := s.GetPairs(ctx, "k")
	if err != nil || len(ps) != 1 {
		t.Fatalf("GetPairs = %d pairs, %v; want 1", len(ps), err)
	}
	first, err := ps[0].Response.Body.NextChunk()
	if err != nil || len(first) != 16<<10 {
		t.Fatalf("first chunk: %d bytes, %v; want 16 KiB", len(first), err)
	}
	if n := lower.chunks.Load(); n != 1 {
		t.Errorf("after one chunk read: %d chunks read from the lower tier; want 1", n)
	}
	if st, _ := s.upper.Stats(ctx); st.Incomplete != 1 || st.Pairs != 0 {
		t.Errorf("memory tier while the copy streams: %+v; want 1 incomplete pair", st)
	}
	rest, err := io.ReadAll(ps[0].Response.Body)
	if err != nil || !bytes.Equal(append(first, rest...), body) {
		t.Fatalf("reading the rest: %d bytes, %v; want the %d bytes stored", len(first)+len(rest), err, len(body))
	}
	_ = ps[0].Close()
	heads := headBytes(&bolt.Record{Key: ps[0].Key, Method: ps[0].Request.Method, URL: ps[0].Request.URL,
		ReqHeader: ps[0].Request.Header, RespHeader: ps[0].Response.Header})
	if st, _ := s.upper.Stats(ctx); st.Pairs != 1 || st.Bytes != int64(len(body))+heads {
		t.Errorf("memory tier after the body was read: %+v; want 1 pair of %d bytes (its body and %d of heads)", st, int64(len(body))+heads, heads)
	}
	before := lower.chunks.Load()
	if got := readPairs(t, s, "k"); len(got) != 1 || got[0] != string(body) {
		t.Fatalf("hot read: %d pairs; want the body", len(got))
	}
	if n := lower.chunks.Load(); n != before {
		t.Errorf("hot read: %d chunks read from the lower tier; want none", n-before)
	}
}

// A body closed before its end, and a pair larger than MaxBodySize, are
// not copied: the key keeps going to the lower tier, which keeps its pair.
func TestTieredNoCopy(t *testing.T) {
	ctx := context.Background()
	t.Run("closed early", func(t *testing.T) {
		s, lower := openTiered(t, newClock(), TieredOptions{})
		storeTier(t, s, "k", bytes.Repeat([]byte("x"), 100<<10), nil)
		ps, err := s.GetPairs(ctx, "k")
		if err != nil || len(ps) != 1 {
			t.Fatalf("GetPairs = %d pairs, %v; want 1", len(ps), err)
		}
		if _, err := ps[0].Response.Body.NextChunk(); err != nil {
			t.Fatal(err)
		}
		_ = ps[0].Close()
		if st, _ := s.upper.Stats(ctx); st != (model.Stats{}) {
			t.Errorf("memory tier after an abandoned read: %+v; want empty", st)
		}
		if got := readPairs(t, s, "k"); len(got) != 1 || len(got[0]) != 100<<10 {
			t.Errorf("GetPairs after an abandoned read: %d pairs; want the whole body", len(got))
		}
		if n := lower.gets.Load(); n != 2 {
			t.Errorf("%d lower-tier GetPairs; want 2", n)
		}
	})
	t.Run("larger than MaxBodySize", func(t *testing.T) {
		s, lower := openTiered(t, newClock(), TieredOptions{MaxBodySize: 1000})
		storeTier(t, s, "k", bytes.Repeat([]byte("x"), 1001), nil)
		for range 3 {
			if got := readPairs(t, s, "k"); len(got) != 1 {
				t.Fatalf("GetPairs = %d pairs; want 1", len(got))
			}
		}
		if n := lower.gets.Load(); n != 3 {
			t.Errorf("3 reads of a large pair: %d lower-tier GetPairs; want 3", n)
		}
		if st, _ := s.upper.Stats(ctx); st != (model.Stats{}) {
			t.Errorf("memory tier: %+v; want empty", st)
		}
	})
}

// The memory tier serves a pair no longer than the lower tier keeps it.
func TestTieredExpiry(t *testing.T) {
	c := newClock()
	s, _ := openTiered(t, c, TieredOptions{CheckInterval: -1})
	ctx := context.Background()
	inc, err := s.CreatePair(ctx, model.Request{Method: "GET", URL: "u", Options: model.RequestOptions{TTL: time.Minute, Refresh: model.NoRefresh}})
	if err != nil {
		t.Fatal(err)
	}
	cp, err := s.AddResponse(ctx, inc.ID, model.Response{Status: 200, Body: model.StringBody("x")}, "k")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, cp.Response.Body)
	readPairs(t, s, "k")
	c.Advance(59 * time.Second)
	if got := readPairs(t, s, "k"); len(got) != 1 {
		t.Fatalf("before the TTL: %d pairs; want 1", len(got))
	}
	c.Advance(time.Second)
	if got := readPairs(t, s, "k"); len(got) != 0 {
		t.Errorf("at the TTL: %d pairs; want 0", len(got))
	}
}

// Two Tiered stores on one shared lower tier: what one removes, the
// other's memory tier serves for at most CheckInterval.
func TestTieredSharedLower(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	a, lower := openTiered(t, c, TieredOptions{CheckInterval: 10 * time.Second})
	b, err := OpenTiered(ctx, lower.Tier, &TieredOptions{Now: c.Now, CheckInterval: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	cp := storeTier(t, a, "k", []byte("x"), nil)
	readPairs(t, a, "k")
	if err := b.Remove(ctx, cp.ID); err != nil {
		t.Fatal(err)
	}
	if got := readPairs(t, a, "k"); len(got) != 1 {
		t.Errorf("within CheckInterval of another store's Remove: %d pairs; want the memory tier's 1", len(got))
	}
	c.Advance(10 * time.Second)
	if got := readPairs(t, a, "k"); len(got) != 0 {
		t.Errorf("after CheckInterval: %d pairs; want 0", len(got))
	}
}

func TestTieredOpenClose(t *testing.T) {
	ctx := context.Background()
	if _, err := OpenTiered(ctx, nil, nil); !errors.Is(err, model.ErrInvalid) {
		t.Errorf("OpenTiered(nil lower) error = %v; want ErrInvalid", err)
	}
	if _, err := OpenTiered(nil, &countingTier{}, nil); !errors.Is(err, model.ErrInvalid) {
		t.Errorf("OpenTiered(nil context) error = %v; want ErrInvalid", err)
	}
	if _, err := OpenTiered(ctx, &countingTier{}, &TieredOptions{MaxPairs: -1}); !errors.Is(err, model.ErrInvalid) {
		t.Errorf("OpenTiered(MaxPairs -1) error = %v; want ErrInvalid", err)
	}
	s, lower := openTiered(t, newClock(), TieredOptions{})
	if err := s.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if !lower.closed.Load() {
		t.Error("Close did not close the lower tier")
	}
	if _, err := s.GetPairs(ctx, "k"); !errors.Is(err, model.ErrClosed) {
		t.Errorf("GetPairs after Close: error = %v; want ErrClosed", err)
	}
}

// Delete reaches both tiers: a hot key's pairs are gone from memory as
// from the lower tier, and the next GetPairs asks the lower tier.
func TestTieredDelete(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	s, lower := openTiered(t, c, TieredOptions{CheckInterval: time.Hour})
	gone := storeTier(t, s, "k", []byte("one"), nil)
	c.Advance(time.Second)
	kept := storeTier(t, s, "other", []byte("two"), nil)
	readPairs(t, s, "k")
	readPairs(t, s, "k") // hot: in memory
	readPairs(t, s, "other")
	before := lower.gets.Load()
	if n, err := s.Delete(ctx, model.Filter{Keys: []string{"k"}}); n != 1 || err != nil {
		t.Fatalf("Delete(Keys k) = %d, %v; want 1, nil", n, err)
	}
	if got := readPairs(t, s, "k"); len(got) != 0 {
		t.Errorf("after Delete: GetPairs(k) = %q; want nothing", got)
	}
	if lower.gets.Load() == before {
		t.Error("after Delete: GetPairs(k) answered from memory; want the lower tier asked")
	}
	if _, err := s.upper.GetPair(ctx, gone.ID); !errors.Is(err, model.ErrNotFound) {
		t.Errorf("memory tier GetPair(deleted) error = %v; want ErrNotFound", err)
	}
	if got := readPairs(t, s, "other"); len(got) != 1 || got[0] != "two" {
		t.Errorf("after Delete(k): GetPairs(other) = %q; want [two]", got)
	}
	var ids []model.PairID
	for pi, err := range s.Pairs(ctx, model.Filter{State: model.StateComplete}) {
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, pi.ID)
	}
	if len(ids) != 1 || ids[0] != kept.ID {
		t.Errorf("Pairs(complete) after Delete = %v; want [%v]", ids, kept.ID)
	}
	if _, err := s.Delete(nil, model.Filter{}); !errors.Is(err, model.ErrInvalid) {
		t.Errorf("Delete(nil ctx) error = %v; want ErrInvalid", err)
	}
}
