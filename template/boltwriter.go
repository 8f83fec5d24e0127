package template

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/model"
)

// writer is a Bolt's single writing goroutine: every change to the database
// is an op sent to it, and it applies many ops in one bbolt transaction
// (group commit), so that concurrent writers share commits.
//
// An op is either durable (its caller waits until the transaction holding it
// is committed) or lazy (its caller waits only until it is applied; the
// commit follows with the next durable op, after a short idle window, or
// when the transaction has grown past maxTxBytes). Lazy ops are for data that
// is invisible until a later durable op makes it so: a new incomplete pair,
// the chunks of a body that is still streaming, access times. Losing them in
// a crash loses nothing a reader could have seen.
//
// The goroutine starts in newWriter and ends in close, after applying and
// committing every op sent before close was called.
type writer struct {
	db *bbolt.DB

	ops  chan *wop
	mu   sync.RWMutex // held for reading while sending on ops; for writing by close
	shut bool

	postMu sync.Mutex
	posted []*wop        // ops sent without waiting (post), in order
	room   chan struct{} // a token per posted op not yet taken; capacity maxPosted
	kick   chan struct{} // signals posted ops; buffered to 1
	stop   chan struct{}
	done   chan struct{}

	stats       model.Stats // authoritative counters, owned by the goroutine
	statsLoaded bool
	nonce       uint64 // the highest pair nonce committed (bolt.MetaNonce)
	staleSeq    uint64 // the highest stale log sequence number committed
	staleLoaded bool

	commits atomic.Int64 // committed transactions, for tests and benchmarks
	evicted atomic.Int64 // live pairs evicted by committed transactions (model.Stats.Evicted)

	// afterCommit, if set, runs on the writer goroutine after every commit
	// or rollback, with its error.
	afterCommit func(t *wtx, err error)

	// reads, if set, is told of every commit (see readers).
	reads *readers

	open func() int // pairs created and not completed

	// rollbackCheck, if set, says whether a write transaction may be
	// rolled back: the free list is not kept in the file while it is open
	// (see boltopen.go), so bbolt rebuilds it after a rollback by walking
	// the whole tree in a goroutine of its own, where a damaged page
	// crashes the process. It returns an error if the file is damaged.
	rollbackCheck func() error
	// broken is set when a transaction could not be rolled back (the file
	// is damaged): it stays open, and every later op fails with broken.
	// Owned by the writer goroutine until done is closed.
	broken error
	// freelistKept reports whether the last commit wrote the free list
	// (bbolt's NoFreelistSync was off for it; see Bolt.Close). Owned by
	// the writer goroutine until done is closed.
	freelistKept bool
	lastCommit   time.Duration // how long the last commit took
	lastDurable  int           // how many durable ops it answered

	maxTxBytes int
	lazyWindow time.Duration
	maxTxAge   time.Duration

	// bodies are the body files (Bolt.bodies), nil if none.
	bodies *bodyFiles

	// chunkBufs holds the buffers of body chunks that committed (or
	// rolled back) transactions no longer use (see wtx.release), for
	// streams to cut chunks into again (boltSink.MakeChunk).
	chunkBufs sync.Pool
}

// appendFill is the FillPercent of the buckets whose keys mostly grow (a
// version 7 pair ID, a pair nonce or a time first): pages they split fill
// up before a new one starts, instead of bbolt's default half. Only the
// keys index, ordered by key hash, keeps the default. With 1 KiB pairs
// this takes pages written per pair from 1.62 to 0.58.
const appendFill = 0.95

// maxDrain bounds how long a durable op waits for ops already queued
// behind it to join its commit.
const maxDrain = 200 * time.Microsecond

// maxHold bounds how long a commit waits for writers that are probably
// coming (see batch).
const maxHold = 2 * time.Millisecond

// maxPosted bounds the posted ops the writer has not yet taken: a caller
// that posts faster than the writer applies waits for room (backpressure),
// so that the queue, and the transactions it feeds, stay bounded in memory
// and in time.
const maxPosted = 256

// wop is one write operation.
type wop struct {
	ctx     context.Context
	fn      func(*wtx) error
	durable bool
	done    chan error
	dropped func() // posted ops: called if fn is never applied
}

