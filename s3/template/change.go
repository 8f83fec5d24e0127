package template

import (
	"context"
	"errors"
	"fmt"
	"maps"
	mrand "math/rand/v2"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"golang.org/x/sync/errgroup"

	"github.com/hishel-go/hishel/backend"
	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/model"
)

// headCache remembers heads this store read or wrote, with their ETags:
// a head a listing shows with the same ETag is not read again, and a
// change starts from the head it remembers (its conditional write fails,
// and it reads afresh, if another writer changed it).
type headCache struct {
	mu sync.Mutex
	m  map[model.PairID]cachedHead
}

type cachedHead struct {
	etag string // unquoted
	h    *head
}

// get returns a copy of the head remembered for id, if any, and its ETag.
func (c *headCache) get(id model.PairID) (*head, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch, ok := c.m[id]
	if !ok {
		return nil, ""
	}
	return ch.h.clone(), ch.etag
}

// getIf returns a copy of the head remembered for id if its ETag is etag.
func (c *headCache) getIf(id model.PairID, etag string) *head {
	h, e := c.get(id)
	if h == nil || e != etag {
		return nil
	}
	return h
}

func (c *headCache) put(id model.PairID, etag string, h *head) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[id]; !ok && len(c.m) >= headCacheSize {
		for k := range c.m { // drop one at random
			delete(c.m, k)
			break
		}
	}
	c.m[id] = cachedHead{unquote(etag), h.clone()}
}

func (c *headCache) drop(id model.PairID) {
	c.mu.Lock()
	delete(c.m, id)
	c.mu.Unlock()
}

func (c *headCache) reset() {
	c.mu.Lock()
	clear(c.m)
	c.mu.Unlock()
}

// newWID returns a head write's random ID.
func newWID() uint64 { return mrand.Uint64() }

// readHead reads pair id's head and its ETag (unquoted); errNoObject if
// there is none. A damaged head is model.ErrCorrupt, and the pair is
// noted for the sweep.
func (s *S3) readHead(ctx context.Context, id model.PairID) (*head, string, error) {
	b, etag, err := s.get(ctx, s.n.head(id))
	if err != nil {
		if errors.Is(err, errNoObject) {
			s.cache.drop(id)
		}
		return nil, "", err
	}
	etag = unquote(etag)
	h, err := decodeHead(b)
	if err == nil && h.rec.ID != id {
		err = fmt.Errorf("head holds pair %s: %w", h.rec.ID, model.ErrCorrupt)
	}
	if err != nil {
		s.noteBad(id)
		return nil, "", fmt.Errorf("hishel: pair %s: %w", id, err)
	}
	s.cache.put(id, etag, h)
	return h, etag, nil
}

// headAt returns pair id's head as a listing showed it, with ETag etag:
// the remembered one if it is that, else a fresh read.
func (s *S3) headAt(ctx context.Context, id model.PairID, etag string) (*head, error) {
	if h := s.cache.getIf(id, etag); h != nil {
		return h, nil
	}
	h, _, err := s.readHead(ctx, id)
	return h, err
}

// putHead writes h as pair id's head: over the head of ETag ifMatch, or,
// if ifMatch is empty, only if there is none. It returns the new ETag.
func (s *S3) putHead(ctx context.Context, id model.PairID, h *head, ifMatch string) (string, error) {
	etag, err := s.putBytes(ctx, s.n.head(id), h.encode(), quote(ifMatch), ifMatch == "")
	return unquote(etag), err
}

func quote(etag string) string {
	if etag == "" {
		return ""
	}
	return `"` + etag + `"`
}

// errStop ends change without writing, with no error.
var errStop = errors.New("nothing to change")

