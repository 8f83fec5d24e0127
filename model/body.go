package model

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"sync"
	"sync/atomic"
)

// ErrBodyClosed is returned by Read on a Body that has been closed.
var ErrBodyClosed = errors.New("hishel: read on closed body")

// DefaultChunkSize is the size of the chunks [Body.Chunks] and [Body.All]
// cut from a body whose source is a plain [io.Reader].
const DefaultChunkSize = 32 << 10

// Chunk is one piece of a body delivered on a channel. Exactly one of Data
// and Err is set. Err is never [io.EOF]: the end of a body is the channel
// being closed after its last chunk. A Chunk with Err is the last one sent.
type Chunk struct {
	Data []byte
	Err  error
}

// ChunkSource is implemented by body sources that already hold their bytes in
// chunks, such as bodies streamed back from storage. NextChunk returns the
// next chunk, which the caller owns, or io.EOF after the last one. A Body over
// a ChunkSource hands its chunks out without copying.
//
// A ChunkSource that is also an [io.WriterTo] writes the rest of its body
// when the Body's WriteTo is called (io.Copy from the Body), from where
// NextChunk would go on: the same bytes, the same errors, and
// [ErrBodyClosed] once the Body's closer (the source, or what closes it)
// is closed.
type ChunkSource interface {
	NextChunk() ([]byte, error)
}

