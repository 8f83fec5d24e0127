package backend

import (
	"context"
	"fmt"
	"io"
	"math"
	"sync"

	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/model"
)

// MarkerChunk is the chunk number of a body's completion marker in a
// backend that stores bodies as numbered chunk rows (as Hishel's SQL
// storage does): it sorts before the body's chunks (0, 1, ...), so that
// a reader meets it first.
const MarkerChunk = -1

// ChunkTable reads back bodies stored as numbered chunk rows: per pair and
// body kind, the completion marker (a bolt.Marker) at MarkerChunk, then
// chunks 0, 1, ..., each with its CRC-32C ([Checksum]). The backend gives
// its queries; the table checks what they return, the same way for every
// such backend (see Body). A ChunkTable is safe for concurrent use once
// set up, and is not changed afterwards.
type ChunkTable struct {
	// Chunks runs one query: it calls fn with the chunks of the body of
	// kind of pair id numbered from on, in order, at most limit of them,
	// and finds them only while id is still the pair read (its nonce is
	// nonce, and it is not incomplete). It returns fn's error as it is,
	// and its own mapped to the store's errors.
	Chunks func(ctx context.Context, id model.PairID, kind bolt.Kind, nonce uint64, from, limit int64,
		fn func(n int64, data []byte, crc uint32) error) error
	// Removed reports whether pair id is no longer the pair read (gone,
	// incomplete, or another pair with another nonce): Body asks when
	// Chunks found nothing, to tell a removed pair from missing chunks.
	Removed func(ctx context.Context, id model.PairID, nonce uint64) (bool, error)
	// Closed reports whether the storage is closed.
	Closed func() bool
	// NoteBad notes pair id, found corrupt, for the next sweep to reclaim.
	NoteBad func(id model.PairID)
	// ReadAhead is about how many bytes one Chunks call reads, in chunks
	// of ChunkSize bytes: at least two chunks a call.
	ReadAhead int64
	ChunkSize int
}

// Body returns the reader of rec's body of kind, of size bytes. An empty
// body needs no reader: it ends at once, wherever the pair has gone.
//
// The body reads its chunks ReadAhead bytes at a time, one Chunks call
// each, outside any transaction: the first reads the completion marker,
// then chunks in order, each checked against its CRC-32C. A removed pair
// is model.ErrRemoved; a missing chunk, a checksum mismatch or a size
// that is not the marker's is model.ErrCorrupt (and the pair is noted
// with NoteBad); never a short or altered body. After Close of the
// storage its reads fail with model.ErrClosed.
func (t *ChunkTable) Body(rec *bolt.Record, kind bolt.Kind, size int64) *model.Body {
	if size == 0 {
		return model.NewBody(nil)
	}
	b := &chunkBody{t: t, id: rec.ID, nonce: rec.Nonce, kind: kind}
	return model.NewChunkBody(b, b)
}

// chunkBody is a stored body being read back (see ChunkTable.Body).
type chunkBody struct {
	t     *ChunkTable
	id    model.PairID
	nonce uint64
	kind  bolt.Kind

	mu     sync.Mutex
	marker *bolt.Marker
	next   int64    // chunk number of the next chunk to load
	loaded int64    // bytes loaded so far
	queue  [][]byte // loaded, not yet handed out
	closed bool
}

// NextChunk implements model.ChunkSource: the caller owns the chunk.
func (r *chunkBody) NextChunk() ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		switch {
		case r.closed:
			return nil, model.ErrBodyClosed
		case r.t.Closed():
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
			if r.t.Closed() {
				return nil, model.ErrClosed
			}
			return nil, err
		}
	}
}

// load reads the next chunks, up to about ReadAhead bytes, with one
// Chunks call; the first load starts at the completion marker. A load
// that finds nothing tells removed from corrupt with Removed. The caller
// holds r.mu.
func (r *chunkBody) load() error {
	ctx := context.Background()
	from := r.next
	if r.marker == nil {
		from = MarkerChunk
	}
	limit := max(2, r.t.ReadAhead/int64(max(r.t.ChunkSize, 1)))
	found := false
	err := r.t.Chunks(ctx, r.id, r.kind, r.nonce, from, limit, func(n int64, data []byte, crc uint32) error {
		found = true
		if crc != Checksum(data) {
			return r.corrupt(fmt.Sprintf("chunk %d checksum mismatch", n))
		}
		if r.marker == nil {
			if n != MarkerChunk {
				return r.corrupt("its completion marker is missing")
			}
			m, err := bolt.DecodeMarker(data)
			if err != nil || m.Chunks > math.MaxInt32 {
				return r.corrupt("bad completion marker")
			}
			r.marker = &m
			return nil
		}
		if n != r.next || n >= int64(r.marker.Chunks) {
			return r.corrupt(fmt.Sprintf("chunk %d missing", r.next))
		}
		r.queue = append(r.queue, data)
		r.next++
		r.loaded += int64(len(data))
		return nil
	})
	if err != nil {
		return err
	}
	if !found {
		// Nothing: the pair is gone (or replaced), or its chunks are.
		removed, err := r.t.Removed(ctx, r.id, r.nonce)
		switch {
		case err != nil:
			return err
		case removed:
			return fmt.Errorf("hishel: body of pair %s: %w", r.id, model.ErrRemoved)
		case r.marker == nil:
			return r.corrupt("its completion marker is missing")
		}
		return r.corrupt(fmt.Sprintf("chunk %d missing", r.next))
	}
	if r.marker != nil && r.next == int64(r.marker.Chunks) && r.loaded != r.marker.Size {
		return r.corrupt(fmt.Sprintf("%d bytes stored, the marker says %d", r.loaded, r.marker.Size))
	}
	return nil
}

func (r *chunkBody) corrupt(what string) error {
	r.t.NoteBad(r.id)
	r.queue = nil
	return fmt.Errorf("hishel: body of pair %s: %s: %w", r.id, what, model.ErrCorrupt)
}

// Close drops what the body holds; later reads fail with model.ErrBodyClosed.
func (r *chunkBody) Close() error {
	r.mu.Lock()
	r.closed = true
	r.queue = nil
	r.mu.Unlock()
	return nil
}
