package template

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/hishel-go/hishel/backend"
	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/model"
)

// s3Sink stores a body's chunks in segment objects, one per flush of the
// stream (about a megabyte), and at the end of the body writes its marker
// (segments, chunks, size) into the pair's head, with a conditional write
// that also completes the pair if its other body is stored.
type s3Sink struct {
	s      *S3
	id     model.PairID
	nonce  uint64
	kind   bolt.Kind
	segs   int
	chunks int
}

func (s *S3) newSaver(ctx context.Context, rec *bolt.Record, kind bolt.Kind, src *model.Body) *backend.Stream {
	sk := &s3Sink{s: s, id: rec.ID, nonce: rec.Nonce, kind: kind}
	return backend.NewStream(ctx, rec.ID, src, sk, s.pol.ChunkSize, flushBytes)
}

func (k *s3Sink) Check() error {
	if k.s.closed.Load() {
		return model.ErrClosed
	}
	return nil
}

func (k *s3Sink) removed() error {
	return fmt.Errorf("hishel: pair %s was removed while its body was stored: %w", k.id, model.ErrNotFound)
}

func (k *s3Sink) Store(ctx context.Context, chunks [][]byte, size int64, final bool) error {
	s := k.s
	if !final {
		// The pair must still be this stream's: a removed one stops here.
		h, _, err := s.readHead(ctx, k.id)
		if errors.Is(err, errNoObject) || err == nil && (h.rec.Nonce != k.nonce || h.rec.Has(bolt.FlagDeleted)) {
			return k.removed()
		}
		if err != nil {
			return err
		}
	}
	if len(chunks) > 0 {
		f := newFrames(chunks)
		if _, err := s.put(ctx, s.n.segment(k.id, k.nonce, k.kind, k.segs), f, f.size, "", false); err != nil {
			return s.opErr(err)
		}
		k.segs++
		k.chunks += len(chunks)
	}
	if !final {
		return nil
	}
	_, next, _, err := s.change(ctx, k.id, false, func(h *head) error {
		if h == nil || h.rec.Nonce != k.nonce || h.rec.Has(bolt.FlagDeleted) {
			return k.removed()
		}
		r := h.rec
		if k.kind == bolt.KindRequest {
			r.Flags |= bolt.FlagRequestDone
			r.ReqSize = size
		} else {
			r.Flags |= bolt.FlagResponseDone
			r.RespSize = size
		}
		h.segs[k.kind], h.chunks[k.kind] = uint64(k.segs), uint64(k.chunks)
		backend.Settle(r, s.now())
		return nil
	})
	if err != nil {
		return s.opErr(err)
	}
	if next.rec.Has(bolt.FlagComplete) {
		return s.opErr(s.completed(ctx, next.rec))
	}
	return nil
}

// Abort removes the pair and what was stored of it, unless the storage is
// closed (then a sweep removes it, as an incomplete pair) or the pair is no
// longer this stream's (then only this stream's segments go).
func (k *s3Sink) Abort() {
	s := k.s
	if s.closed.Load() {
		return
	}
	ctx := context.Background()
	_, _ = s.purgeIf(ctx, k.id, func(h *head) bool { return h.rec.Nonce == k.nonce })
	var segs []string
	_ = s.list(ctx, s.n.segments(k.id, k.nonce), 0, func(o object) (bool, error) { segs = append(segs, o.key); return true, nil })
	s.delObjects(ctx, segs)
}

// body returns the reader of one of h's bodies. An empty body needs no
// reader: it ends at once, wherever the pair has gone.
func (s *S3) body(h *head, kind bolt.Kind) *model.Body {
	size := h.rec.ReqSize
	if kind == bolt.KindResponse {
		size = h.rec.RespSize
	}
	if size == 0 {
		return model.NewBody(nil)
	}
	b := &storedBody{s: s, id: h.rec.ID, nonce: h.rec.Nonce, kind: kind, size: size,
		segs: int(h.segs[kind]), chunks: h.chunks[kind], total: -1}
	return model.NewChunkBody(b, b)
}

