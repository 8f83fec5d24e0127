package storagetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hishel-go/hishel/model"
)

const (
	keyA = "GET https://example.com/a"
	keyB = "GET https://example.com/b?x=1"
	keyC = "POST https://example.com/a body-sha256:00"
)

// filterFixture stores pairs whose every criterion of model.Filter tells
// apart, and returns the store, the pairs' names by ID and its clock:
//
//	a1, a2  two variants under keyA, URL https://example.com/a, stored 2h
//	        ago; a1 with a 1h TTL, so expired
//	b       under keyB, URL https://EXAMPLE.com:443/b?x=1, stored now
//	c       a POST under keyC, URL https://example.com/a, stored now
//	i       incomplete, URL https://example.com/a#top, created now
//	d       deleted, URL http://other.example/, stored now
func filterFixture(t *testing.T, open Opener) (Store, map[model.PairID]string, *Clock) {
	t.Helper()
	ctx := context.Background()
	c := NewClock()
	s := open(t, Options{Now: c.Now})
	names := map[model.PairID]string{}
	req := func(method, url string, ttl time.Duration) model.Request {
		return model.Request{Method: method, URL: url, Options: model.RequestOptions{TTL: ttl}}
	}
	names[store(t, s, req("GET", "https://example.com/a", time.Hour), okResp("a1"), keyA).ID] = "a1"
	names[store(t, s, req("GET", "https://example.com/a", 0), okResp("a2"), keyA).ID] = "a2"
	c.Advance(2 * time.Hour)
	names[store(t, s, req("GET", "https://EXAMPLE.com:443/b?x=1", 0), okResp("b"), keyB).ID] = "b"
	names[store(t, s, req("POST", "https://example.com/a", 0), okResp("c"), keyC).ID] = "c"
	inc, err := s.CreatePair(ctx, req("GET", "https://example.com/a#top", 0))
	if err != nil {
		t.Fatal(err)
	}
	names[inc.ID] = "i"
	d := store(t, s, req("GET", "http://other.example/", 0), okResp("d"), "other")
	if err := s.Remove(ctx, d.ID); err != nil {
		t.Fatal(err)
	}
	names[d.ID] = "d"
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	return s, names, c
}

// filterCases are filters of the fixture and the pairs each matches.
var filterCases = []struct {
	name string
	f    model.Filter
	want []string
}{
	{"zero", model.Filter{}, []string{"a1", "a2", "b", "c", "d", "i"}},
	{"keys", model.Filter{Keys: []string{keyA}}, []string{"a1", "a2"}},
	{"keys, repeated and missing", model.Filter{Keys: []string{"missing", keyA, keyB, keyA}}, []string{"a1", "a2", "b"}},
	{"keys of deleted pairs", model.Filter{Keys: []string{"other"}}, nil},
	{"key prefix", model.Filter{KeyPrefix: "GET https://example.com/"}, []string{"a1", "a2", "b"}},
	{"url", model.Filter{URL: "HTTPS://example.com:443/a"}, []string{"a1", "a2", "c", "i"}},
	{"url with its query", model.Filter{URL: "https://example.com/b?x=1"}, []string{"b"}},
	{"url prefix", model.Filter{URLPrefix: "https://example.com/"}, []string{"a1", "a2", "b", "c", "i"}},
	{"state incomplete", model.Filter{State: model.StateIncomplete}, []string{"i"}},
	{"state deleted", model.Filter{State: model.StateDeleted}, []string{"d"}},
	{"state complete", model.Filter{State: model.StateComplete}, []string{"a1", "a2", "b", "c"}},
	{"expired", model.Filter{Expired: true}, []string{"a1"}},
	{"older than", model.Filter{OlderThan: time.Hour}, []string{"a1", "a2"}},
	{"keys and older than", model.Filter{Keys: []string{keyA, keyB}, OlderThan: time.Hour}, []string{"a1", "a2"}},
	{"keys and expired", model.Filter{Keys: []string{keyA, keyB}, Expired: true}, []string{"a1"}},
	{"url and state", model.Filter{URL: "https://example.com/a", State: model.StateComplete}, []string{"a1", "a2", "c"}},
	{"func", model.Filter{Func: func(pi model.PairInfo) bool { return pi.Request.Method == "POST" }}, []string{"c"}},
	{"keys and func", model.Filter{Keys: []string{keyA}, Func: func(pi model.PairInfo) bool { return pi.Meta.TTL == 0 }}, []string{"a2"}},
	{"expired and func", model.Filter{Expired: true, Func: func(model.PairInfo) bool { return false }}, nil},
}

