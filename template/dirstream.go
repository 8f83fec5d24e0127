package template

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"

	"github.com/hishel-go/hishel/backend"
	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/model"
)

// A body file is a sequence of frames, [length u32][CRC-32C u32][data],
// ended by the completion marker: [0xFFFFFFFF][size u64][chunks u64]
// [CRC-32C u32 of size and chunks].
const (
	frameHead   = 8
	trailerMark = 0xFFFFFFFF
	trailerLen  = 4 + 8 + 8 + 4
	dirReadBack = 256 << 10 // a reader checks that its pair is still there every this many bytes
)

// dirSink writes a body to a file in tmp/ as it streams; at the end of the
// body the file gets its completion marker, is renamed into bodies/, and
// the pair's record says the body is stored.
type dirSink struct {
	d     *Dir
	id    model.PairID
	nonce uint64
	kind  bolt.Kind
	f     *os.File
	w     *bufio.Writer
	n     uint64 // chunks written
}

func (d *Dir) newSaver(ctx context.Context, rec *bolt.Record, kind bolt.Kind, src *model.Body) *backend.Stream {
	sk := &dirSink{d: d, id: rec.ID, nonce: rec.Nonce, kind: kind}
	return backend.NewStream(ctx, rec.ID, src, sk, d.pol.ChunkSize, 1<<20)
}

func (k *dirSink) Check() error {
	if k.d.closed.Load() {
		return model.ErrClosed
	}
	return nil
}

func (k *dirSink) Store(ctx context.Context, chunks [][]byte, size int64, final bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if k.f == nil {
		f, err := os.CreateTemp(k.d.path("tmp"), fmt.Sprintf("%s-%016x-%d-*", idName(k.id), k.nonce, k.kind))
		if err != nil {
			return err
		}
		k.f, k.w = f, bufio.NewWriterSize(f, 64<<10)
	}
	var head [frameHead]byte
	for _, c := range chunks {
		binary.BigEndian.PutUint32(head[0:], uint32(len(c)))
		binary.BigEndian.PutUint32(head[4:], backend.Checksum(c))
		if _, err := k.w.Write(head[:]); err != nil {
			return err
		}
		if _, err := k.w.Write(c); err != nil {
			return err
		}
		k.n++
	}
	if !final {
		return nil
	}
	var tr [trailerLen]byte
	binary.BigEndian.PutUint32(tr[0:], trailerMark)
	binary.BigEndian.PutUint64(tr[4:], uint64(size))
	binary.BigEndian.PutUint64(tr[12:], k.n)
	binary.BigEndian.PutUint32(tr[20:], backend.Checksum(tr[4:20]))
	if _, err := k.w.Write(tr[:]); err != nil {
		return err
	}
	err := k.w.Flush()
	if err == nil && !k.d.opts.NoSync {
		err = k.f.Sync()
	}
	if cerr := k.f.Close(); err == nil {
		err = cerr
	}
	tmp := k.f.Name()
	k.f = nil
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	err = k.d.update(ctx, true, func(t *dtx) error {
		old, _, err := k.d.readRecord(k.id)
		if err != nil {
			return err
		}
		rec, err := backend.BodyStored(k.id, k.nonce, old, k.kind, size)
		if err != nil {
			return err
		}
		dst := k.d.bodyPath(k.id, k.nonce, k.kind)
		t.touch(dst)
		if err := os.Rename(tmp, dst); err != nil {
			return err
		}
		k.d.settle(rec)
		return t.put(old, rec)
	})
	if err != nil {
		_ = os.Remove(tmp)
	}
	return err
}

// Abort removes the file being written and the pair.
func (k *dirSink) Abort() {
	if k.f != nil {
		_ = k.f.Close()
		_ = os.Remove(k.f.Name())
		k.f = nil
	}
	if k.d.closed.Load() {
		return
	}
	_ = k.d.update(context.Background(), false, func(t *dtx) error {
		rec, _, err := k.d.readRecord(k.id)
		if err != nil || rec == nil || rec.Nonce != k.nonce {
			return err
		}
		return t.purge(rec)
	})
}

