package template

import (
	"context"
	"fmt"
	"io"

	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/model"
)

// A body reader asks Redis for firstBatch bytes of chunks at first (one
// MGET), then twice as many each time up to readBatch: the first bytes
// come soon, a large body in few round trips, and its memory stays
// readBatch whatever the body's size.
const (
	firstBatch = 512 << 10
	readBatch  = 1 << 20
)

// body returns a reader of one stored body of st: size bytes in count
// chunks, the first of which may have been read ahead.
func (s *Redis) body(st *stored, kind bolt.Kind, size int64, count int, ahead []any) *model.Body {
	if size == 0 {
		return model.NewBody(nil)
	}
	r := &reader{s: s, id: st.rec.ID, nonce: st.rec.Nonce, kind: kind, size: size, count: count}
	for _, v := range ahead {
		str, ok := v.(string)
		if !ok {
			break
		}
		r.buf = append(r.buf, []byte(str))
	}
	return model.NewChunkBody(r, nil)
}

// reader streams a stored body back, a batch of chunks at a time, checking
// each chunk's checksum and place. A chunk that is missing because the
// pair was removed fails with model.ErrRemoved, one missing while the pair
// is there with model.ErrCorrupt: never a short body.
type reader struct {
	s     *Redis
	id    model.PairID
	nonce uint64
	kind  bolt.Kind
	size  int64
	count int

	batch int      // bytes to ask for next
	seq   int      // next chunk to hand out
	got   int64    // bytes handed out
	buf   [][]byte // fetched chunks (stored values), from seq on
	err   error
}

// NextChunk implements model.ChunkSource; the caller owns the chunk.
func (r *reader) NextChunk() ([]byte, error) {
	if r.err != nil {
		return nil, r.err
	}
	if len(r.buf) == 0 {
		if r.seq == r.count && r.got == r.size {
			return nil, io.EOF
		}
		if err := r.fetch(); err != nil {
			r.err = err
			return nil, err
		}
	}
	v := r.buf[0]
	r.buf = r.buf[1:]
	data, err := decodeChunk(r.id, r.nonce, r.kind, r.seq, v)
	if err == nil && r.got+int64(len(data)) > r.size {
		err = fmt.Errorf("hishel: body of pair %s: longer than its %d bytes: %w", r.id, r.size, model.ErrCorrupt)
	}
	if err != nil {
		r.s.suspect(r.id)
		r.err = err
		return nil, err
	}
	r.seq++
	r.got += int64(len(data))
	return data, nil
}

func (r *reader) fetch() error {
	s := r.s
	if s.closed.Load() {
		return model.ErrClosed
	}
	if r.seq >= r.count {
		s.suspect(r.id)
		return fmt.Errorf("hishel: body of pair %s: %d chunks hold %d of its %d bytes: %w", r.id, r.count, r.got, r.size, model.ErrCorrupt)
	}
	// Chunks are full but the last: ask for about readBatch bytes.
	per := max(1, int((r.size-r.got)/int64(r.count-r.seq)))
	r.batch = min(max(2*r.batch, firstBatch), readBatch)
	n := min(r.count-r.seq, max(1, r.batch/per))
	ks := make([]string, n)
	for i := range ks {
		ks[i] = s.k.chunk(r.id, r.nonce, r.kind, r.seq+i)
	}
	ctx := context.Background()
	var vals []any
	err := s.call(ctx, func(ctx context.Context) error {
		var err error
		vals, err = s.c.MGet(ctx, ks...).Result()
		return err
	})
	if err != nil {
		return fmt.Errorf("hishel: body of pair %s: %w", r.id, err)
	}
	for i, v := range vals {
		str, ok := v.(string)
		if !ok {
			if i > 0 {
				break // hand out what came; the next fetch says why
			}
			return r.missing(ctx)
		}
		r.buf = append(r.buf, []byte(str))
	}
	return nil
}

// missing explains a chunk that is not there: the pair was removed (its
// record is gone or is another incarnation's), or it was lost.
func (r *reader) missing(ctx context.Context) error {
	s := r.s
	var vals []any
	err := s.call(ctx, func(ctx context.Context) error {
		var err error
		vals, err = s.c.HMGet(ctx, s.k.rec(r.id), fNonce, fState).Result()
		return err
	})
	if err != nil {
		return fmt.Errorf("hishel: body of pair %s: %w", r.id, err)
	}
	n, _ := vals[0].(string)
	state, _ := vals[1].(string)
	if n != nonceHex(r.nonce) || state == stateDeleted {
		return fmt.Errorf("hishel: body of pair %s: %w", r.id, model.ErrRemoved)
	}
	s.suspect(r.id)
	return fmt.Errorf("hishel: body of pair %s: chunk %d is missing: %w", r.id, r.seq, model.ErrCorrupt)
}
