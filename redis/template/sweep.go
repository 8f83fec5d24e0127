package template

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"slices"
	"strconv"
	"strings"

	goredis "github.com/redis/go-redis/v9"

	"github.com/hishel-go/hishel/backend"
	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/model"
)

// sweepPage is how many index entries a sweep reads at a time.
const sweepPage = 256

// due returns up to sweepPage IDs of index ix whose score is at most max.
func (s *Redis) due(ctx context.Context, ix string, max int64) ([]string, error) {
	var ids []string
	err := s.call(ctx, func(ctx context.Context) error {
		var err error
		ids, err = s.c.ZRangeByScore(ctx, ix, &goredis.ZRangeBy{Min: "-inf", Max: strconv.FormatInt(max, 10), Count: sweepPage}).Result()
		return err
	})
	return ids, err
}

// Cleanup runs a sweep now and reports what it did: expired pairs are
// soft-deleted, soft-deleted pairs past DeletedRetention and incomplete
// pairs older than IncompleteAge are removed, pairs a read found damaged
// are checked and removed, and pairs beyond MaxPairs and MaxBytes are
// evicted. It reads only the index entries that are due, so its cost
// follows what it removes. Entries of pairs that Redis already reclaimed
// are dropped as they come.
func (s *Redis) Cleanup(ctx context.Context) (model.SweepResult, error) {
	var res model.SweepResult
	if err := checkCtx(ctx); err != nil {
		return res, err
	}
	if s.closed.Load() {
		return res, model.ErrClosed
	}
	now := bolt.UnixNano(s.pol.Now())
	// Expired pairs: soft-deleted.
	if err := s.sweepIndex(ctx, s.k.expiring(), ms(now), func(id model.PairID, st *stored) (bool, error) {
		if st.state != stateComplete || st.rec.Expires == 0 {
			return true, s.unindex(ctx, s.k.expiring(), id)
		}
		if st.rec.Expires > now { // refreshed: put it where it belongs
			return true, s.call(ctx, func(ctx context.Context) error {
				return s.c.ZAdd(ctx, s.k.expiring(), goredis.Z{Score: float64(ceilMS(st.rec.Expires)), Member: idHex(id)}).Err()
			})
		}
		c := newChange(s.k.rec(id)).when(fRev, st.rev).when(fNonce, st.nonce)
		s.softDeleteOps(c, st, now)
		ok, err := s.apply(ctx, c)
		if ok {
			res.Expired++
		}
		return ok, err
	}); err != nil {
		return res, err
	}
	// Soft-deleted past their retention, and incomplete past their age:
	// removed.
	for _, sw := range []struct {
		ix    string
		limit int64
		n     *int
	}{
		{s.k.deleted(), now - int64(s.pol.Retention), &res.Purged},
		{s.k.incomplete(), now - int64(s.pol.IncompleteAge), &res.Abandoned},
	} {
		if err := s.sweepIndex(ctx, sw.ix, ms(sw.limit), func(id model.PairID, st *stored) (bool, error) {
			if sw.ix == s.k.incomplete() && st.state != stateIncomplete || sw.ix == s.k.deleted() && st.state != stateDeleted {
				return true, s.unindex(ctx, sw.ix, id)
			}
			ok, err := s.purge(ctx, id, st.rec.Nonce, nil)
			if ok {
				(*sw.n)++
			}
			return true, err
		}); err != nil {
			return res, err
		}
	}
	// Pairs a read found damaged: removed if they still are.
	n, err := s.checkSuspects(ctx)
	res.Purged += n
	if err != nil {
		return res, err
	}
	res.Evicted, err = s.evict(ctx)
	return res, err
}

// sweepIndex calls fn for the pairs of index ix whose score is at most
// max, a page at a time, until none is left or a page changes nothing.
// Entries whose record is gone (Redis reclaimed it) or damaged are removed
// with what they count, without calling fn. fn reports whether it took the
// entry out of the range.
func (s *Redis) sweepIndex(ctx context.Context, ix string, max int64, fn func(model.PairID, *stored) (bool, error)) error {
	for {
		ids, err := s.due(ctx, ix, max)
		if err != nil || len(ids) == 0 {
			return err
		}
		progress := false
		for _, h := range ids {
			id, err := parseID(h)
			if err != nil { // not ours: drop it
				if err := s.unindex(ctx, ix, model.PairID{}, h); err != nil {
					return err
				}
				progress = true
				continue
			}
			st, ok, err := s.read(ctx, id)
			switch {
			case err != nil && ctx.Err() == nil && !isUnavailable(err):
				// Damaged: removed with its chunks as far as they can be
				// found.
				if _, err := s.purge(ctx, id, 0, nil); err != nil {
					return err
				}
				progress = true
				continue
			case err != nil:
				return err
			case !ok:
				if _, err := s.purge(ctx, id, 0, nil); err != nil {
					return err
				}
				progress = true
				continue
			}
			done, err := fn(id, st)
			if err != nil {
				return err
			}
			progress = progress || done
		}
		if !progress || len(ids) < sweepPage {
			return nil
		}
	}
}

