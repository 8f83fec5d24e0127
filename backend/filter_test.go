package backend

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/model"
)

// listing is a backend without indexes: pairs in ID order, a full listing
// and Remove.
type listing struct {
	pairs   []model.PairInfo
	scans   int // listings started
	listed  int // pairs handed to fn
	failAt  int // the listing fails at this pair (when > 0)
	removes int
	failRm  error
}

func newListing(n int) *listing {
	l := &listing{}
	for i := range n {
		var id model.PairID
		id[14], id[15] = byte(i>>8), byte(i)
		l.pairs = append(l.pairs, model.PairInfo{ID: id, State: model.StateComplete, Key: fmt.Sprint("k", i%3),
			Request: model.Request{Method: "GET", URL: fmt.Sprintf("https://example.com/%d", i)}, Response: model.Response{Status: 200}})
	}
	return l
}

var errListing = errors.New("listing failed")

func (l *listing) listAll(ctx context.Context, fn func(model.PairInfo) error) error {
	l.scans++
	for i, p := range l.pairs {
		if l.failAt > 0 && i == l.failAt {
			return errListing
		}
		l.listed++
		if err := fn(p); err != nil {
			return err
		}
	}
	return nil
}

func (l *listing) Pairs(ctx context.Context, f model.Filter) iter.Seq2[model.PairInfo, error] {
	return Finder{All: l.listAll}.Pairs(ctx, f, time.Now)
}

func (l *listing) Remove(ctx context.Context, id model.PairID) error {
	if l.failRm != nil && l.removes == 300 {
		return l.failRm
	}
	l.removes++
	for i := range l.pairs {
		if l.pairs[i].ID == id {
			l.pairs[i].State = model.StateDeleted
		}
	}
	return nil
}

func collect(seq iter.Seq2[model.PairInfo, error]) ([]model.PairInfo, error) {
	var out []model.PairInfo
	for p, err := range seq {
		if err != nil {
			return out, err
		}
		out = append(out, p)
	}
	return out, nil
}

