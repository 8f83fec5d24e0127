package template

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/model"
)

// TestBoltHeadCache checks that GetPairs serves what the file holds now,
// whether the pair's decoded heads were kept or not: after the pair is
// updated, removed, replaced under its key, and damaged; and that the heads
// a caller gets are its own to change.
func TestBoltHeadCache(t *testing.T) {
	ctx := context.Background()
	for _, size := range []int{-1, 0, 4 << 10} {
		t.Run(fmt.Sprint("HeadCacheBytes=", size), func(t *testing.T) {
			s := openBolt(t, &BoltOptions{HeadCacheBytes: size})
			body := []byte("stored body")
			if err := storePair(ctx, s, "k", body); err != nil {
				t.Fatal(err)
			}
			get := func() []model.CompletePair {
				t.Helper()
				ps, err := s.GetPairs(ctx, "k")
				if err != nil {
					t.Fatalf("GetPairs: %v", err)
				}
				for _, p := range ps {
					if err := p.Close(); err != nil {
						t.Fatal(err)
					}
				}
				return ps
			}
			// The caller's heads are its own: when the pair is
			// decoded once, decoded and kept, and served kept.
			for range 3 {
				ps := get()
				if len(ps) != 1 {
					t.Fatalf("GetPairs = %d pairs; want 1", len(ps))
				}
				ps[0].Response.Header.Set("X-Changed", "yes")
				ps[0].Response.Header["Content-Type"][0] = "changed/type"
				ps[0].Request.Header.Del("Accept")
			}
			again := get()
			if len(again) != 1 || again[0].Response.Header.Get("X-Changed") != "" ||
				again[0].Response.Header.Get("Content-Type") == "changed/type" || again[0].Request.Header.Get("Accept") == "" {
				t.Fatalf("GetPairs after the caller changed its heads = %+v; want the stored heads", again)
			}

			// Updated: the new heads.
			up := again[0]
			up.Response.Header = up.Response.Header.Clone()
			up.Response.Header.Set("Etag", `"v2"`)
			if _, err := s.UpdatePair(ctx, up.ID, up); err != nil {
				t.Fatal(err)
			}
			if ps := get(); len(ps) != 1 || ps[0].Response.Header.Get("Etag") != `"v2"` {
				t.Fatalf("GetPairs after UpdatePair: Etag %q; want \"v2\"", ps[0].Response.Header.Get("Etag"))
			}

			// Another pair under the key, then the first removed.
			if err := storePair(ctx, s, "k", body); err != nil {
				t.Fatal(err)
			}
			if ps := get(); len(ps) != 2 {
				t.Fatalf("GetPairs after a second store = %d pairs; want 2", len(ps))
			}
			if err := s.Remove(ctx, up.ID); err != nil {
				t.Fatal(err)
			}
			get()
			ps := get()
			if len(ps) != 1 || ps[0].ID == up.ID {
				t.Fatalf("GetPairs after Remove = %d pairs (first %v); want 1, not %v", len(ps), ps[0].ID, up.ID)
			}

			// Damaged in the file: the checksum fails, kept heads or not.
			id := ps[0].ID
			if err := s.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			err := s.w.do(ctx, true, func(t *wtx) error {
				v := bytes.Clone(t.pairs.Get(id[:]))
				v[len(v)/2] ^= 0xff
				return t.pairs.Put(id[:], v)
			})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.GetPairs(ctx, "k"); !errors.Is(err, model.ErrCorrupt) {
				t.Fatalf("GetPairs of a damaged record: err = %v; want ErrCorrupt", err)
			}
		})
	}
}

// TestHeadCacheBound checks that the cache keeps no more than its bound,
// and that a record it dropped is decoded again.
func TestHeadCacheBound(t *testing.T) {
	const recSize = 100
	c := newHeadCache(10 * entryCost(recSize))
	raw := func(i int) []byte { return bytes.Repeat([]byte{byte(i)}, recSize) }
	id := func(i int) model.PairID { return model.PairID{byte(i), byte(i >> 8)} }
	for i := range 100 {
		if c.put(id(i), raw(i), &bolt.Record{ID: id(i)}) {
			t.Fatalf("put %d: kept at its first decoding", i)
		}
		if !c.put(id(i), raw(i), &bolt.Record{ID: id(i)}) {
			t.Fatalf("put %d: not kept at its second decoding", i)
		}
		if c.size > c.max || len(c.entries)*entryCost(recSize) != c.size {
			t.Fatalf("after %d puts: size %d for %d entries; want <= %d, %d each", i+1, c.size, len(c.entries), c.max, entryCost(recSize))
		}
	}
	if len(c.entries) != 10 {
		t.Errorf("entries = %d; want 10", len(c.entries))
	}
	if got := c.get(id(99), raw(99)); got == nil || got.ID != id(99) {
		t.Errorf("get(last put) = %v; want its record", got)
	}
	if got := c.get(id(99), raw(98)); got != nil {
		t.Errorf("get(last put, other bytes) = %v; want nil", got)
	}
	if !c.put(id(99), raw(98), &bolt.Record{ID: id(99)}) || c.get(id(99), raw(98)) == nil {
		t.Errorf("a pair's record rewritten: not kept at its first decoding; want it to replace the entry")
	}
	big := bytes.Repeat([]byte{1}, c.max)
	c.put(id(1000), big, &bolt.Record{})
	if c.put(id(1000), big, &bolt.Record{}) || c.get(id(1000), big) != nil {
		t.Errorf("a record larger than an eighth of the cache was kept")
	}
	for i := range 10 * len(c.entries) {
		c.put(id(200+i), raw(i), &bolt.Record{}) // seen once each
	}
	if n := len(c.seen); n == 0 || n > 2*c.max/entryCost(0) {
		t.Errorf("pairs seen once: %d; want 1 to %d", n, 2*c.max/entryCost(0))
	}
	c.clear()
	if len(c.entries) != 0 || c.size != 0 || len(c.seen) != 0 {
		t.Errorf("after clear: %d entries, size %d", len(c.entries), c.size)
	}
	var none *headCache
	none.put(id(1), raw(1), &bolt.Record{})
	if none.put(id(1), raw(1), &bolt.Record{}) || none.get(id(1), raw(1)) != nil {
		t.Errorf("a nil cache kept a record")
	}
}