// unindex takes id (or the raw member) out of index ix.
func (s *Redis) unindex(ctx context.Context, ix string, id model.PairID, raw ...string) error {
	m := idHex(id)
	if len(raw) > 0 {
		m = raw[0]
	}
	return s.call(ctx, func(ctx context.Context) error { return s.c.ZRem(ctx, ix, m).Err() })
}

// isUnavailable reports whether err says Redis could not be asked (rather
// than that what it holds is damaged).
func isUnavailable(err error) bool {
	return errors.Is(err, model.ErrUnavailable) || errors.Is(err, model.ErrClosed)
}

// checkSuspects checks the pairs reads found damaged: a record that fails
// its checksum, a chunk missing or failing its own; such a pair is
// removed. It returns how many were.
func (s *Redis) checkSuspects(ctx context.Context) (int, error) {
	var ids []string
	err := s.call(ctx, func(ctx context.Context) error {
		var err error
		ids, err = s.c.ZRange(ctx, s.k.suspects(), 0, sweepPage-1).Result()
		return err
	})
	if err != nil {
		return 0, err
	}
	removed := 0
	for _, h := range ids {
		id, err := parseID(h)
		if err != nil {
			if err := s.unindex(ctx, s.k.suspects(), id, h); err != nil {
				return removed, err
			}
			continue
		}
		st, ok, err := s.read(ctx, id)
		if err == nil && ok && s.bodiesSound(ctx, st) {
			if err := s.unindex(ctx, s.k.suspects(), id); err != nil {
				return removed, err
			}
			continue
		}
		if isUnavailable(err) || ctx.Err() != nil {
			return removed, err
		}
		gone, err := s.purge(ctx, id, 0, nil)
		if err != nil {
			return removed, err
		}
		if gone {
			removed++
		}
	}
	return removed, nil
}

// bodiesSound reads both bodies of st through and reports whether they are
// whole and pass their checksums.
func (s *Redis) bodiesSound(ctx context.Context, st *stored) bool {
	if st.state == stateIncomplete {
		return true // its bodies are still being stored
	}
	for _, b := range []struct {
		kind  bolt.Kind
		size  int64
		count int
	}{{bolt.KindRequest, st.rec.ReqSize, st.nReq}, {bolt.KindResponse, st.rec.RespSize, st.nRes}} {
		if _, err := model.ReadAll(s.body(st, b.kind, b.size, b.count, nil)); err != nil {
			return false
		}
	}
	return true
}

// enforce applies the budgets after the pair done completed: the older
// pairs of its variant go (ReplaceVariants), then the variant cap of its
// key, then MaxPairs and MaxBytes. A failure is left to the next sweep.
func (s *Redis) enforce(ctx context.Context, done *stored) {
	ctx = context.WithoutCancel(ctx)
	key := done.rec.Key
	if s.replace {
		_ = s.replaceVariants(ctx, done)
	}
	if s.pol.MaxVariants <= 0 && s.pol.MaxPairs <= 0 && s.pol.MaxBytes <= 0 {
		return
	}
	if s.pol.MaxVariants > 0 {
		_ = s.capVariants(ctx, key)
	}
	_, _ = s.evict(ctx)
}

