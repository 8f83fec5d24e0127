package template

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.etcd.io/bbolt"

	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/model"
)

func TestBoltSweepBatches(t *testing.T) {
	c := newClock()
	s := openBolt(t, &BoltOptions{Now: c.Now, DefaultTTL: time.Minute})
	n := 2*sweepBatch + 3
	for i := range n {
		store(t, s, getReq("u"), okResp("x"), fmt.Sprint(i))
	}
	c.Advance(2 * time.Minute)
	res, err := s.Cleanup(context.Background())
	if err != nil || res.Expired != n {
		t.Fatalf("Cleanup = %+v, %v; want %d expired", res, err, n)
	}
}

func TestBoltOpenErrors(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	rawDB := func(name string, fn func(tx *bbolt.Tx) error) string {
		p := filepath.Join(dir, name)
		db, err := bbolt.Open(p, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Update(fn); err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		return p
	}
	held := filepath.Join(dir, "held.db")
	holder := openBolt(t, &BoltOptions{Path: held})
	_ = holder

	tests := []struct {
		name string
		path string
		want error
	}{
		{"held by another opener", held, model.ErrLocked},
		{"text file", write("text.db", bytes.Repeat([]byte("not a database\n"), 1000)), model.ErrCorrupt},
		{"short file", write("short.db", []byte("xyz")), model.ErrCorrupt},
		{"foreign bbolt file", rawDB("foreign.db", func(tx *bbolt.Tx) error {
			_, err := tx.CreateBucket([]byte("other"))
			return err
		}), model.ErrCorrupt},
		{"newer format", rawDB("newer.db", func(tx *bbolt.Tx) error {
			b, err := tx.CreateBucket(bolt.BucketMeta)
			if err != nil {
				return err
			}
			return b.Put(bolt.MetaFormat, []byte{bolt.FormatVersion + 1})
		}), model.ErrFormatVersion},
		{"missing directory", filepath.Join(dir, "no", "such", "dir.db"), os.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := OpenBolt(ctx, &BoltOptions{Path: tt.path, OpenTimeout: 50 * time.Millisecond, SweepInterval: -1})
			if err == nil {
				s.Close()
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("OpenBolt(%s) err = %v; want %v", tt.name, err, tt.want)
			}
		})
	}
}

func TestBoltReadOnlyDirectory(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(dir, 0o700) })
	path := filepath.Join(dir, "cache.db")
	if f, err := os.Create(path); err == nil {
		// Running as root, permissions do not stop us: use a directory
		// no one can create files in instead.
		f.Close()
		os.Remove(path)
		path = "/proc/hishel-test/cache.db"
	}
	_, err := OpenBolt(context.Background(), &BoltOptions{Path: path, SweepInterval: -1})
	if err == nil || !(errors.Is(err, os.ErrPermission) || errors.Is(err, os.ErrNotExist)) {
		t.Fatalf("OpenBolt in a read-only directory: err = %v; want a permission or not-exist error", err)
	}
}

func TestBoltUnknownRecordVersion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.db")
	s := openBolt(t, &BoltOptions{Path: path})
	cp := store(t, s, getReq("u"), okResp("x"), "k")
	s.Close()
	setRecordVersion(t, path, cp.ID, 99)
	s = openBolt(t, &BoltOptions{Path: path})
	if _, err := s.GetPairs(context.Background(), "k"); !errors.Is(err, model.ErrFormatVersion) {
		t.Fatalf("GetPairs over a record of an unknown version: err = %v; want ErrFormatVersion", err)
	}
}

// setRecordVersion gives the record of pair id in the closed file at path
// the format version v, its checksum made good: a record of another layout.
func setRecordVersion(tb testing.TB, path string, id model.PairID, v byte) {
	tb.Helper()
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		tb.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bolt.BucketPairs)
		rec := bytes.Clone(b.Get(id[:]))
		rec[0] = v
		body := rec[:len(rec)-bolt.CRCLen]
		rec = binary.LittleEndian.AppendUint32(body, crc32.Checksum(body, crc32.MakeTable(crc32.Castagnoli)))
		return b.Put(id[:], rec)
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		tb.Fatal(err)
	}
}

