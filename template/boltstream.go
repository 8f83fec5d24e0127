package template

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"os"
	"sync"
	"syscall"

	"github.com/hishel-go/hishel/backend"
	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/model"
)

// boltSink stores a body's chunks in bbolt: every flushBytes they go to
// the writer lazily (nothing is visible yet); at the end of the body the
// last chunks, the completion marker and the pair's new state are committed
// durably.
type boltSink struct {
	s     *Bolt
	id    model.PairID
	nonce uint64
	kind  bolt.Kind
	seq   uint64 // seq of the next chunk

	decided bool     // whether the body goes to a file is decided (first Store)
	file    *os.File // the body's file while it is written (FileBodyMin)
	name    string   // its name, once created
	written int64    // bytes written to the file
	flushed int64    // bytes whose writeback started (startWriteback)

	// The keys and values of the chunks written to the file and not yet
	// sent to the writer, and their bytes: the stream hands a file body
	// over a chunk at a time (NextFlush), and the writer gets their keys
	// once per flushBytes, as it gets a body kept in the database.
	keys, vals [][]byte
	gathered   int64
}

func (s *Bolt) newSaver(ctx context.Context, rec *bolt.Record, kind bolt.Kind, src *model.Body) *backend.Stream {
	sk := &boltSink{s: s, id: rec.ID, nonce: rec.Nonce, kind: kind}
	// The first hand-over decides where the body goes: it comes once
	// FileBodyMin bytes are pending, if that is less than flushBytes, so
	// that a body bound for a file is not held until then. Whether a body
	// goes to a file is the same either way: one that has not ended by
	// the first hand-over has FileBodyMin bytes or more, or more than
	// flushBytes.
	flushAt := flushBytes
	if m := s.bodies.min; m > 0 && m < int64(flushAt) {
		flushAt = int(m)
	}
	return backend.NewStream(ctx, rec.ID, src, sk, s.pol.ChunkSize, flushAt)
}

// NextFlush implements backend.Pacer: a body kept in a file is handed
// over a chunk at a time, each written to the file at once, so that the
// stream holds one chunk, in a buffer it gets back at once (see
// writeFile); one kept in the database every flushBytes.
func (k *boltSink) NextFlush() int {
	if k.name != "" {
		return 1
	}
	return flushBytes
}

func (k *boltSink) Check() error {
	if k.s.closed.Load() {
		return model.ErrClosed
	}
	return nil
}

// MakeChunk implements backend.ChunkMaker: chunk buffers are reused once
// the transaction that stored them ends (see wtx.release).
func (k *boltSink) MakeChunk(size int) []byte { return k.s.w.makeChunk(size) }

