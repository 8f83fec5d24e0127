package template

import (
	"context"
	"database/sql"
	"errors"

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
		rec, err := backend.BodyStored(k.id, k.nonce, old, k.kind, size)
		if err != nil {
			return err
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
		k.s.settle(rec)
		return k.s.store(ctx, tx, old, rec)
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

// readChunks is the chunks query of s.chunks (backend.ChunkTable): one
// query, which SQLite runs in one read transaction, that joins the pair's
// entry, so that it finds chunks only while the pair is still the one
// read (same nonce, not incomplete).
func (s *SQLite) readChunks(ctx context.Context, id model.PairID, kind bolt.Kind, nonce uint64, from, limit int64,
	fn func(n int64, data []byte, crc uint32) error) error {
	rows, err := s.r.query(ctx, `SELECT s.chunk_number, s.chunk_data, s.crc FROM streams s JOIN entries e ON e.id = s.entry_id
		WHERE s.entry_id = ? AND s.kind = ? AND s.chunk_number >= ? AND e.nonce = ? AND e.state != 1
		ORDER BY s.chunk_number LIMIT ?`, id[:], int(kind), from, int64(nonce), limit)
	if err != nil {
		return mapErr(err)
	}
	defer rows.Close()
	for rows.Next() {
		var n, crc int64
		var data []byte
		if err := rows.Scan(&n, &data, &crc); err != nil {
			return mapErr(err)
		}
		if err := fn(n, data, uint32(crc)); err != nil {
			return err
		}
	}
	return mapErr(rows.Err())
}

// bodyRemoved reports whether pair id is no longer the live pair of nonce
// (s.chunks.Removed).
func (s *SQLite) bodyRemoved(ctx context.Context, id model.PairID, nonce uint64) (bool, error) {
	var n int64
	err := s.r.queryRow(ctx, `SELECT nonce FROM entries WHERE id = ? AND state != 1`, id[:]).Scan(&n)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return true, nil
	case err != nil:
		return false, mapErr(err)
	}
	return uint64(n) != nonce, nil
}
