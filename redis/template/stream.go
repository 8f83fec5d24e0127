package template

import (
	"context"
	"fmt"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

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

var errGone = fmt.Errorf("hishel: pair was removed while its body was stored: %w", model.ErrNotFound)

// Store writes the chunks (plain SETs, each with its TTL) and, in the same
// pipeline, a change of the record that holds only if the pair is still
// there and incomplete: the count of chunks written, or at the body's end
// the body's completion (and the pair's, if the other body is stored and
// it has its response), computed from this process's view of the pair.
// If the pair is gone, the chunks just written are deleted; if the view
// was stale, the completion is computed again from the record.
func (k *sink) Store(ctx context.Context, chunks [][]byte, size int64, final bool) error {
	s := k.s
	rk := s.k.rec(k.id)
	now := bolt.UnixNano(s.pol.Now())
	life := s.incompleteLife(&bolt.Record{Created: k.created}, now)
	ks := make([]string, len(chunks))
	vals := make([]string, len(chunks))
	for i, ch := range chunks {
		ks[i] = s.k.chunk(k.id, k.nonce, k.kind, k.seq+i)
		vals[i] = encodeChunk(k.id, k.nonce, k.kind, k.seq+i, ch)
	}
	seq := k.seq + len(chunks)
	var c *change
	var next *stored
	var complete bool
	cur := k.v.get()
	if final && cur != nil && cur.rec.Nonce == k.nonce {
		c = newChange(rk).when(fRev, cur.rev).when(fNonce, cur.nonce)
		next, complete = k.finishOps(c, cur, seq, size, now)
	} else {
		c = newChange(rk).when(fNonce, nonceHex(k.nonce)).when(fState, stateIncomplete)
		c.hset(rk, k.countField(), seq)
	}
	ok, err := s.writeChunks(ctx, ks, vals, life, c)
	if err != nil {
		return err
	}
	k.seq = seq
	switch {
	case ok && next != nil:
		k.finished(ctx, next, complete)
		return nil
	case ok && !final:
		return nil
	case !ok && next == nil:
		s.unlink(ks)
		return errGone
	}
	for range maxAttempts {
		cur, found, err := s.read(ctx, k.id)
		if err != nil {
			return err
		}
		if !found || cur.nonce != nonceHex(k.nonce) || cur.state != stateIncomplete {
			s.unlink(ks)
			return errGone
		}
		c := newChange(rk).when(fRev, cur.rev).when(fNonce, cur.nonce)
		next, complete := k.finishOps(c, cur, seq, size, now)
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

// writeChunks sets the chunks ks to vals with TTL life and applies c, in
// one pipeline; it reports whether c's conditions held.
func (s *Redis) writeChunks(ctx context.Context, ks, vals []string, life time.Duration, c *change) (bool, error) {
	if len(ks) == 0 {
		return s.apply(ctx, c)
	}
	var res *goredis.Cmd
	err := s.call(ctx, func(ctx context.Context) error {
		_, err := s.c.Pipelined(ctx, func(p goredis.Pipeliner) error {
			for i, key := range ks {
				p.Set(ctx, key, vals[i], life)
			}
			res = applyScript.EvalSha(ctx, p, c.keys, c.args()...)
			return nil
		})
		if err != nil && goredis.HasErrorPrefix(err, "NOSCRIPT") {
			var n int64
			n, err = applyScript.Run(ctx, s.c, c.keys, c.args()...).Int64()
			res = goredis.NewCmd(ctx)
			res.SetVal(n)
		}
		return err
	})
	if err != nil {
		return false, err
	}
	n, _ := res.Int64()
	return n == 1, nil
}

// unlink deletes keys, for what was written for a pair that is gone.
func (s *Redis) unlink(ks []string) {
	if len(ks) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	_ = s.call(ctx, func(ctx context.Context) error { return s.c.Unlink(ctx, ks...).Err() })
}

// finishOps makes c mark this body stored (size bytes, seq chunks) in
// the pair cur, completing the pair if it can; it returns the pair as c
// leaves it.
func (k *sink) finishOps(c *change, cur *stored, seq int, size int64, now int64) (*stored, bool) {
	s := k.s
	rec := *cur.rec
	next := *cur
	next.rec = &rec
	next.rev = nextRev(cur.rev)
	if k.kind == bolt.KindRequest {
		rec.Flags |= bolt.FlagRequestDone
		rec.ReqSize, next.nReq = size, seq
	} else {
		rec.Flags |= bolt.FlagResponseDone
		rec.RespSize, next.nRes = size, seq
	}
	rk, id := s.k.rec(k.id), idHex(k.id)
	c.hset(rk, k.countField(), seq).hset(rk, fRev, next.rev).hincr(s.k.sizes(), id, size).incr(s.k.total(), size)
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
		k.s.enforce(ctx, next)
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
