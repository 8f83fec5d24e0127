package template

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"

	"github.com/hishel-go/hishel/model"
)

// sink is a backend's half of a body being stored: where a stream's chunks
// go. The stream (the other half, shared by every backend) reads the
// source, cuts chunks and decides when to hand them over.
type sink interface {
	// check reports whether the storage can still take chunks (it returns
	// model.ErrClosed after Close).
	check() error
	// store takes full chunks in order. final means the body ended: chunks
	// then include its tail, size is its length, and the body must be
	// stored completely before store returns.
	store(ctx context.Context, chunks [][]byte, size int64, final bool) error
	// abort reclaims whatever was stored of the pair.
	abort()
}

// stream stores a body as its reader reads it. Its memory is one chunk plus
// up to flushAt bytes of chunks not yet handed to the sink, whatever the
// body's size.
type stream struct {
	ctx       context.Context
	id        model.PairID
	src       *model.Body
	sink      sink
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

func newStream(ctx context.Context, id model.PairID, src *model.Body, sk sink, chunkSize, flushAt int) *stream {
	if flushAt <= 0 {
		flushAt = math.MaxInt
	}
	return &stream{ctx: ctx, id: id, src: src, sink: sk, chunkSize: chunkSize, flushAt: flushAt}
}

// Read reads from the source body and stores what it read. At the end of
// the body, the body is stored completely before Read returns io.EOF.
func (v *stream) Read(p []byte) (int, error) {
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
func (v *stream) NextChunk() ([]byte, error) {
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
func (v *stream) ready() error {
	switch {
	case v.done:
		return io.EOF
	case v.err != nil:
		return v.err
	}
	if err := v.ctx.Err(); err != nil {
		return v.fail(err)
	}
	if err := v.sink.check(); err != nil {
		return v.fail(err)
	}
	return nil
}

// passed stores p, what the source gave along with err, and returns the
// error for the reader. The caller holds v.mu.
func (v *stream) passed(p []byte, err error) error {
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

func (v *stream) add(p []byte) {
	v.size += int64(len(p))
	for len(p) > 0 {
		var full bool
		v.cur, p, full = fillChunk(v.cur, p, v.chunkSize)
		if full {
			v.pending = append(v.pending, v.cur)
			v.npend += len(v.cur)
			v.cur = nil
		}
	}
}

// flush hands the pending chunks (and, when final, the tail) to the sink.
func (v *stream) flush(final bool) error {
	chunks := v.pending
	if final && len(v.cur) > 0 {
		chunks = append(chunks, v.cur)
		v.cur = nil
	}
	v.pending, v.npend = nil, 0
	return v.sink.store(v.ctx, chunks, v.size, final)
}

// fail aborts the stream: it records err, closes the source and has the
// sink reclaim what was stored of the pair at once. It returns the error
// Read reports.
func (v *stream) fail(err error) error {
	if v.err == nil {
		v.err = fmt.Errorf("hishel: storing body of pair %s: %w: %w", v.id, model.ErrAborted, err)
		v.cur, v.pending = nil, nil
		_ = v.src.Close()
		v.sink.abort()
	}
	return v.err
}

// Close closes the source; closed before its end, the stream is aborted
// and the pair is not stored.
//
// Close may be called while a Read is blocked in another goroutine: it closes
// the source first, which ends that Read, and then aborts the stream.
func (v *stream) Close() error {
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