func (k *boltSink) Store(ctx context.Context, chunks [][]byte, size int64, final bool) error {
	if !k.decided {
		// A body that did not end within the first hand-over, or ended
		// at FileBodyMin or more, goes to a file of its own.
		k.decided = true
		if b := k.s.bodies; b.min > 0 && (!final || size >= b.min) {
			f, name, err := b.create(k.nonce, k.kind)
			if err != nil {
				return err
			}
			k.file, k.name = f, name
		}
	}
	inFile := k.name != ""
	kind := k.kind
	if inFile {
		kind |= bolt.KindFile
	}
	first := k.seq
	k.seq += uint64(len(chunks))
	seqs := k.seq
	ended := bolt.UnixNano(k.s.now()) // the pair's completion time, if this completes it
	// The chunks' keys carry their checksums: computed here, in the
	// stream's goroutine, not on the writer's, which all streams share.
	keys := make([][]byte, len(chunks))
	var n int64
	for i, c := range chunks {
		keys[i] = bolt.ChunkKey(k.nonce, kind, first+uint64(i), c)
		n += int64(len(c))
	}
	vals := chunks
	if inFile {
		// Written here too, by the stream's goroutine, once: the writer
		// commits lengths and checksums alone.
		var err error
		if vals, err = k.writeFile(chunks, final); err != nil {
			return err
		}
		if final {
			defer k.s.bodies.done(k.name)
		}
		k.keys = append(k.keys, keys...)
		k.vals = append(k.vals, vals...)
		k.gathered += n
		if !final && k.gathered < flushBytes {
			return nil
		}
		keys, vals, n = k.keys, k.vals, k.gathered
		k.keys, k.vals, k.gathered = nil, nil, 0
	}
	op := func(t *wtx) error {
		if !inFile {
			t.release = append(t.release, chunks...)
		}
		rec, err := t.record(k.id)
		if err != nil {
			return err
		}
		if rec == nil || rec.Nonce != k.nonce || rec.Has(bolt.FlagDeleted) {
			return fmt.Errorf("hishel: pair %s was removed while its body was stored: %w", k.id, model.ErrNotFound)
		}
		for i, v := range vals {
			t.put(t.chunks, keys[i], v)
		}
		t.addStats(0, 0, 0, n)
		if !final {
			t.streaming = true
			return nil
		}
		if seqs > 0 { // a body that ended empty has no marker (see package bolt)
			m := bolt.EncodeMarker(bolt.Marker{Size: size, Chunks: seqs})
			t.put(t.chunks, bolt.ChunkKey(k.nonce, kind, bolt.MarkerSeq, m), m)
		}
		if k.kind == bolt.KindRequest {
			rec.Flags |= bolt.FlagRequestDone
			rec.ReqSize = size
		} else {
			rec.Flags |= bolt.FlagResponseDone
			rec.RespSize = size
		}
		k.s.settle(t, rec, ended)
		return nil
	}
	if final && !k.s.durableEnds() && ctx.Err() == nil {
		if h, ok := k.s.ending(k.id); ok {
			// NoSync, and a pair this Bolt created and nothing removed yet:
			// the end needs neither its commit nor the writer. Reads of its
			// key or ID commit first (syncFor); the count taken by ending
			// ends with the commit that carries this op, whatever its fate.
			return k.s.w.postFunc(ctx, func(t *wtx) error {
				defer func() { t.completedKeys = append(t.completedKeys, h) }()
				return op(t)
			}, func() { k.s.unsync(h) })
		}
	}
	return k.s.w.do(ctx, final && k.s.durableEnds(), op)
}

// abort reclaims what was stored, durably, unless the storage is closed.
func (k *boltSink) Abort() {
	if !k.s.closed.Load() {
		_ = k.s.w.do(context.Background(), true, func(t *wtx) error { return purgeID(t, k.id, k.nonce) })
	}
	k.abortFile()
}

// storedBody streams a stored body back, one read transaction per group of
// chunks; it is a model.ChunkSource. Each transaction checks that the pair
// still exists with the same nonce and that chunks follow each other up to
// the completion marker, whose size and count must match, each with its
// checksum: a removed pair is an error (model.ErrRemoved), a chunk that
// fails its checksum or is missing another (model.ErrCorrupt, and the next
// sweep removes the pair), never a short or altered body.
type storedBody struct {
	s     *Bolt
	id    model.PairID
	nonce uint64
	kind  bolt.Kind

	mu     sync.Mutex
	next   uint64    // seq of the next chunk to load
	queue  [][]byte  // loaded, not yet handed out (from chunkPool)
	first  [1][]byte // queue's first backing array: most bodies are one chunk
	lent   []byte    // the chunk SharedChunk handed out last
	loaded int64     // bytes loaded so far
	ended  bool      // the marker has been checked
	closed bool
	f      *os.File // the body's file, once read (kind has bolt.KindFile)
	pin    *readPin // while the body is read (see readPin); nil once ended

	// span is the section of the body's file that a load for WriteTo
	// found in chunks checked before, after those queued: WriteTo sends
	// it from the file. Left by a WriteTo that failed, it is loaded again
	// as chunks by the next read (unplan).
	span fileSpan
}

// sendAhead is the largest section of a body's file that one load for
// WriteTo plans (chunks read into memory stay bounded by readAhead): a
// section goes to the writer in one ReadFrom, and larger ones cost fewer
// (verified 1 GiB hits through the proxy, six each in turns at load
// average 9-12: a median 0.25 s of the proxy's CPU time each with 1 MiB
// sections, 0.39 s with 256 KiB). A removal is seen, and the pin
// refreshed, once per load.
const sendAhead = 1 << 20

// fileSpan is a section of a body's file: the chunks from seq on, n bytes
// from off.
type fileSpan struct {
	seq    uint64
	off, n int64
}

// NextChunk implements model.ChunkSource: the caller owns the chunk.
func (r *storedBody) NextChunk() ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reclaim()
	return r.nextChunk()
}

