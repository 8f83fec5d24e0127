package template

import (
	"context"
	"fmt"
	"strconv"

	"github.com/hishel-go/hishel/backend"
	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/model"
)

// flushAt is how many bytes of a body being stored are handed to Redis at
// once: one script call per MiB, whatever the body's size.
const flushAt = 1 << 20

// sink stores one body of a pair in Redis (backend.Sink).
type sink struct {
	s       *Redis
	id      model.PairID
	nonce   uint64
	created int64
	kind    bolt.Kind
	v       *view
	seq     int // chunks written
}

func (s *Redis) newStream(ctx context.Context, st *stored, v *view, kind bolt.Kind, src *model.Body) *backend.Stream {
	k := &sink{s: s, id: st.rec.ID, nonce: st.rec.Nonce, created: st.rec.Created, kind: kind, v: v}
	return backend.NewStream(ctx, st.rec.ID, src, k, s.pol.ChunkSize, flushAt)
}

func (k *sink) Check() error {
	if k.s.closed.Load() {
		return model.ErrClosed
	}
	return nil
}

func (k *sink) countField() string {
	if k.kind == bolt.KindRequest {
		return fReqN
	}
	return fRespN
}

// writeChunks adds to c the chunks, as the next ones of the body, and the
// count written.
func (k *sink) writeChunks(c *change, chunks [][]byte, now int64, r *bolt.Record) {
	rk := k.s.k.rec(k.id)
	life := k.s.incompleteLife(r, now)
	for _, ch := range chunks {
		c.set(k.s.k.chunk(k.id, k.nonce, k.kind, k.seq), encodeChunk(k.id, k.nonce, k.kind, k.seq, ch), life)
		k.seq++
	}
	c.hset(rk, k.countField(), k.seq)
}

var errGone = fmt.Errorf("hishel: pair was removed while its body was stored: %w", model.ErrNotFound)

// Store writes the chunks as one script call, if the pair is still there
// and incomplete. At the body's end it also marks the body stored and, if
// the other body is too and the pair has its response, completes the
// pair, in the same script when this process's view of the pair is
// current.
func (k *sink) Store(ctx context.Context, chunks [][]byte, size int64, final bool) error {
	s := k.s
	rk := s.k.rec(k.id)
	now := bolt.UnixNano(s.pol.Now())
	created := &bolt.Record{Created: k.created}
	if final {
		if cur := k.v.get(); cur != nil && cur.rec.Nonce == k.nonce {
			seq := k.seq
			c := newChange(rk).when(fRev, cur.rev).when(fNonce, cur.nonce)
			k.writeChunks(c, chunks, now, created)
			next, complete := k.finishOps(c, cur, size, now)
			ok, err := s.apply(ctx, c)
			if err != nil {
				return err
			}
			if ok {
				k.finished(ctx, next, complete)
				return nil
			}
			k.seq = seq
		}
	}
	if len(chunks) > 0 || !final {
		c := newChange(rk).when(fNonce, nonceHex(k.nonce)).when(fState, stateIncomplete)
		k.writeChunks(c, chunks, now, created)
		ok, err := s.apply(ctx, c)
		if err != nil {
			return err
		}
		if !ok {
			return errGone
		}
		if !final {
			return nil
		}
	}
	for range maxAttempts {
		cur, ok, err := s.read(ctx, k.id)
		if err != nil {
			return err
		}
		if !ok || cur.nonce != nonceHex(k.nonce) || cur.state != stateIncomplete {
			return errGone
		}
		c := newChange(rk).when(fRev, cur.rev).when(fNonce, cur.nonce)
		next, complete := k.finishOps(c, cur, size, now)
		ok, err = s.apply(ctx, c)
		if err != nil {
			return err
		}
		if ok {
			k.finished(ctx, next, complete)
			return nil
		}
	}
	return fmt.Errorf("hishel: storing body of pair %s: the pair kept changing", k.id)
}