func TestScan(t *testing.T) {
	ctx := context.Background()
	l := newListing(10)
	seq := l.Pairs(ctx, model.Filter{Keys: []string{"k1"}})
	if l.scans != 0 {
		t.Errorf("creating the iterator listed %d times; want 0", l.scans)
	}
	got, err := collect(seq)
	if err != nil || len(got) != 3 || got[0].Key != "k1" {
		t.Errorf("Pairs(Keys k1) = %d pairs, %v; want 3, nil", len(got), err)
	}
	for range seq { // a second range lists again
		break
	}
	if l.scans != 2 || l.listed != 12 {
		t.Errorf("after two ranges, one stopped at once: %d listings of %d pairs; want 2 of 12", l.scans, l.listed)
	}

	l.failAt = 5
	got, err = collect(l.Pairs(ctx, model.Filter{}))
	if len(got) != 5 || !errors.Is(err, errListing) {
		t.Errorf("Pairs over a listing failing at 5 = %d pairs, %v; want 5, errListing", len(got), err)
	}
	if _, err := collect(l.Pairs(ctx, model.Filter{OlderThan: -1})); !errors.Is(err, model.ErrInvalid) {
		t.Errorf("Pairs(bad filter) error = %v; want ErrInvalid", err)
	}
	//nolint:staticcheck // a nil context, on purpose
	if _, err := collect(l.Pairs(nil, model.Filter{})); !errors.Is(err, model.ErrInvalid) {
		t.Errorf("Pairs(nil context) error = %v; want ErrInvalid", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := collect(l.Pairs(cctx, model.Filter{})); !errors.Is(err, context.Canceled) {
		t.Errorf("Pairs(cancelled context) error = %v; want context.Canceled", err)
	}
}

func TestDelete(t *testing.T) {
	ctx := context.Background()
	l := newListing(700)
	n, err := Delete(ctx, model.Filter{Keys: []string{"k0", "k2"}}, l.Pairs, l.Remove)
	if want := 467; n != want || err != nil || l.removes != want {
		t.Errorf("Delete(Keys k0, k2) = %d, %v after %d removes; want %d, nil", n, err, l.removes, want)
	}
	n, err = Delete(ctx, model.Filter{Keys: []string{"k0", "k2"}}, l.Pairs, l.Remove)
	if n != 0 || err != nil {
		t.Errorf("Delete again = %d, %v; want 0, nil: deleted pairs are not counted", n, err)
	}
	left := slices.DeleteFunc(slices.Clone(l.pairs), func(p model.PairInfo) bool { return p.State == model.StateDeleted })
	if len(left) != 233 || left[0].Key != "k1" {
		t.Errorf("after Delete, %d pairs left; want the 233 of k1", len(left))
	}

	l = newListing(700)
	l.failRm = errors.New("remove failed")
	n, err = Delete(ctx, model.Filter{}, l.Pairs, l.Remove)
	if n != 300 || !errors.Is(err, l.failRm) {
		t.Errorf("Delete with a failing Remove = %d, %v; want 300, the Remove error", n, err)
	}
	l = newListing(10)
	l.failAt = 4
	if n, err := Delete(ctx, model.Filter{}, l.Pairs, l.Remove); n != 0 || !errors.Is(err, errListing) {
		t.Errorf("Delete over a failing listing = %d, %v; want 0, errListing", n, err)
	}
	//nolint:staticcheck // a nil context, on purpose
	if _, err := Delete(nil, model.Filter{}, l.Pairs, l.Remove); !errors.Is(err, model.ErrInvalid) {
		t.Errorf("Delete(nil context) error = %v; want ErrInvalid", err)
	}
}

func TestInfo(t *testing.T) {
	rec := &bolt.Record{Flags: bolt.FlagComplete | bolt.FlagRequestDone | bolt.FlagResponseDone | bolt.FlagHasResponse,
		Completed: 100, Expires: 1000, TTL: 900, Refresh: true}
	if got := Info(rec, 0).Meta.Expires; !got.Equal(bolt.Time(1000)) {
		t.Errorf("Info(no access).Meta.Expires = %v; want the stored expiry", got)
	}
	if got := Info(rec, 500).Meta.Expires; !got.Equal(bolt.Time(1400)) {
		t.Errorf("Info(access at 500).Meta.Expires = %v; want 500+TTL", got)
	}
	rec.Refresh = false
	if got := Info(rec, 500).Meta.Expires; !got.Equal(bolt.Time(1000)) {
		t.Errorf("Info(access, no refresh).Meta.Expires = %v; want the stored expiry", got)
	}
}

// Finder lists through Key and Expired when the filter asks for what
// they find, in ID order and each pair once, and through All otherwise;
// Paged lists every pair a page at a time.
func TestFinder(t *testing.T) {
	ctx := context.Background()
	l := newListing(10)
	var used []string
	now := time.Unix(0, 5000)
	l.pairs[7].Meta.Expires = time.Unix(0, 4000)
	l.pairs[2].Meta.Expires = time.Unix(0, 4000)
	l.pairs[4].Meta.Expires = time.Unix(0, 6000)
	pages := 0
	fd := Finder{
		All: Paged(3, func(ctx context.Context, after []byte, limit int) ([]model.PairInfo, error) {
			pages++
			i := 0
			if after != nil {
				for i < len(l.pairs) && bytes.Compare(l.pairs[i].ID[:], after) <= 0 {
					i++
				}
			}
			return l.pairs[i:min(i+limit, len(l.pairs))], nil
		}),
		Key: func(ctx context.Context, key string) ([]model.PairInfo, error) {
			used = append(used, "key "+key)
			var out []model.PairInfo
			for i := len(l.pairs) - 1; i >= 0; i-- { // out of order, on purpose
				if l.pairs[i].Key == key {
					out = append(out, l.pairs[i], l.pairs[i])
				}
			}
			return out, nil
		},
		Expired: func(ctx context.Context, at int64) ([]model.PairInfo, error) {
			used = append(used, fmt.Sprint("expired ", at))
			return []model.PairInfo{l.pairs[7], l.pairs[4], l.pairs[2]}, nil // more than expired: Pairs matches
		},
	}
	clock := func() time.Time { return now }
	urls := func(f model.Filter) string {
		ps, err := collect(fd.Pairs(ctx, f, clock))
		if err != nil {
			t.Fatalf("Pairs(%+v) error = %v", f, err)
		}
		var out []string
		for _, p := range ps {
			out = append(out, strings.TrimPrefix(p.Request.URL, "https://example.com/"))
		}
		return fmt.Sprint(out)
	}
	for _, tt := range []struct {
		f          model.Filter
		want, used string
		pages      int
	}{
		{model.Filter{Keys: []string{"k2", "k0", "k2"}}, "[0 2 3 5 6 8 9]", "[key k2 key k0]", 0},
		{model.Filter{Expired: true}, "[2 7]", "[expired 5000]", 0},
		{model.Filter{Expired: true, Keys: []string{"k1"}}, "[7]", "[key k1]", 0},
		{model.Filter{URLPrefix: "https://example.com/"}, "[0 1 2 3 4 5 6 7 8 9]", "[]", 4},
		{model.Filter{}, "[0 1 2 3 4 5 6 7 8 9]", "[]", 4},
	} {
		used, pages = nil, 0
		if got := urls(tt.f); got != tt.want || fmt.Sprint(used) != tt.used || pages != tt.pages {
			t.Errorf("Pairs(%+v) = %s through %v and %d pages; want %s through %s and %d pages", tt.f, got, used, pages, tt.want, tt.used, tt.pages)
		}
	}
	// Without indexes, All serves every filter.
	l.failAt = 0
	if ps, err := collect(Finder{All: l.listAll}.Pairs(ctx, model.Filter{Keys: []string{"k1"}}, clock)); len(ps) != 3 || err != nil {
		t.Errorf("Pairs(Keys) without Key = %d pairs, %v; want 3, nil", len(ps), err)
	}
}
