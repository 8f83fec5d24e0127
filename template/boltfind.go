package template

import (
	"bytes"
	"context"
	"fmt"
	"iter"
	"slices"

	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/model"
)

// Pairs lists the committed pairs that f matches (the zero Filter: every
// pair, whatever its state: incomplete, complete, expired or not, and
// soft-deleted), in ID order, with heads and metadata only; pairs completed
// under NoSync are committed first (see Sync). Nothing is read until the
// listing is consumed; it then reads the pairs in pages, each in a read
// transaction, and hands them out outside any transaction, so the consumer
// may call the storage between pairs. A bad filter (model.ErrInvalid), a
// record that does not decode (model.ErrCorrupt), a closed storage or ctx's
// error ends the listing, as its last item.
//
// A filter on Keys is served from the keys index and one with Expired
// from the expiry index, at a cost that follows what they find; other
// filters read every record.
func (s *Bolt) Pairs(ctx context.Context, f model.Filter) iter.Seq2[model.PairInfo, error] {
	return func(yield func(model.PairInfo, error) bool) {
		if ctx == nil {
			yield(model.PairInfo{}, fmt.Errorf("hishel: pairs: nil context: %w", model.ErrInvalid))
			return
		}
		if err := s.check(ctx); err != nil {
			yield(model.PairInfo{}, err)
			return
		}
		if err := s.syncFor(ctx, nil, model.PairID{}); err != nil {
			yield(model.PairInfo{}, err)
			return
		}
		m, err := f.Matcher(s.now())
		if err != nil {
			yield(model.PairInfo{}, err)
			return
		}
		var found iter.Seq2[[]model.PairInfo, error]
		switch {
		case len(f.Keys) > 0:
			found = s.byKeys(f.Keys, m)
		case f.Expired:
			found = s.byIndex(bolt.BucketExpiry, m)
		default:
			found = s.scan(m)
		}
		for page, err := range found {
			for _, info := range page {
				if err := ctx.Err(); err != nil {
					yield(model.PairInfo{}, err)
					return
				}
				if m.MatchFunc(info) && !yield(info, nil) {
					return
				}
			}
			if err == nil {
				err = ctx.Err()
			}
			if err != nil {
				yield(model.PairInfo{}, err)
				return
			}
		}
	}
}

// info returns rec's PairInfo, with the expiry that access times not yet
// written give it.
func (s *Bolt) info(rec *bolt.Record) model.PairInfo {
	info := rec.Info()
	if exp := s.expires(rec); exp != rec.Expires {
		info.Meta.Expires = bolt.Time(exp)
	}
	return info
}

// scan yields, page by page in ID order, the records that m matches but
// for its Func, each page read in a read transaction of its own.
func (s *Bolt) scan(m *model.Matcher) iter.Seq2[[]model.PairInfo, error] {
	return func(yield func([]model.PairInfo, error) bool) {
		var after []byte
		for {
			var page []model.PairInfo
			read := 0
			err := s.view(func(t *readTx) error {
				c := t.pairs.Cursor()
				k, v := c.First()
				if after != nil {
					k, v = c.Seek(after)
					if k != nil && bytes.Equal(k, after) {
						k, v = c.Next()
					}
				}
				for ; k != nil && read < listPage; k, v = c.Next() {
					read++
					after = append(after[:0], k...)
					rec, err := bolt.DecodeRecord(v)
					if err != nil {
						if len(k) == bolt.IDLen {
							err = s.corrupt(model.PairID(k), err)
						}
						return fmt.Errorf("hishel: pairs: record %x: %w", k, err)
					}
					if info := s.info(rec); m.MatchHeads(info) {
						page = append(page, info)
					}
				}
				return nil
			})
			if !yield(page, err) || err != nil || read < listPage {
				return
			}
		}
	}
}

// byKeys yields the complete pairs stored under keys that m matches but
// for its Func, found through the keys index, in ID order.
func (s *Bolt) byKeys(keys []string, m *model.Matcher) iter.Seq2[[]model.PairInfo, error] {
	return func(yield func([]model.PairInfo, error) bool) {
		var out []model.PairInfo
		err := s.view(func(t *readTx) error {
			for i, key := range keys {
				if slices.Contains(keys[:i], key) {
					continue
				}
				h := bolt.KeyHash(key)
				c := t.keysC
				for k, _ := c.Seek(h[:]); k != nil && bytes.HasPrefix(k, h[:]); k, _ = c.Next() {
					id := model.PairID(k[bolt.HashLen:])
					v := t.pair(id)
					if v == nil {
						continue // an entry of a pair gone, waiting for a sweep
					}
					rec, err := bolt.DecodeRecord(v)
					if err != nil {
						return fmt.Errorf("hishel: pairs: pair %s: %w", id, s.corrupt(id, err))
					}
					if info := s.info(rec); rec.Key == key && m.MatchHeads(info) {
						out = append(out, info)
					}
				}
			}
			return nil
		})
		slices.SortFunc(out, func(a, b model.PairInfo) int { return bytes.Compare(a.ID[:], b.ID[:]) })
		yield(out, err)
	}
}

