package template

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"go.etcd.io/bbolt"

	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/model"
)

// saver stores a body as its reader reads it: bytes are cut into chunks and
// handed to the writer every flushBytes (lazily: nothing is visible yet);
// at the end of the body the last chunks, the completion marker and the
// pair's new state are committed durably before Read returns io.EOF. Its
// memory is one chunk plus up to flushBytes of pending chunks, whatever the
// body's size.
type saver struct {
	s     *Bolt
	ctx   context.Context
	id    model.PairID
	nonce uint64
	kind  bolt.Kind
	src   *model.Body

	mu      sync.Mutex
	cur     []byte
	pending [][]byte
	npend   int
	seq     uint64
	size    int64
	done    bool  // stored completely
	err     error // the stream failed or was aborted
}

func (s *Bolt) newSaver(ctx context.Context, rec *bolt.Record, kind bolt.Kind, src *model.Body) *saver {
	return &saver{s: s, ctx: ctx, id: rec.ID, nonce: rec.Nonce, kind: kind, src: src}
}

// Read reads from the source body and stores what it read.
func (v *saver) Read(p []byte) (int, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	switch {
	case v.done:
		return 0, io.EOF
	case v.err != nil:
		return 0, v.err
	}
	if err := v.ctx.Err(); err != nil {
		return 0, v.fail(err)
	}
	if v.s.closed.Load() {
		return 0, v.fail(model.ErrClosed)
	}
	n, err := v.src.Read(p)
	if n > 0 {
		v.add(p[:n])
		if v.npend >= flushBytes {
			if ferr := v.flush(false); ferr != nil {
				return n, v.fail(ferr)
			}
		}
	}
	switch {
	case err == io.EOF:
		if ferr := v.flush(true); ferr != nil {
			return n, v.fail(ferr)
		}
		v.done = true
		_ = v.src.Close()
		return n, io.EOF
	case err != nil:
		return n, v.fail(err)
	}
	return n, nil
}

func (v *saver) add(p []byte) {
	v.size += int64(len(p))
	for len(p) > 0 {
		var full bool
		v.cur, p, full = fillChunk(v.cur, p, v.s.pol.chunkSize)
		if full {
			v.pending = append(v.pending, v.cur)
			v.npend += len(v.cur)
			v.cur = nil
		}
	}
}

// flush hands the pending chunks to the writer; the final flush also stores
// the tail, the marker and the pair's state, durably.
func (v *saver) flush(final bool) error {
	chunks := v.pending
	if final && len(v.cur) > 0 {
		chunks = append(chunks, v.cur)
		v.cur = nil
	}
	v.pending, v.npend = nil, 0
	first := v.seq
	v.seq += uint64(len(chunks))
	size, seqs := v.size, v.seq
	err := v.s.w.do(v.ctx, final, func(t *wtx) error {
		rec, err := t.record(v.id)
		if err != nil {
			return err
		}
		if rec == nil || rec.Nonce != v.nonce || rec.Has(bolt.FlagDeleted) {
			return fmt.Errorf("hishel: pair %s was removed while its body was stored: %w", v.id, model.ErrNotFound)
		}
		var n int64
		for i, c := range chunks {
			t.put(t.chunks, bolt.ChunkKey(v.id, v.kind, first+uint64(i)), c)
			n += int64(len(c))
		}
		t.addStats(0, 0, 0, n)
		if !final {
			return nil
		}
		t.put(t.chunks, bolt.ChunkKey(v.id, v.kind, bolt.MarkerSeq), bolt.EncodeMarker(bolt.Marker{Size: size, Chunks: seqs}))
		if v.kind == bolt.KindRequest {
			rec.Flags |= bolt.FlagRequestDone
			rec.ReqSize = size
		} else {
			rec.Flags |= bolt.FlagResponseDone
			rec.RespSize = size
		}
		v.s.settle(t, rec)
		return nil
	})
	if err != nil {
		return err
	}
	return nil
}

// fail aborts the stream: it records err, closes the source and reclaims
// what was stored of the pair at once. It returns the error Read reports.
func (v *saver) fail(err error) error {
	if v.err == nil {
		v.err = fmt.Errorf("hishel: storing body of pair %s: %w: %w", v.id, model.ErrAborted, err)
		v.cur, v.pending = nil, nil
		_ = v.src.Close()
		if !v.s.closed.Load() {
			_ = v.s.w.do(context.Background(), true, func(t *wtx) error { return purgeID(t, v.id, v.nonce) })
		}
	}
	return v.err
}

