package template

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/hishel-go/hishel/backend"
	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/model"
)

// maxAttempts bounds how often a change computed from a pair's record is
// tried again when another change came first.
const maxAttempts = 64

// prefetch is how many body bytes GetPairs reads along with the heads of a
// key's only pair.
const prefetch = 64 << 10

// view is this process's latest knowledge of a pair it is storing: the
// record as its last successful change left it.
type view struct {
	mu sync.Mutex
	st *stored // nil: unknown, read it
}

func (v *view) get() *stored {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.st
}

func (v *view) set(st *stored) {
	v.mu.Lock()
	v.st = st
	v.mu.Unlock()
}

func (s *Redis) localView(id model.PairID) *view {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.local[id]
	if v == nil {
		v = &view{}
		s.local[id] = v
	}
	return v
}

func (s *Redis) dropLocal(id model.PairID) {
	s.mu.Lock()
	delete(s.local, id)
	s.mu.Unlock()
}

// read reads pair id's record; ok is false when there is none.
func (s *Redis) read(ctx context.Context, id model.PairID) (st *stored, ok bool, err error) {
	var vals []any
	err = s.call(ctx, func(ctx context.Context) error {
		var err error
		vals, err = s.c.HMGet(ctx, s.k.rec(id), recordFields...).Result()
		return err
	})
	if err != nil {
		return nil, false, err
	}
	st, ok, err = parseStored(id, vals)
	if err != nil {
		s.suspect(id)
	}
	return st, ok, err
}

// apply sends c; it reports whether its conditions held (and so it was
// applied).
func (s *Redis) apply(ctx context.Context, c *change) (bool, error) {
	var n int64
	err := s.call(ctx, func(ctx context.Context) error {
		var err error
		n, err = applyScript.Run(ctx, s.c, c.keys, c.args()...).Int64()
		return err
	})
	return n == 1, err
}

// suspect notes a pair whose record or chunk failed its checksum or is
// missing, for the next sweep to check and remove.
func (s *Redis) suspect(id model.PairID) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	_ = s.call(ctx, func(ctx context.Context) error {
		return s.c.ZAdd(ctx, s.k.suspects(), goredis.Z{Score: 0, Member: idHex(id)}).Err()
	})
}

func checkCtx(ctx context.Context) error {
	if ctx == nil {
		return fmt.Errorf("hishel: redis: nil context: %w", model.ErrInvalid)
	}
	return ctx.Err()
}

// Lifetimes of keys: how long from now Redis keeps them.

func (s *Redis) incompleteLife(r *bolt.Record, now int64) time.Duration {
	return time.Duration(r.Created+int64(s.pol.IncompleteAge)-now) + s.grace
}

// completeLife is 0 (no TTL) for a pair that never expires.
func (s *Redis) completeLife(expires, now int64) time.Duration {
	if expires == 0 {
		return 0
	}
	return max(time.Duration(expires-now)+s.pol.Retention+s.grace, time.Second)
}

func (s *Redis) deletedLife() time.Duration { return s.pol.Retention + s.grace }

// chunkSlack is how much longer than its record a complete pair's chunks
// are kept (its TTL, at least ExpiryGrace), so that refreshing the record
// on access touches every chunk at most once per TTL.
func (s *Redis) chunkSlack(r *bolt.Record) time.Duration { return max(time.Duration(r.TTL), s.grace) }

// expireChunks gives every chunk of st (its counts) the TTL life.
func (s *Redis) expireChunks(c *change, st *stored, life time.Duration) {
	for kind, n := range map[bolt.Kind]int{bolt.KindRequest: st.nReq, bolt.KindResponse: st.nRes} {
		for seq := range n {
			c.expire(s.k.chunk(st.rec.ID, st.rec.Nonce, kind, seq), life)
		}
	}
}

// completeOps makes the change c complete the pair st (whose record has
// both bodies stored and its response) at now; st is updated to match.
func (s *Redis) completeOps(c *change, st *stored, now int64) {
	r := st.rec
	rk, id := s.k.rec(r.ID), idHex(r.ID)
	backend.Settle(r, now)
	st.state = stateComplete
	c.hset(rk, fRecord, encodeRecord(r)).hset(rk, fAccess, encodeAccess(r.ID, r.LastAccess, r.Expires)).hset(rk, fState, stateComplete)
	c.zrem(s.k.incomplete(), id).zadd(s.k.lru(), ms(now), id)
	if r.Expires != 0 {
		c.zadd(s.k.expiring(), ceilMS(r.Expires), id)
	}
	life := s.completeLife(r.Expires, now)
	c.sadd(s.k.keySet(r.Key), id, life)
	c.expire(rk, life)
	chunkLife := time.Duration(0)
	if life != 0 {
		chunkLife = life + s.chunkSlack(r)
		st.until = now + int64(chunkLife)
		c.hset(rk, fUntil, st.until)
	}
	s.expireChunks(c, st, chunkLife)
}