// SharedChunk implements model.SharedSource: the chunk is the body's, and
// goes back to chunkPool at the next call, so that a body read with Read
// or WriteTo (the Transport's hits) reuses a few buffers however long it
// is, instead of allocating all of it.
func (r *storedBody) SharedChunk() ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reclaim()
	c, err := r.nextChunk()
	r.lent = c
	return c, err
}

// reclaim returns the chunk last lent to chunkPool: per the SharedSource
// contract its reader is done with it. The caller holds r.mu.
func (r *storedBody) reclaim() {
	if r.lent != nil {
		putChunk(r.lent)
		r.lent = nil
	}
}

// nextChunk pops the next chunk, loading more when none is queued. The
// caller holds r.mu.
func (r *storedBody) nextChunk() ([]byte, error) {
	c, _, err := r.nextPiece(false)
	return c, err
}

// nextPiece pops the next chunk, loading more when none is queued. With
// direct (WriteTo's), what comes next may instead be a section of the
// body's file whose chunks were checked before (sp.n > 0), which the
// caller sends from r.f. The caller holds r.mu.
func (r *storedBody) nextPiece(direct bool) (c []byte, sp fileSpan, err error) {
	for {
		if r.closed {
			return nil, fileSpan{}, model.ErrBodyClosed
		}
		if len(r.queue) > 0 {
			c := r.queue[0]
			r.queue[0] = nil
			r.queue = r.queue[1:]
			return c, fileSpan{}, nil
		}
		if r.span.n > 0 {
			if direct {
				sp, r.span = r.span, fileSpan{}
				return nil, sp, nil
			}
			r.unplan()
		}
		if r.ended {
			r.closeFile()
			r.unpin()
			return nil, fileSpan{}, io.EOF
		}
		if r.pin != nil {
			r.pin.at.Store(r.s.now().UnixNano())
		}
		err := r.s.view(func(t *readTx) error {
			return r.load(t, true, readAhead, direct)
		})
		if errors.Is(err, errBodyFileGone) {
			err = r.fileGone()
		}
		if err != nil {
			r.unpin()
			return nil, fileSpan{}, err
		}
		if r.ended && r.span.n == 0 {
			// A span still to send needs the file, and a span given up
			// (unplan) the pin.
			r.closeFile()
			r.unpin()
		}
	}
}

// unplan gives up r.span: its chunks are loaded again, as chunks read
// from the file. The caller holds r.mu.
func (r *storedBody) unplan() {
	r.next, r.loaded, r.ended = r.span.seq, r.span.off, false
	r.span = fileSpan{}
}