// checkStats compares the counters with a full scan of the pairs and chunks.
func checkStats(tb testing.TB, s *Bolt) {
	tb.Helper()
	var want model.Stats
	for p, err := range s.Pairs(context.Background(), model.Filter{}) {
		if err != nil {
			tb.Fatal(err)
		}
		switch p.State {
		case model.StateComplete:
			want.Pairs++
		case model.StateIncomplete:
			want.Incomplete++
		case model.StateDeleted:
			want.Deleted++
		}
		want.Bytes += infoHeadBytes(p)
	}
	err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bolt.BucketChunks).ForEach(func(k, v []byte) error {
			switch _, kind, seq, _ := bolt.ParseChunkKey(k); {
			case seq == bolt.MarkerSeq:
			case kind&bolt.KindFile != 0:
				n, err := bolt.DecodeFileChunk(v, 16<<20)
				if err != nil {
					return err
				}
				want.Bytes += int64(n)
			default:
				want.Bytes += int64(len(v))
			}
			return nil
		})
	})
	if err != nil {
		tb.Fatal(err)
	}
	if got := mustStats(tb, s); got != want {
		tb.Errorf("Stats = %+v; a full scan finds %+v", got, want)
	}
}

// infoHeadBytes is what p's heads count in Stats.Bytes.
func infoHeadBytes(p model.PairInfo) int64 {
	return headBytes(&bolt.Record{Key: p.Key, Method: p.Request.Method, URL: p.Request.URL,
		ReqHeader: p.Request.Header, RespHeader: p.Response.Header})
}

// patternReader yields n pseudo-random bytes without holding them.
type patternReader struct {
	n   int64
	rng *rand.ChaCha8
}

func (p *patternReader) Read(b []byte) (int, error) {
	if p.n == 0 {
		return 0, io.EOF
	}
	if int64(len(b)) > p.n {
		b = b[:p.n]
	}
	p.rng.Read(b)
	p.n -= int64(len(b))
	return len(b), nil
}

// heapWatch samples the live heap.
type heapWatch struct{ base, peak uint64 }

func newHeapWatch() *heapWatch {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return &heapWatch{base: m.HeapAlloc, peak: m.HeapAlloc}
}

func (h *heapWatch) sample() {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	h.peak = max(h.peak, m.HeapAlloc)
}

// hashingWriter hashes what it is given and samples the heap every 8 MiB.
type hashingWriter struct {
	h     io.Writer
	n     int64
	watch *heapWatch
}

func (w *hashingWriter) Write(p []byte) (int, error) {
	before := w.n >> 23
	w.n += int64(len(p))
	if w.n>>23 != before {
		w.watch.sample()
	}
	return w.h.Write(p)
}

func TestBoltLargeBodyBoundedMemory(t *testing.T) {
	size := int64(256 << 20)
	if testing.Short() {
		size = 32 << 20
	}
	s := openBolt(t, nil)
	watch := newHeapWatch()
	hin := sha256.New()
	src := io.TeeReader(&patternReader{n: size, rng: rand.NewChaCha8([32]byte{1})}, &hashingWriter{h: hin, watch: watch})
	cp := store(t, s, getReq("u"), model.Response{Status: 200, Body: model.NewBody(src)}, "big")
	if cp.Meta.ResponseSize != 0 && cp.Meta.ResponseSize != size {
		t.Fatalf("stored size %d; want %d", cp.Meta.ResponseSize, size)
	}
	ps := mustGet(t, s, "big")
	if len(ps) != 1 || ps[0].Meta.ResponseSize != size {
		t.Fatalf("GetPairs = %d pairs; want 1 of %d bytes", len(ps), size)
	}
	hout := sha256.New()
	n, err := io.Copy(&hashingWriter{h: hout, watch: watch}, ps[0].Response.Body)
	if err != nil || n != size {
		t.Fatalf("read back %d bytes, err %v; want %d", n, err, size)
	}
	if !bytes.Equal(hin.Sum(nil), hout.Sum(nil)) {
		t.Fatalf("body read back differs from the body stored")
	}
	growth := int64(watch.peak) - int64(watch.base)
	t.Logf("%d MiB body: heap peak %.1f MiB above baseline", size>>20, float64(growth)/(1<<20))
	if growth > 32<<20 {
		t.Errorf("heap grew by %.1f MiB streaming a %d MiB body; want at most 32 MiB", float64(growth)/(1<<20), size>>20)
	}
}

