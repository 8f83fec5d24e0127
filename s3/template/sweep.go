package template

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/hishel-go/hishel/backend"
	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/model"
)

// size is what a pair counts against MaxBytes and in Stats.Bytes: its
// heads and its bodies as stored so far (backend.Size).
func size(rec *bolt.Record) int64 { return backend.Size(rec) }

// addStats adds rec's contribution to st, times sign.
func addStats(st *model.Stats, rec *bolt.Record, sign int) {
	switch rec.State() {
	case model.StateComplete:
		st.Pairs += sign
	case model.StateIncomplete:
		st.Incomplete += sign
	case model.StateDeleted:
		st.Deleted += sign
	}
	st.Bytes += int64(sign) * size(rec)
}

// countChange adds this store's change of rec to the count the budgets
// use.
func (s *S3) countChange(rec *bolt.Record, sign int) {
	if rec == nil {
		return
	}
	s.statsMu.Lock()
	addStats(&s.delta, rec, sign)
	s.statsMu.Unlock()
}

// count counts the store: it lists the heads and the time indexes, counts
// a pair that has exactly one state entry (a or d, not a tombstone) from
// the entry's name and any other from its head (remembered, if the listing
// shows it unchanged, else read). Entries whose head is gone are ignored:
// they are garbage. It also makes the count the base of the budgets.
func (s *S3) count(ctx context.Context) (model.Stats, error) {
	heads := make(map[model.PairID]string)
	state := make(map[model.PairID][]entry)
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		prefix := s.n.heads()
		return s.list(gctx, prefix, 0, func(o object) (bool, error) {
			if id, ok := parseID(strings.TrimPrefix(o.key, prefix)); ok {
				mu.Lock()
				heads[id] = o.etag
				mu.Unlock()
			}
			return true, nil
		})
	})
	for _, kind := range []byte{entIncomplete, entAccess, entDeleted} {
		g.Go(func() error {
			return s.list(gctx, s.n.index(kind), 0, func(o object) (bool, error) {
				if e, ok := parseEntry(strings.TrimPrefix(o.key, s.n.p)); ok {
					mu.Lock()
					state[e.id] = append(state[e.id], e)
					mu.Unlock()
				}
				return true, nil
			})
		})
	}
	started := time.Now()
	if err := g.Wait(); err != nil {
		return model.Stats{}, err
	}
	// st counts from entry names in this loop; read counts from the heads
	// the goroutines read, under mu; they add up once all are done.
	var st, read model.Stats
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(s.opts.Parallel)
	for id, etag := range heads {
		if es := state[id]; len(es) == 1 && (es[0].kind == entAccess || es[0].kind == entDeleted && es[0].t != tombstoneTime) {
			if es[0].kind == entAccess {
				st.Pairs++
			} else {
				st.Deleted++
			}
			st.Bytes += es[0].bytes
			continue
		}
		g.Go(func() error {
			h, err := s.headAt(gctx, id, etag)
			switch {
			case errors.Is(err, errNoObject) || errors.Is(err, model.ErrCorrupt) || errors.Is(err, model.ErrFormatVersion):
				return nil // gone since, or for the sweep to reclaim
			case err != nil:
				return err
			}
			mu.Lock()
			addStats(&read, h.rec, 1)
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return model.Stats{}, err
	}
	st.Pairs += read.Pairs
	st.Incomplete += read.Incomplete
	st.Deleted += read.Deleted
	st.Bytes += read.Bytes
	s.statsMu.Lock()
	s.base, s.baseAt, s.delta = st, started, model.Stats{}
	s.statsMu.Unlock()
	return st, nil
}

// estimate returns the count the budgets start from: the last count and
// this store's changes since, counting again if it is older than
// recountAge.
func (s *S3) estimate(ctx context.Context) (model.Stats, error) {
	s.statsMu.Lock()
	fresh := !s.baseAt.IsZero() && time.Since(s.baseAt) < recountAge
	b, d := s.base, s.delta
	s.statsMu.Unlock()
	if !fresh {
		return s.count(ctx)
	}
	return model.Stats{Pairs: b.Pairs + d.Pairs, Incomplete: b.Incomplete + d.Incomplete,
		Deleted: b.Deleted + d.Deleted, Bytes: b.Bytes + d.Bytes}, nil
}

// completed enforces the budgets once rec has completed: the variants
// beyond MaxVariants under its key, then MaxBytes and MaxPairs.
func (s *S3) completed(ctx context.Context, rec *bolt.Record) error {
	// A variant read between its ranking and its eviction is spared, and
	// the next least recently used goes in a new ranking.
	for range capRankings {
		if s.pol.MaxVariants <= 0 {
			break
		}
		spared, err := s.capVariants(ctx, rec)
		if err != nil {
			return err
		}
		if !spared {
			break
		}
	}
	return s.enforceBudget(ctx, nil)
}

// capRankings bounds the rankings of one completion's variant cap: reads
// that keep sparing variants leave the key over its cap until the next
// completion under it.
const capRankings = 4

// capVariants evicts the least recently used complete pairs under rec's
// key beyond MaxVariants (never rec), and says whether it spared one that
// was read after the ranking.
func (s *S3) capVariants(ctx context.Context, rec *bolt.Record) (spared bool, err error) {
	ids := make(map[model.PairID]bool)
	prefix := s.n.keyIndex(rec.Key)
	if err := s.list(ctx, prefix, 0, func(o object) (bool, error) {
		if e, ok := parseEntry(strings.TrimPrefix(o.key, s.n.p)); ok {
			ids[e.id] = true
		}
		return true, nil
	}); err != nil {
		return false, err
	}
	if len(ids) <= s.pol.MaxVariants {
		return false, nil
	}
	heads, err := s.keyHeads(ctx, rec.Key)
	if err != nil {
		return false, err
	}
	// The ranking counts the reads this process gathered and has not
	// written yet; their flush (writing them into the heads meanwhile)
	// does not spare a pair, a later read does.
	last := func(h *head) int64 { return max(h.rec.LastAccess, s.pending(h.rec.ID)) }
	slices.SortFunc(heads, func(a, b *head) int { // most recent first
		if c := cmpInt(last(b), last(a)); c != 0 {
			return c
		}
		if c := cmpInt(b.rec.Completed, a.rec.Completed); c != 0 {
			return c
		}
		return bytes.Compare(b.rec.ID[:], a.rec.ID[:])
	})
	for _, h := range heads[min(len(heads), s.pol.MaxVariants):] {
		if h.rec.ID == rec.ID {
			continue
		}
		seen := last(h)
		purged, err := s.purgeIf(ctx, h.rec.ID, func(now *head) bool {
			if now.rec.State() != model.StateComplete || now.rec.Key != rec.Key {
				return false
			}
			if last(now) > seen {
				spared = true
				return false
			}
			return true
		})
		if err != nil {
			return spared, err
		}
		if purged {
			s.evicted.Add(1)
		}
	}
	return spared, nil
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// enforceBudget evicts pairs until the stored bytes fit MaxBytes and the
// complete pairs MaxPairs: soft-deleted pairs first (oldest deletion
// first; for MaxBytes only), then complete pairs, least recently used
// first. The access index holds lower bounds of last accesses: a pair
// read since its entry was written gets an entry at its last access
// instead, and is met again in its turn. Incomplete pairs are never
// evicted. res, if not nil, counts the evictions.
func (s *S3) enforceBudget(ctx context.Context, res *model.SweepResult) error {
	if s.pol.MaxBytes <= 0 && s.pol.MaxPairs <= 0 {
		return nil
	}
	st, err := s.estimate(ctx)
	if err != nil {
		return err
	}
	overBytes := func() bool { return s.pol.MaxBytes > 0 && st.Bytes > s.pol.MaxBytes }
	overPairs := func() bool { return s.pol.MaxPairs > 0 && st.Pairs > s.pol.MaxPairs }
	if !overBytes() && !overPairs() {
		return nil
	}
	evict := func(kind byte, pairs bool) error {
		return s.list(ctx, s.n.index(kind), sweepPage, func(o object) (bool, error) {
			if !overBytes() && !(pairs && overPairs()) {
				return false, nil
			}
			e, ok := parseEntry(strings.TrimPrefix(o.key, s.n.p))
			if !ok {
				return true, nil
			}
			h, _, err := s.readHead(ctx, e.id)
			if errors.Is(err, errNoObject) || errors.Is(err, model.ErrCorrupt) {
				s.dropStale(ctx, o, nil, e)
				return true, nil
			}
			if err != nil {
				return false, err
			}
			if !h.lists(e) {
				s.dropStale(ctx, o, h, e)
				return true, nil
			}
			if kind == entAccess {
				if at := max(h.rec.LastAccess, s.pending(e.id)); at > e.t {
					return true, s.reindex(ctx, e)
				}
			}
			purged, err := s.purgeIf(ctx, e.id, func(now *head) bool { return now.lists(e) })
			if err != nil || !purged {
				return err == nil, err
			}
			// The head listed e: the pair was complete (an access entry)
			// or soft-deleted, of e.bytes bytes.
			if kind == entAccess { // a live pair, not a soft-deleted one reclaimed early
				st.Pairs--
				s.evicted.Add(1)
			}
			st.Bytes -= e.bytes
			if res != nil {
				res.Evicted++
			}
			return true, nil
		})
	}
	if overBytes() {
		if err := evict(entDeleted, false); err != nil {
			return err
		}
	}
	if overBytes() || overPairs() {
		return evict(entAccess, true)
	}
	return nil
}

// reindex gives the complete pair that lists e entries at its very last
// access and expiry, writing the access gathered for it.
func (s *S3) reindex(ctx context.Context, e entry) error {
	var at int64
	_, _, _, err := s.change(ctx, e.id, true, func(h *head) error {
		if h == nil || !h.lists(e) || h.rec.State() != model.StateComplete {
			return errStop
		}
		at = max(h.rec.LastAccess, s.pending(e.id))
		h.rec.Expires = expiry(h.rec, at)
		h.rec.LastAccess = at
		return nil
	})
	if errors.Is(err, errStop) {
		return nil
	}
	if err == nil {
		s.written(e.id, at)
	}
	return err
}

// sweepIndex lists time index kind from its oldest entry up to limit and
// calls act for each entry its pair's head lists (with the head and its
// ETag); entries no head lists are dropped (see dropStale).
func (s *S3) sweepIndex(ctx context.Context, kind byte, limit int64, act func(e entry, h *head) error) error {
	return s.list(ctx, s.n.index(kind), sweepPage, func(o object) (bool, error) {
		e, ok := parseEntry(strings.TrimPrefix(o.key, s.n.p))
		if !ok {
			return true, nil
		}
		if e.t > limit {
			return false, nil
		}
		h, _, err := s.readHead(ctx, e.id)
		switch {
		case errors.Is(err, errNoObject):
			s.dropStale(ctx, o, nil, e)
			return true, nil
		case errors.Is(err, model.ErrCorrupt) || errors.Is(err, model.ErrFormatVersion):
			return true, nil // noted: purged by the next sweep
		case err != nil:
			return false, err
		case !h.lists(e):
			s.dropStale(ctx, o, h, e)
			return true, nil
		}
		return true, act(e, h)
	})
}

// Cleanup runs a sweep now and reports what it did: expired pairs are
// soft-deleted, soft-deleted pairs past DeletedRetention and incomplete pairs
// older than IncompleteAge are removed (and pairs found corrupt), and pairs
// beyond MaxBytes or MaxPairs are evicted. Each rule lists its time index
// from the oldest entry up to the time it sweeps, so its cost follows what
// is due (removed pairs, pairs whose entry a read has left behind, and
// garbage entries), not the size of the store.
func (s *S3) Cleanup(ctx context.Context) (model.SweepResult, error) {
	var res model.SweepResult
	if err := s.check(ctx); err != nil {
		return res, err
	}
	s.badMu.Lock()
	bad := s.bad
	s.bad = make(map[model.PairID]struct{})
	s.badMu.Unlock()
	for id := range bad {
		purged, err := s.purge(ctx, id, nil, "")
		if err != nil {
			return res, s.opErr(err)
		}
		if purged {
			res.Purged++
		}
	}
	now := s.now()
	err := s.sweepIndex(ctx, entExpiry, now, func(e entry, h *head) error {
		if exp := expiry(h.rec, s.pending(e.id)); exp > now {
			return s.reindex(ctx, e) // refreshed since: due later
		}
		_, next, _, err := s.change(ctx, e.id, false, func(h *head) error {
			if h == nil || !h.lists(e) || h.rec.State() != model.StateComplete || expiry(h.rec, s.pending(e.id)) > now {
				return errStop
			}
			h.rec.Flags |= bolt.FlagDeleted
			h.rec.Deleted = now
			return nil
		})
		if next != nil {
			res.Expired++
		}
		if errors.Is(err, errStop) || errors.Is(err, model.ErrCorrupt) {
			return nil
		}
		return err
	})
	if err == nil {
		err = s.sweepIndex(ctx, entDeleted, now-int64(s.pol.Retention), func(e entry, h *head) error {
			purged, err := s.purgeIf(ctx, e.id, func(h *head) bool { return h.lists(e) })
			if purged && e.t != tombstoneTime {
				res.Purged++
			}
			return err
		})
	}
	if err == nil {
		err = s.sweepIndex(ctx, entIncomplete, now-int64(s.pol.IncompleteAge), func(e entry, h *head) error {
			purged, err := s.purgeIf(ctx, e.id, func(h *head) bool { return h.lists(e) })
			if purged {
				res.Abandoned++
			}
			return err
		})
	}
	if err == nil {
		err = s.enforceBudget(ctx, &res)
	}
	return res, s.opErr(err)
}