// Close closes the source; closed before its end, the stream is aborted
// and the pair is not stored.
//
// Close may be called while a Read is blocked in another goroutine: it closes
// the source first, which ends that Read, and then aborts the stream.
func (v *saver) Close() error {
	err := v.src.Close()
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.done && v.err == nil {
		v.fail(errClosedEarly)
		return nil
	}
	return err
}

var errClosedEarly = errors.New("body closed before its end")

// storedBody streams a stored body back, one read transaction per group of
// chunks; it is a model.ChunkSource. Each transaction checks that the pair
// still exists with the same nonce and that chunks follow each other up to
// the completion marker, whose size and count must match: a removed pair or
// a missing chunk is an error (model.ErrRemoved), never a short body.
type storedBody struct {
	s     *Bolt
	id    model.PairID
	nonce uint64
	kind  bolt.Kind

	mu     sync.Mutex
	next   uint64   // seq of the next chunk to load
	queue  [][]byte // loaded, not yet handed out
	loaded int64    // bytes loaded so far
	ended  bool     // the marker has been checked
	closed bool
}

// NextChunk implements model.ChunkSource.
func (r *storedBody) NextChunk() ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		if r.closed {
			return nil, model.ErrBodyClosed
		}
		if len(r.queue) > 0 {
			c := r.queue[0]
			r.queue[0] = nil
			r.queue = r.queue[1:]
			return c, nil
		}
		if r.ended {
			return nil, io.EOF
		}
		err := r.s.view(func(tx *bbolt.Tx) error {
			return r.load(tx.Bucket(bolt.BucketPairs), tx.Bucket(bolt.BucketChunks), readAhead)
		})
		if err != nil {
			return nil, err
		}
	}
}

// Buffered implements model.BufferedSource: when the whole body was read
// with the pair (small bodies are), it needs no more I/O.
func (r *storedBody) Buffered() ([][]byte, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || !r.ended {
		return nil, false
	}
	rest := r.queue
	r.queue = nil
	return rest, true
}

// load reads chunks from r.next on, up to about limit bytes, or to the
// marker. The caller holds r.mu, or owns r exclusively.
func (r *storedBody) load(pairs, chunks *bbolt.Bucket, limit int) error {
	v := pairs.Get(r.id[:])
	if len(v) < 1+bolt.IDLen+8 || !bytes.Equal(v[1+bolt.IDLen:1+bolt.IDLen+8], nonceBytes(r.nonce)) {
		return fmt.Errorf("hishel: body of pair %s: %w", r.id, model.ErrRemoved)
	}
	c := chunks.Cursor()
	n := 0
	for k, val := c.Seek(bolt.ChunkKey(r.id, r.kind, r.next)); k != nil; k, val = c.Next() {
		id, kind, seq, err := bolt.ParseChunkKey(k)
		if err != nil || id != r.id || kind != r.kind {
			break
		}
		if seq == bolt.MarkerSeq {
			m, err := bolt.DecodeMarker(val)
			if err != nil {
				return fmt.Errorf("hishel: body of pair %s: %w", r.id, err)
			}
			if m.Chunks != r.next || m.Size != r.loaded {
				return fmt.Errorf("hishel: body of pair %s: %d bytes in %d chunks, marker says %d in %d: %w",
					r.id, r.loaded, r.next, m.Size, m.Chunks, model.ErrRemoved)
			}
			r.ended = true
			return nil
		}
		if seq != r.next {
			return fmt.Errorf("hishel: body of pair %s: chunk %d missing: %w", r.id, r.next, model.ErrRemoved)
		}
		r.queue = append(r.queue, bytes.Clone(val))
		r.next++
		r.loaded += int64(len(val))
		if n += len(val); n >= limit {
			return nil
		}
	}
	return fmt.Errorf("hishel: body of pair %s: chunk %d missing: %w", r.id, r.next, model.ErrRemoved)
}

func nonceBytes(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

// Close drops what the body holds; later reads fail with model.ErrBodyClosed.
func (r *storedBody) Close() error {
	r.mu.Lock()
	r.closed = true
	r.queue = nil
	r.mu.Unlock()
	return nil
}