// finishOps makes c mark this body stored (size bytes, k.seq chunks) in
// the pair cur, completing the pair if it can; it returns the pair as c
// leaves it.
func (k *sink) finishOps(c *change, cur *stored, size int64, now int64) (*stored, bool) {
	s := k.s
	rec := *cur.rec
	next := *cur
	next.rec = &rec
	next.rev = nextRev(cur.rev)
	if k.kind == bolt.KindRequest {
		rec.Flags |= bolt.FlagRequestDone
		rec.ReqSize, next.nReq = size, k.seq
	} else {
		rec.Flags |= bolt.FlagResponseDone
		rec.RespSize, next.nRes = size, k.seq
	}
	rk, id := s.k.rec(k.id), idHex(k.id)
	c.hset(rk, fRev, next.rev).hincr(s.k.sizes(), id, size).incr(s.k.total(), size)
	complete := rec.Has(bolt.FlagRequestDone | bolt.FlagResponseDone | bolt.FlagHasResponse)
	if complete {
		s.completeOps(c, &next, now)
	} else {
		c.hset(rk, fRecord, encodeRecord(&rec))
	}
	return &next, complete
}

func (k *sink) finished(ctx context.Context, next *stored, complete bool) {
	if complete {
		k.s.dropLocal(k.id)
		k.s.enforce(ctx, next.rec.Key)
		return
	}
	k.v.set(next)
}

// Abort deletes what was stored of the pair, at once.
func (k *sink) Abort() {
	s := k.s
	s.dropLocal(k.id)
	if s.closed.Load() {
		return // Redis reclaims it: its keys have a TTL
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	n := map[bolt.Kind]int{k.kind: k.seq}
	_, _ = s.purge(ctx, k.id, k.nonce, n)
}

// purge deletes the pair id (its incarnation nonce, or whatever is there
// if nonce is 0) and everything that refers to it, at once. atLeast are
// chunk counts known to the caller beyond what the record says. It
// reports whether it deleted a pair (false: there was none, or another
// incarnation).
func (s *Redis) purge(ctx context.Context, id model.PairID, nonce uint64, atLeast map[bolt.Kind]int) (bool, error) {
	for range maxAttempts {
		var vals []any
		err := s.call(ctx, func(ctx context.Context) error {
			var err error
			vals, err = s.c.HMGet(ctx, s.k.rec(id), fNonce, fReqN, fRespN, fRecord).Result()
			return err
		})
		if err != nil {
			return false, err
		}
		rk, idh := s.k.rec(id), idHex(id)
		c := newChange(rk)
		have, _ := vals[0].(string)
		switch {
		case have == "":
			c.when(fNonce, "")
		case nonce != 0 && have != nonceHex(nonce):
			return false, nil // another incarnation
		default:
			c.when(fNonce, have)
		}
		counts := map[bolt.Kind]int{bolt.KindRequest: atLeast[bolt.KindRequest], bolt.KindResponse: atLeast[bolt.KindResponse]}
		for i, kind := range []bolt.Kind{bolt.KindRequest, bolt.KindResponse} {
			if v, ok := vals[1+i].(string); ok {
				if n, err := strconv.Atoi(v); err == nil {
					counts[kind] = max(counts[kind], n)
				}
			}
		}
		if have != "" {
			var hn uint64
			fmt.Sscanf(have, "%x", &hn)
			for kind, n := range counts {
				for seq := range n {
					c.del(s.k.chunk(id, hn, kind, seq))
				}
			}
			if r, ok := vals[3].(string); ok {
				if rec, err := decodeRecord(id, r); err == nil && rec.Has(bolt.FlagHasResponse) {
					c.srem(s.k.keySet(rec.Key), idh)
				}
			}
			c.del(rk)
		}
		for _, ix := range []string{s.k.incomplete(), s.k.expiring(), s.k.deleted(), s.k.lru(), s.k.suspects()} {
			c.zrem(ix, idh)
		}
		c.uncount(s.k.sizes(), s.k.total(), idh)
		ok, err := s.apply(ctx, c)
		if err != nil {
			return false, err
		}
		if ok {
			return have != "", nil
		}
	}
	return false, fmt.Errorf("hishel: purge pair %s: the pair kept changing", id)
}
