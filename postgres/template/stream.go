package template

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/hishel-go/hishel/backend"
	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/model"
)

// pgSink stores a body's chunks in the streams table: every flushBytes
// with one INSERT of their own (nothing is visible yet), and at the end of
// the body the last chunks, the completion marker and the pair's new state
// in one transaction.
type pgSink struct {
	s     *Postgres
	id    model.PairID
	nonce uint64
	kind  bolt.Kind
	seq   int32 // chunk_number of the next chunk
}

func (s *Postgres) newSaver(ctx context.Context, rec *bolt.Record, kind bolt.Kind, src *model.Body) *backend.Stream {
	sk := &pgSink{s: s, id: rec.ID, nonce: rec.Nonce, kind: kind}
	return backend.NewStream(ctx, rec.ID, src, sk, s.pol.ChunkSize, flushBytes)
}

func (k *pgSink) Check() error {
	if k.s.closed.Load() {
		return model.ErrClosed
	}
	return nil
}

// insert writes chunks from chunk number k.seq on, in tx, if the pair is
// still the incomplete pair of this stream (the row lock it takes keeps
// the pair from being deleted before tx commits).
func (k *pgSink) insert(ctx context.Context, tx pgx.Tx, chunks [][]byte) error {
	var nonce int64
	var state int16
	err := tx.QueryRow(ctx, k.s.q.nonceOf, k.id[:]).Scan(&nonce, &state)
	if errors.Is(err, pgx.ErrNoRows) || err == nil && (uint64(nonce) != k.nonce || state != stateIncomplete) {
		return fmt.Errorf("hishel: pair %s was removed while its body was stored: %w", k.id, model.ErrNotFound)
	}
	if err != nil || len(chunks) == 0 {
		return err
	}
	if len(chunks) > math.MaxInt32-int(k.seq) {
		return fmt.Errorf("hishel: body of pair %s: too many chunks: %w", k.id, model.ErrInvalid)
	}
	ns := make([]int32, len(chunks))
	crcs := make([]int32, len(chunks))
	for i, c := range chunks {
		ns[i] = k.seq + int32(i)
		crcs[i] = int32(backend.Checksum(c))
	}
	_, err = tx.Exec(ctx, k.s.q.chunks, k.id[:], int16(k.kind), ns, chunks, crcs)
	return err
}

func (k *pgSink) Store(ctx context.Context, chunks [][]byte, size int64, final bool) error {
	s := k.s
	if !final {
		err := s.inTx(ctx, func(tx pgx.Tx) error { return k.insert(ctx, tx, chunks) })
		if err == nil {
			k.seq += int32(len(chunks))
		}
		return err
	}
	completed, variants := false, 0
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		old, _, err := s.load(ctx, tx, k.id, true)
		if err != nil {
			return err
		}
		if old == nil || old.Nonce != k.nonce || old.Has(bolt.FlagDeleted) {
			return fmt.Errorf("hishel: pair %s was removed while its body was stored: %w", k.id, model.ErrNotFound)
		}
		if err := k.insert(ctx, tx, chunks); err != nil {
			return err
		}
		m := bolt.EncodeMarker(bolt.Marker{Size: size, Chunks: uint64(k.seq) + uint64(len(chunks))})
		if _, err := tx.Exec(ctx, s.q.marker, k.id[:], int16(k.kind), markerChunk, m, int32(backend.Checksum(m))); err != nil {
			return err
		}
		rec := *old
		if k.kind == bolt.KindRequest {
			rec.Flags |= bolt.FlagRequestDone
			rec.ReqSize = size
		} else {
			rec.Flags |= bolt.FlagResponseDone
			rec.RespSize = size
		}
		s.settle(&rec)
		completed = rec.Has(bolt.FlagComplete)
		variants, err = s.store(ctx, tx, old, &rec)
		return err
	})
	if err != nil {
		return err
	}
	s.evicted.Add(int64(variants))
	k.seq += int32(len(chunks))
	if completed {
		return s.enforceBudget(ctx, nil)
	}
	return nil
}

// Abort removes the pair and what was stored of it, unless the storage is
// closed (then a sweep removes it, as an incomplete pair) or the pair is no
// longer this stream's.
func (k *pgSink) Abort() {
	if k.s.closed.Load() {
		return
	}
	ctx := context.Background()
	_ = k.s.inTx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, k.s.q.abortPurge, k.id[:], int64(k.nonce))
		if err != nil {
			return err
		}
		_, err = k.s.countGone(ctx, tx, rows)
		return err
	})
}