// countHeads makes c count n more bytes of pair id's heads in its size and
// the storage's total (Stats.Bytes, MaxBytes); the bodies' chunks count as
// they are stored.
func (s *Redis) countHeads(c *change, id model.PairID, n int64) {
	if n != 0 {
		c.hincr(s.k.sizes(), idHex(id), n).incr(s.k.total(), n)
	}
}

// softDeleteOps makes c soft-delete the pair st at now; st is updated.
func (s *Redis) softDeleteOps(c *change, st *stored, now int64) {
	r := st.rec
	rk, id := s.k.rec(r.ID), idHex(r.ID)
	wasComplete := st.state == stateComplete
	r.Flags |= bolt.FlagDeleted
	r.Deleted = now
	st.state = stateDeleted
	st.rev = nextRev(st.rev)
	c.hset(rk, fRecord, encodeRecord(r)).hset(rk, fState, stateDeleted).hset(rk, fRev, st.rev)
	c.zrem(s.k.incomplete(), id).zrem(s.k.lru(), id).zrem(s.k.expiring(), id).zadd(s.k.deleted(), ceilMS(now), id)
	if wasComplete {
		c.srem(s.k.keySet(r.Key), id)
	}
	life := s.deletedLife()
	c.expire(rk, life)
	st.until = now + int64(life)
	c.hset(rk, fUntil, st.until)
	s.expireChunks(c, st, life)
}

// ceilMS is a time as an index score, rounded up to the millisecond: an
// entry whose score is at most a time rounded down is due.
func ceilMS(ns int64) int64 {
	return (ns + int64(time.Millisecond) - 1) / int64(time.Millisecond)
}

// CreatePair stores a new incomplete pair for req and returns it. Its
// request body is stored as the caller reads the returned pair's
// Request.Body to the end (a nil body is stored at once as empty). ctx
// governs that body stream too: cancelling it aborts the pair.
//
// With model.WithID the pair gets the caller's ID; an ID already in use
// (by a pair of any state, in any process) fails with
// model.ErrDuplicateID. A body that has already been read from fails with
// model.ErrBodyConsumed.
func (s *Redis) CreatePair(ctx context.Context, req model.Request, opts ...model.CreateOption) (model.IncompletePair, error) {
	if err := checkCtx(ctx); err != nil {
		return model.IncompletePair{}, err
	}
	if err := backend.CheckRequest(req); err != nil {
		return model.IncompletePair{}, err
	}
	ttl, refresh, err := s.pol.TTLFor(req.Options)
	if err != nil {
		return model.IncompletePair{}, fmt.Errorf("hishel: create pair: %w", err)
	}
	id := model.ApplyCreateOptions(opts).ID
	if id.IsZero() {
		id = model.NewPairID()
	}
	now := bolt.UnixNano(s.pol.Now())
	r := &bolt.Record{
		ID: id, Nonce: rand.Uint64(), Created: now, LastAccess: now,
		TTL: int64(ttl), Refresh: refresh, Method: req.Method, URL: req.URL,
		ReqHeader: req.Header.Clone(), ReqOptions: req.Options,
	}
	if req.Body == nil {
		r.Flags |= bolt.FlagRequestDone
	}
	st := &stored{rec: r, rev: "1", nonce: nonceHex(r.Nonce), state: stateIncomplete}
	rk := s.k.rec(id)
	c := newChange(rk).when(fNonce, "")
	c.hset(rk, fRecord, encodeRecord(r)).hset(rk, fAccess, encodeAccess(id, now, 0)).hset(rk, fRev, st.rev)
	c.hset(rk, fNonce, st.nonce).hset(rk, fState, stateIncomplete).hset(rk, fReqN, 0).hset(rk, fRespN, 0)
	c.expire(rk, s.incompleteLife(r, now))
	c.zadd(s.k.incomplete(), ceilMS(now), idHex(id))
	s.countHeads(c, id, backend.Size(r))
	ok, err := s.apply(ctx, c)
	if err != nil {
		return model.IncompletePair{}, fmt.Errorf("hishel: create pair %s: %w", id, err)
	}
	if !ok {
		return model.IncompletePair{}, fmt.Errorf("hishel: create pair %s: %w", id, model.ErrDuplicateID)
	}
	v := s.localView(id)
	v.set(st)
	out := model.IncompletePair{ID: id, Request: req, Meta: r.Meta()}
	if req.Body != nil {
		out.Request.Body = model.NewBody(s.newStream(ctx, st, v, bolt.KindRequest, req.Body))
	}
	return out, nil
}

