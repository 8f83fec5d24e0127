package template

import (
	"context"
	"errors"
	"fmt"
	"math"

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
		err := s.inTx(ctx, func(tx *txn) error { return k.insert(ctx, tx, chunks) })
		if err == nil {
			k.seq += int32(len(chunks))
		}
		return err
	}
	completed, variants := false, 0
	err := s.inTx(ctx, func(tx *txn) error {
		old, _, err := s.load(ctx, tx, k.id, true)
		if err != nil {
			return err
		}
		rec, err := backend.BodyStored(k.id, k.nonce, old, k.kind, size)
		if err != nil {
			return err
		}
		if err := k.insert(ctx, tx, chunks); err != nil {
			return err
		}
		m := bolt.EncodeMarker(bolt.Marker{Size: size, Chunks: uint64(k.seq) + uint64(len(chunks))})
		if _, err := tx.Exec(ctx, s.q.marker, k.id[:], int16(k.kind), markerChunk, m, int32(backend.Checksum(m))); err != nil {
			return err
		}
		s.settle(rec)
		completed = rec.Has(bolt.FlagComplete)
		variants, err = s.store(ctx, tx, old, rec)
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
	_ = k.s.inTx(ctx, func(tx *txn) error {
		rows, err := tx.Query(ctx, k.s.q.abortPurge, k.id[:], int64(k.nonce))
		if err != nil {
			return err
		}
		_, err = k.s.countGone(ctx, tx, rows)
		return err
	})
}

// readChunks is the chunks query of s.chunks (backend.ChunkTable): one
// query that joins the pair's entry, so that it finds chunks only while
// the pair is the one read (same nonce, not incomplete).
func (s *Postgres) readChunks(ctx context.Context, id model.PairID, kind bolt.Kind, nonce uint64, from, limit int64,
	fn func(n int64, data []byte, crc uint32) error) error {
	rows, err := s.pool.Query(ctx, s.q.readChunks, id[:], int16(kind), from, int64(nonce), limit)
	if err != nil {
		return mapErr(err)
	}
	defer rows.Close()
	for rows.Next() {
		var n, crc int32
		var data []byte
		if err := rows.Scan(&n, &data, &crc); err != nil {
			return mapErr(err)
		}
		if err := fn(int64(n), data, uint32(crc)); err != nil {
			return err
		}
	}
	return mapErr(rows.Err())
}

// bodyRemoved reports whether pair id is no longer the live pair of nonce
// (s.chunks.Removed).
func (s *Postgres) bodyRemoved(ctx context.Context, id model.PairID, nonce uint64) (bool, error) {
	var n int64
	err := s.pool.QueryRow(ctx, s.q.nonceOfLive, id[:]).Scan(&n)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return true, nil
	case err != nil:
		return false, mapErr(err)
	}
	return uint64(n) != nonce, nil
}
