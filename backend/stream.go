package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"

	"github.com/hishel-go/hishel/model"
)

// Sink is a backend's half of a body being stored: where a [Stream]'s
// chunks go. The stream (the other half, shared by every backend) reads
// the source, cuts chunks and decides when to hand them over. A stream
// calls its sink's methods one at a time, never concurrently.
type Sink interface {
	// Check reports whether the storage can still take chunks (it returns
	// model.ErrClosed after Close).
	Check() error
	// Store takes full chunks in order; the sink owns them. final means
	// the body ended: chunks then include its tail, size is its length,
	// and the body must be stored completely (its completion marker
	// written, and the pair completed if its other body is stored) before
	// Store returns. An error fails the stream, which then calls Abort.
	Store(ctx context.Context, chunks [][]byte, size int64, final bool) error
	// Abort reclaims whatever was stored of the pair, at once: the stream
	// failed, was closed before its end, or its context ended.
	Abort()
}

// ChunkMaker is a [Sink] that gives its [Stream] the buffers chunks are cut
// into: a backend done with a chunk once it is written (a database that
// copies the bytes in) can reuse its buffer for a later chunk, instead of
// allocating, zeroing and faulting in new memory for every chunk.
type ChunkMaker interface {
	Sink
	// MakeChunk returns an empty buffer of capacity size, which the
	// stream fills and then hands to Store like any chunk.
	MakeChunk(size int) []byte
}

// Pacer is a [Sink] that sets when its [Stream] hands chunks over after
// each hand-over: a sink that writes chunks out as it gets them (a file)
// can take each one as soon as it is full, so that the stream holds one
// chunk, not flushAt bytes, and reuses the same buffer, still warm in the
// processor's cache, for the next.
type Pacer interface {
	Sink
	// NextFlush returns how many bytes of full chunks the stream gathers
	// before the next hand-over (zero or less: only at the end of the
	// body). It is called after each Store that did not end the body.
	NextFlush() int
}

// Stream stores a body as its reader reads it: it is the source of the
// Body that CreatePair and AddResponse return (model.NewBody(stream)),
// reading the caller's body and handing what it read to a [Sink]. Its
// memory is one chunk plus up to flushAt bytes of chunks not yet handed to
// the sink, whatever the body's size.
//
// A body that fails, is closed before its end, or whose context ends
// aborts the stream: its reader gets an error wrapping model.ErrAborted,
// and the sink reclaims the pair. A Stream is read by one goroutine at a
// time; Close may be called from any goroutine.
type Stream struct {
	ctx       context.Context
	id        model.PairID
	src       *model.Body
	sink      Sink
	maker     ChunkMaker // sink, if it makes chunk buffers
	pacer     Pacer      // sink, if it sets the hand-overs
	chunkSize int
	flushAt   int // hand chunks over once this many bytes are pending

	mu      sync.Mutex
	cur     []byte
	pending [][]byte
	npend   int
	size    int64
	done    bool  // stored completely
	err     error // the stream failed or was aborted
}

// NewStream returns the stream that stores src, the body of pair id, in sk
// as it is read, in chunks of chunkSize bytes, handing them over once
// flushAt bytes are pending (zero or less: only at the end of the body).
// ctx governs the stream: once it ends, the stream fails.
func NewStream(ctx context.Context, id model.PairID, src *model.Body, sk Sink, chunkSize, flushAt int) *Stream {
	if flushAt <= 0 {
		flushAt = math.MaxInt
	}
	if chunkSize <= 0 {
		chunkSize = DefaultChunkSize
	}
	maker, _ := sk.(ChunkMaker)
	pacer, _ := sk.(Pacer)
	return &Stream{ctx: ctx, id: id, src: src, sink: sk, maker: maker, pacer: pacer, chunkSize: chunkSize, flushAt: flushAt}
}

// Read reads from the source body and stores what it read. At the end of
// the body, the body is stored completely before Read returns io.EOF.
func (v *Stream) Read(p []byte) (int, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if err := v.ready(); err != nil {
		return 0, err
	}
	n, err := v.src.Read(p)
	return n, v.passed(p[:n], err)
}

// NextChunk implements model.ChunkSource: the source's next chunk, stored
// as it passes. The body is a Body over the stream, so a chunked source
// reaches the reader with one copy (the stored one) and no buffer in
// between. At the end of the body, the body is stored completely before
// NextChunk returns io.EOF.
func (v *Stream) NextChunk() ([]byte, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if err := v.ready(); err != nil {
		return nil, err
	}
	c, err := v.src.NextChunk()
	return c, v.passed(c, err)
}

// ready reports whether the stream can go on: io.EOF once the body is
// stored, the stream's error once it failed. The caller holds v.mu.
func (v *Stream) ready() error {
	switch {
	case v.done:
		return io.EOF
	case v.err != nil:
		return v.err
	}
	if err := v.ctx.Err(); err != nil {
		return v.fail(err)
	}
	if err := v.sink.Check(); err != nil {
		return v.fail(err)
	}
	return nil
}

// passed stores p, what the source gave along with err, and returns the
// error for the reader. The caller holds v.mu.
func (v *Stream) passed(p []byte, err error) error {
	if len(p) > 0 {
		v.add(p)
		if v.npend >= v.flushAt {
			if ferr := v.flush(false); ferr != nil {
				return v.fail(ferr)
			}
		}
	}
	switch {
	case err == io.EOF:
		if ferr := v.flush(true); ferr != nil {
			return v.fail(ferr)
		}
		v.done = true
		_ = v.src.Close()
		return io.EOF
	case err != nil:
		return v.fail(err)
	}
	return nil
}

func (v *Stream) add(p []byte) {
	v.size += int64(len(p))
	for len(p) > 0 {
		if v.cur == nil && v.maker != nil {
			v.cur = v.maker.MakeChunk(v.chunkSize)[:0]
		}
		var full bool
		v.cur, p, full = FillChunk(v.cur, p, v.chunkSize)
		if full {
			v.pending = append(v.pending, v.cur)
			v.npend += len(v.cur)
			v.cur = nil
		}
	}
}

// flush hands the pending chunks (and, when final, the tail) to the sink.
func (v *Stream) flush(final bool) error {
	chunks := v.pending
	if final && len(v.cur) > 0 {
		chunks = append(chunks, v.cur)
		v.cur = nil
	}
	v.pending, v.npend = nil, 0
	if err := v.sink.Store(v.ctx, chunks, v.size, final); err != nil {
		return err
	}
	if v.pacer != nil && !final {
		v.flushAt = v.pacer.NextFlush()
		if v.flushAt <= 0 {
			v.flushAt = math.MaxInt
		}
	}
	return nil
}

// fail aborts the stream: it records err, closes the source and has the
// sink reclaim what was stored of the pair at once. It returns the error
// Read reports.
func (v *Stream) fail(err error) error {
	if v.err == nil {
		v.err = fmt.Errorf("hishel: storing body of pair %s: %w: %w", v.id, model.ErrAborted, err)
		v.cur, v.pending = nil, nil
		_ = v.src.Close()
		v.sink.Abort()
	}
	return v.err
}

// Close closes the source; closed before its end, the stream is aborted
// and the pair is not stored.
//
// Close may be called while a Read is blocked in another goroutine: it closes
// the source first, which ends that Read, and then aborts the stream.
func (v *Stream) Close() error {
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