// AddResponse attaches resp to the incomplete pair id under the cache key
// key, and returns the pair. The response body is stored as the caller
// reads the returned pair's Response.Body to the end (a nil body is stored
// at once as empty); once both bodies are stored the pair is served by
// GetPairs, in every process. ctx governs that body stream: cancelling it
// aborts the pair.
//
// The returned pair's Response.Header is resp.Header itself; storage keeps
// a copy, so the caller may change either afterwards.
//
// An unknown or removed id fails with model.ErrNotFound; a pair that
// already has a response, or a status outside 100-999, with
// model.ErrInvalid.
func (s *Redis) AddResponse(ctx context.Context, id model.PairID, resp model.Response, key string) (model.CompletePair, error) {
	if err := checkCtx(ctx); err != nil {
		return model.CompletePair{}, err
	}
	if err := backend.CheckResponse(resp); err != nil {
		return model.CompletePair{}, err
	}
	if s.closed.Load() {
		return model.CompletePair{}, model.ErrClosed
	}
	v := s.localView(id)
	for range maxAttempts {
		cur := v.get()
		if cur == nil {
			st, ok, err := s.read(ctx, id)
			if err != nil {
				s.dropLocal(id)
				return model.CompletePair{}, fmt.Errorf("hishel: add response to pair %s: %w", id, err)
			}
			if !ok || st.state == stateDeleted {
				s.dropLocal(id)
				return model.CompletePair{}, fmt.Errorf("hishel: add response to pair %s: %w", id, model.ErrNotFound)
			}
			cur = st
		}
		if cur.state == stateDeleted {
			s.dropLocal(id)
			return model.CompletePair{}, fmt.Errorf("hishel: add response to pair %s: %w", id, model.ErrNotFound)
		}
		if cur.rec.Has(bolt.FlagHasResponse) {
			return model.CompletePair{}, fmt.Errorf("hishel: add response to pair %s: pair already has a response: %w", id, model.ErrInvalid)
		}
		rec := *cur.rec
		next := *cur
		next.rec = &rec
		next.rev = nextRev(cur.rev)
		rec.Flags |= bolt.FlagHasResponse
		rec.Key, rec.Status, rec.RespHeader = key, resp.Status, resp.Header.Clone()
		if resp.Body == nil {
			rec.Flags |= bolt.FlagResponseDone
		}
		rk := s.k.rec(id)
		c := newChange(rk).when(fRev, cur.rev).when(fNonce, cur.nonce)
		c.hset(rk, fRev, next.rev)
		s.countHeads(c, id, backend.Size(&rec)-backend.Size(cur.rec))
		now := bolt.UnixNano(s.pol.Now())
		complete := rec.Has(bolt.FlagRequestDone | bolt.FlagResponseDone)
		if complete {
			s.completeOps(c, &next, now)
		} else {
			c.hset(rk, fRecord, encodeRecord(&rec))
		}
		ok, err := s.apply(ctx, c)
		if err != nil {
			return model.CompletePair{}, fmt.Errorf("hishel: add response to pair %s: %w", id, err)
		}
		if !ok {
			v.set(nil) // changed meanwhile: read it again
			continue
		}
		info := rec.Info()
		out := model.CompletePair{ID: id, Request: info.Request, Response: resp, Key: key, Meta: info.Meta}
		out.Request.Header = info.Request.Header.Clone() // out.Response.Header is resp.Header
		if complete {
			s.dropLocal(id)
			s.enforce(ctx, &next)
		} else {
			v.set(&next)
		}
		if resp.Body != nil {
			out.Response.Body = model.NewBody(s.newStream(ctx, &next, v, bolt.KindResponse, resp.Body))
		}
		return out, nil
	}
	return model.CompletePair{}, fmt.Errorf("hishel: add response to pair %s: the pair kept changing", id)
}