// change is a pair's read-modify-write. It starts from the head it
// remembers (or reads it), lets fn change a copy (fn returns errStop to
// write nothing, another error to fail; it gets nil when the pair does not
// exist), writes the entries the new head needs and the head over the
// ETag it started from. When another writer changed the head meanwhile it
// starts again from a fresh read, as it does before it believes an error
// of fn or errStop about a remembered head. After the write it deletes the
// entries the old head listed and the new one does not, and counts the
// change. It returns the head as it was and as written, and the new ETag
// (nil heads when the pair does not exist and fn accepts that).
//
// exact asks for time index entries at the record's very times (see plan).
func (s *S3) change(ctx context.Context, id model.PairID, exact bool, fn func(h *head) error) (old, next *head, etag string, err error) {
	cur, etag := s.cache.get(id)
	remembered := cur != nil
	if !remembered {
		if cur, etag, err = s.readHead(ctx, id); err != nil && !errors.Is(err, errNoObject) {
			return nil, nil, "", err
		}
	}
	for range maxUpdateTry {
		if err := ctx.Err(); err != nil {
			return nil, nil, "", err
		}
		if cur == nil {
			return nil, nil, "", fn(nil)
		}
		next := cur.clone()
		if err := fn(next); err != nil {
			if remembered {
				remembered = false
				if cur, etag, err = s.readHead(ctx, id); err != nil && !errors.Is(err, errNoObject) {
					return nil, nil, "", err
				}
				continue
			}
			return cur, nil, "", err
		}
		next.rev, next.wid = cur.rev+1, newWID()
		keep, add := plan(cur.ents, next.rec, next.wid, exact)
		next.ents = append(keep, add...)
		newTag, err := s.writeHead(ctx, id, next, add, etag)
		if errors.Is(err, errPrecondition) {
			remembered = false
			if cur, etag, err = s.readHead(ctx, id); err != nil && !errors.Is(err, errNoObject) {
				return nil, nil, "", err
			}
			continue
		}
		if err != nil {
			return cur, nil, "", err
		}
		s.delEntries(ctx, minus(cur.ents, keep))
		s.countChange(cur.rec, -1)
		s.countChange(next.rec, 1)
		return cur, next, newTag, nil
	}
	return nil, nil, "", fmt.Errorf("hishel: pair %s changed each of %d times it was written", id, maxUpdateTry)
}

// writeHead writes the entries add and then head h over the head of ETag
// ifMatch (or as a new head, if ifMatch is empty), and returns its ETag.
// When the write loses (errPrecondition), it deletes the entries it wrote,
// unless the head that won is its own (a request the SDK retried after it
// had succeeded): then it succeeded. Entries that took longer than
// writeWindow to write are written again, so that nobody takes them for
// stale (see staleAge) before the head lists them.
func (s *S3) writeHead(ctx context.Context, id model.PairID, h *head, add []entry, ifMatch string) (string, error) {
	for {
		start := time.Now()
		if err := s.putEntries(ctx, add); err != nil {
			return "", err
		}
		if time.Since(start) < writeWindow {
			break
		}
	}
	etag, err := s.putHead(ctx, id, h, ifMatch)
	if errors.Is(err, errPrecondition) || ifMatch != "" && errors.Is(err, errNoObject) {
		now, netag, rerr := s.readHead(ctx, id)
		if rerr == nil && now.wid == h.wid {
			return netag, nil
		}
		s.delEntries(ctx, add)
		return "", fmt.Errorf("%w: %w", errPrecondition, err)
	}
	if err != nil {
		return "", err // the head may be written or not: its entries stay
	}
	s.cache.put(id, etag, h)
	return etag, nil
}

// putEntries writes empty entry objects, in parallel.
func (s *S3) putEntries(ctx context.Context, ents []entry) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.opts.Parallel)
	for _, e := range ents {
		g.Go(func() error { _, err := s.putBytes(gctx, s.n.entry(e), nil, "", false); return err })
	}
	return g.Wait()
}

// delEntries deletes entries, in parallel; what fails to go stays as
// garbage that whoever meets it deletes.
func (s *S3) delEntries(ctx context.Context, ents []entry) {
	names := make([]string, len(ents))
	for i, e := range ents {
		names[i] = s.n.entry(e)
	}
	s.delObjects(ctx, names)
}

// delObjects deletes objects, in parallel, whatever ctx says.
func (s *S3) delObjects(ctx context.Context, keys []string) {
	g, gctx := errgroup.WithContext(context.WithoutCancel(ctx))
	g.SetLimit(s.opts.Parallel)
	for _, k := range keys {
		g.Go(func() error { return s.del(gctx, k) })
	}
	_ = g.Wait()
}

// dropStale deletes an entry that its head (h, or none) does not list, if
// it is old enough not to be a write in flight (see staleAge).
func (s *S3) dropStale(ctx context.Context, o object, h *head, e entry) {
	if h != nil && h.lists(e) || time.Since(o.modified) < staleAge {
		return
	}
	_ = s.del(context.WithoutCancel(ctx), o.key)
}

// tombstoneTime is the deletion time of a pair being purged: due for
// every sweep.
const tombstoneTime = 1