// BenchmarkBoltHit is a hit's storage part (GetPairs and a 1 KiB body) on
// pairs read over and over, with the decoded heads kept (cached) and
// without (HeadCacheBytes -1), taking turns in rounds of 32 in the same
// process: "x-decoded" is the mean time of a cached hit over a decoded
// one.
func BenchmarkBoltHit(b *testing.B) {
	ctx := context.Background()
	body := bytes.Repeat([]byte("0123456789abcdef"), 1<<10/16)
	const keys = 100
	stores := []*Bolt{openBolt(b, nil), openBolt(b, &BoltOptions{HeadCacheBytes: -1})}
	for _, s := range stores {
		for i := range keys {
			if err := storePair(ctx, s, fmt.Sprint("k", i), body); err != nil {
				b.Fatal(err)
			}
		}
	}
	buf := make([]byte, 32<<10)
	hitTurns(b, "decoded", func(j, i int) (time.Duration, error) {
		return timeHit(stores[j].GetPairs, ctx, fmt.Sprint("k", i%keys), len(body), buf)
	})
}

// timeHit times a hit's storage part: get (a GetPairs) of key, which must
// give one pair, and the read of its response body of size bytes through
// buf.
func timeHit(get func(context.Context, string) ([]model.CompletePair, error), ctx context.Context, key string, size int, buf []byte) (time.Duration, error) {
	t0 := time.Now()
	ps, err := get(ctx, key)
	if err != nil || len(ps) != 1 {
		return 0, fmt.Errorf("GetPairs: %d pairs, %v", len(ps), err)
	}
	if n, err := io.CopyBuffer(io.Discard, ps[0].Response.Body, buf); n != int64(size) || err != nil {
		return 0, fmt.Errorf("read %d bytes, %v", n, err)
	}
	return time.Since(t0), ps[0].Close()
}

// hitTurns runs b.N hits (hit(j, i), timed by hit) of each of two kinds
// j = 0 and 1, taking turns in rounds of 32 in the same process, and
// reports the mean time of kind 1 (NAME-ns/op) and the ratios of kind
// 0's mean and median times to kind 1's (x-NAME, p50-x-NAME).
func hitTurns(b *testing.B, name string, hit func(j, i int) (time.Duration, error)) {
	var d [2]time.Duration
	var all [2][]time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	const round = 32
	for done := 0; done < b.N; done += round {
		for j := range d {
			for i := range min(round, b.N-done) {
				t, err := hit(j, done+i)
				if err != nil {
					b.Fatal(err)
				}
				d[j] += t
				all[j] = append(all[j], t)
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(d[1].Nanoseconds())/float64(b.N), name+"-ns/op")
	b.ReportMetric(float64(d[0])/float64(d[1]), "x-"+name)
	slices.Sort(all[0])
	slices.Sort(all[1])
	b.ReportMetric(float64(all[0][len(all[0])/2])/float64(all[1][len(all[1])/2]), "p50-x-"+name)
}

// TestBoltHeadCacheOption checks HeadCacheBytes and its URL parameter.
func TestBoltHeadCacheOption(t *testing.T) {
	tests := []struct {
		query string
		want  int // the cache's bound; 0: none
	}{
		{"", DefaultHeadCacheBytes},
		{"?head-cache=1MiB", 1 << 20},
		{"?head-cache=-1", 0},
	}
	for _, tt := range tests {
		u, err := url.Parse("bolt://" + filepath.Join(t.TempDir(), "c.db") + tt.query)
		if err != nil {
			t.Fatal(err)
		}
		s, err := OpenBoltURL(context.Background(), u)
		if err != nil {
			t.Fatalf("OpenBoltURL(%s): %v", u, err)
		}
		got := 0
		if s.heads != nil {
			got = s.heads.max
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if got != tt.want {
			t.Errorf("OpenBoltURL(%s): head cache of %d bytes; want %d", u, got, tt.want)
		}
	}
}
