package template

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hishel-go/hishel/backend"
	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/model"
)

// orphanAge is how old a body file that no pair refers to must be before
// removeOrphans removes it: a body being stored has its file before the
// writer commits its first chunks.
const orphanAge = time.Minute

// writebackBytes is how much of a body file being written is handed to
// the disk at a time, before the sync at its end (unless NoSync).
const writebackBytes = 8 << 20

// bodyFiles is the directory of the bodies a Bolt keeps in files (see
// BoltOptions.FileBodyMin), one file per body, named by
// bolt.BodyFileName.
type bodyFiles struct {
	dir string // Path + ".bodies"
	min int64  // FileBodyMin; 0 or less: no new body goes to a file

	mu      sync.Mutex
	writing map[string]struct{} // files being written by this process

	// orphans says that files no pair refers to may be there: set at open
	// (a crash may have left some), by Clear, and when a removal failed;
	// the next sweep lists the directory then (removeOrphans), and not
	// otherwise, so that a sweep's work stays proportional to what it
	// removes, not to the number of bodies.
	orphans atomic.Bool

	// Directory syncs, one at a time, shared by the callers that wait
	// (see syncDir). Guarded by syncMu.
	syncMu            sync.Mutex
	synced            *sync.Cond // on syncMu: a sync ended
	started, finished uint64     // syncs started and ended, numbered from 1
	syncing           bool
	syncErr           error // the last sync's
}

// create creates the file of a body being stored, and notes it as being
// written until done.
func (b *bodyFiles) create(nonce uint64, kind bolt.Kind) (*os.File, string, error) {
	name := bolt.BodyFileName(nonce, kind)
	b.mu.Lock()
	b.writing[name] = struct{}{}
	b.mu.Unlock()
	f, err := os.OpenFile(filepath.Join(b.dir, name), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		b.done(name)
		return nil, "", fmt.Errorf("hishel: create body file: %w", err)
	}
	return f, name, nil
}

// done notes that the file name is no longer being written.
func (b *bodyFiles) done(name string) {
	b.mu.Lock()
	delete(b.writing, name)
	b.mu.Unlock()
}

// syncDir makes the directory's entries (files created before the call)
// durable. Concurrent callers share syncs: a caller waits for the first
// sync that starts after it was called, and starts it if none is running,
// so that a crowd of bodies ending together costs one or two syncs.
func (b *bodyFiles) syncDir() error {
	b.syncMu.Lock()
	defer b.syncMu.Unlock()
	if b.synced == nil {
		b.synced = sync.NewCond(&b.syncMu)
	}
	want := b.started + 1 // one running now may have started before the call
	for b.finished < want {
		if b.syncing {
			b.synced.Wait()
			continue
		}
		b.syncing = true
		b.started++
		n := b.started
		b.syncMu.Unlock()
		err := syncDir(b.dir)
		b.syncMu.Lock()
		b.syncing, b.finished, b.syncErr = false, n, err
		b.synced.Broadcast()
	}
	return b.syncErr
}

// writeFile appends chunks to the body's file, whose chunk keys the
// caller has computed, and hands their buffers back to the writer's pool;
// it returns the values stored for them (their lengths). At the end of the
// body it syncs the file and its directory entry (unless NoSync), so that
// the marker committed next never refers to bytes a crash could lose, and
// closes it.
func (k *boltSink) writeFile(chunks [][]byte, final bool) ([][]byte, error) {
	vals := make([][]byte, len(chunks))
	for i, c := range chunks {
		if _, err := k.file.Write(c); err != nil {
			return nil, fmt.Errorf("hishel: write body file: %w", err)
		}
		vals[i] = bolt.EncodeFileChunk(len(c))
		k.written += int64(len(c))
		k.s.w.chunkBufs.Put(&chunks[i])
	}
	if !k.s.opts.NoSync && !final && k.written-k.flushed >= writebackBytes {
		startWriteback(k.file, k.flushed, k.written-k.flushed)
		k.flushed = k.written
	}
	if !final {
		return vals, nil
	}
	var err error
	if !k.s.opts.NoSync {
		if err = k.file.Sync(); err == nil {
			err = k.s.bodies.syncDir()
		}
	}
	err = errors.Join(err, k.file.Close())
	k.file = nil
	if err != nil {
		return nil, fmt.Errorf("hishel: sync body file: %w", err)
	}
	return vals, nil
}

// abortFile removes the file of a body whose storing failed.
func (k *boltSink) abortFile() {
	if k.file != nil {
		_ = k.file.Close()
		k.file = nil
	}
	if k.name != "" {
		k.s.bodies.remove(k.name)
		k.s.bodies.done(k.name)
	}
}

// errBodyFileGone is a body file that is not there: its pair was removed
// after the read transaction that found its chunks began, or it was lost.
var errBodyFileGone = errors.New("body file missing")