// Every way a pair stops being open ends its pending entry, which also
// tells the writer how many writers may still join a commit: a stored pair,
// an aborted body, a removed incomplete pair and an abandoned one swept as
// incomplete.
func TestBoltOpenPairsSettle(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	s := openBolt(t, &BoltOptions{Now: c.Now, IncompleteAge: time.Minute})
	store(t, s, getReq("u"), okResp("x"), "stored")

	inc, err := s.CreatePair(ctx, model.Request{Method: "POST", URL: "u", Body: model.StringBody("request body")})
	if err != nil {
		t.Fatal(err)
	}
	inc.Request.Body.Close() // aborted before its end

	inc, err = s.CreatePair(ctx, getReq("u"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ctx, inc.ID); err != nil {
		t.Fatal(err)
	}

	if _, err := s.CreatePair(ctx, getReq("u")); err != nil { // abandoned
		t.Fatal(err)
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if n := s.openPairs(); n != 1 {
		t.Fatalf("openPairs = %d after a store, an abort and a remove; want 1 (the abandoned pair)", n)
	}
	c.Advance(2 * time.Minute)
	if _, err := s.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if n := s.openPairs(); n != 0 {
		t.Errorf("openPairs = %d after the sweep; want 0", n)
	}
}

// Pair nonces key chunks, so a reopened database must never hand one out
// again, even for a pair whose record was committed without its chunks.
func TestBoltNoncesSurviveReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "cache.db")
	nonceOf := func(s *Bolt, id model.PairID) uint64 {
		t.Helper()
		var rec *bolt.Record
		err := s.db.View(func(tx *bbolt.Tx) error {
			var err error
			rec, err = bolt.DecodeRecord(tx.Bucket(bolt.BucketPairs).Get(id[:]))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return rec.Nonce
	}
	s := openBolt(t, &BoltOptions{Path: path})
	first := store(t, s, getReq("u"), okResp("x"), "k")
	open, err := s.CreatePair(ctx, getReq("u")) // committed, no body yet
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	before := max(nonceOf(s, first.ID), nonceOf(s, open.ID))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openBolt(t, &BoltOptions{Path: path})
	again := store(t, s, getReq("u"), okResp("y"), "k")
	if got := nonceOf(s, again.ID); got <= before {
		t.Errorf("nonce after reopen = %d; want more than %d", got, before)
	}
}

// Under NoSync the end of a body this Bolt's pair is posted to the writer:
// it returns while the writer is busy, reads still see the pair at once, and
// every count it takes (Bolt.unsynced) ends with its commit, whether the
// pair was stored or removed meanwhile.
// holdWriter keeps s's writer busy in an op until release is called; the
// op then runs then (if not nil), and release returns its error.
func holdWriter(tb testing.TB, s *Bolt, then func(*wtx) error) (release func() error) {
	tb.Helper()
	busy, done := make(chan struct{}), make(chan struct{})
	held := make(chan error, 1)
	go func() {
		held <- s.w.do(context.Background(), false, func(t *wtx) error {
			close(busy)
			<-done
			if then != nil {
				return then(t)
			}
			return nil
		})
	}()
	<-busy
	var once sync.Once
	var err error
	return func() error {
		once.Do(func() { close(done); err = <-held })
		return err
	}
}

func TestBoltNoSyncEndDoesNotWait(t *testing.T) {
	ctx := context.Background()
	s := openBolt(t, &BoltOptions{NoSync: true})
	if !s.db.NoSync || !s.db.NoGrowSync {
		t.Errorf("NoSync Bolt: bbolt NoSync %v, NoGrowSync %v; want both", s.db.NoSync, s.db.NoGrowSync)
	}

	// Hold the writer in an op until the body has ended.
	release := holdWriter(t, s, nil)
	inc, err := s.CreatePair(ctx, getReq("u"))
	if err != nil {
		t.Fatal(err)
	}
	cp, err := s.AddResponse(ctx, inc.ID, okResp("body"), "k")
	if err != nil {
		t.Fatal(err)
	}
	read := make(chan error, 1)
	go func() {
		b, err := io.ReadAll(cp.Response.Body)
		if err == nil && string(b) != "body" {
			err = fmt.Errorf("body %q", b)
		}
		read <- err
	}()
	select {
	case err := <-read:
		if err != nil {
			t.Fatalf("reading the stored body: %v", err)
		}
	case <-time.After(10 * time.Second):
		release()
		t.Fatal("the end of the body waited for the busy writer")
	}
	s.pendMu.Lock()
	n := len(s.unsynced)
	s.pendMu.Unlock()
	if n != 1 {
		t.Errorf("unsynced keys = %d while the writer is busy; want 1", n)
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}
	ps, err := s.GetPairs(ctx, "k")
	if err != nil || len(ps) != 1 {
		t.Fatalf("GetPairs = %d pairs, %v; want the pair", len(ps), err)
	}
	for _, p := range ps {
		p.Close()
	}

	// A pair removed while its end is on its way: not stored, no count left.
	inc, err = s.CreatePair(ctx, getReq("v"))
	if err != nil {
		t.Fatal(err)
	}
	cp, err = s.AddResponse(ctx, inc.ID, okResp("gone"), "k2")
	if err != nil {
		t.Fatal(err)
	}
	release = holdWriter(t, s, func(t *wtx) error {
		rec, err := t.record(inc.ID)
		if err != nil || rec == nil {
			return fmt.Errorf("record: %v, %w", rec, err)
		}
		softDelete(t, rec, 1)
		return nil
	})
	if _, err := io.ReadAll(cp.Response.Body); err != nil {
		t.Fatal(err)
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	s.pendMu.Lock()
	n, open := len(s.unsynced), len(s.pend)
	s.pendMu.Unlock()
	if n != 0 || open != 0 {
		t.Errorf("after Sync: unsynced keys = %d, open pairs = %d; want 0, 0", n, open)
	}
	if ps, err := s.GetPairs(ctx, "k2"); err != nil || len(ps) != 0 {
		t.Errorf("GetPairs(removed) = %d pairs, %v; want none", len(ps), err)
	}
}

// Clear ends the pending entries of the pairs it removes, and only those: a
// pair whose create op the writer has not applied yet (it comes later in
// the transaction, or after it) keeps its entry, so that reads under NoSync
// still commit first for it.
func TestBoltClearEndsOnlyClearedPend(t *testing.T) {
	ctx := context.Background()
	s := openBolt(t, &BoltOptions{NoSync: true})
	before, err := s.CreatePair(ctx, getReq("u"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(ctx); err != nil { // its create op is applied
		t.Fatal(err)
	}
	coming := model.NewPairID() // reserved, its create op not yet applied
	s.pendMu.Lock()
	s.pend[coming] = &pendEntry{rec: &bolt.Record{ID: coming}}
	s.pendMu.Unlock()
	if err := s.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	s.pendMu.Lock()
	_, keptBefore := s.pend[before.ID]
	_, keptComing := s.pend[coming]
	s.pendMu.Unlock()
	if keptBefore || !keptComing {
		t.Errorf("after Clear: entry of a cleared pair kept = %v, entry of a pair still to come kept = %v; want false, true", keptBefore, keptComing)
	}
}

// TestBoltPostedOpsBounded holds the writer in an op and posts more ops
// than the queue holds: posting waits for room (or for its context), and
// every op queued is applied once the writer goes on.
func TestBoltPostedOpsBounded(t *testing.T) {
	ctx := context.Background()
	s := openBolt(t, &BoltOptions{NoSync: true})

	release := holdWriter(t, s, nil)
	var applied int
	for i := range maxPosted {
		if err := s.w.post(ctx, func(*wtx) error { applied++; return nil }); err != nil {
			t.Fatalf("post %d: %v", i, err)
		}
	}
	if n := len(s.w.takePostedPeek()); n != maxPosted {
		t.Fatalf("queued %d; want %d", n, maxPosted)
	}

	// The queue is full: a post waits, and gives up with its context.
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	dropped := false
	err := s.w.postFunc(short, func(*wtx) error { t.Error("a post that gave up was applied"); return nil }, func() { dropped = true })
	if !errors.Is(err, context.DeadlineExceeded) || !dropped {
		t.Fatalf("post to a full queue = %v, dropped %v; want %v, dropped", err, dropped, context.DeadlineExceeded)
	}

	// A post that waits goes in once the writer takes the queue.
	waited := make(chan error, 1)
	go func() { waited <- s.w.post(ctx, func(*wtx) error { applied++; return nil }) }()
	select {
	case err := <-waited:
		t.Fatalf("post to a full queue returned %v before the writer took it", err)
	case <-time.After(20 * time.Millisecond):
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}
	if err := <-waited; err != nil {
		t.Fatal(err)
	}
	// A durable op is applied after every op posted before it.
	if err := s.w.do(ctx, true, func(*wtx) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if applied != maxPosted+1 {
		t.Fatalf("applied %d posted ops; want %d", applied, maxPosted+1)
	}
}

// TestBoltAddResponseAfterFullQueue: an AddResponse that gave up waiting
// for room in the writer's queue leaves the pair as it was, so a second
// AddResponse succeeds.
func TestBoltAddResponseAfterFullQueue(t *testing.T) {
	ctx := context.Background()
	s := openBolt(t, &BoltOptions{NoSync: true})
	inc, err := s.CreatePair(ctx, getReq("u"))
	if err != nil {
		t.Fatal(err)
	}
	release := holdWriter(t, s, nil)
	for range maxPosted {
		if err := s.w.post(ctx, func(*wtx) error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := s.AddResponse(short, inc.ID, okResp("body"), "k"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("AddResponse with a full queue = %v; want %v", err, context.DeadlineExceeded)
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}
	cp, err := s.AddResponse(ctx, inc.ID, okResp("body"), "k")
	if err != nil {
		t.Fatalf("AddResponse after the queue emptied: %v", err)
	}
	if b, err := io.ReadAll(cp.Response.Body); err != nil || string(b) != "body" {
		t.Fatalf("body = %q, %v; want %q", b, err, "body")
	}
	ps, err := s.GetPairs(ctx, "k")
	if err != nil || len(ps) != 1 {
		t.Fatalf("GetPairs = %d pairs, %v; want 1", len(ps), err)
	}
	for _, p := range ps {
		p.Request.Body.Close()
		p.Response.Body.Close()
	}
}

// The keys index entries a transaction adds are put at its end, in key
// order; a delete in the same transaction cancels an add, and one of an
// entry committed before deletes it.
func TestBoltKeysIndexDeferred(t *testing.T) {
	ctx := context.Background()
	s := openBolt(t, nil)
	id := func(i int) model.PairID { return model.PairID{15: byte(i), 14: byte(i >> 8)} }
	h := func(key string) [bolt.HashLen]byte { return bolt.KeyHash(key) }
	entries := func() map[keysKey]bool {
		t.Helper()
		out := map[keysKey]bool{}
		if err := s.db.View(func(tx *bbolt.Tx) error {
			return tx.Bucket(bolt.BucketKeys).ForEach(func(k, _ []byte) error {
				out[keysKey(k)] = true
				return nil
			})
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	want := map[keysKey]bool{}
	err := s.w.do(ctx, true, func(tx *wtx) error {
		for i := range 500 { // random hashes: out of order
			tx.addKey(h(fmt.Sprint("k", i)), id(i))
			want[newKeysKey(h(fmt.Sprint("k", i)), id(i))] = true
		}
		tx.addKey(h("gone"), id(1000))
		tx.delKey(h("gone"), id(1000)) // cancels the add
		tx.addKey(h("moved"), id(1001))
		tx.delKey(h("moved"), id(1001))
		tx.addKey(h("moved-to"), id(1001)) // a key change, as UpdatePair makes
		want[newKeysKey(h("moved-to"), id(1001))] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := entries(); !cmp.Equal(got, want) {
		t.Fatalf("keys index after the first transaction: %d entries, want %d (diff %s)", len(got), len(want), cmp.Diff(want, got))
	}
	err = s.w.do(ctx, true, func(tx *wtx) error {
		tx.delKey(h("k7"), id(7)) // committed before
		tx.delKey(h("moved-to"), id(1001))
		tx.addKey(h("moved-back"), id(1001))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	delete(want, newKeysKey(h("k7"), id(7)))
	delete(want, newKeysKey(h("moved-to"), id(1001)))
	want[newKeysKey(h("moved-back"), id(1001))] = true
	if got := entries(); !cmp.Equal(got, want) {
		t.Fatalf("keys index after the second transaction: diff %s", cmp.Diff(want, got))
	}
	// Clear in the transaction that added an entry drops it.
	err = s.w.do(ctx, true, func(tx *wtx) error {
		tx.addKey(h("before-clear"), id(2000))
		return s.clear(tx)
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := entries(); len(got) != 0 {
		t.Fatalf("keys index after Clear: %d entries; want none", len(got))
	}
}

// A body that ends empty, given as nil or streamed, is stored as the
// record's done flag and size 0: no chunks, no marker. A file whose empty
// bodies have markers (as hishel-go wrote them before) reads and purges
// the same.
func TestBoltEmptyBodiesStoreNoChunks(t *testing.T) {
	ctx := context.Background()
	s := openBolt(t, &BoltOptions{DeletedRetention: time.Nanosecond})
	chunks := func() int {
		t.Helper()
		n := 0
		if err := s.db.View(func(tx *bbolt.Tx) error {
			return tx.Bucket(bolt.BucketChunks).ForEach(func(_, _ []byte) error { n++; return nil })
		}); err != nil {
			t.Fatal(err)
		}
		return n
	}
	store := func(key string, req model.Request, resp model.Response) model.PairID {
		t.Helper()
		inc, err := s.CreatePair(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, inc.Request.Body); err != nil {
			t.Fatal(err)
		}
		cp, err := s.AddResponse(ctx, inc.ID, resp, key)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, cp.Response.Body); err != nil {
			t.Fatal(err)
		}
		return inc.ID
	}
	nilBodies := store("nil", getReq("u1"), model.Response{Status: 204, Header: http.Header{}})
	streamed := getReq("u2")
	streamed.Body = model.StringBody("")
	streamedIDs := store("streamed", streamed, okResp(""))
	if n := chunks(); n != 0 {
		t.Fatalf("chunks bucket holds %d entries after storing empty bodies; want none", n)
	}
	for _, key := range []string{"nil", "streamed"} {
		ps, err := s.GetPairs(ctx, key)
		if err != nil || len(ps) != 1 {
			t.Fatalf("GetPairs(%q) = %d pairs, %v; want 1", key, len(ps), err)
		}
		if got := bodies(t, ps); !cmp.Equal(got, []string{"|"}) {
			t.Errorf("GetPairs(%q) bodies = %q; want both empty", key, got)
		}
	}
	// An empty marker left by an older writer is read past and purged.
	var nonce uint64
	if err := s.w.do(ctx, true, func(tx *wtx) error {
		rec, err := tx.record(nilBodies)
		if err != nil || rec == nil {
			return fmt.Errorf("record: %v, %v", rec, err)
		}
		nonce = rec.Nonce
		m := bolt.EncodeMarker(bolt.Marker{})
		tx.put(tx.chunks, bolt.ChunkKey(nonce, bolt.KindResponse, bolt.MarkerSeq, m), m)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if ps, err := s.GetPairs(ctx, "nil"); err != nil || len(ps) != 1 || !cmp.Equal(bodies(t, ps), []string{"|"}) {
		t.Fatalf("GetPairs with an old-style empty marker = %v, %v", ps, err)
	}
	for _, id := range []model.PairID{nilBodies, streamedIDs} {
		if err := s.Remove(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if res, err := s.Cleanup(ctx); err != nil || res.Purged != 2 {
		t.Fatalf("Cleanup = %+v, %v; want 2 purged", res, err)
	}
	if n := chunks(); n != 0 {
		t.Errorf("chunks bucket holds %d entries after the purge; want none", n)
	}
}

// A pair that goes takes its keys and access index entries to the stale
// log; reads skip them; cleanStale deletes them once the log is long
// enough, but keeps an entry whose pair is live under it again, and drops
// malformed log entries.
func TestBoltStaleIndexEntries(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	s := openBolt(t, &BoltOptions{Now: c.Now})
	type index struct{ keys, acc, stale int }
	count := func() index {
		t.Helper()
		var n index
		err := s.db.View(func(tx *bbolt.Tx) error {
			n.keys = tx.Bucket(bolt.BucketKeys).Stats().KeyN
			n.acc = tx.Bucket(bolt.BucketAccess).Stats().KeyN
			n.stale = tx.Bucket(bolt.BucketStale).Stats().KeyN
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	short := getReq("short")
	short.Options.TTL = time.Minute
	expiring := store(t, s, short, okResp("a"), "short")
	removed := store(t, s, getReq("removed"), okResp("b"), "removed")
	kept := store(t, s, getReq("kept"), okResp("c"), "kept")
	for _, p := range []model.CompletePair{expiring, removed, kept} {
		_ = p.Close()
	}
	if got, want := count(), (index{3, 3, 0}); got != want {
		t.Fatalf("after storing: %+v; want %+v", got, want)
	}

	if err := s.Remove(ctx, removed.ID); err != nil {
		t.Fatal(err)
	}
	c.Advance(2 * time.Minute)
	if res, err := s.Cleanup(ctx); err != nil || res.Expired != 1 {
		t.Fatalf("Cleanup = %+v, %v; want 1 expired", res, err)
	}
	// Below staleMin: the entries wait in the log.
	if got, want := count(), (index{3, 3, 4}); got != want {
		t.Fatalf("after Remove and a sweep: %+v; want %+v", got, want)
	}
	// A log too short for a batch costs a read, not a commit.
	commits := s.w.commits.Load()
	if err := s.cleanStale(ctx, staleMin); err != nil {
		t.Fatal(err)
	}
	if n := s.w.commits.Load() - commits; n != 0 {
		t.Errorf("cleanStale on a short log made %d commits; want 0", n)
	}
	for _, key := range []string{"short", "removed"} {
		if ps := mustGet(t, s, key); len(ps) != 0 {
			t.Errorf("GetPairs(%q) = %d pairs; want none (its entry is stale)", key, len(ps))
		}
	}
	// The kept pair's entries logged as stale too (as a pair deleted and
	// then live again would be), and malformed log entries.
	err := s.w.do(ctx, true, func(tx *wtx) error {
		rec, err := tx.record(kept.ID)
		if err != nil || rec == nil {
			return fmt.Errorf("record: %v", err)
		}
		tx.retireKey(bolt.KeyHash(rec.Key), rec.ID)
		tx.retireAccess(rec.LastAccess, rec.ID)
		tx.put(tx.stale, []byte("bad"), []byte{1})
		tx.put(tx.stale, bolt.StaleKey(0), []byte{9, 9})
		_, err = tx.stale.CreateBucket([]byte("nested"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cleanStale(ctx, staleMin); err != nil {
		t.Fatal(err)
	}
	if got, want := count(), (index{3, 3, 7}); got != want {
		t.Fatalf("cleanStale below staleMin: %+v; want %+v (only the malformed keys at the log's end gone)", got, want)
	}
	if err := s.cleanStale(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if got, want := count(), (index{1, 1, 0}); got != want {
		t.Fatalf("after cleanStale: %+v; want %+v", got, want)
	}
	if ps := mustGet(t, s, "kept"); len(ps) != 1 || ps[0].ID != kept.ID {
		t.Fatalf("GetPairs(kept) = %d pairs; want the kept pair", len(ps))
	} else {
		_ = ps[0].Close()
	}
	checkStats(t, s)

	// The log's numbering goes on after a reopen and after Clear, so that
	// a batch never trims entries it did not read.
	seqs := func() []uint64 {
		t.Helper()
		var out []uint64
		if err := s.db.View(func(tx *bbolt.Tx) error {
			return tx.Bucket(bolt.BucketStale).ForEach(func(k, _ []byte) error {
				out = append(out, binary.BigEndian.Uint64(k))
				return nil
			})
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	if err := s.Remove(ctx, kept.ID); err != nil {
		t.Fatal(err)
	}
	before := seqs()
	if len(before) != 2 {
		t.Fatalf("stale log after Remove: %v; want two entries", before)
	}
	path := s.opts.Path
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openBolt(t, &BoltOptions{Path: path, Now: c.Now})
	if err := s.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	after := store(t, s, getReq("after"), okResp("d"), "after")
	_ = after.Close()
	if err := s.Remove(ctx, after.ID); err != nil {
		t.Fatal(err)
	}
	if got := seqs(); len(got) != 2 || got[0] <= before[1] {
		t.Fatalf("stale log after reopen, Clear and Remove: %v; want two entries after %d", got, before[1])
	}
}

// A keys entry both stored and added again in one transaction (a pair given
// the ID of one that went, under the same key, before a batch deleted the
// old entry) and then taken out in that transaction goes too: retired, it is
// logged as stale so that a batch deletes it; deleted (a key change), it is
// deleted at once. Dropping only the new add would leave the stored entry
// with nothing to delete it.
func TestBoltKeyStoredAndAddedGoes(t *testing.T) {
	ctx := context.Background()
	id := model.PairID{15: 1}
	h := bolt.KeyHash("reused")
	for _, c := range []struct {
		name       string
		out        func(tx *wtx)
		afterOut   int // keys entries after the transaction
		afterBatch int
	}{
		{"retireKey", func(tx *wtx) { tx.retireKey(h, id) }, 1, 0},
		{"delKey", func(tx *wtx) { tx.delKey(h, id) }, 0, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := openBolt(t, nil)
			if err := s.w.do(ctx, true, func(tx *wtx) error { tx.addKey(h, id); return nil }); err != nil {
				t.Fatal(err)
			}
			if err := s.w.do(ctx, true, func(tx *wtx) error {
				tx.addKey(h, id)
				c.out(tx)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if n := bucketLen(t, s, bolt.BucketKeys); n != c.afterOut {
				t.Fatalf("keys entries after the transaction: %d; want %d", n, c.afterOut)
			}
			if err := s.cleanStale(ctx, 0); err != nil {
				t.Fatal(err)
			}
			if n := bucketLen(t, s, bolt.BucketKeys); n != c.afterBatch {
				t.Fatalf("keys entries after a batch: %d; want %d (the entry's pair is gone)", n, c.afterBatch)
			}
		})
	}
}

func TestBoltDefaultMmapSize(t *testing.T) {
	for _, c := range []struct {
		goos    string
		intBits int
		want    int
	}{
		{"linux", 64, DefaultInitialMmapSize},
		{"darwin", 64, DefaultInitialMmapSize},
		{"windows", 64, 0}, // bbolt would grow the file to the mapping at once
		{"linux", 32, 0},   // address space is scarce
	} {
		if got := defaultMmapSize(c.goos, c.intBits); got != c.want {
			t.Errorf("defaultMmapSize(%q, %d) = %d; want %d", c.goos, c.intBits, got, c.want)
		}
	}
	def := defaultMmapSize(runtime.GOOS, strconv.IntSize)
	for _, c := range []struct{ in, want int }{{0, def}, {-1, 0}, {1 << 20, 1 << 20}} {
		o, err := (&BoltOptions{Path: "x.db", InitialMmapSize: c.in}).resolved()
		if err != nil || o.InitialMmapSize != c.want {
			t.Errorf("resolved InitialMmapSize %d = %d, %v; want %d", c.in, o.InitialMmapSize, err, c.want)
		}
	}
}

// TestBoltGrowsUnderAReader holds a read transaction open while durable
// pairs grow the file to several MiB. Within the default mapping the
// commits go on; without one, the commit that outgrows the mapping must
// remap, which waits for the reader, and the writes stall until it ends.
func TestBoltGrowsUnderAReader(t *testing.T) {
	for _, c := range []struct {
		name  string
		mmap  int
		stall bool
	}{
		{"default mapping", 0, false},
		{"no initial mapping", -1, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.mmap == 0 && defaultMmapSize(runtime.GOOS, strconv.IntSize) == 0 {
				t.Skipf("no default mapping on %s/%d-bit", runtime.GOOS, strconv.IntSize)
			}
			s := openBolt(t, &BoltOptions{InitialMmapSize: c.mmap})
			reader, err := s.db.Begin(false)
			if err != nil {
				t.Fatal(err)
			}
			released := false
			release := func() {
				if !released {
					released = true
					_ = reader.Rollback()
				}
			}
			defer release()
			body := bytes.Repeat([]byte("b"), 64<<10)
			done := make(chan struct{})
			var werr error
			go func() { // ends once the writes do: at the latest when release lets a stalled commit go on
				defer close(done)
				for i := range 64 { // 4 MiB of bodies
					if werr = storePair(context.Background(), s, fmt.Sprint("https://grow/", i), body); werr != nil {
						return
					}
				}
			}()
			wait := 30 * time.Second // generous for -race; the writes take milliseconds
			if c.stall {
				wait = 300 * time.Millisecond
			}
			select {
			case <-done:
				if c.stall {
					t.Fatal("4 MiB of pairs were committed while a reader held a 32 KiB mapping; want a stall")
				}
			case <-time.After(wait):
				if !c.stall {
					release()
					<-done
					t.Fatalf("writes stalled behind an open reader for %v with the default mapping", wait)
				}
				release()
				<-done
			}
			if werr != nil {
				t.Fatalf("storing: %v", werr)
			}
		})
	}
}
