package backend

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"time"

	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/model"
)

// deleteBatch is how many pairs Delete finds before it removes them.
const deleteBatch = 256

// Finder is how a backend finds pairs, from which [Finder.Pairs] builds
// its Pairs: a listing of every pair, and the indexes it may have. A
// backend without indexes sets All alone:
//
//	func (s *Mine) Pairs(ctx context.Context, f model.Filter) iter.Seq2[model.PairInfo, error] {
//		return backend.Finder{All: s.listAll}.Pairs(ctx, f, s.pol.Now)
//	}
//
// Every function must return each pair's expiry as reads not yet written
// make it ([Info]), so that a filter on Expired sees what GetPairs serves,
// and must hold no lock nor transaction when it calls fn or returns, so
// that the consumer of Pairs may call the store.
type Finder struct {
	// All calls fn for every stored pair, in ID order, and stops with
	// fn's error. [Paged] builds it from a query of pages.
	All func(ctx context.Context, fn func(model.PairInfo) error) error
	// Key, if not nil, returns the complete pairs stored under key (more
	// does no harm), in any order: for a filter on Keys.
	Key func(ctx context.Context, key string) ([]model.PairInfo, error)
	// Expired, if not nil, returns the complete pairs whose stored expiry
	// is at or before now (Unix nanoseconds; more does no harm), in any
	// order: for a filter on Expired.
	Expired func(ctx context.Context, now int64) ([]model.PairInfo, error)
}

// Pairs returns the iterator a backend's Pairs returns: the pairs f
// matches at now() (the backend's clock, read as the range begins), in ID
// order, found with Key when f sets Keys and Key is set, with Expired when
// f sets Expired and Expired is set, and with All otherwise; each is
// matched with [model.Filter.Matcher].
//
// Creating the iterator does nothing; each range over it lists once. A bad
// filter, a listing's error and ctx's error are yielded once, last, with a
// zero PairInfo.
func (fd Finder) Pairs(ctx context.Context, f model.Filter, now func() time.Time) iter.Seq2[model.PairInfo, error] {
	return func(yield func(model.PairInfo, error) bool) {
		if ctx == nil {
			yield(model.PairInfo{}, fmt.Errorf("hishel: pairs: nil context: %w", model.ErrInvalid))
			return
		}
		at := now()
		m, err := f.Matcher(at)
		if err != nil {
			yield(model.PairInfo{}, err)
			return
		}
		list := fd.All
		switch {
		case len(f.Keys) > 0 && fd.Key != nil:
			list = func(ctx context.Context, fn func(model.PairInfo) error) error {
				var infos []model.PairInfo
				for i, k := range f.Keys {
					if slices.Contains(f.Keys[:i], k) {
						continue
					}
					got, err := fd.Key(ctx, k)
					if err != nil {
						return err
					}
					infos = append(infos, got...)
				}
				return inIDOrder(infos, fn)
			}
		case f.Expired && fd.Expired != nil:
			list = func(ctx context.Context, fn func(model.PairInfo) error) error {
				infos, err := fd.Expired(ctx, bolt.UnixNano(at))
				if err != nil {
					return err
				}
				return inIDOrder(infos, fn)
			}
		}
		errStop := errors.New("stop")
		err = list(ctx, func(pi model.PairInfo) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			if m.Match(pi) && !yield(pi, nil) {
				return errStop
			}
			return nil
		})
		if err != nil && !errors.Is(err, errStop) {
			yield(model.PairInfo{}, err)
		}
	}
}

// Paged returns a Finder.All that lists every pair with page: a query of
// up to limit pairs whose IDs are above after (nil: the first page), in ID
// order. A page shorter than limit is the last.
func Paged(limit int, page func(ctx context.Context, after []byte, limit int) ([]model.PairInfo, error)) func(ctx context.Context, fn func(model.PairInfo) error) error {
	return func(ctx context.Context, fn func(model.PairInfo) error) error {
		var after []byte
		for {
			infos, err := page(ctx, after, limit)
			if err != nil {
				return err
			}
			for _, info := range infos {
				if err := fn(info); err != nil {
					return err
				}
			}
			if len(infos) < limit {
				return nil
			}
			last := infos[len(infos)-1].ID
			after = last[:]
		}
	}
}

// inIDOrder sorts infos by ID, drops repeats (a pair found twice) and
// calls fn for each, stopping at fn's error.
func inIDOrder(infos []model.PairInfo, fn func(model.PairInfo) error) error {
	slices.SortFunc(infos, func(a, b model.PairInfo) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	infos = slices.CompactFunc(infos, func(a, b model.PairInfo) bool { return a.ID == b.ID })
	for _, info := range infos {
		if err := fn(info); err != nil {
			return err
		}
	}
	return nil
}

// Info returns rec's PairInfo as Pairs lists it, with the expiry that an
// access at pending (Unix nanoseconds; 0: none), read but not yet stored,
// gives it ([Expiry]).
func Info(rec *bolt.Record, pending int64) model.PairInfo {
	info := rec.Info()
	if exp := Expiry(rec, pending); exp != rec.Expires {
		info.Meta.Expires = bolt.Time(exp)
	}
	return info
}

// Delete is the generic implementation of a backend's Delete: it lists the
// pairs f matches with pairs (the backend's Pairs), a batch at a time, and
// removes each one that is not deleted already with remove (the backend's
// Remove). It returns how many it removed. It is not atomic: a pair
// stored while it runs may or may not be removed, and when it fails part
// way the pairs removed so far stay removed (the count says how many).
func Delete(ctx context.Context, f model.Filter, pairs func(context.Context, model.Filter) iter.Seq2[model.PairInfo, error], remove func(context.Context, model.PairID) error) (int, error) {
	if ctx == nil {
		return 0, fmt.Errorf("hishel: delete: nil context: %w", model.ErrInvalid)
	}
	removed := 0
	var ids []model.PairID
	flush := func() error {
		for _, id := range ids {
			if err := remove(ctx, id); err != nil {
				return fmt.Errorf("hishel: delete: %w", err)
			}
			removed++
		}
		ids = ids[:0]
		return nil
	}
	for pi, err := range pairs(ctx, f) {
		if err != nil {
			return removed, err
		}
		if pi.State == model.StateDeleted {
			continue
		}
		if ids = append(ids, pi.ID); len(ids) == deleteBatch {
			if err := flush(); err != nil {
				return removed, err
			}
		}
	}
	return removed, flush()
}