// WriteTo implements io.WriterTo (model.Body.WriteTo hands the rest of the
// body to it): the chunks go to w as they are loaded, each checked as Read
// checks it, and with the same errors (model.ErrRemoved, ErrCorrupt,
// ErrBodyClosed after Close). When w sends files without copying them
// (fileSender: net/http's ResponseWriter, a TCP connection), chunks of a
// body's file that were checked before (see verifiedChunks; never with
// VerifyEveryRead) go to w's ReadFrom as a section of the file, which the
// kernel sends from its page cache (sendfile); chunks not checked yet are
// read and checked first, so that no byte that failed or missed its check
// reaches w. A Close from another goroutine during such a send leaves the
// file open until the send returns, as it leaves a chunk being written.
func (r *storedBody) WriteTo(w io.Writer) (int64, error) {
	rf := fileSender(w)
	var total int64
	for {
		r.mu.Lock()
		r.reclaim()
		c, sp, err := r.nextPiece(rf != nil)
		var f *os.File
		if sp.n > 0 {
			f, r.f = r.f, nil // the send's until it returns: Close leaves it
		}
		r.mu.Unlock()
		if c != nil {
			n, werr := w.Write(c)
			putChunk(c) // w does not keep c
			total += int64(n)
			if werr != nil {
				return total, werr
			}
		}
		if sp.n > 0 {
			n, serr := r.send(rf, f, sp)
			total += n
			r.mu.Lock()
			if r.closed {
				_ = f.Close()
			} else {
				r.f = f
			}
			r.mu.Unlock()
			if serr != nil {
				return total, serr
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

// send writes the section sp of the body's file f to rf, with rf's
// ReadFrom. A file that ends before the section is model.ErrCorrupt.
func (r *storedBody) send(rf io.ReaderFrom, f *os.File, sp fileSpan) (int64, error) {
	if _, err := f.Seek(sp.off, io.SeekStart); err != nil {
		return 0, fmt.Errorf("hishel: body of pair %s: %w", r.id, err)
	}
	n, err := rf.ReadFrom(&io.LimitedReader{R: f, N: sp.n})
	r.s.verified.sent.Add(n)
	if err == nil && n < sp.n {
		r.s.suspect(r.id)
		err = fmt.Errorf("hishel: body of pair %s: body file ends at %d, before the %d bytes of chunks %d on at %d: %w",
			r.id, sp.off+n, sp.n, sp.seq, sp.off, model.ErrCorrupt)
	}
	return n, err
}

// fileSender returns w's ReadFrom when it sends a file given as an
// *io.LimitedReader over an *os.File without copying it through memory:
// net/http's ResponseWriter (HTTP/1; its ReadFrom sends all but the first
// 512 bytes, which it sniffs, with its connection's), or a connection or
// file (a syscall.Conn: sendfile, splice or copy_file_range). Other
// writers (a bytes.Buffer, io.Discard) read a file in small pieces: they
// get chunks.
func fileSender(w io.Writer) io.ReaderFrom {
	rf, ok := w.(io.ReaderFrom)
	if !ok {
		return nil
	}
	switch w.(type) {
	case interface{ WriteHeader(statusCode int) }, syscall.Conn:
		return rf
	}
	return nil
}

// Buffered implements model.BufferedSource: when the whole body was read
// with the pair (small bodies are), it needs no more I/O.
func (r *storedBody) Buffered() ([][]byte, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || !r.ended || r.span.n > 0 {
		return nil, false
	}
	rest := r.queue
	r.queue = nil
	return rest, true
}

// load reads chunks from r.next on, up to about limit bytes, or to the
// marker, after checking that the pair is still the one r reads (unless
// check is false: the caller read its record in t). With direct, chunks
// of the body's file that were checked before are not read but added to
// r.span, up to sendAhead bytes, after the chunks queued; a chunk not
// checked yet ends the load when a span is pending, so that the span goes
// first. The caller holds r.mu, or owns r exclusively.
func (r *storedBody) load(t *readTx, check bool, limit int, direct bool) error {
	if check && !r.samePair(t) {
		return fmt.Errorf("hishel: body of pair %s: %w", r.id, model.ErrRemoved)
	}
	corrupt := func(format string, args ...any) error {
		r.s.suspect(r.id)
		return fmt.Errorf("hishel: body of pair %s: %s: %w", r.id, fmt.Sprintf(format, args...), model.ErrCorrupt)
	}
	c := t.chunksC
	n := 0
	k, val := c.Seek(bolt.ChunkSeek(r.nonce, r.kind, r.next))
	if r.next == 0 && r.kind&bolt.KindFile == 0 && !isChunkOf(k, r.nonce, r.kind) {
		// None in the database: the body may be kept in a file.
		if fk, fv := c.Seek(bolt.ChunkSeek(r.nonce, r.kind|bolt.KindFile, 0)); isChunkOf(fk, r.nonce, r.kind|bolt.KindFile) {
			r.kind |= bolt.KindFile
			k, val = fk, fv
		}
	}
	if r.kind&bolt.KindFile != 0 && !check {
		return nil // GetPairs reads no body file: the first read does
	}
	for ; k != nil; k, val = c.Next() {
		nonce, kind, seq, err := bolt.ParseChunkKey(k)
		if err != nil {
			return corrupt("%v", err)
		}
		if nonce != r.nonce || kind != r.kind {
			break
		}
		if kind&bolt.KindFile != 0 && seq != bolt.MarkerSeq {
			if seq != r.next {
				return corrupt("chunk %d missing", r.next)
			}
			if direct {
				size, err := bolt.DecodeFileChunk(val, backend.MaxChunkSize)
				if err != nil {
					return corrupt("%v", err)
				}
				switch {
				case r.s.verified.sawFile(k, size, r.s.opts.VerifyEveryRead):
					if r.span.n == 0 {
						if err := r.openFile(); err != nil {
							return err
						}
						r.span = fileSpan{seq: r.next, off: r.loaded}
					}
					r.span.n += int64(size)
					r.next++
					r.loaded += int64(size)
					if r.span.n >= sendAhead {
						return nil
					}
					continue
				case r.span.n > 0:
					return nil // read and checked after the span is sent
				}
			}
			b, err := r.readFile(val)
			switch {
			case errors.Is(err, model.ErrCorrupt):
				return corrupt("%v", err)
			case err != nil:
				return err
			}
			if err := r.s.verified.checkFile(k, b, r.s.opts.VerifyEveryRead); err != nil {
				putChunk(b)
				return corrupt("%v", err)
			}
			if r.queue == nil {
				r.queue = r.first[:0]
			}
			r.queue = append(r.queue, b)
			r.next++
			r.loaded += int64(len(b))
			if n += len(b); n >= limit {
				return nil
			}
			continue
		}
		if err := r.s.verified.check(k, val, r.s.opts.VerifyEveryRead); err != nil {
			return corrupt("%v", err)
		}
		if seq == bolt.MarkerSeq {
			m, err := bolt.DecodeMarker(val)
			if err != nil {
				return corrupt("%v", err)
			}
			if m.Chunks != r.next || m.Size != r.loaded {
				return corrupt("%d bytes in %d chunks, marker says %d in %d", r.loaded, r.next, m.Size, m.Chunks)
			}
			r.ended = true
			return nil
		}
		if seq != r.next {
			return corrupt("chunk %d missing", r.next)
		}
		if r.queue == nil {
			r.queue = r.first[:0]
		}
		r.queue = append(r.queue, getChunk(val))
		r.next++
		r.loaded += int64(len(val))
		if n += len(val); n >= limit {
			return nil
		}
	}
	return corrupt("chunk %d missing", r.next)
}

// Close drops what the body holds; later reads fail with model.ErrBodyClosed.
//
// A chunk lent by SharedChunk is left to the garbage collector: a Read in
// another goroutine may still be copying out of it.
func (r *storedBody) Close() error {
	r.mu.Lock()
	r.closed = true
	for _, c := range r.queue {
		putChunk(c)
	}
	r.queue, r.lent, r.span = nil, nil, fileSpan{}
	r.closeFile()
	r.unpin()
	r.mu.Unlock()
	return nil
}

// unpin ends r's pin, if it holds one. The caller holds r.mu, or owns r
// exclusively.
func (r *storedBody) unpin() {
	if r.pin != nil {
		r.s.reading.unpin(r.id, r.pin)
		r.pin = nil
	}
}

// samePair reports whether the pair r reads is still there in t, with the
// same nonce.
func (r *storedBody) samePair(t *readTx) bool {
	v := t.pair(r.id)
	return len(v) >= 1+bolt.IDLen+8 && binary.BigEndian.Uint64(v[1+bolt.IDLen:]) == r.nonce
}

// isChunkOf reports whether chunk key k belongs to the body of kind of the
// pair with nonce.
func isChunkOf(k []byte, nonce uint64, kind bolt.Kind) bool {
	n, knd, _, err := bolt.ParseChunkKey(k)
	return k != nil && err == nil && n == nonce && knd == kind
}

// chunkPool holds chunk buffers by size class: class i holds buffers of
// capacity minPooled<<i, up to the largest chunk size (16 MiB). Chunks
// under minPooled are allocated at their size.
var chunkPool [16]sync.Pool

const minPooled = 512

// getChunk returns a copy of v, in a pooled buffer when v is large enough.
func getChunk(v []byte) []byte {
	c := chunkBuf(len(v))
	copy(c, v)
	return c
}

// chunkBuf returns a buffer of n bytes, pooled when n is large enough.
func chunkBuf(n int) []byte {
	if n < minPooled {
		return make([]byte, n)
	}
	i := bits.Len(uint(n-1)) - bits.Len(uint(minPooled-1))
	if i >= len(chunkPool) {
		return make([]byte, n)
	}
	if p, ok := chunkPool[i].Get().(*[]byte); ok {
		return (*p)[:n]
	}
	return make([]byte, n, minPooled<<i)
}

// putChunk gives c, which nobody uses any more, back to chunkPool.
func putChunk(c []byte) {
	if cap(c) < minPooled || cap(c)&(cap(c)-1) != 0 {
		return // not a pooled size
	}
	i := bits.Len(uint(cap(c))) - bits.Len(uint(minPooled))
	if i < 0 || i >= len(chunkPool) {
		return
	}
	chunkPool[i].Put(&c)
}