// wtx is the transaction state an op works on. An op must return an error
// only before it changes anything; changes go through put and del, whose
// failures poison the whole transaction (it is rolled back and every op in it
// not yet answered fails).
//
// Records, incomplete index entries and keys index entries wait in recs,
// newIncomplete and newKeys until the transaction ends (see flushRecords):
// an op that scans one of those buckets must flush first (record reads
// a pair's record through recs).
type wtx struct {
	tx                                                          *bbolt.Tx
	meta, pairs, keys, chunks, expiry, deleted, incomplete, acc *bbolt.Bucket
	stale                                                       *bbolt.Bucket
	stats                                                       model.Stats
	statsDirty                                                  bool
	written                                                     int
	fatal                                                       error
	settled                                                     []model.PairID                        // pairs whose pending entry ends with this transaction
	evicting                                                    []model.PairID                        // pairs this transaction evicts (see readPins.evict)
	cleared                                                     []model.PairID                        // pairs a Clear in this transaction removed: their pending entries end
	created                                                     []model.PairID                        // pairs created in this transaction
	nonce                                                       uint64                                // the highest pair nonce written so far
	staleSeq                                                    uint64                                // the highest stale log sequence number written so far
	completedKeys                                               [][bolt.HashLen]byte                  // key hashes of the pairs completed (Bolt.unsynced)
	recs                                                        map[model.PairID]*txRecord            // records written, not yet flushed
	newIncomplete                                               map[model.PairID]int64                // incomplete index entries added, not yet put: their Created
	newKeys                                                     map[keysKey]struct{}                  // keys index entries added, not yet put
	accessed                                                    bool                                  // applyAccess took access times (Bolt.flushing)
	streaming                                                   bool                                  // holds chunks of a body that has not ended (see batch)
	newByHash                                                   map[[bolt.HashLen]byte][]model.PairID // the pairs addKey indexed, by key hash; some may have gone since
	evicted                                                     int64                                 // live pairs evicted in this transaction (writer.evicted once committed)
	// release holds the chunk buffers put in this transaction: bbolt
	// keeps a reference to a value until the transaction ends, so they go
	// back to writer.chunkBufs only then.
	release [][]byte
	// bodies is writer.bodies; unlink lists the body files (their names
	// in bodies) of the chunks this transaction deleted: they are removed
	// once it is committed.
	bodies *bodyFiles
	unlink []string
}

func newWriter(db *bbolt.DB, maxTxBytes int) *writer {
	w := &writer{
		db:         db,
		ops:        make(chan *wop),
		kick:       make(chan struct{}, 1),
		room:       make(chan struct{}, maxPosted),
		stop:       make(chan struct{}),
		done:       make(chan struct{}),
		maxTxBytes: maxTxBytes,
		lazyWindow: 2 * time.Millisecond,
		maxTxAge:   100 * time.Millisecond,
	}
	go w.run()
	return w
}