// Body is a one-shot stream of bytes: the body of a request or a response.
// It is an [io.ReadCloser] for blocking callers, and yields its bytes as a
// channel of chunks ([Body.Chunks]) or as an iterator ([Body.All]).
//
// A nil *Body is an empty body. A Body is read by one goroutine at a time;
// Close may be called from any goroutine, at any time, and more than once.
type Body struct {
	r      io.Reader   // plain source, or nil
	src    ChunkSource // chunked source, or nil
	cur    []byte      // unread rest of the current chunk (src only)
	shared bool        // cur is read-only (from a SharedSource)
	closer io.Closer

	started   atomic.Bool
	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// NewBody returns a Body reading r. If r is also an [io.Closer], Close closes
// it, and if it is a [ChunkSource], its chunks are handed out as they are.
// NewBody(nil) is an empty body.
func NewBody(r io.Reader) *Body {
	b := &Body{}
	if r == nil {
		return b
	}
	if s, ok := r.(ChunkSource); ok {
		b.src = s
	} else {
		b.r = r
	}
	if c, ok := r.(io.Closer); ok {
		b.closer = c
	}
	return b
}

// NewChunkBody returns a Body over a chunked source; closer, if not nil, is
// closed by Close.
func NewChunkBody(src ChunkSource, closer io.Closer) *Body {
	return &Body{src: src, closer: closer}
}

// BytesBody returns a Body that reads p. The Body does not copy p.
func BytesBody(p []byte) *Body {
	return NewChunkBody(&sliceSource{p: p}, nil)
}

// StringBody returns a Body that reads s.
func StringBody(s string) *Body { return BytesBody([]byte(s)) }

type sliceSource struct{ p []byte }

func (s *sliceSource) NextChunk() ([]byte, error) {
	if len(s.p) == 0 {
		return nil, io.EOF
	}
	p := s.p
	s.p = nil
	return p, nil
}

// ChanBody returns a Body whose bytes arrive on ch: each Chunk's Data in
// order, until ch is closed (the end of the body) or a Chunk carries an Err
// (returned by Read, and the body ends there). The producer owns ch and must
// stop sending when its own context ends; ChanBody never closes it.
//
// Closing the Body ends a Read that is waiting for the producer, so a
// producer that stops sending without closing ch never strands the reader.
func ChanBody(ch <-chan Chunk) *Body {
	cs := &chanSource{ch: ch, done: make(chan struct{})}
	return NewChunkBody(cs, cs)
}

type chanSource struct {
	ch   <-chan Chunk
	done chan struct{}
	once sync.Once
}

func (c *chanSource) NextChunk() ([]byte, error) {
	for {
		select {
		case ck, ok := <-c.ch:
			if !ok {
				return nil, io.EOF
			}
			if ck.Err != nil {
				return nil, ck.Err
			}
			if len(ck.Data) > 0 {
				return ck.Data, nil
			}
		case <-c.done:
			return nil, ErrBodyClosed
		}
	}
}

// Close ends a NextChunk waiting for the producer.
func (c *chanSource) Close() error {
	c.once.Do(func() { close(c.done) })
	return nil
}

// Consumed reports whether anything has been read from b, or b has been
// closed. Storage refuses a consumed body with [ErrBodyConsumed], since
// storing it would store a short body. A nil Body is never consumed.
func (b *Body) Consumed() bool {
	return b != nil && (b.started.Load() || b.closed.Load())
}

// Read implements [io.Reader].
func (b *Body) Read(p []byte) (int, error) {
	if b == nil {
		return 0, io.EOF
	}
	if b.closed.Load() {
		return 0, ErrBodyClosed
	}
	b.started.Store(true)
	if b.r != nil {
		return b.r.Read(p)
	}
	if b.src == nil {
		return 0, io.EOF
	}
	if rd, ok := b.src.(io.Reader); ok && len(b.cur) == 0 {
		// A source that reads into p (a body being stored, another Body)
		// spares the chunk in between.
		return rd.Read(p)
	}
	for len(b.cur) == 0 {
		c, err := b.srcNext(true) // only copied out of
		if len(c) > 0 {
			b.cur, b.shared = c, b.isShared()
			break
		}
		if err != nil {
			return 0, err
		}
	}
	n := copy(p, b.cur)
	b.cur = b.cur[n:]
	return n, nil
}

// WriteTo implements [io.WriterTo], so that io.Copy moves whole chunks. The
// chunks of a [SharedSource] go to w without a copy (an io.Writer must not
// modify what it is given). A source that is an [io.WriterTo] itself writes
// the rest of the body (after what Read left of its current chunk) with its
// own WriteTo: a stored body in a file may send it without copying it (see
// [ChunkSource]).
func (b *Body) WriteTo(w io.Writer) (int64, error) {
	var total int64
	if b != nil && b.src != nil {
		if wt, ok := b.src.(io.WriterTo); ok {
			if b.closed.Load() {
				return 0, ErrBodyClosed
			}
			b.started.Store(true)
			if len(b.cur) > 0 {
				c := b.cur
				b.cur, b.shared = nil, false
				n, err := w.Write(c)
				total += int64(n)
				if err != nil {
					return total, err
				}
			}
			n, err := wt.WriteTo(w)
			return total + n, err
		}
	}
	for {
		c, err := b.next(nil, true)
		if len(c) > 0 {
			n, werr := w.Write(c)
			total += int64(n)
			if werr != nil {
				return total, werr
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// NextChunk implements [ChunkSource], so that one Body can be the source of
// another without a copy: it returns the body's next chunk, which the caller
// owns, or io.EOF after the last one. A Body over a ChunkSource hands on its
// chunks as they are; one over a plain reader returns what one Read gives
// (up to DefaultChunkSize bytes, without waiting for more), in a buffer not
// much larger than that.
func (b *Body) NextChunk() ([]byte, error) { return b.next(nil, false) }

// scratch holds DefaultChunkSize buffers for reading plain sources: a short
// read is copied out at its size, and the buffer goes back to the pool.
var scratch = sync.Pool{New: func() any { b := make([]byte, DefaultChunkSize); return &b }}

// next returns the next piece of the body: a chunk from a chunked source
// (owned by the caller, or read-only if ro and the source is a
// SharedSource), or bytes read into buf (a fresh slice of the size read when
// buf is nil). It returns io.EOF after the last piece.
func (b *Body) next(buf []byte, ro bool) ([]byte, error) {
	if b == nil {
		return nil, io.EOF
	}
	if b.closed.Load() {
		return nil, ErrBodyClosed
	}
	b.started.Store(true)
	if b.src != nil {
		return b.srcNext(ro)
	}
	if b.r == nil {
		return nil, io.EOF
	}
	if buf != nil {
		n, err := readChunk(b.r, buf)
		return buf[:n], err
	}
	sp := scratch.Get().(*[]byte)
	n, err := readChunk(b.r, *sp)
	if n > len(*sp)/2 {
		return (*sp)[:n], err // the caller keeps the buffer
	}
	var c []byte
	if n > 0 {
		c = bytes.Clone((*sp)[:n])
	}
	scratch.Put(sp)
	return c, err
}

// srcNext returns the rest of the current chunk or the source's next one:
// owned by the caller, or read-only (maybe shared) when ro.
func (b *Body) srcNext(ro bool) ([]byte, error) {
	if len(b.cur) > 0 {
		c, shared := b.cur, b.shared
		b.cur, b.shared = nil, false
		if shared && !ro {
			c = bytes.Clone(c)
		}
		return c, nil
	}
	if ro {
		if ss, ok := b.src.(SharedSource); ok {
			return ss.SharedChunk()
		}
	}
	return b.src.NextChunk()
}

func (b *Body) isShared() bool {
	_, ok := b.src.(SharedSource)
	return ok
}

// readChunk reads what r has for buf, at least one byte unless it fails: a
// slow source's bytes go on as they come, never held back to fill a chunk.
// It returns io.EOF only when it read nothing.
func readChunk(r io.Reader, buf []byte) (int, error) {
	for empty := 0; ; empty++ {
		n, err := r.Read(buf)
		if n > 0 {
			if err == io.EOF {
				err = nil // the next read reports it
			}
			return n, err
		}
		if err != nil {
			return 0, err
		}
		if empty == 100 {
			return 0, io.ErrNoProgress
		}
	}
}

// Close releases the body's source. Reading a closed Body returns
// [ErrBodyClosed]. Closing a stream that storage is saving before its end
// aborts the store. Close is idempotent and safe to call concurrently with a
// Read in another goroutine.
func (b *Body) Close() error {
	if b == nil {
		return nil
	}
	b.closeOnce.Do(func() {
		b.closed.Store(true)
		if b.closer != nil {
			b.closeErr = b.closer.Close()
		}
	})
	return b.closeErr
}

// BufferedSource is implemented by chunk sources that may already hold the
// rest of their body in memory. Buffered returns those chunks (handing them
// over: the source is then at its end) and true, or nil and false when it
// would have to do I/O. Chunks uses it to skip its goroutine.
type BufferedSource interface {
	ChunkSource
	Buffered() ([][]byte, bool)
}

// SharedSource is implemented by chunk sources whose chunks are shared, such
// as a stored body held in memory by every reader of it, or whose buffers
// are reused. SharedChunk returns the next chunk read-only, without a copy:
// the caller must not modify it, and must be done with it before it calls
// SharedChunk or NextChunk again (the source may then reuse it). A Body
// uses it only where that holds: Read copies out of the chunk before asking
// for the next, and WriteTo hands it to an io.Writer, which must neither
// modify nor retain what it is given. Chunks, All and NextChunk hand out
// copies.
type SharedSource interface {
	ChunkSource
	SharedChunk() ([]byte, error)
}

func (s *sliceSource) Buffered() ([][]byte, bool) {
	p := s.p
	s.p = nil
	if len(p) == 0 {
		return nil, true
	}
	return [][]byte{p}, true
}

// Chunks streams the body on a channel and closes the body at its end.
//
// When the whole rest of the body is already in memory (a small body read
// back from storage, a BytesBody), the channel comes back filled and closed,
// and no goroutine is started.
//
// One goroutine reads the body and sends its chunks in order; it stays at most
// one chunk ahead of the consumer, so the consumer's pace drives the reading.
// The channel is closed after the last chunk. A read error is delivered
// in-band as a final Chunk with Err set; so is ctx's error when ctx ends first.
// Either way the channel is then closed, so a consumer that sees the channel
// close without an error chunk has the whole body.
//
// The goroutine ends when the body ends, fails, or ctx is done; a consumer
// that stops reading early must cancel ctx (or Close the body) to release it.
//
// A nil ctx is an error, not a panic: the channel comes back holding one
// Chunk whose Err wraps [ErrInvalid], and the body is closed.
func (b *Body) Chunks(ctx context.Context) <-chan Chunk {
	if ctx == nil {
		ch := make(chan Chunk, 1)
		ch <- Chunk{Err: fmt.Errorf("hishel: Body.Chunks: %w", CheckContext(ctx))}
		close(ch)
		_ = b.Close()
		return ch
	}
	if ch, ok := b.buffered(ctx); ok {
		return ch
	}
	ch := make(chan Chunk, 1)
	go func() {
		defer close(ch)
		defer b.Close()
		// When ctx ends, close the body: that ends a read blocked in the
		// source (a producer that went quiet, a slow origin).
		stop := context.AfterFunc(ctx, func() { _ = b.Close() })
		defer stop()
		for {
			if err := ctx.Err(); err != nil {
				failChunks(ch, err)
				return
			}
			c, err := b.next(nil, false)
			if len(c) > 0 {
				select {
				case ch <- Chunk{Data: c}:
				case <-ctx.Done():
					failChunks(ch, ctx.Err())
					return
				}
			}
			if err == io.EOF {
				return
			}
			if err != nil {
				if cerr := ctx.Err(); cerr != nil {
					err = cerr // the body was closed because ctx ended
				}
				failChunks(ch, err)
				return
			}
		}
	}()
	return ch
}

// buffered returns a filled, closed channel of the body's remaining chunks
// if they are all in memory.
func (b *Body) buffered(ctx context.Context) (chan Chunk, bool) {
	if b == nil {
		ch := make(chan Chunk)
		close(ch)
		return ch, true
	}
	bs, ok := b.src.(BufferedSource)
	if !ok || b.closed.Load() || ctx.Err() != nil {
		return nil, false
	}
	rest, ok := bs.Buffered()
	if !ok {
		return nil, false
	}
	b.started.Store(true)
	n := len(rest)
	if len(b.cur) > 0 {
		n++
	}
	ch := make(chan Chunk, n)
	if len(b.cur) > 0 {
		c := b.cur
		if b.shared {
			c = bytes.Clone(c) // the source may reuse it
		}
		ch <- Chunk{Data: c}
		b.cur, b.shared = nil, false
	}
	for _, c := range rest {
		if len(c) > 0 {
			ch <- Chunk{Data: c}
		}
	}
	close(ch)
	_ = b.Close()
	return ch, true
}

// failChunks replaces any unread chunk in ch (whose only sender is the
// caller) with an error chunk, so that the consumer sees err before the end.
func failChunks(ch chan Chunk, err error) {
	select {
	case <-ch:
	default:
	}
	ch <- Chunk{Err: err}
}

// All returns an iterator over the body's chunks, and closes the body when
// the iteration ends. It yields (chunk, nil) for each chunk and, if reading
// fails, (nil, err) once at the end. A chunk is valid only until the next
// iteration step.
func (b *Body) All() iter.Seq2[[]byte, error] {
	return func(yield func([]byte, error) bool) {
		defer b.Close()
		var buf []byte
		if b != nil && b.r != nil {
			buf = make([]byte, DefaultChunkSize)
		}
		for {
			c, err := b.next(buf, false)
			if len(c) > 0 && !yield(c, nil) {
				return
			}
			if err == io.EOF {
				return
			}
			if err != nil {
				yield(nil, err)
				return
			}
		}
	}
}

// ReadAll reads the whole body into memory and closes it. It is for callers
// that want the body in memory; storage and the HTTP integration stream.
func ReadAll(b *Body) ([]byte, error) {
	var buf bytes.Buffer
	_, err := b.WriteTo(&buf)
	cerr := b.Close()
	if err != nil {
		return buf.Bytes(), err
	}
	return buf.Bytes(), cerr
}
