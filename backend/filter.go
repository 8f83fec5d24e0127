package backend

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"time"

	"github.com/hishel-go/hishel/model"
)

// deleteBatch is how many pairs Delete finds before it removes them.
const deleteBatch = 256

// Scan returns the iterator a backend's Pairs returns, over the pairs f
// matches at now, built from scan: a listing of every stored pair, in ID
// order, that calls fn for each pair and stops with fn's error. It is the
// generic implementation of Pairs; a backend whose indexes find some pairs
// faster (by key, say) lists those itself and matches them with
// [model.Filter.Matcher].
//
// Creating the iterator does nothing; each range over it calls scan once.
// A bad filter, scan's error and ctx's error are yielded once, last,
// with a zero PairInfo. scan must call fn outside any lock or transaction,
// so that the loop body may call the store.
func Scan(ctx context.Context, f model.Filter, now time.Time, scan func(ctx context.Context, fn func(model.PairInfo) error) error) iter.Seq2[model.PairInfo, error] {
	return func(yield func(model.PairInfo, error) bool) {
		if ctx == nil {
			yield(model.PairInfo{}, fmt.Errorf("hishel: pairs: nil context: %w", model.ErrInvalid))
			return
		}
		m, err := f.Matcher(now)
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