// do sends fn to the writer and waits for its outcome: until it is committed
// (durable) or applied (lazy). A ctx that ends before fn is applied cancels
// it; once applied, do waits for the outcome, which takes at most one commit.
func (w *writer) do(ctx context.Context, durable bool, fn func(*wtx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	o := &wop{ctx: ctx, fn: fn, durable: durable, done: make(chan error, 1)}
	w.mu.RLock()
	if w.shut {
		w.mu.RUnlock()
		return model.ErrClosed
	}
	select {
	case w.ops <- o:
	case <-ctx.Done():
		w.mu.RUnlock()
		return ctx.Err()
	}
	w.mu.RUnlock()
	return <-o.done
}

// post queues fn without waiting for it: it is applied, in order with
// every op sent before and after it, and committed with the next commit.
// Nobody hears of its outcome, so the caller must have checked in advance
// that it will succeed; ops that follow it on the same pair notice if it did
// not (their pair is missing). When maxPosted ops are already queued, post
// waits until the writer takes them, or until ctx ends (then fn is not
// queued and post returns ctx's error).
func (w *writer) post(ctx context.Context, fn func(*wtx) error) error {
	return w.postFunc(ctx, fn, nil)
}

// postFunc is post, with dropped (if not nil) called instead of fn if fn is
// never applied: the writer is closed, ctx ended while post waited for
// room, or the transaction fn was to join could not begin.
func (w *writer) postFunc(ctx context.Context, fn func(*wtx) error, dropped func()) error {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.shut {
		if dropped != nil {
			dropped()
		}
		return model.ErrClosed
	}
	// The writer keeps taking posted ops until close, which waits for this
	// read lock to end: a wait for room always ends.
	select {
	case w.room <- struct{}{}:
	default:
		select {
		case w.room <- struct{}{}:
		case <-ctx.Done():
			if dropped != nil {
				dropped()
			}
			return ctx.Err()
		}
	}
	w.postMu.Lock()
	w.posted = append(w.posted, &wop{ctx: context.WithoutCancel(ctx), fn: fn, dropped: dropped})
	w.postMu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
	return nil
}

// makeChunk returns an empty chunk buffer of capacity size: one that a
// committed transaction released, when there is one of that size.
func (w *writer) makeChunk(size int) []byte {
	if p, ok := w.chunkBufs.Get().(*[]byte); ok && cap(*p) == size {
		return (*p)[:0]
	}
	return make([]byte, 0, size)
}

// takePosted returns the posted ops, oldest first, and empties the queue.
func (w *writer) takePosted() []*wop {
	w.postMu.Lock()
	p := w.posted
	w.posted = nil
	w.postMu.Unlock()
	for range p {
		<-w.room
	}
	return p
}

// close stops the writer after every op already sent is committed.
func (w *writer) close() {
	w.mu.Lock()
	if w.shut {
		w.mu.Unlock()
		<-w.done
		return
	}
	w.shut = true
	w.mu.Unlock()
	close(w.stop)
	<-w.done
}

func (w *writer) run() {
	defer close(w.done)
	// The writer reads the memory-mapped file: a damaged page may point
	// past its end. Faults are panics here, which safeApply and commit
	// turn into errors wrapping model.ErrCorrupt.
	debug.SetPanicOnFault(true)
	for {
		select {
		case o := <-w.ops:
			w.batch(o)
		case <-w.kick:
			w.batch(nil)
		case <-w.stop:
			if len(w.takePostedPeek()) > 0 {
				w.batch(nil)
			}
			return
		}
	}
}

// takePostedPeek reports the posted ops without taking them.
func (w *writer) takePostedPeek() []*wop {
	w.postMu.Lock()
	defer w.postMu.Unlock()
	return w.posted
}

func (w *writer) begin() (*wtx, error) {
	if w.broken != nil {
		return nil, w.broken
	}
	if w.reads != nil {
		w.reads.drop() // so that the last commit's freed pages can be reused
	}
	tx, err := w.db.Begin(true)
	if err != nil {
		return nil, fmt.Errorf("hishel: begin write: %w", err)
	}
	var t *wtx
	err = guard("begin write", func() error {
		t, err = w.openTx(tx)
		return err
	})
	if err != nil {
		w.rollBack(tx)
		return nil, err
	}
	return t, nil
}

// rollBack rolls tx back, unless rollbackCheck finds the file damaged:
// then the writer is broken for good (see writer.broken).
func (w *writer) rollBack(tx *bbolt.Tx) {
	if w.rollbackCheck != nil {
		if err := w.rollbackCheck(); err != nil {
			w.broken = fmt.Errorf("hishel: the database file is damaged; writes fail until it is reopened: %w", err)
			return
		}
	}
	_ = guard("roll back", tx.Rollback)
}

// openTx opens the buckets of write transaction tx.
func (w *writer) openTx(tx *bbolt.Tx) (*wtx, error) {
	t := &wtx{
		tx:         tx,
		meta:       tx.Bucket(bolt.BucketMeta),
		pairs:      tx.Bucket(bolt.BucketPairs),
		keys:       tx.Bucket(bolt.BucketKeys),
		chunks:     tx.Bucket(bolt.BucketChunks),
		expiry:     tx.Bucket(bolt.BucketExpiry),
		deleted:    tx.Bucket(bolt.BucketDeleted),
		incomplete: tx.Bucket(bolt.BucketIncomplete),
		acc:        tx.Bucket(bolt.BucketAccess),
		stale:      tx.Bucket(bolt.BucketStale),
	}
	for _, b := range []*bbolt.Bucket{t.meta, t.pairs, t.keys, t.chunks, t.expiry, t.deleted, t.incomplete, t.acc, t.stale} {
		if b == nil {
			return nil, fmt.Errorf("hishel: begin write: a bucket is missing: %w", model.ErrCorrupt)
		}
	}
	t.fill()
	t.bodies = w.bodies
	if !w.staleLoaded {
		c := t.stale.Cursor()
		for k, _ := c.Last(); k != nil; k, _ = c.Prev() {
			if len(k) == 8 { // malformed keys are skipped (cleanStale drops them)
				w.staleSeq = binary.BigEndian.Uint64(k)
				break
			}
		}
		w.staleLoaded = true
	}
	t.staleSeq = w.staleSeq
	if !w.statsLoaded {
		s, err := bolt.DecodeStats(t.meta.Get(bolt.MetaStats))
		if err != nil {
			return nil, err
		}
		w.stats, w.statsLoaded = s, true
	}
	t.stats = w.stats
	t.nonce = w.nonce
	return t, nil
}

// batch applies first and whatever else arrives while the transaction is
// open, then commits once.
func (w *writer) batch(first *wop) {
	t, err := w.begin()
	if err != nil {
		if first != nil {
			first.done <- err
		}
		for _, p := range w.takePosted() { // lost; the later ops of their pairs fail
			if p.dropped != nil {
				p.dropped()
			}
		}
		return
	}
	var waiting []*wop
	var firstDurable time.Time
	var applyOne func(o *wop)
	// apply applies the posted ops first (they were queued before o was
	// sent), then o.
	apply := func(o *wop) {
		for _, p := range w.takePosted() {
			applyOne(p)
		}
		if o != nil {
			applyOne(o)
		}
	}
	applyOne = func(o *wop) {
		if err := o.ctx.Err(); err != nil {
			if o.done != nil {
				o.done <- err
			}
			return
		}
		err := safeApply(o.fn, t)
		switch {
		case o.done == nil:
			// posted: nobody waits
		case t.fatal != nil:
			waiting = append(waiting, o)
		case err != nil:
			o.done <- err
		case o.durable:
			if len(waiting) == 0 {
				firstDurable = time.Now()
			}
			waiting = append(waiting, o)
		default:
			o.done <- nil
		}
	}
	start := time.Now()
	apply(first)
	var timer *time.Timer
collect:
	for t.fatal == nil && t.written < w.maxTxBytes && time.Since(start) < w.maxTxAge {
		// Group commit. Once a durable op waits, ops already queued join
		// the commit for at most maxDrain, however busy the queue is. When
		// the last commit served several writers and pairs are still open
		// (created, not yet complete) beyond those this commit completes,
		// their writers are probably a step or two from their durable end:
		// the commit also waits for new ops, for up to as long as the last
		// commit took (at most maxHold), so that a pipeline of writers
		// shares one commit instead of splitting into two cohorts that
		// take turns. A lone writer never waits.
		var hold time.Duration
		if len(waiting) > 0 {
			window := maxDrain
			coming := w.lastDurable >= 2 && w.coming(t)
			if coming {
				window = max(window, min(w.lastCommit, maxHold))
			}
			left := window - time.Since(firstDurable)
			if left <= 0 {
				break
			}
			if coming {
				hold = left
			}
		}
		select {
		case o := <-w.ops:
			apply(o)
			continue
		case <-w.kick:
			apply(nil)
			continue
		default:
		}
		wait := w.lazyWindow
		if t.streaming {
			// Chunks of a body still streaming: nothing waits for them,
			// and the next 1 MiB of the body is usually on its way.
			// Waiting for it (up to maxTxAge, and maxTxBytes in all)
			// commits, and syncs, once per maxTxBytes of the body rather
			// than once per flush when the source is a little slower than
			// the lazy window (a body from the network).
			wait = max(wait, w.maxTxAge-time.Since(start))
		}
		if len(waiting) > 0 {
			if hold <= 0 {
				break
			}
			wait = hold
		}
		// Nothing queued. With only lazy ops so far, wait a moment for the
		// op that usually follows (the durable end of the same pair).
		if timer == nil {
			timer = time.NewTimer(wait)
		} else {
			timer.Reset(wait)
		}
		select {
		case o := <-w.ops:
			apply(o)
		case <-w.kick:
			apply(nil)
		case <-timer.C:
			break collect
		case <-w.stop:
			break collect
		}
	}
	if timer != nil {
		timer.Stop()
	}
	_ = safeApply(func(t *wtx) error {
		t.flushRecords()
		t.flushIncomplete()
		t.flushKeys()
		if t.fatal == nil && t.statsDirty {
			t.put(t.meta, bolt.MetaStats, bolt.EncodeStats(t.stats))
		}
		if t.fatal == nil && t.nonce > w.nonce {
			t.put(t.meta, bolt.MetaNonce, bolt.EncodeNonce(t.nonce))
		}
		return nil
	}, t)
	commitStart := time.Now()
	if w.reads != nil {
		w.reads.committing()
	}
	if t.fatal != nil {
		w.rollBack(t.tx)
		err = t.fatal
	} else if cerr := w.commit(t.tx); cerr != nil {
		err = fmt.Errorf("hishel: commit: %w", cerr)
	} else {
		w.commits.Add(1)
		w.lastCommit = time.Since(commitStart)
		w.lastDurable = len(waiting)
	}
	if w.reads != nil {
		w.reads.committed()
	}
	if err != nil {
		w.statsLoaded = false
	} else {
		w.stats = t.stats
		w.evicted.Add(t.evicted)
		w.nonce = t.nonce
		w.staleSeq = t.staleSeq
	}
	if w.afterCommit != nil {
		w.afterCommit(t, err)
	}
	if w.broken == nil { // else the transaction may still be open
		for _, c := range t.release {
			w.chunkBufs.Put(&c)
		}
	}
	if err == nil {
		// Before the ops are answered: a removal is done when it returns.
		// What is left of a file whose removal fails (or that a crash
		// kept) no pair refers to: the sweep's removeOrphans retries.
		for _, name := range t.unlink {
			t.bodies.remove(name)
		}
	}
	for _, o := range waiting {
		o.done <- err
	}
}

// commit commits tx; a panic (bbolt meeting a damaged page as it writes
// the nodes it changed) rolls it back and is an error wrapping
// model.ErrCorrupt.
func (w *writer) commit(tx *bbolt.Tx) error {
	done := false
	db := tx.DB()
	err := guard("commit", func() error {
		err := tx.Commit()
		done = true
		return err
	})
	if !done {
		w.rollBack(tx)
	}
	w.freelistKept = err == nil && !db.NoFreelistSync
	return err
}

// safeApply runs fn, turning a panic (bbolt meeting a damaged page, or a
// bug) into a fatal error wrapping model.ErrCorrupt, so that the writer
// goroutine survives it and the transaction is rolled back.
func safeApply(fn func(*wtx) error, t *wtx) (err error) {
	defer func() {
		if r := recover(); r != nil {
			t.fatal = fmt.Errorf("hishel: panic in storage operation: %v: %w", r, model.ErrCorrupt)
			err = t.fatal
		}
	}()
	return fn(t)
}

// writeErr wraps the error of a bbolt write: a key that names a bucket
// (hishel's buckets hold none) is a damaged leaf, and wraps
// model.ErrCorrupt too.
func writeErr(what string, err error) error {
	if errors.Is(err, berrors.ErrIncompatibleValue) {
		return fmt.Errorf("hishel: %s: %w: %w", what, err, model.ErrCorrupt)
	}
	return fmt.Errorf("hishel: %s: %w", what, err)
}

func (t *wtx) put(b *bbolt.Bucket, k, v []byte) {
	if t.fatal != nil {
		return
	}
	if err := b.Put(k, v); err != nil {
		t.fatal = writeErr("put", err)
		return
	}
	t.written += len(k) + len(v)
}

func (t *wtx) del(b *bbolt.Bucket, k []byte) {
	if t.fatal != nil {
		return
	}
	if err := b.Delete(k); err != nil {
		t.fatal = writeErr("delete", err)
	}
}

func (t *wtx) addStats(pairs, incomplete, deleted int, bytes int64) {
	t.stats.Pairs += pairs
	t.stats.Incomplete += incomplete
	t.stats.Deleted += deleted
	t.stats.Bytes += bytes
	t.statsDirty = true
}

// fill sets the FillPercent of t's buckets (see appendFill).
func (t *wtx) fill() {
	for _, b := range []*bbolt.Bucket{t.pairs, t.chunks, t.expiry, t.deleted, t.incomplete, t.acc, t.stale} {
		b.FillPercent = appendFill
	}
}

// txRecord is a record as a transaction last wrote it.
type txRecord struct {
	rec  bolt.Record
	gone bool // deleted (delRecord)
}

// record returns a pair's record as of this transaction, to change at will
// (putRecord stores it); nil if there is none.
func (t *wtx) record(id model.PairID) (*bolt.Record, error) {
	if r, ok := t.recs[id]; ok {
		if r.gone {
			return nil, nil
		}
		rec := r.rec
		return &rec, nil
	}
	v := t.pairs.Get(id[:])
	if v == nil {
		return nil, nil
	}
	rec, err := bolt.DecodeRecord(v)
	if err != nil {
		return nil, fmt.Errorf("pair %s: %w", id, err)
	}
	return rec, nil
}

// putRecord stores rec (a copy of it, header maps shared: they must not
// change afterwards). Records are encoded and written once per
// transaction, by flushRecords before it commits, however often ops change
// them: a pair created, given its response and completed in one
// transaction costs one encoding and one bbolt put, not three.
func (t *wtx) putRecord(rec *bolt.Record) {
	if t.fatal != nil {
		return
	}
	if t.recs == nil {
		t.recs = make(map[model.PairID]*txRecord)
	}
	r := t.recs[rec.ID]
	if r == nil || r.gone {
		t.written += bolt.RecordSizeHint(rec)
		r = &txRecord{}
		t.recs[rec.ID] = r
	}
	r.rec, r.gone = *rec, false
}

// delRecord deletes pair id's record.
func (t *wtx) delRecord(id model.PairID) {
	if t.fatal != nil {
		return
	}
	if t.recs == nil {
		t.recs = make(map[model.PairID]*txRecord)
	}
	t.recs[id] = &txRecord{gone: true}
	t.del(t.pairs, id[:])
}

// flushRecords writes the records putRecord stored, in ID order: bbolt
// splits a node only at commit, so puts in random order into a node that
// has grown large move half of it each time (quadratic in the records per
// transaction), while puts in order append.
func (t *wtx) flushRecords() {
	ids := make([]model.PairID, 0, len(t.recs))
	for id, r := range t.recs {
		if !r.gone {
			ids = append(ids, id)
		}
	}
	slices.SortFunc(ids, func(a, b model.PairID) int { return bytes.Compare(a[:], b[:]) })
	for _, id := range ids {
		t.put(t.pairs, id[:], bolt.EncodeRecord(&t.recs[id].rec))
	}
	t.recs = nil
}

// addIncomplete adds pair id, created at created, to the incomplete index.
// The put waits for flushIncomplete: most pairs complete in the
// transaction that creates them, and then neither the put nor the delete
// reaches bbolt.
func (t *wtx) addIncomplete(created int64, id model.PairID) {
	if t.fatal != nil {
		return
	}
	if t.newIncomplete == nil {
		t.newIncomplete = make(map[model.PairID]int64)
	}
	t.newIncomplete[id] = created
}

// delIncomplete removes pair id, created at created, from the incomplete
// index.
func (t *wtx) delIncomplete(created int64, id model.PairID) {
	if c, ok := t.newIncomplete[id]; ok && c == created {
		delete(t.newIncomplete, id)
		return
	}
	t.del(t.incomplete, bolt.TimeKey(created, id))
}

// flushIncomplete puts the incomplete index entries addIncomplete holds;
// it runs before the transaction commits and before anything reads the
// index.
func (t *wtx) flushIncomplete() {
	keys := make([][]byte, 0, len(t.newIncomplete))
	for id, created := range t.newIncomplete {
		keys = append(keys, bolt.TimeKey(created, id))
	}
	slices.SortFunc(keys, bytes.Compare) // see flushRecords
	for _, k := range keys {
		t.put(t.incomplete, k, nil)
	}
	t.newIncomplete = nil
}

// keysKey is a keys index entry (bolt.KeysKey).
type keysKey [bolt.KeysKeyLen]byte

func newKeysKey(h [bolt.HashLen]byte, id model.PairID) keysKey {
	var k keysKey
	copy(k[:], h[:])
	copy(k[bolt.HashLen:], id[:])
	return k
}

// addKey indexes pair id under key hash h. The put waits for flushKeys,
// which puts a transaction's entries in key order: key hashes are random,
// and random puts into a node bbolt has not split yet move half of it each
// (see flushRecords).
func (t *wtx) addKey(h [bolt.HashLen]byte, id model.PairID) {
	if t.fatal != nil {
		return
	}
	if t.newKeys == nil {
		t.newKeys = make(map[keysKey]struct{})
		t.newByHash = make(map[[bolt.HashLen]byte][]model.PairID)
	}
	t.newKeys[newKeysKey(h, id)] = struct{}{}
	t.newByHash[h] = append(t.newByHash[h], id)
	t.written += bolt.KeysKeyLen
}

// delKey removes pair id from the keys index under key hash h: the entry
// this transaction added, and the stored one (both exist when a pair given
// the ID of one that went, under the same key, completes before a batch
// deleted the old entry).
func (t *wtx) delKey(h [bolt.HashLen]byte, id model.PairID) {
	k := newKeysKey(h, id)
	delete(t.newKeys, k)
	t.del(t.keys, k[:])
}

// retireKey takes pair id, which is no longer complete and live, out of
// the keys index under key hash h: an entry this transaction added is
// dropped; a stored one is logged in the stale bucket, and a sweep deletes
// it later in a sorted batch (see Bolt.cleanStale). Key hashes are random:
// deleting each entry at once would rewrite a random leaf per pair.
func (t *wtx) retireKey(h [bolt.HashLen]byte, id model.PairID) {
	k := newKeysKey(h, id)
	if _, ok := t.newKeys[k]; ok {
		delete(t.newKeys, k)
		if t.keys.Get(k[:]) == nil {
			return
		}
		// Stored as well (a pair given the ID of one that went, under the
		// same key, before a batch deleted its entry): log it again.
	}
	t.logStale(bolt.IndexKeys, k[:])
}

// retireAccess logs pair id's access index entry for time at as stale, as
// retireKey does.
func (t *wtx) retireAccess(at int64, id model.PairID) {
	t.logStale(bolt.IndexAccess, bolt.TimeKey(at, id))
}

func (t *wtx) logStale(idx bolt.Index, k []byte) {
	if t.fatal != nil {
		return
	}
	t.staleSeq++
	t.put(t.stale, bolt.StaleKey(t.staleSeq), bolt.StaleValue(idx, k))
}

// flushKeys puts the keys index entries addKey holds, in key order; it runs
// before the transaction commits.
func (t *wtx) flushKeys() {
	keys := make([]keysKey, 0, len(t.newKeys))
	for k := range t.newKeys {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b keysKey) int { return bytes.Compare(a[:], b[:]) })
	for i := range keys {
		t.put(t.keys, keys[i][:], nil)
	}
	t.newKeys, t.newByHash = nil, nil
}

// dropRecords forgets the records putRecord stored and the keys index
// entries addKey holds: the buckets they were for are gone (Clear).
func (t *wtx) dropRecords() { t.recs, t.newKeys, t.newByHash = nil, nil, nil }

// coming reports whether open pairs other than those t completes may soon
// send their durable end.
func (w *writer) coming(t *wtx) bool {
	return w.open != nil && w.open() > len(t.settled)
}
