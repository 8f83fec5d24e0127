package template

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/hishel-go/hishel/model"
)

// collectPairs ranges over s.Pairs(f).
func collectPairs(s *Bolt, f model.Filter) ([]model.PairInfo, error) {
	var out []model.PairInfo
	for p, err := range s.Pairs(context.Background(), f) {
		if err != nil {
			return out, err
		}
		out = append(out, p)
	}
	return out, nil
}

// A filter on Keys reads the keys index and one on Expired the expiry
// index: a record they do not lead to is never read, so one that does not
// decode fails a full listing and not them.
func TestBoltFilterUsesIndexes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.db")
	c := newClock()
	s := openBolt(t, &BoltOptions{Path: path, Now: c.Now})
	k1 := store(t, s, getReq("https://example.com/k"), okResp("k1"), "k")
	k2 := store(t, s, getReq("https://example.com/k"), okResp("k2"), "k")
	req := getReq("https://example.com/e")
	req.Options.TTL = time.Minute
	e := store(t, s, req, okResp("e"), "e")
	bad := store(t, s, getReq("https://example.com/bad"), okResp("bad"), "bad")
	s.Close()
	setRecordVersion(t, path, bad.ID, 99) // a format version nobody reads
	s = openBolt(t, &BoltOptions{Path: path, Now: c.Now})
	c.Advance(2 * time.Minute)

	if _, err := collectPairs(s, model.Filter{}); !errors.Is(err, model.ErrFormatVersion) {
		t.Fatalf("Pairs(zero filter) over an unreadable record: error = %v; want ErrFormatVersion", err)
	}
	if _, err := collectPairs(s, model.Filter{URL: "https://example.com/k"}); !errors.Is(err, model.ErrFormatVersion) {
		t.Errorf("Pairs(URL) over an unreadable record: error = %v; want ErrFormatVersion (URLs are matched by reading every record)", err)
	}
	ps, err := collectPairs(s, model.Filter{Keys: []string{"k", "missing"}})
	want := []model.PairID{k1.ID, k2.ID}
	if bytes.Compare(k2.ID[:], k1.ID[:]) < 0 {
		want = []model.PairID{k2.ID, k1.ID}
	}
	if err != nil || len(ps) != 2 || ps[0].ID != want[0] || ps[1].ID != want[1] {
		t.Errorf("Pairs(Keys k) = %v, %v; want k1 and k2, in ID order", ps, err)
	}
	if ps, err := collectPairs(s, model.Filter{Expired: true}); err != nil || len(ps) != 1 || ps[0].ID != e.ID {
		t.Errorf("Pairs(Expired) = %v, %v; want e", ps, err)
	}
	if n, err := s.Delete(context.Background(), model.Filter{Keys: []string{"k"}}); n != 2 || err != nil {
		t.Errorf("Delete(Keys k) = %d, %v; want 2, nil", n, err)
	}
	if n, err := s.Delete(context.Background(), model.Filter{Expired: true}); n != 1 || err != nil {
		t.Errorf("Delete(Expired) = %d, %v; want 1, nil", n, err)
	}
	if n, err := s.Delete(context.Background(), model.Filter{State: model.StateComplete}); n != 0 || !errors.Is(err, model.ErrFormatVersion) {
		t.Errorf("Delete(State) over an unreadable record = %d, %v; want 0, ErrFormatVersion", n, err)
	}
}

// A pair read since Delete listed it (its TTL refreshed on access) is not
// expired any more: Delete(Expired) leaves it.
func TestBoltDeleteExpiredRechecks(t *testing.T) {
	c := newClock()
	s := openBolt(t, &BoltOptions{Now: c.Now, AccessFlushInterval: time.Hour})
	req := getReq("https://example.com/e")
	req.Options.TTL = time.Minute
	store(t, s, req, okResp("e"), "e")
	c.Advance(59 * time.Second)
	ps, err := s.GetPairs(context.Background(), "e") // refreshes the TTL, in memory for now
	if err != nil || len(ps) != 1 {
		t.Fatalf("GetPairs = %d pairs, %v", len(ps), err)
	}
	ps[0].Close()
	c.Advance(30 * time.Second) // past the stored expiry, not the refreshed one
	if got, err := collectPairs(s, model.Filter{Expired: true}); err != nil || len(got) != 0 {
		t.Errorf("Pairs(Expired) after a read = %d pairs, %v; want none", len(got), err)
	}
	if n, err := s.Delete(context.Background(), model.Filter{Expired: true}); n != 0 || err != nil {
		t.Errorf("Delete(Expired) after a read = %d, %v; want 0, nil", n, err)
	}
	c.Advance(time.Minute)
	if n, err := s.Delete(context.Background(), model.Filter{Expired: true}); n != 1 || err != nil {
		t.Errorf("Delete(Expired) past the refreshed expiry = %d, %v; want 1, nil", n, err)
	}
}

// BenchmarkBoltFind compares finding one URL's pairs in a file of 10k
// pairs through the keys index (Keys) with reading every record (URL),
// as Transport.Invalidate does with the default key or without it.
func BenchmarkBoltFind(b *testing.B) {
	const n = 10_000
	s := openBolt(b, &BoltOptions{NoSync: true})
	for i := range n {
		url := fmt.Sprintf("https://example.com/items/%d", i)
		req := getReq(url)
		req.Header = map[string][]string{"Accept": {"*/*"}, "User-Agent": {"bench"}}
		store(b, s, req, okResp("x"), "GET "+url)
	}
	if err := s.Sync(context.Background()); err != nil {
		b.Fatal(err)
	}
	for _, f := range []struct {
		name string
		f    model.Filter
	}{
		{"keys", model.Filter{Keys: []string{"GET https://example.com/items/4242"}}},
		{"url", model.Filter{URL: "https://example.com/items/4242"}},
	} {
		b.Run(f.name, func(b *testing.B) {
			for b.Loop() {
				ps, err := collectPairs(s, f.f)
				if err != nil || len(ps) != 1 {
					b.Fatalf("Pairs(%s) = %d pairs, %v; want 1", f.name, len(ps), err)
				}
			}
		})
	}
}