// body returns the reader of one of rec's bodies, of size bytes. An empty
// body needs no reader: it ends at once, wherever the pair has gone.
func (s *Postgres) body(rec *bolt.Record, kind bolt.Kind, size int64) *model.Body {
	if size == 0 {
		return model.NewBody(nil)
	}
	b := &storedBody{s: s, id: rec.ID, nonce: rec.Nonce, kind: kind}
	return model.NewChunkBody(b, b)
}

// storedBody streams a stored body back, one query per readAhead bytes of
// chunks: each joins the pair's entry, so that it finds chunks only while
// the pair is the one read (same nonce, not incomplete); the first reads
// the completion marker (chunk -1, which sorts first), then chunks in
// order, each against its CRC-32C. A removed pair is model.ErrRemoved; a
// missing chunk or a checksum mismatch is model.ErrCorrupt (and the pair is
// reclaimed by the next sweep); never a short or altered body.
type storedBody struct {
	s     *Postgres
	id    model.PairID
	nonce uint64
	kind  bolt.Kind

	mu     sync.Mutex
	marker *bolt.Marker
	next   int64    // chunk_number of the next chunk to load
	loaded int64    // bytes loaded so far
	queue  [][]byte // loaded, not yet handed out
	closed bool
}

// NextChunk implements model.ChunkSource: the caller owns the chunk.
func (r *storedBody) NextChunk() ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		switch {
		case r.closed:
			return nil, model.ErrBodyClosed
		case r.s.closed.Load():
			return nil, model.ErrClosed
		case len(r.queue) > 0:
			c := r.queue[0]
			r.queue[0] = nil
			r.queue = r.queue[1:]
			return c, nil
		case r.marker != nil && r.next == int64(r.marker.Chunks):
			return nil, io.EOF
		}
		if err := r.load(); err != nil {
			if r.s.closed.Load() {
				return nil, model.ErrClosed
			}
			return nil, err
		}
	}
}

// load reads the next chunks, up to about readAhead bytes, with one
// query. A load that finds nothing tells removed from corrupt with a
// second query. The caller holds r.mu.
func (r *storedBody) load() error {
	ctx := context.Background()
	from := r.next
	if r.marker == nil {
		from = markerChunk
	}
	limit := max(2, readAhead/int64(max(r.s.pol.ChunkSize, 1)))
	rows, err := r.s.pool.Query(ctx, r.s.q.readChunks, r.id[:], int16(r.kind), from, int64(r.nonce), limit)
	if err != nil {
		return mapErr(err)
	}
	defer rows.Close()
	found := false
	for rows.Next() {
		found = true
		var n, crc int32
		var data []byte
		if err := rows.Scan(&n, &data, &crc); err != nil {
			return mapErr(err)
		}
		if uint32(crc) != backend.Checksum(data) {
			return r.corrupt(fmt.Sprintf("chunk %d checksum mismatch", n))
		}
		if r.marker == nil {
			if n != markerChunk {
				return r.corrupt("its completion marker is missing")
			}
			m, err := bolt.DecodeMarker(data)
			if err != nil || m.Chunks > math.MaxInt32 {
				return r.corrupt("bad completion marker")
			}
			r.marker = &m
			continue
		}
		if int64(n) != r.next || int64(n) >= int64(r.marker.Chunks) {
			return r.corrupt(fmt.Sprintf("chunk %d missing", r.next))
		}
		r.queue = append(r.queue, data)
		r.next++
		r.loaded += int64(len(data))
	}
	if err := rows.Err(); err != nil {
		return mapErr(err)
	}
	if !found {
		// Nothing: the pair is gone (or replaced), or its chunks are.
		var nonce int64
		err := r.s.pool.QueryRow(ctx, r.s.q.nonceOfLive, r.id[:]).Scan(&nonce)
		switch {
		case errors.Is(err, pgx.ErrNoRows) || err == nil && uint64(nonce) != r.nonce:
			return fmt.Errorf("hishel: body of pair %s: %w", r.id, model.ErrRemoved)
		case err != nil:
			return mapErr(err)
		}
		if r.marker == nil {
			return r.corrupt("its completion marker is missing")
		}
		return r.corrupt(fmt.Sprintf("chunk %d missing", r.next))
	}
	if r.marker != nil && r.next == int64(r.marker.Chunks) && r.loaded != r.marker.Size {
		return r.corrupt(fmt.Sprintf("%d bytes stored, the marker says %d", r.loaded, r.marker.Size))
	}
	return nil
}

func (r *storedBody) corrupt(what string) error {
	r.s.noteBad(r.id)
	r.queue = nil
	return fmt.Errorf("hishel: body of pair %s: %s: %w", r.id, what, model.ErrCorrupt)
}

// Close drops what the body holds; later reads fail with model.ErrBodyClosed.
func (r *storedBody) Close() error {
	r.mu.Lock()
	r.closed = true
	r.queue = nil
	r.mu.Unlock()
	return nil
}