// purge removes pair id for good: its segments, then its head (only if its
// ETag is still etag, when etag is set), then the entries h listed, and
// takes it off this store's count. The head goes after the segments and
// before the entries: until it goes, a sweep finds the pair (h is
// soft-deleted, or a tombstone) and purges it again; after, what is left
// is entries that no head lists. h is nil for a head too damaged to read.
// It reports whether it deleted the head.
func (s *S3) purge(ctx context.Context, id model.PairID, h *head, etag string) (bool, error) {
	ctx = context.WithoutCancel(ctx)
	var segs []string
	if h != nil && h.rec.Has(bolt.FlagRequestDone|bolt.FlagResponseDone) {
		for k := range 2 {
			for i := range h.segs[k] {
				segs = append(segs, s.n.segment(id, h.rec.Nonce, bolt.Kind(k), int(i)))
			}
		}
	} else if err := s.list(ctx, s.n.bodies(id), 0, func(o object) (bool, error) {
		segs = append(segs, o.key)
		return true, nil
	}); err != nil {
		return false, err
	}
	s.delObjects(ctx, segs)
	in := &s3.DeleteObjectInput{Bucket: &s.bucket, Key: aws.String(s.n.head(id))}
	if etag != "" {
		in.IfMatch = aws.String(quote(etag))
	}
	_, err := s.c.DeleteObject(ctx, in)
	s.cache.drop(id)
	if err = classify(err); errors.Is(err, errPrecondition) || errors.Is(err, errNoObject) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if h != nil {
		s.delEntries(ctx, h.ents)
		s.countChange(h.rec, -1)
	}
	s.accessMu.Lock()
	delete(s.access, id)
	s.accessMu.Unlock()
	return true, nil
}

// purgeIf purges pair id if its head (read afresh) satisfies ok. A pair
// not yet soft-deleted is first made a tombstone (soft-deleted at time 1,
// due for any sweep) by a change, so that it is hidden before its
// segments go, a pair changed meanwhile is asked about again, and a
// process killed half-way leaves a pair the next sweep purges. It reports
// whether it purged.
func (s *S3) purgeIf(ctx context.Context, id model.PairID, ok func(h *head) bool) (bool, error) {
	h, etag, err := s.readHead(ctx, id)
	switch {
	case errors.Is(err, errNoObject):
		return false, nil
	case errors.Is(err, model.ErrCorrupt) || errors.Is(err, model.ErrFormatVersion):
		return s.purge(ctx, id, nil, "")
	case err != nil:
		return false, err
	case !ok(h):
		return false, nil
	}
	if h.rec.State() != model.StateDeleted {
		_, h, etag, err = s.change(ctx, id, false, func(c *head) error {
			if c == nil || !ok(c) {
				return errStop
			}
			c.rec.Flags |= bolt.FlagDeleted
			c.rec.Deleted = tombstoneTime
			return nil
		})
		if errors.Is(err, errStop) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
	}
	return s.purge(ctx, id, h, etag)
}

// pending returns the last access of pair id gathered and not written
// yet (0: none).
func (s *S3) pending(id model.PairID) int64 {
	s.accessMu.Lock()
	defer s.accessMu.Unlock()
	return s.access[id]
}

// written forgets the gathered access of pair id if it is no later than
// at, which is now written.
func (s *S3) written(id model.PairID, at int64) {
	s.accessMu.Lock()
	if s.access[id] <= at {
		delete(s.access, id)
	}
	s.accessMu.Unlock()
}

// flushAccess writes the gathered access times: each live complete pair
// gets its last access and, if it refreshes on access, a new expiry, in
// one conditional write of its head (its index entries stay: they hold
// lower bounds).
func (s *S3) flushAccess(ctx context.Context) error {
	// The gathered times stay in s.access until they are written: until
	// then GetPairs' expiry and eviction's ranking count them from there.
	s.accessMu.Lock()
	pending := maps.Clone(s.access)
	s.accessMu.Unlock()
	if len(pending) == 0 {
		return nil
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.opts.Parallel)
	for id, at := range pending {
		g.Go(func() error {
			_, _, _, err := s.change(gctx, id, false, func(h *head) error {
				if h == nil || h.rec.State() != model.StateComplete || at <= h.rec.LastAccess {
					return errStop
				}
				h.rec.Expires = expiry(h.rec, at)
				h.rec.LastAccess = at
				return nil
			})
			if err != nil && !errors.Is(err, errStop) && !errors.Is(err, model.ErrCorrupt) {
				return err // kept for the next flush
			}
			// Written, or no longer needed: the pair is gone, not
			// complete, damaged, or has a later access written.
			s.written(id, at)
			return nil
		})
	}
	return g.Wait()
}

// expiry returns rec's expiry once an access at pending (if later than
// its last) has refreshed it, capped by its MaxTTL (backend.CapExpiry).
func expiry(rec *bolt.Record, pending int64) int64 {
	exp := rec.Expires
	if pending > rec.LastAccess && rec.Refresh && rec.TTL > 0 && exp != 0 {
		exp = max(exp, pending+rec.TTL)
	}
	return backend.CapExpiry(rec.Completed, rec.ReqOptions, exp)
}

// tick is the maintenance goroutine's periodic work (and its last, at
// Close).
func (s *S3) tick() { _ = s.flushAccess(context.Background()) }