// live reports whether st is a complete pair that has not expired at now.
func live(st *stored, now int64) bool {
	return st.state == stateComplete && (st.rec.Expires == 0 || now < st.rec.Expires)
}

// GetPairs returns every live, complete, unexpired pair stored under key,
// newest first. Their bodies stream from Redis as they are read (GetPairs
// reads heads only, except the first 64 KiB of the bodies of a key's only
// pair, read in the same round trip); each must be read to the end or
// closed. Reading a pair counts as an access: it restarts the pair's TTL if
// the pair refreshes on access, and moves it to the back of the eviction
// order, to the second (reads within a second of the last recorded one
// write nothing). The pairs' header maps are the caller's own to change.
//
// A record that fails its checksum fails GetPairs with model.ErrCorrupt;
// the next sweep removes it.
func (s *Redis) GetPairs(ctx context.Context, key string) ([]model.CompletePair, error) {
	if err := checkCtx(ctx); err != nil {
		return nil, err
	}
	ks := s.k.keySet(key)
	var raw []any
	err := s.call(ctx, func(ctx context.Context) error {
		var err error
		raw, err = getScript.Run(ctx, s.c, []string{ks}, s.k.p, prefetch).Slice()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("hishel: get pairs: %w", err)
	}
	now := bolt.UnixNano(s.pol.Now())
	type hit struct {
		st        *stored
		req, resp []any // read ahead
	}
	var hits []hit
	var changes []*change
	for _, e := range raw {
		f, _ := e.([]any)
		if len(f) < 1+len(recordFields) {
			return nil, fmt.Errorf("hishel: get pairs: reply %v: %w", e, model.ErrCorrupt)
		}
		idStr, _ := f[0].(string)
		id, err := parseID(idStr)
		if err != nil {
			return nil, fmt.Errorf("hishel: get pairs: member %q of the key's set: %w", idStr, model.ErrCorrupt)
		}
		st, ok, err := parseStored(id, f[1:1+len(recordFields)])
		if err != nil {
			s.suspect(id)
			return nil, fmt.Errorf("hishel: get pairs: %w", err)
		}
		if !ok || st.state != stateComplete || st.rec.Key != key {
			// Gone (Redis reclaimed it), or moved: not this key's any more.
			changes = append(changes, newChange(ks).srem(ks, idStr))
			continue
		}
		if !live(st, now) {
			continue
		}
		h := hit{st: st}
		if len(f) >= 3+len(recordFields) {
			h.req, _ = f[1+len(recordFields)].([]any)
			h.resp, _ = f[2+len(recordFields)].([]any)
		}
		if touchDue(st.rec, now) {
			changes = append(changes, s.touch(st, now))
		}
		hits = append(hits, h)
	}
	if len(changes) > 0 {
		if err := s.applyAll(ctx, changes); err != nil {
			return nil, fmt.Errorf("hishel: get pairs: %w", err)
		}
	}
	out := make([]model.CompletePair, len(hits))
	for i, h := range hits {
		out[i] = s.pairOf(h.st, h.req, h.resp)
	}
	backend.SortNewest(out)
	return out, nil
}

// touchEvery is the resolution of access times: a read within it of the
// last recorded access, that would move the expiry by less, writes
// nothing. A pair read a thousand times a second is written once a
// second.
const touchEvery = int64(time.Second)

// touchDue reports whether a read of r at now must record an access.
func touchDue(r *bolt.Record, now int64) bool {
	if now-r.LastAccess >= touchEvery {
		return true
	}
	return r.Refresh && r.TTL > 0 && r.Expires != 0 && now+r.TTL-r.Expires >= touchEvery
}

// touch records an access to the live pair st at now: its last access and,
// if it refreshes on access, its expiry and the TTLs of its keys; st is
// updated. The change applies only if the pair is unchanged since it was
// read.
func (s *Redis) touch(st *stored, now int64) *change {
	r := st.rec
	rk, id := s.k.rec(r.ID), idHex(r.ID)
	c := newChange(rk).when(fRev, st.rev).when(fNonce, st.nonce).when(fState, stateComplete)
	exp := backend.Expiry(r, now) // at most MaxTTL from its completion
	r.LastAccess = now
	refreshed := exp > r.Expires
	if refreshed {
		r.Expires = exp
	}
	c.hset(rk, fAccess, encodeAccess(r.ID, r.LastAccess, r.Expires)).zadd(s.k.lru(), ms(now), id)
	if refreshed {
		life := s.completeLife(r.Expires, now)
		c.zadd(s.k.expiring(), ceilMS(r.Expires), id).expire(rk, life).extendShared(s.k.keySet(r.Key), life)
		if now+int64(life) > st.until {
			chunkLife := life + s.chunkSlack(r)
			st.until = now + int64(chunkLife)
			c.hset(rk, fUntil, st.until)
			s.expireChunks(c, st, chunkLife)
		}
	}
	return c
}

// applyAll sends changes in one pipeline; a change whose conditions failed
// is dropped.
func (s *Redis) applyAll(ctx context.Context, changes []*change) error {
	return s.call(ctx, func(ctx context.Context) error {
		_, err := s.c.Pipelined(ctx, func(p goredis.Pipeliner) error {
			for _, c := range changes {
				applyScript.EvalSha(ctx, p, c.keys, c.args()...)
			}
			return nil
		})
		if err != nil && goredis.HasErrorPrefix(err, "NOSCRIPT") {
			// Redis restarted and forgot the script: load it and try again.
			if err = applyScript.Load(ctx, s.c).Err(); err == nil {
				_, err = s.c.Pipelined(ctx, func(p goredis.Pipeliner) error {
					for _, c := range changes {
						applyScript.EvalSha(ctx, p, c.keys, c.args()...)
					}
					return nil
				})
			}
		}
		return err
	})
}

func parseID(s string) (model.PairID, error) {
	var id model.PairID
	if len(s) != 32 {
		return id, errors.New("not 32 hex digits")
	}
	_, err := hex.Decode(id[:], []byte(s))
	return id, err
}

// pairOf returns st as a CompletePair with fresh header maps and body
// readers; req and resp are chunks read ahead (stored values).
func (s *Redis) pairOf(st *stored, req, resp []any) model.CompletePair {
	info := st.rec.Info()
	cp := model.CompletePair{ID: st.rec.ID, Request: info.Request, Response: info.Response, Key: st.rec.Key, Meta: info.Meta}
	cp.Request.Header, cp.Response.Header = cp.Request.Header.Clone(), cp.Response.Header.Clone()
	cp.Request.Body = s.body(st, bolt.KindRequest, st.rec.ReqSize, st.nReq, req)
	cp.Response.Body = s.body(st, bolt.KindResponse, st.rec.RespSize, st.nRes, resp)
	return cp
}

// GetPair returns the live, complete, unexpired pair id, with bodies
// streamed as in GetPairs, or model.ErrNotFound. It does not count as an
// access.
func (s *Redis) GetPair(ctx context.Context, id model.PairID) (model.CompletePair, error) {
	if err := checkCtx(ctx); err != nil {
		return model.CompletePair{}, err
	}
	st, ok, err := s.read(ctx, id)
	if err != nil {
		return model.CompletePair{}, fmt.Errorf("hishel: get pair %s: %w", id, err)
	}
	if !ok || !live(st, bolt.UnixNano(s.pol.Now())) {
		return model.CompletePair{}, fmt.Errorf("hishel: get pair %s: %w", id, model.ErrNotFound)
	}
	return s.pairOf(st, nil, nil), nil
}

// UpdatePair replaces the stored pair id with pair, atomically: its request
// and response heads (method, URL, headers, options, status), its key (the
// pair moves to the new key), and its Created, Expires, TTL and Refresh
// metadata. Bodies and the other metadata are kept as stored. It returns
// the pair as stored, with bodies streamed as in GetPairs.
//
// A pair that does not exist, is incomplete or removed fails with
// model.ErrNotFound; a pair.ID other than id (or zero), with
// model.ErrIDChanged.
func (s *Redis) UpdatePair(ctx context.Context, id model.PairID, pair model.CompletePair) (model.CompletePair, error) {
	return s.UpdatePairFunc(ctx, id, func(model.CompletePair) (model.CompletePair, error) { return pair, nil })
}

// UpdatePairFunc is UpdatePair with the new value computed by fn from the
// stored pair, atomically across every process sharing the cache: fn runs
// in the caller's goroutine holding nothing (it may call the storage), and
// its result is written by a Lua script only if the pair's revision is the
// one fn saw; otherwise fn runs again on the pair as it now is (at most 64
// times). fn receives the pair with nil bodies. If fn returns an error,
// nothing changes and UpdatePairFunc returns that error.
func (s *Redis) UpdatePairFunc(ctx context.Context, id model.PairID, fn func(model.CompletePair) (model.CompletePair, error)) (model.CompletePair, error) {
	if err := checkCtx(ctx); err != nil {
		return model.CompletePair{}, err
	}
	for range maxAttempts {
		st, ok, err := s.read(ctx, id)
		if err != nil {
			return model.CompletePair{}, fmt.Errorf("hishel: update pair %s: %w", id, err)
		}
		if !ok || st.state != stateComplete {
			return model.CompletePair{}, fmt.Errorf("hishel: update pair %s: %w", id, model.ErrNotFound)
		}
		cur := s.pairOf(st, nil, nil)
		cur.Request.Body, cur.Response.Body = nil, nil
		next, err := backend.CallUpdate(fn, cur)
		if err != nil {
			return model.CompletePair{}, err
		}
		if err := backend.CheckUpdate(id, next); err != nil {
			return model.CompletePair{}, err
		}
		if err := ctx.Err(); err != nil {
			return model.CompletePair{}, err
		}
		now := bolt.UnixNano(s.pol.Now())
		old := *st.rec
		r := backend.Updated(st.rec, next)
		st.rec = r
		rk, idh := s.k.rec(id), idHex(id)
		c := newChange(rk).when(fRev, st.rev).when(fNonce, st.nonce).when(fState, stateComplete)
		st.rev = nextRev(st.rev)
		c.hset(rk, fRecord, encodeRecord(r)).hset(rk, fAccess, encodeAccess(id, r.LastAccess, r.Expires)).hset(rk, fRev, st.rev)
		s.countHeads(c, id, backend.Size(r)-backend.Size(&old))
		life := s.completeLife(r.Expires, now)
		if r.Key != old.Key {
			c.srem(s.k.keySet(old.Key), idh).sadd(s.k.keySet(r.Key), idh, life)
		}
		if r.Expires != old.Expires || r.TTL != old.TTL {
			if r.Expires != 0 {
				c.zadd(s.k.expiring(), ceilMS(r.Expires), idh)
			} else {
				c.zrem(s.k.expiring(), idh)
			}
			c.expire(rk, life).extendShared(s.k.keySet(r.Key), life)
			chunkLife := time.Duration(0)
			if life != 0 {
				chunkLife = life + s.chunkSlack(r)
				st.until = now + int64(chunkLife)
				c.hset(rk, fUntil, st.until)
			}
			s.expireChunks(c, st, chunkLife)
		}
		ok, err = s.apply(ctx, c)
		if err != nil {
			return model.CompletePair{}, fmt.Errorf("hishel: update pair %s: %w", id, err)
		}
		if ok {
			return s.pairOf(st, nil, nil), nil
		}
	}
	return model.CompletePair{}, fmt.Errorf("hishel: update pair %s: the pair changed each of %d times its function ran: %w", id, maxAttempts, model.ErrConflict)
}

// Remove soft-deletes the pair id: it is hidden at once, in every process,
// and reclaimed by a sweep after DeletedRetention (or by Redis, a grace
// period later). Removing an unknown or already removed pair does nothing.
// Removing an incomplete pair aborts the bodies still being stored.
func (s *Redis) Remove(ctx context.Context, id model.PairID) error {
	if err := checkCtx(ctx); err != nil {
		return err
	}
	for range maxAttempts {
		st, ok, err := s.read(ctx, id)
		if err != nil {
			return fmt.Errorf("hishel: remove pair %s: %w", id, err)
		}
		if !ok || st.state == stateDeleted {
			return nil
		}
		c := newChange(s.k.rec(id)).when(fRev, st.rev).when(fNonce, st.nonce)
		s.softDeleteOps(c, st, bolt.UnixNano(s.pol.Now()))
		ok, err = s.apply(ctx, c)
		if err != nil {
			return fmt.Errorf("hishel: remove pair %s: %w", id, err)
		}
		if ok {
			s.dropLocal(id)
			return nil
		}
	}
	return fmt.Errorf("hishel: remove pair %s: the pair kept changing", id)
}