// Pairs lists exactly the pairs a filter matches, in ID order, and every
// criterion works alone and with others, whether the backend serves it
// from an index or by reading every pair.
func testFilter(t *testing.T, open Opener) {
	s, names, _ := filterFixture(t, open)
	ctx := context.Background()
	for _, tt := range filterCases {
		t.Run(tt.name, func(t *testing.T) {
			ps, err := list(ctx, s, tt.f)
			if err != nil {
				t.Fatalf("Pairs(%s) error = %v", tt.name, err)
			}
			var got []string
			for _, p := range ps {
				got = append(got, names[p.ID])
			}
			if !slices.IsSortedFunc(ps, func(a, b model.PairInfo) int { return slices.Compare(a.ID[:], b.ID[:]) }) {
				t.Errorf("Pairs(%s) not in ID order: %v", tt.name, got)
			}
			slices.Sort(got)
			if !cmp.Equal(got, tt.want, equateEmpty) {
				t.Errorf("Pairs(%s) = %v; want %v", tt.name, got, tt.want)
			}
		})
	}
	// Bad filters fail, Delete as Pairs, and change nothing.
	before := mustStats(t, s)
	for _, f := range []model.Filter{{State: 42}, {OlderThan: -time.Second}, {URL: "http://bad host/"}, {URLPrefix: "%zz"}} {
		if _, err := list(ctx, s, f); !errors.Is(err, model.ErrInvalid) {
			t.Errorf("Pairs(%+v) error = %v; want ErrInvalid", f, err)
		}
		if n, err := s.Delete(ctx, f); n != 0 || !errors.Is(err, model.ErrInvalid) {
			t.Errorf("Delete(%+v) = %d, %v; want 0, ErrInvalid", f, n, err)
		}
	}
	wantStats(t, "after bad filters", mustStats(t, s), before)
}

// Delete soft-deletes exactly what Pairs lists for the filter, but the pairs
// deleted already, and says how many; what it deletes is gone from
// GetPairs at once and counted as deleted.
func testDelete(t *testing.T, open Opener) {
	ctx := context.Background()
	for _, tt := range filterCases {
		t.Run(tt.name, func(t *testing.T) {
			s, names, _ := filterFixture(t, open)
			before := mustStats(t, s)
			n, err := s.Delete(ctx, tt.f)
			if err != nil {
				t.Fatalf("Delete(%s) error = %v", tt.name, err)
			}
			want := slices.DeleteFunc(slices.Clone(tt.want), func(name string) bool { return name == "d" })
			if n != len(want) {
				t.Errorf("Delete(%s) = %d; want %d (%v)", tt.name, n, len(want), want)
			}
			var deleted []string
			for _, p := range infos(t, s) {
				if p.State == model.StateDeleted && names[p.ID] != "d" {
					deleted = append(deleted, names[p.ID])
				}
			}
			slices.Sort(deleted)
			if !cmp.Equal(deleted, want, equateEmpty) {
				t.Errorf("after Delete(%s), deleted pairs = %v; want %v", tt.name, deleted, want)
			}
			wantA := 0
			for _, name := range []string{"a2"} { // a1 is expired: GetPairs never serves it
				if !slices.Contains(want, name) {
					wantA++
				}
			}
			if got := count(t, s, keyA); got != wantA {
				t.Errorf("after Delete(%s), GetPairs(keyA) serves %d pairs; want %d", tt.name, got, wantA)
			}
			after := syncedStats(t, s)
			incomplete := 0
			if slices.Contains(want, "i") {
				incomplete = 1
			}
			wantSt := model.Stats{Pairs: before.Pairs - (len(want) - incomplete), Incomplete: before.Incomplete - incomplete,
				Deleted: before.Deleted + len(want), Bytes: before.Bytes}
			wantStats(t, "after Delete", after, wantSt)
			if n, err := s.Delete(ctx, tt.f); n != 0 || err != nil {
				t.Errorf("second Delete(%s) = %d, %v; want 0, nil", tt.name, n, err)
			}
		})
	}
	t.Run("more than a batch", func(t *testing.T) {
		s := open(t, Options{NoSync: true})
		const n = 300 // more than backend.Delete's batch (256); each store costs a scan on some servers
		for i := range n {
			store(t, s, getReq(fmt.Sprintf("https://example.com/p/%d", i)), okResp("x"), fmt.Sprint(i))
		}
		store(t, s, getReq("https://example.com/q"), okResp("x"), "q")
		if got, err := s.Delete(ctx, model.Filter{URLPrefix: "https://example.com/p/"}); got != n || err != nil {
			t.Errorf("Delete(URLPrefix) = %d, %v; want %d, nil", got, err, n)
		}
		wantStats(t, "after Delete", syncedStats(t, s), model.Stats{Pairs: 1, Deleted: n, Bytes: n + 1})
	})
	t.Run("an incomplete pair's body stream", func(t *testing.T) {
		s := open(t, Options{})
		inc, err := s.CreatePair(ctx, model.Request{Method: "POST", URL: "https://example.com/up", Body: model.StringBody("body")})
		if err != nil {
			t.Fatal(err)
		}
		if got, err := s.Delete(ctx, model.Filter{URL: "https://example.com/up"}); got != 1 || err != nil {
			t.Fatalf("Delete(incomplete) = %d, %v; want 1, nil", got, err)
		}
		// The pair is gone: its response cannot be added, whatever becomes
		// of the body stream.
		_, _ = model.ReadAll(inc.Request.Body)
		if _, err := s.AddResponse(ctx, inc.ID, okResp("x"), "k"); !errors.Is(err, model.ErrNotFound) {
			t.Errorf("AddResponse after Delete error = %v; want ErrNotFound", err)
		}
		if got := count(t, s, "k"); got != 0 {
			t.Errorf("GetPairs after Delete serves %d pairs; want 0", got)
		}
	})
}
