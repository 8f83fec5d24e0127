package template

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"

	"github.com/hishel-go/hishel/backend"
	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/model"
)

// sqlSink stores a body's chunks in the streams table: every flushBytes
// in a transaction of their own (nothing is visible yet), and at the end of
// the body the last chunks, the completion marker and the pair's new state
// in one.
type sqlSink struct {
	s     *SQLite
	id    model.PairID
	nonce uint64
	kind  bolt.Kind
	seq   int64 // chunk_number of the next chunk
}

func (s *SQLite) newSaver(ctx context.Context, rec *bolt.Record, kind bolt.Kind, src *model.Body) *backend.Stream {
	sk := &sqlSink{s: s, id: rec.ID, nonce: rec.Nonce, kind: kind}
	return backend.NewStream(ctx, rec.ID, src, sk, s.pol.ChunkSize, flushBytes)
}

func (k *sqlSink) Check() error {
	if k.s.closed.Load() {
		return model.ErrClosed
	}
	return nil
}

func (k *sqlSink) Store(ctx context.Context, chunks [][]byte, size int64, final bool) error {
	first := k.seq
	err := k.s.update(ctx, final, func(tx *wtx) error {
		old, _, err := k.s.load(ctx, tx, k.id)
		if err != nil {
			return err
		}
		if old == nil || old.Nonce != k.nonce || old.Has(bolt.FlagDeleted) {
			return fmt.Errorf("hishel: pair %s was removed while its body was stored: %w", k.id, model.ErrNotFound)
		}
		for i, c := range chunks {
			if _, err := tx.exec(ctx, `INSERT INTO streams (entry_id, kind, chunk_number, chunk_data, crc) VALUES (?, ?, ?, ?, ?)`,
				k.id[:], int(k.kind), first+int64(i), c, int64(backend.Checksum(c))); err != nil {
				return err
			}
		}
		if !final {
			return nil
		}
		m := bolt.EncodeMarker(bolt.Marker{Size: size, Chunks: uint64(first) + uint64(len(chunks))})
		if _, err := tx.exec(ctx, `INSERT INTO streams (entry_id, kind, chunk_number, chunk_data, crc) VALUES (?, ?, ?, ?, ?)`,
			k.id[:], int(k.kind), markerChunk, m, int64(backend.Checksum(m))); err != nil {
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
		k.s.settle(&rec)
		return k.s.store(ctx, tx, old, &rec)
	})
	if err == nil {
		k.seq += int64(len(chunks))
	}
	return err
}

// Abort removes the pair and what was stored of it, unless the storage is
// closed (then a sweep of a later open removes it, as an incomplete pair).
func (k *sqlSink) Abort() {
	if k.s.closed.Load() {
		return
	}
	_ = k.s.update(context.Background(), false, func(tx *wtx) error {
		var nonce int64
		switch err := tx.queryRow(context.Background(), `SELECT nonce FROM entries WHERE id = ?`, k.id[:]).Scan(&nonce); {
		case errors.Is(err, sql.ErrNoRows):
			return nil
		case err != nil:
			return err
		}
		if uint64(nonce) != k.nonce {
			return nil // a new pair under the same ID
		}
		return k.s.purgeID(context.Background(), tx, k.id)
	})
}

// body returns the reader of one of rec's bodies, of size bytes. An empty
// body needs no reader: it ends at once, wherever the pair has gone.
func (s *SQLite) body(rec *bolt.Record, kind bolt.Kind, size int64) *model.Body {
	if size == 0 {
		return model.NewBody(nil)
	}
	b := &storedBody{s: s, id: rec.ID, nonce: rec.Nonce, kind: kind}
	return model.NewChunkBody(b, b)
}

// storedBody streams a stored body back, one read transaction per
// readAhead bytes of chunks: each checks that the pair is still the one
// read (same nonce), reads the completion marker first, then chunks in
// order, each against its CRC-32C. A removed pair is model.ErrRemoved; a
// missing chunk or a checksum mismatch is model.ErrCorrupt (and the pair
// is reclaimed by the next sweep); never a short or altered body.
type storedBody struct {
	s     *SQLite
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
// query, which SQLite runs in one read transaction: it joins the pair's
// entry, so that it finds chunks only while the pair is still the one read
// (same nonce), and the first load starts at the completion marker (-1,
// which sorts first). A load that finds nothing tells removed from corrupt
// with a second query. The caller holds r.mu.
func (r *storedBody) load() error {
	ctx := context.Background()
	from := r.next
	if r.marker == nil {
		from = markerChunk
	}
	limit := max(2, readAhead/int64(max(r.s.pol.ChunkSize, 1)))
	rows, err := r.s.r.query(ctx, `SELECT s.chunk_number, s.chunk_data, s.crc FROM streams s JOIN entries e ON e.id = s.entry_id
		WHERE s.entry_id = ? AND s.kind = ? AND s.chunk_number >= ? AND e.nonce = ? AND e.state != 1
		ORDER BY s.chunk_number LIMIT ?`, r.id[:], int(r.kind), from, int64(r.nonce), limit)
	if err != nil {
		return mapErr(err)
	}
	defer rows.Close()
	found := false
	for rows.Next() {
		found = true
		var n, crc int64
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
		if n != r.next || n >= int64(r.marker.Chunks) {
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
		err := r.s.r.queryRow(ctx, `SELECT nonce FROM entries WHERE id = ? AND state != 1`, r.id[:]).Scan(&nonce)
		switch {
		case errors.Is(err, sql.ErrNoRows) || err == nil && uint64(nonce) != r.nonce:
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