// byIndex yields the pairs of a time index (bolt.TimeKey entries), up to
// m's instant, that m matches but for its Func, in ID order.
func (s *Bolt) byIndex(index []byte, m *model.Matcher) iter.Seq2[[]model.PairInfo, error] {
	return func(yield func([]model.PairInfo, error) bool) {
		bound := bolt.TimeBound(bolt.UnixNano(s.now()))
		var out []model.PairInfo
		var after []byte
		for {
			read := 0
			err := s.view(func(t *readTx) error {
				idx := t.tx.Bucket(index)
				if idx == nil {
					return fmt.Errorf("hishel: bucket %q missing: %w", index, model.ErrCorrupt)
				}
				c := idx.Cursor()
				k, _ := c.First()
				if after != nil {
					k, _ = c.Seek(after)
					if k != nil && bytes.Equal(k, after) {
						k, _ = c.Next()
					}
				}
				for ; k != nil && read < listPage && bytes.Compare(k, bound) < 0; k, _ = c.Next() {
					read++
					after = append(after[:0], k...)
					_, id, err := bolt.ParseTimeKey(k)
					if err != nil {
						continue // a malformed entry: the sweep drops it
					}
					v := t.pair(id)
					if v == nil {
						continue
					}
					rec, err := bolt.DecodeRecord(v)
					if err != nil {
						return fmt.Errorf("hishel: pairs: pair %s: %w", id, s.corrupt(id, err))
					}
					if info := s.info(rec); m.MatchHeads(info) {
						out = append(out, info)
					}
				}
				return nil
			})
			if err != nil {
				yield(nil, err)
				return
			}
			if read < listPage {
				break
			}
		}
		slices.SortFunc(out, func(a, b model.PairInfo) int { return bytes.Compare(a.ID[:], b.ID[:]) })
		yield(out, nil)
	}
}

// Delete soft-deletes every pair f matches that is not deleted already,
// as Remove does, and returns how many; it commits first when pairs
// created here may not be committed yet, so it finds every pair created
// before it was called. It finds them as Pairs does (from
// the keys or expiry index when f allows) and deletes them 256 to a
// transaction, each only if its record still matches then (f.Func is not
// asked again). It is not atomic: pairs stored while it runs may or may
// not be deleted, and when it fails part way the pairs deleted so far
// stay deleted (the count says how many).
func (s *Bolt) Delete(ctx context.Context, f model.Filter) (int, error) {
	if ctx == nil {
		return 0, fmt.Errorf("hishel: delete: nil context: %w", model.ErrInvalid)
	}
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	m, err := f.Matcher(s.now())
	if err != nil {
		return 0, err
	}
	if s.openPairs() > 0 {
		// Pairs created here but maybe not committed yet: Delete finds
		// them too.
		if err := s.Sync(ctx); err != nil {
			return 0, err
		}
	}
	n := 0
	var ids []model.PairID
	flush := func() error {
		k := 0
		err := s.w.do(ctx, true, func(t *wtx) error {
			k = 0
			s.applyAccess(t) // so that a pair read since counts as read
			now := bolt.UnixNano(s.now())
			for _, id := range ids {
				rec, err := t.record(id)
				if err != nil {
					return err
				}
				if rec == nil || rec.Has(bolt.FlagDeleted) || !m.MatchHeads(s.info(rec)) {
					continue
				}
				softDelete(t, rec, now)
				k++
			}
			return nil
		})
		if err == nil {
			n += k
		}
		ids = ids[:0]
		return err
	}
	for info, err := range s.Pairs(ctx, f) {
		if err != nil {
			return n, err
		}
		if info.State == model.StateDeleted {
			continue
		}
		if ids = append(ids, info.ID); len(ids) == sweepBatch {
			if err := flush(); err != nil {
				return n, err
			}
		}
	}
	if len(ids) == 0 {
		return n, nil
	}
	return n, flush()
}