// storedBody streams a stored body back: its segments in order, each read
// by ranged GETs of readAhead bytes, every chunk checked against its
// CRC-32C, and at the end what was read against the body's marker. A
// segment that is gone means the pair was removed (model.ErrRemoved) if its
// head is gone or replaced too, and otherwise that the body is damaged
// (model.ErrCorrupt, and the pair is reclaimed by the next sweep): never a
// short or altered body.
type storedBody struct {
	s      *S3
	id     model.PairID
	nonce  uint64
	kind   bolt.Kind
	size   int64
	segs   int
	chunks uint64

	mu     sync.Mutex
	seg    int    // the segment being read
	total  int64  // its length, -1 until known
	pos    int64  // the read position in it
	buf    []byte // its bytes from bufAt on
	bufAt  int64
	read   uint64 // chunks handed out
	loaded int64  // bytes handed out
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
		case r.seg >= r.segs:
			if r.read != r.chunks || r.loaded != r.size {
				return nil, r.corrupt(fmt.Sprintf("%d chunks of %d bytes read, the marker says %d of %d", r.read, r.loaded, r.chunks, r.size))
			}
			return nil, io.EOF
		case r.total >= 0 && r.pos == r.total:
			r.seg, r.total, r.pos, r.buf, r.bufAt = r.seg+1, -1, 0, nil, 0
			continue
		}
		if err := r.ensure(frameHeader); err != nil {
			return nil, err
		}
		at := r.pos - r.bufAt
		n := int64(binary.BigEndian.Uint32(r.buf[at:]))
		sum := binary.BigEndian.Uint32(r.buf[at+4:])
		if err := r.ensure(frameHeader + n); err != nil {
			return nil, err
		}
		at = r.pos - r.bufAt
		c := bytes.Clone(r.buf[at+frameHeader : at+frameHeader+n])
		if backend.Checksum(c) != sum {
			return nil, r.corrupt(fmt.Sprintf("segment %d: chunk checksum mismatch", r.seg))
		}
		r.pos += frameHeader + n
		r.read++
		r.loaded += n
		return c, nil
	}
}

// ensure has the n bytes from the read position on in r.buf, fetching
// them (and up to readAhead bytes) if they are not. The caller holds r.mu.
func (r *storedBody) ensure(n int64) error {
	if r.pos+n <= r.bufAt+int64(len(r.buf)) {
		return nil
	}
	if r.total >= 0 && r.pos+n > r.total {
		return r.corrupt(fmt.Sprintf("segment %d ends inside a chunk", r.seg))
	}
	r.buf = append([]byte(nil), r.buf[r.pos-r.bufAt:]...)
	r.bufAt = r.pos
	from := r.bufAt + int64(len(r.buf))
	to := max(r.pos+n, from+readAhead)
	if r.total >= 0 {
		to = min(to, r.total)
	}
	key := r.s.n.segment(r.id, r.nonce, r.kind, r.seg)
	b, total, err := r.s.getRange(context.Background(), key, from, to)
	if errors.Is(err, errNoObject) {
		return r.gone()
	}
	if err != nil {
		if r.s.closed.Load() {
			return model.ErrClosed
		}
		if strings.Contains(err.Error(), "InvalidRange") {
			return r.corrupt(fmt.Sprintf("segment %d is shorter than its chunks", r.seg))
		}
		return err
	}
	r.total = total
	r.buf = append(r.buf, b...)
	if r.pos+n > r.bufAt+int64(len(r.buf)) {
		return r.corrupt(fmt.Sprintf("segment %d ends inside a chunk", r.seg))
	}
	return nil
}

// gone tells a removed pair from a damaged one, once a segment is missing.
func (r *storedBody) gone() error {
	h, _, err := r.s.readHead(context.Background(), r.id)
	switch {
	case errors.Is(err, errNoObject) || err == nil && (h.rec.Nonce != r.nonce || h.rec.Has(bolt.FlagDeleted)):
		// Gone, replaced, or removed and being purged.
		return fmt.Errorf("hishel: body of pair %s: %w", r.id, model.ErrRemoved)
	case err != nil:
		return err
	}
	return r.corrupt(fmt.Sprintf("segment %d missing", r.seg))
}

func (r *storedBody) corrupt(what string) error {
	r.s.noteBad(r.id)
	r.buf = nil
	return fmt.Errorf("hishel: body of pair %s: %s: %w", r.id, what, model.ErrCorrupt)
}

// Close drops what the body holds; later reads fail with model.ErrBodyClosed.
func (r *storedBody) Close() error {
	r.mu.Lock()
	r.closed = true
	r.buf = nil
	r.mu.Unlock()
	return nil
}
