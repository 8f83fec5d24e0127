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

// Scan returns the iterator a backend's Pairs returns, over the pairs f
// matches at now() (the backend's clock, read as the range begins), built
// from scan: a listing of stored pairs, in ID order, that calls fn for each
// pair and stops with fn's error. With a listing of every pair it is the
// generic implementation of Pairs; a backend whose indexes find some pairs
// faster (by key, say) gives it a listing of those, a superset of what f
// matches (Scan matches each pair with [model.Filter.Matcher]). A listing
// should give each pair's expiry as reads not yet written make it
// ([Info]), so that Expired sees what GetPairs serves.
//
// Creating the iterator does nothing; each range over it calls scan once.
// A bad filter, scan's error and ctx's error are yielded once, last,
// with a zero PairInfo. scan must call fn outside any lock or transaction,
// so that the loop body may call the store.
func Scan(ctx context.Context, f model.Filter, now func() time.Time, scan func(ctx context.Context, fn func(model.PairInfo) error) error) iter.Seq2[model.PairInfo, error] {
	return func(yield func(model.PairInfo, error) bool) {
		if ctx == nil {
			yield(model.PairInfo{}, fmt.Errorf("hishel: pairs: nil context: %w", model.ErrInvalid))
			return
		}
		m, err := f.Matcher(now())
		if err != nil {
			yield(model.PairInfo{}, err)
			return
		}
		errStop := errors.New("stop")
		err = scan(ctx, func(pi model.PairInfo) error {
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

// Each is the end of a listing for [Scan] from what a backend read: it
// sorts infos by ID, drops repeats (a pair found twice) and calls fn for
// each, stopping at fn's error.
func Each(infos []model.PairInfo, fn func(model.PairInfo) error) error {
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