// readFile reads the chunk whose stored value is v from the body's file,
// at the offset the chunks before it end, into a pooled buffer.
func (r *storedBody) readFile(v []byte) ([]byte, error) {
	n, err := bolt.DecodeFileChunk(v, backend.MaxChunkSize)
	if err != nil {
		return nil, err
	}
	if err := r.openFile(); err != nil {
		return nil, err
	}
	buf := chunkBuf(n)
	if _, err := r.f.ReadAt(buf, r.loaded); err != nil {
		putChunk(buf)
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("body file ends before chunk %d: %w", r.next, model.ErrCorrupt)
		}
		return nil, fmt.Errorf("hishel: body of pair %s: %w", r.id, err)
	}
	return buf, nil
}

// openFile opens the body's file, unless it is open: r reads it with a
// file of its own (ReadAt, and WriteTo's sections from their offset).
func (r *storedBody) openFile() error {
	if r.f != nil {
		return nil
	}
	f, err := os.Open(filepath.Join(r.s.bodies.dir, bolt.BodyFileName(r.nonce, r.kind)))
	if errors.Is(err, fs.ErrNotExist) {
		return errBodyFileGone
	}
	if err != nil {
		return fmt.Errorf("hishel: body of pair %s: %w", r.id, err)
	}
	r.f = f
	return nil
}

// closeFile closes the body's file, if open.
func (r *storedBody) closeFile() {
	if r.f != nil {
		_ = r.f.Close()
		r.f = nil
	}
}

// fileGone tells why the body's file was missing: its pair was removed
// (model.ErrRemoved), or the file was lost (model.ErrCorrupt, and the
// pair is a suspect).
func (r *storedBody) fileGone() error {
	err := r.s.view(func(t *readTx) error {
		if !r.samePair(t) {
			return fmt.Errorf("hishel: body of pair %s: %w", r.id, model.ErrRemoved)
		}
		return nil
	})
	if err != nil {
		return err
	}
	r.s.suspect(r.id)
	return fmt.Errorf("hishel: body of pair %s: %w: %w", r.id, errBodyFileGone, model.ErrCorrupt)
}

// checkFileBody reads the body of kind (KindFile included) of the pair
// with the given nonce through from its file, checking each chunk against
// key and value from the chunks bucket as a reader would.
func checkFileChunk(f *os.File, off int64, k, v []byte) (int, error) {
	n, err := bolt.DecodeFileChunk(v, backend.MaxChunkSize)
	if err != nil {
		return 0, err
	}
	buf := chunkBuf(n)
	defer putChunk(buf)
	if _, err := f.ReadAt(buf, off); err != nil {
		return 0, fmt.Errorf("body file: %w: %w", err, model.ErrCorrupt)
	}
	return n, bolt.CheckChunk(k, buf)
}

// remove removes the file name, and notes an orphan if that fails.
func (b *bodyFiles) remove(name string) {
	if err := os.Remove(filepath.Join(b.dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		b.orphans.Store(true)
	}
}

// removeOrphans removes the body files that no pair refers to (left by a
// crash, a failed removal, or Clear) once they are orphanAge old, when
// there may be some (bodyFiles.orphans), and returns how many it removed.
func (s *Bolt) removeOrphans(ctx context.Context) (int, error) {
	if !s.bodies.orphans.Swap(false) {
		return 0, nil
	}
	removed, err := s.removeOrphansNow(ctx)
	if err != nil {
		s.bodies.orphans.Store(true)
	}
	return removed, err
}

func (s *Bolt) removeOrphansNow(ctx context.Context) (int, error) {
	ents, err := os.ReadDir(s.bodies.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("hishel: list body files: %w", err)
	}
	removed := 0
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return removed, err
		}
		nonce, kind, ok := bolt.ParseBodyFileName(e.Name())
		if !ok {
			continue
		}
		s.bodies.mu.Lock()
		_, busy := s.bodies.writing[e.Name()]
		s.bodies.mu.Unlock()
		if busy {
			continue
		}
		var used bool
		err := s.view(func(t *readTx) error {
			k, _ := t.chunksC.Seek(bolt.ChunkSeek(nonce, kind, 0))
			used = isChunkOf(k, nonce, kind)
			return nil
		})
		if err != nil {
			return removed, err
		}
		if used {
			continue
		}
		if info, err := e.Info(); err != nil || time.Since(info.ModTime()) < orphanAge {
			// Perhaps a body whose first chunks are being committed, or
			// an orphan too young to tell: look again next time.
			s.bodies.orphans.Store(true)
			continue
		}
		if os.Remove(filepath.Join(s.bodies.dir, e.Name())) == nil {
			removed++
		}
	}
	return removed, nil
}