// replaceVariants keeps, of the complete pairs of done's key that are the
// same variant as done (done included), only the newest (by completion,
// then ID). Each process runs it after its own completion, so whichever
// of two concurrent completions of a variant is applied last sees both,
// and both processes agree on which one stays.
func (s *Redis) replaceVariants(ctx context.Context, done *stored) error {
	var ids []string
	if err := s.call(ctx, func(ctx context.Context) error {
		var err error
		ids, err = s.c.SMembers(ctx, s.k.keySet(done.rec.Key)).Result()
		return err
	}); err != nil || len(ids) < 2 {
		return err
	}
	sts, err := s.readAll(ctx, ids)
	if err != nil {
		return err
	}
	newer := func(a, b *stored) bool {
		return cmp.Or(cmp.Compare(a.rec.Completed, b.rec.Completed), slices.Compare(a.rec.ID[:], b.rec.ID[:])) > 0
	}
	same := slices.DeleteFunc(sts, func(st *stored) bool { return !sameVariant(st.rec, done.rec) })
	if len(same) < 2 {
		return nil
	}
	keep := same[0]
	for _, st := range same[1:] {
		if newer(st, keep) {
			keep = st
		}
	}
	for _, st := range same {
		if st != keep {
			if _, err := s.purge(ctx, st.rec.ID, st.rec.Nonce, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// sameVariant reports whether a and b answer the same requests: their
// responses' Vary name the same fields, none is *, and their requests have
// the same values for them.
func sameVariant(a, b *bolt.Record) bool {
	fa, fb := varyFields(a.RespHeader), varyFields(b.RespHeader)
	if !slices.Equal(fa, fb) || slices.Contains(fa, "*") {
		return false
	}
	for _, f := range fa {
		if !slices.Equal(a.ReqHeader.Values(f), b.ReqHeader.Values(f)) {
			return false
		}
	}
	return true
}

// varyFields returns the field names of h's Vary, canonical and sorted.
func varyFields(h http.Header) []string {
	var out []string
	for _, v := range h.Values("Vary") {
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				out = append(out, http.CanonicalHeaderKey(f))
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// capVariants evicts the least recently used complete pairs of key beyond
// MaxVariants.
func (s *Redis) capVariants(ctx context.Context, key string) error {
	ks := s.k.keySet(key)
	var n int64
	if err := s.call(ctx, func(ctx context.Context) error {
		var err error
		n, err = s.c.SCard(ctx, ks).Result()
		return err
	}); err != nil || n <= int64(s.pol.MaxVariants) {
		return err
	}
	s.evictMu.Lock()
	defer s.evictMu.Unlock()
	var ids []string
	if err := s.call(ctx, func(ctx context.Context) error {
		var err error
		ids, err = s.c.SMembers(ctx, ks).Result()
		return err
	}); err != nil {
		return err
	}
	sts, err := s.readAll(ctx, ids)
	if err != nil {
		return err
	}
	if len(sts) <= s.pol.MaxVariants {
		return nil
	}
	slices.SortFunc(sts, lruOrder)
	for _, st := range sts[:len(sts)-s.pol.MaxVariants] {
		gone, err := s.purge(ctx, st.rec.ID, st.rec.Nonce, nil)
		if err != nil {
			return err
		}
		if gone {
			s.evicted.Add(1)
		}
	}
	return nil
}

// lruOrder orders pairs least recently used first: by last access, then
// completion, then ID.
func lruOrder(a, b *stored) int {
	return cmp.Or(cmp.Compare(a.rec.LastAccess, b.rec.LastAccess), cmp.Compare(a.rec.Completed, b.rec.Completed),
		slices.Compare(a.rec.ID[:], b.rec.ID[:]))
}

// readAll reads the complete pairs among ids; missing ones are skipped.
func (s *Redis) readAll(ctx context.Context, ids []string) ([]*stored, error) {
	var cmds []*goredis.SliceCmd
	err := s.call(ctx, func(ctx context.Context) error {
		var err error
		cmds = make([]*goredis.SliceCmd, len(ids))
		_, err = s.c.Pipelined(ctx, func(p goredis.Pipeliner) error {
			for i, h := range ids {
				cmds[i] = p.HMGet(ctx, s.k.p+"r:"+h, recordFields...)
			}
			return nil
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	var out []*stored
	for i, h := range ids {
		id, err := parseID(h)
		if err != nil {
			continue
		}
		st, ok, err := parseStored(id, cmds[i].Val())
		if err != nil || !ok || st.state != stateComplete {
			continue
		}
		out = append(out, st)
	}
	return out, nil
}

// evict removes pairs beyond MaxPairs (least recently used first), then
// beyond MaxBytes (soft-deleted first, oldest first, then least recently
// used), and returns how many.
func (s *Redis) evict(ctx context.Context) (int, error) {
	if s.pol.MaxPairs <= 0 && s.pol.MaxBytes <= 0 {
		return 0, nil
	}
	s.evictMu.Lock()
	defer s.evictMu.Unlock()
	evicted := 0
	for range 1 << 20 {
		var pairs, total int64
		var oldestDeleted []string
		err := s.call(ctx, func(ctx context.Context) error {
			p := s.c.Pipeline()
			nPairs := p.ZCard(ctx, s.k.lru())
			nBytes := p.Get(ctx, s.k.total())
			del := p.ZRange(ctx, s.k.deleted(), 0, 0)
			if _, err := p.Exec(ctx); err != nil && err != goredis.Nil {
				return err
			}
			pairs = nPairs.Val()
			total, _ = nBytes.Int64()
			oldestDeleted = del.Val()
			return nil
		})
		if err != nil {
			return evicted, err
		}
		var victim *stored
		live := false // an LRU victim, not a soft-deleted pair reclaimed early
		switch {
		case s.pol.MaxPairs > 0 && pairs > int64(s.pol.MaxPairs),
			s.pol.MaxBytes > 0 && total > s.pol.MaxBytes && len(oldestDeleted) == 0:
			victim, err = s.lruVictim(ctx)
			if err != nil || victim == nil {
				return evicted, err
			}
			live = true
		case s.pol.MaxBytes > 0 && total > s.pol.MaxBytes:
			id, err := parseID(oldestDeleted[0])
			if err != nil {
				if err := s.unindex(ctx, s.k.deleted(), id, oldestDeleted[0]); err != nil {
					return evicted, err
				}
				continue
			}
			victim = &stored{rec: &bolt.Record{ID: id}}
		default:
			return evicted, nil
		}
		gone, err := s.purge(ctx, victim.rec.ID, victim.rec.Nonce, nil)
		if err != nil {
			return evicted, err
		}
		if gone {
			evicted++
			if live {
				s.evicted.Add(1)
			}
		}
	}
	return evicted, nil
}

// lruVictim returns the least recently used complete pair: among those
// with the lowest score of the LRU index (milliseconds), the first in
// lruOrder. Entries of pairs that are gone are dropped on the way.
func (s *Redis) lruVictim(ctx context.Context) (*stored, error) {
	for {
		var low []goredis.Z
		if err := s.call(ctx, func(ctx context.Context) error {
			var err error
			low, err = s.c.ZRangeWithScores(ctx, s.k.lru(), 0, 0).Result()
			return err
		}); err != nil || len(low) == 0 {
			return nil, err
		}
		var ids []string
		score := strconv.FormatFloat(low[0].Score, 'f', -1, 64)
		if err := s.call(ctx, func(ctx context.Context) error {
			var err error
			ids, err = s.c.ZRangeByScore(ctx, s.k.lru(), &goredis.ZRangeBy{Min: score, Max: score, Count: 64}).Result()
			return err
		}); err != nil {
			return nil, err
		}
		sts, err := s.readAll(ctx, ids)
		if err != nil {
			return nil, err
		}
		if len(sts) > 0 {
			slices.SortFunc(sts, lruOrder)
			return sts[0], nil
		}
		for _, h := range ids { // none is a complete pair: stale entries
			id, _ := parseID(h)
			if _, err := s.purge(ctx, id, 0, nil); err != nil {
				return nil, err
			}
		}
	}
}

// Clear removes every pair at once (every key under the prefix, found with
// SCAN and deleted with UNLINK). Bodies being read fail with
// model.ErrRemoved; bodies being stored fail and are not stored. A pair
// another process stores while Clear runs may outlive it.
func (s *Redis) Clear(ctx context.Context) error {
	if err := checkCtx(ctx); err != nil {
		return err
	}
	err := s.scan(ctx, s.k.p+"*", "", func(ctx context.Context, ks []string) error {
		return s.c.Unlink(ctx, ks...).Err()
	})
	if err != nil {
		return fmt.Errorf("hishel: clear: %w", err)
	}
	s.mu.Lock()
	clear(s.local)
	s.mu.Unlock()
	return nil
}

// scan calls fn with the keys matching the glob prefix+pattern (the prefix
// escaped), of type typ if not empty, a page at a time (SCAN, never KEYS).
func (s *Redis) scan(ctx context.Context, pattern, typ string, fn func(context.Context, []string) error) error {
	match := globEscape(s.k.p) + strings.TrimPrefix(pattern, s.k.p)
	var cursor uint64
	for {
		var ks []string
		err := s.call(ctx, func(ctx context.Context) error {
			var err error
			if typ != "" {
				ks, cursor, err = s.c.ScanType(ctx, cursor, match, 1000, typ).Result()
			} else {
				ks, cursor, err = s.c.Scan(ctx, cursor, match, 1000).Result()
			}
			if err == nil && len(ks) > 0 {
				err = fn(ctx, ks)
			}
			return err
		})
		if err != nil {
			return err
		}
		if cursor == 0 {
			return nil
		}
	}
}

// globEscape escapes the characters SCAN's MATCH reads as a pattern.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\^`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Pairs returns the stored pairs f matches, in ID order, whatever their
// state unless f says (see model.Filter), heads and metadata only; the
// loop body may call the storage. Every filter reads every record (SCAN, then the records a page at a time).
func (s *Redis) Pairs(ctx context.Context, f model.Filter) iter.Seq2[model.PairInfo, error] {
	return backend.Finder{All: s.listAll}.Pairs(ctx, f, s.pol.Now)
}

// Delete soft-deletes the pairs f matches, as Remove does, and returns how
// many: it lists them with Pairs and removes each (backend.Delete). Pairs
// stored while it runs may or may not be deleted.
func (s *Redis) Delete(ctx context.Context, f model.Filter) (int, error) {
	return backend.Delete(ctx, f, s.Pairs, s.Remove)
}

// listAll calls fn for every stored pair, in ID order, whatever its state:
// incomplete, complete (expired or not) and soft-deleted. The PairInfo has
// heads and metadata only. The records are found with SCAN (never KEYS):
// the listing holds every ID in memory (16 bytes each), then reads the
// records a page at a time. fn is called holding nothing, so it may call
// the storage. An error from fn stops the iteration and is returned.
func (s *Redis) listAll(ctx context.Context, fn func(model.PairInfo) error) error {
	if err := checkCtx(ctx); err != nil {
		return err
	}
	var ids []model.PairID
	err := s.scan(ctx, s.k.p+"r:*", "hash", func(_ context.Context, ks []string) error {
		for _, k := range ks {
			if id, err := parseID(strings.TrimPrefix(k, s.k.p+"r:")); err == nil {
				ids = append(ids, id)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("hishel: pairs: %w", err)
	}
	slices.SortFunc(ids, func(a, b model.PairID) int { return slices.Compare(a[:], b[:]) })
	ids = slices.Compact(ids)
	for len(ids) > 0 {
		page := ids[:min(len(ids), sweepPage)]
		ids = ids[len(page):]
		var cmds []*goredis.SliceCmd
		err := s.call(ctx, func(ctx context.Context) error {
			cmds = make([]*goredis.SliceCmd, len(page))
			_, err := s.c.Pipelined(ctx, func(p goredis.Pipeliner) error {
				for i, id := range page {
					cmds[i] = p.HMGet(ctx, s.k.rec(id), recordFields...)
				}
				return nil
			})
			return err
		})
		if err != nil {
			return fmt.Errorf("hishel: pairs: %w", err)
		}
		for i, id := range page {
			st, ok, err := parseStored(id, cmds[i].Val())
			if err != nil {
				return fmt.Errorf("hishel: pairs: %w", err)
			}
			if !ok {
				continue // removed meanwhile
			}
			info := st.rec.Info()
			info.Request.Header, info.Response.Header = info.Request.Header.Clone(), info.Response.Header.Clone()
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := fn(info); err != nil {
				return err
			}
		}
	}
	return nil
}

// Sync returns once Redis answers: every change is applied when its call
// returns, so there is nothing to commit. It exists so that code written
// against any backend can call it.
func (s *Redis) Sync(ctx context.Context) error {
	if err := checkCtx(ctx); err != nil {
		return err
	}
	return s.call(ctx, func(ctx context.Context) error { return s.c.Ping(ctx).Err() })
}

// Stats returns the storage's counters: the indexes' sizes and the byte
// count, as every process sees them, and the evictions this Redis made
// (Evicted: other processes count their own).
func (s *Redis) Stats(ctx context.Context) (model.Stats, error) {
	if err := checkCtx(ctx); err != nil {
		return model.Stats{}, err
	}
	var st model.Stats
	err := s.call(ctx, func(ctx context.Context) error {
		p := s.c.Pipeline()
		a, i, d := p.ZCard(ctx, s.k.lru()), p.ZCard(ctx, s.k.incomplete()), p.ZCard(ctx, s.k.deleted())
		n := p.Get(ctx, s.k.total())
		if _, err := p.Exec(ctx); err != nil && err != goredis.Nil {
			return err
		}
		bytes, _ := n.Int64()
		st = model.Stats{Pairs: int(a.Val()), Incomplete: int(i.Val()), Deleted: int(d.Val()), Bytes: bytes,
			Evicted: s.evicted.Load()}
		return nil
	})
	if err != nil {
		return model.Stats{}, fmt.Errorf("hishel: stats: %w", err)
	}
	return st, nil
}