// body returns the reader of one of rec's bodies, of size bytes.
func (d *Dir) body(rec *bolt.Record, kind bolt.Kind, size int64) *model.Body {
	if size == 0 {
		return model.NewBody(nil)
	}
	b := &dirBody{d: d, id: rec.ID, nonce: rec.Nonce, kind: kind}
	return model.NewChunkBody(b, b)
}

// dirBody streams a body file back, checking each chunk against its
// CRC-32C and the completion marker at the end. Before it opens the file,
// and every dirReadBack bytes, it checks that the pair's record is still
// there with the same nonce: a pair removed while it is read is
// model.ErrRemoved, never a short body.
type dirBody struct {
	d     *Dir
	id    model.PairID
	nonce uint64
	kind  bolt.Kind

	mu      sync.Mutex
	f       *os.File
	r       *bufio.Reader
	size    int64
	chunks  uint64
	since   int64 // bytes read since the last check
	ended   bool
	closed  bool
	errSeen error
}

func (b *dirBody) still() error {
	rec, _, err := b.d.readRecord(b.id)
	if err != nil {
		return err
	}
	if rec == nil || rec.Nonce != b.nonce || rec.State() == model.StateIncomplete {
		return fmt.Errorf("hishel: body of pair %s: %w", b.id, model.ErrRemoved)
	}
	return nil
}

func (b *dirBody) corrupt(what string) error {
	b.d.noteBad(b.id)
	return fmt.Errorf("hishel: body of pair %s: %s: %w", b.id, what, model.ErrCorrupt)
}

// NextChunk implements model.ChunkSource: the caller owns the chunk.
func (b *dirBody) NextChunk() ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.closed:
		return nil, model.ErrBodyClosed
	case b.d.closed.Load():
		return nil, model.ErrClosed
	case b.errSeen != nil:
		return nil, b.errSeen
	case b.ended:
		return nil, io.EOF
	}
	c, err := b.next()
	if err != nil && err != io.EOF {
		b.errSeen = err
	}
	return c, err
}

func (b *dirBody) next() ([]byte, error) {
	if b.f == nil || b.since >= dirReadBack {
		if err := b.still(); err != nil {
			return nil, err
		}
		b.since = 0
	}
	if b.f == nil {
		f, err := os.Open(b.d.bodyPath(b.id, b.nonce, b.kind))
		if errors.Is(err, fs.ErrNotExist) {
			if err := b.still(); err != nil {
				return nil, err
			}
			return nil, b.corrupt("its file is missing")
		}
		if err != nil {
			return nil, err
		}
		b.f, b.r = f, bufio.NewReaderSize(f, 64<<10)
	}
	var head [frameHead]byte
	if _, err := io.ReadFull(b.r, head[:]); err != nil {
		return nil, b.corrupt("cut short")
	}
	n := binary.BigEndian.Uint32(head[0:])
	if n == trailerMark {
		// The head holds the mark and the first 4 bytes of the rest.
		var tr [trailerLen]byte
		copy(tr[:frameHead], head[:])
		if _, err := io.ReadFull(b.r, tr[frameHead:]); err != nil {
			return nil, b.corrupt("cut short in its completion marker")
		}
		size, chunks := int64(binary.BigEndian.Uint64(tr[4:])), binary.BigEndian.Uint64(tr[12:])
		if binary.BigEndian.Uint32(tr[20:]) != backend.Checksum(tr[4:20]) || size != b.size || chunks != b.chunks {
			return nil, b.corrupt("its completion marker does not match what was read")
		}
		b.ended = true
		_ = b.f.Close()
		return nil, io.EOF
	}
	if n > backend.MaxChunkSize {
		return nil, b.corrupt("a chunk's length is out of range")
	}
	c := make([]byte, n)
	if _, err := io.ReadFull(b.r, c); err != nil {
		return nil, b.corrupt("cut short")
	}
	if binary.BigEndian.Uint32(head[4:]) != backend.Checksum(c) {
		return nil, b.corrupt(fmt.Sprintf("chunk %d checksum mismatch", b.chunks))
	}
	b.size += int64(n)
	b.chunks++
	b.since += int64(n)
	return c, nil
}

// Close closes the file; later reads fail with model.ErrBodyClosed.
func (b *dirBody) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	if b.f != nil && !b.ended {
		_ = b.f.Close()
	}
	return nil
}
