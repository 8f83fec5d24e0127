package template

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/model"
)

// rawUpdate changes the closed database at path with raw bbolt.
func rawUpdate(tb testing.TB, path string, fn func(tx *bbolt.Tx) error) {
	tb.Helper()
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		tb.Fatal(err)
	}
}

// chunkOf returns the key of the first chunk of a body of the pair with
// the given nonce.
func chunkOf(tb testing.TB, tx *bbolt.Tx, nonce uint64, kind bolt.Kind) []byte {
	tb.Helper()
	k, _ := tx.Bucket(bolt.BucketChunks).Cursor().Seek(bolt.ChunkSeek(nonce, kind, 0))
	if k == nil || !bytes.HasPrefix(k, bolt.ChunkSeek(nonce, kind, 0)) {
		tb.Fatalf("no chunk 0 of nonce %d", nonce)
	}
	return bytes.Clone(k)
}

// A chunk or record that fails its checksum, or a missing chunk, is
// ErrCorrupt from Read or GetPairs, never altered bytes; the next sweep
// removes the pair and the others under its key are served again.
func TestBoltDamagedPairReclaimed(t *testing.T) {
	ctx := context.Background()
	body := strings.Repeat("0123456789", 20_000) // 200 KB: several chunks
	tests := []struct {
		name   string
		damage func(tx *bbolt.Tx, rec *bolt.Record) error
		getErr bool // GetPairs fails (a record), or the body read (a chunk)
		// The counters cannot agree with a scan: the chunks of a pair whose
		// record is damaged stay, and a chunk deleted behind the store's
		// back was counted.
		drift bool
	}{
		{"chunk byte flipped", func(tx *bbolt.Tx, rec *bolt.Record) error {
			b := tx.Bucket(bolt.BucketChunks)
			k := chunkOf(t, tx, rec.Nonce, bolt.KindResponse)
			v := bytes.Clone(b.Get(k))
			v[100] ^= 1
			return b.Put(k, v)
		}, false, false},
		{"chunk missing", func(tx *bbolt.Tx, rec *bolt.Record) error {
			b := tx.Bucket(bolt.BucketChunks)
			k, _ := b.Cursor().Seek(bolt.ChunkSeek(rec.Nonce, bolt.KindResponse, 1))
			return b.Delete(bytes.Clone(k))
		}, false, true},
		{"marker damaged", func(tx *bbolt.Tx, rec *bolt.Record) error {
			b := tx.Bucket(bolt.BucketChunks)
			k, _ := b.Cursor().Seek(bolt.ChunkSeek(rec.Nonce, bolt.KindResponse, bolt.MarkerSeq))
			m := bolt.EncodeMarker(bolt.Marker{Size: rec.RespSize + 1, Chunks: 4})
			if err := b.Delete(bytes.Clone(k)); err != nil {
				return err
			}
			return b.Put(bolt.ChunkKey(rec.Nonce, bolt.KindResponse, bolt.MarkerSeq, m), m)
		}, false, false},
		{"record byte flipped", func(tx *bbolt.Tx, rec *bolt.Record) error {
			b := tx.Bucket(bolt.BucketPairs)
			v := bytes.Clone(b.Get(rec.ID[:]))
			v[len(v)/2] ^= 0x40
			return b.Put(rec.ID[:], v)
		}, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.db")
			s := openBolt(t, &BoltOptions{Path: path})
			bad := store(t, s, getReq("u1"), okResp(body), "k")
			good := store(t, s, getReq("u2"), okResp("good"), "k")
			var rec *bolt.Record
			if err := s.view(func(rt *readTx) (err error) { rec, err = bolt.DecodeRecord(rt.pair(bad.ID)); return err }); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			rawUpdate(t, path, func(tx *bbolt.Tx) error { return tt.damage(tx, rec) })

			s = openBolt(t, &BoltOptions{Path: path})
			ps, err := s.GetPairs(ctx, "k")
			if tt.getErr {
				if !errors.Is(err, model.ErrCorrupt) {
					t.Fatalf("GetPairs over a damaged record: err = %v; want ErrCorrupt", err)
				}
			} else {
				if err != nil || len(ps) != 2 {
					t.Fatalf("GetPairs = %d pairs, %v; want both heads", len(ps), err)
				}
				for _, p := range ps {
					got, err := model.ReadAll(p.Response.Body)
					switch {
					case p.ID == good.ID && (err != nil || string(got) != "good"):
						t.Errorf("the sound pair read back %q, %v", got, err)
					case p.ID == bad.ID && !errors.Is(err, model.ErrCorrupt):
						t.Errorf("the damaged body read back %d bytes, %v; want ErrCorrupt", len(got), err)
					case p.ID == bad.ID && !strings.HasPrefix(body, string(got)):
						t.Errorf("the damaged body read back altered bytes before its error")
					}
					p.Close()
				}
			}
			res, err := s.Cleanup(ctx)
			if err != nil || res.Corrupt != 1 {
				t.Fatalf("Cleanup() = %+v, %v; want the damaged pair removed", res, err)
			}
			if got := bodies(t, mustGet(t, s, "k")); len(got) != 1 || got[0] != "|good" {
				t.Errorf("GetPairs after the sweep = %q; want the sound pair alone", got)
			}
			if _, err := s.GetPair(ctx, bad.ID); !errors.Is(err, model.ErrNotFound) {
				t.Errorf("GetPair(damaged pair) after the sweep: %v; want ErrNotFound", err)
			}
			if !tt.drift {
				checkStats(t, s)
				checkNoOrphanChunks(t, s)
			}
			if res, err := s.Cleanup(ctx); err != nil || res != (model.SweepResult{}) {
				t.Errorf("a second Cleanup() = %+v, %v; want nothing to do", res, err)
			}
		})
	}
}

// Access times taken by a write transaction stay visible to reads until
// the transaction commits, and after it until every read in flight began
// after the commit: a pair read just before its TTL ends is never seen
// expired while its refreshed time is being written.
func TestBoltAccessVisibleWhileWritten(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	s := openBolt(t, &BoltOptions{Now: c.Now, DefaultTTL: 10 * time.Second, AccessFlushInterval: time.Hour})
	store(t, s, getReq("u"), okResp("x"), "k")
	c.Advance(9 * time.Second)
	if n := len(mustGet(t, s, "k")); n != 1 { // read at 9s: expires at 19s now
		t.Fatalf("GetPairs at 9s = %d pairs; want 1", n)
	}
	taken, release := make(chan struct{}), make(chan struct{})
	held := make(chan error, 1)
	go func() {
		held <- s.w.do(ctx, true, func(t *wtx) error {
			s.applyAccess(t) // the batch leaves the gathered times...
			close(taken)
			<-release // ... and its transaction has not committed yet
			return nil
		})
	}()
	<-taken
	c.Advance(3 * time.Second) // 12s: past the stored expiry, not the refreshed one
	// A read whose transaction began before the commit (it reads the
	// record as stored, expiring at 10s) sees the pair live while the batch
	// is written, and after the commit too: hold one open across it.
	// (GetPairs would gather a new access time of its own.)
	id := mustPairID(t, s, "k")
	rt, err := s.rd.get()
	if err != nil {
		t.Fatal(err)
	}
	rec, err := bolt.DecodeRecord(rt.pair(id))
	if err != nil {
		t.Fatal(err)
	}
	if !s.live(rec, c.Now()) {
		t.Errorf("at 12s, while the access batch of the read at 9s is written, the pair looks expired")
	}
	close(release)
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	if !s.live(rec, c.Now()) {
		t.Errorf("at 12s, after the access batch committed, a read begun before the commit sees the pair expired")
	}
	s.rd.put(rt)
	// The batch is dropped once no read from before the commit is left.
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	s.accessMu.Lock()
	left := len(s.applied)
	s.accessMu.Unlock()
	if left != 0 {
		t.Errorf("%d access batches kept after every read ended and a commit; want 0", left)
	}
	if n := len(mustGet(t, s, "k")); n != 1 {
		t.Errorf("GetPairs at 12s after the commit = %d pairs; want 1", n)
	}
}

// mustPairID returns the ID of the one pair stored under key.
func mustPairID(tb testing.TB, s *Bolt, key string) model.PairID {
	tb.Helper()
	var id model.PairID
	err := s.view(func(t *readTx) error {
		h := bolt.KeyHash(key)
		k, _ := t.keysC.Seek(h[:])
		if k == nil || !bytes.HasPrefix(k, h[:]) {
			return fmt.Errorf("no pair under %q", key)
		}
		id = model.PairID(k[bolt.HashLen:])
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return id
}

// Rebuild moves a damaged file, or one of an older format, aside and
// starts empty, logging it; a file of a newer format is left alone.
func TestBoltRebuild(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		make    func(t *testing.T, path string)
		rebuild bool
		want    error // without Rebuild
	}{
		{"damaged", func(t *testing.T, path string) {
			if err := os.WriteFile(path, bytes.Repeat([]byte("damaged "), 4096), 0o600); err != nil {
				t.Fatal(err)
			}
		}, true, model.ErrCorrupt},
		{"older format", func(t *testing.T, path string) {
			s := openBolt(t, &BoltOptions{Path: path})
			s.Close()
			rawUpdate(t, path, func(tx *bbolt.Tx) error {
				return tx.Bucket(bolt.BucketMeta).Put(bolt.MetaFormat, []byte{bolt.FormatVersion - 1})
			})
		}, true, model.ErrFormatVersion},
		{"newer format", func(t *testing.T, path string) {
			s := openBolt(t, &BoltOptions{Path: path})
			s.Close()
			rawUpdate(t, path, func(tx *bbolt.Tx) error {
				return tx.Bucket(bolt.BucketMeta).Put(bolt.MetaFormat, []byte{bolt.FormatVersion + 1})
			})
		}, false, model.ErrFormatVersion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "cache.db")
			tt.make(t, path)
			before, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if s, err := OpenBolt(ctx, &BoltOptions{Path: path, SweepInterval: -1}); !errors.Is(err, tt.want) {
				if err == nil {
					s.Close()
				}
				t.Fatalf("OpenBolt without Rebuild: err = %v; want %v", err, tt.want)
			}
			var logged bytes.Buffer
			logger := slog.New(slog.NewTextHandler(&logged, nil))
			s, err := OpenBolt(ctx, &BoltOptions{Path: path, SweepInterval: -1, Rebuild: true, Logger: logger})
			if !tt.rebuild {
				if !errors.Is(err, tt.want) {
					t.Fatalf("OpenBolt with Rebuild: err = %v; want %v (left alone)", err, tt.want)
				}
				if now, _ := os.ReadFile(path); !bytes.Equal(now, before) {
					t.Errorf("the file was changed")
				}
				return
			}
			if err != nil {
				t.Fatalf("OpenBolt with Rebuild: %v", err)
			}
			defer s.Close()
			store(t, s, getReq("u"), okResp("x"), "k")
			if st := mustStats(t, s); st.Pairs != 1 {
				t.Errorf("rebuilt store: Stats() = %+v; want the one pair stored since", st)
			}
			aside, _ := filepath.Glob(path + ".damaged-*")
			if len(aside) != 1 {
				t.Fatalf("files moved aside: %v; want one", aside)
			}
			if moved, _ := os.ReadFile(aside[0]); !bytes.Equal(moved, before) {
				t.Errorf("the file moved aside differs from the damaged one")
			}
			if !strings.Contains(logged.String(), "moved aside") || !strings.Contains(logged.String(), aside[0]) {
				t.Errorf("log = %q; want the move and the new name", logged.String())
			}
		})
	}
}

// Close writes the free list to the file, so that bbolt reads it at the
// next open instead of walking the tree; while the file is open, commits do
// not (the file is as a crash would leave it), and it is sound.
func TestBoltFreelistInFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.db")
	s := openBolt(t, &BoltOptions{Path: path})
	for i := range 20 {
		store(t, s, getReq("u"), okResp(strings.Repeat("x", 10_000)), fmt.Sprint("k", i))
	}
	check := func(when string, synced bool) {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		st, _ := f.Stat()
		info, err := bolt.CheckFile(f, st.Size(), true)
		if err != nil || info.FreelistSynced != synced || info.Format != bolt.FormatVersion {
			t.Errorf("%s: CheckFile = %+v, %v; want a sound file of this format, free list kept %v", when, info, err, synced)
		}
	}
	check("open, after commits", false)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	check("closed", true)
	s = openBolt(t, &BoltOptions{Path: path})
	if n := len(mustGet(t, s, "k3")); n != 1 {
		t.Errorf("after a reopen, GetPairs(k3) = %d pairs; want 1", n)
	}
}

// When Close has access times to log, the commit that writes the log
// writes the free list too: Close commits once, where a commit of its own
// for the free list would cost another meta page and two syncs; the next
// open reads both.
func TestBoltCloseCommitsOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.db")
	opts := &BoltOptions{Path: path, AccessFlushInterval: time.Hour, SweepInterval: -1}
	s := openBolt(t, opts)
	for i := range 20 {
		store(t, s, getReq("u"), okResp(strings.Repeat("x", 10_000)), fmt.Sprint("k", i))
	}
	if err := s.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"k1", "k2", "k3"} {
		if n := len(mustGet(t, s, k)); n != 1 {
			t.Fatalf("GetPairs(%q) = %d pairs; want 1", k, n)
		}
	}
	txid := func() (id int) {
		err := s.db.View(func(tx *bbolt.Tx) error { id = tx.ID(); return nil })
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	before := txid()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var after int
	_ = db.View(func(tx *bbolt.Tx) error { after = tx.ID(); return nil })
	db.Close()
	if after != before+1 {
		t.Errorf("Close committed %d times; want once", after-before)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := f.Stat()
	info, err := bolt.CheckFile(f, st.Size(), true)
	f.Close()
	if err != nil || !info.FreelistSynced {
		t.Errorf("closed: CheckFile = %+v, %v; want a sound file with its free list kept", info, err)
	}
	if n := len(accessLog(t, path)); n != 3 {
		t.Errorf("access log after Close: %d entries; want 3", n)
	}
	s = openBolt(t, opts)
	if n := len(mustGet(t, s, "k3")); n != 1 {
		t.Errorf("after a reopen, GetPairs(k3) = %d pairs; want 1", n)
	}
}

// A write transaction that fails on a damaged file is not rolled back
// (bbolt would walk the damaged tree in a goroutine of its own): the
// writer stops, every later write fails, reads go on, and Close closes the
// file under bbolt without waiting for the transaction.
func TestBoltWriterStopsOnDamage(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "c.db")
	s, err := OpenBolt(ctx, &BoltOptions{Path: path, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	store(t, s, getReq("u"), okResp("x"), "k")
	damaged := fmt.Errorf("page 7 garbled: %w", model.ErrCorrupt)
	s.w.rollbackCheck = func() error { return damaged }
	err = s.w.do(ctx, true, func(*wtx) error { panic("bbolt met a damaged page") })
	if !errors.Is(err, model.ErrCorrupt) {
		t.Fatalf("an op that panics: %v; want ErrCorrupt", err)
	}
	if err := s.Remove(ctx, mustPairID(t, s, "k")); !errors.Is(err, model.ErrCorrupt) {
		t.Errorf("a write after the writer stopped: %v; want ErrCorrupt", err)
	}
	if n := len(mustGet(t, s, "k")); n != 1 {
		t.Errorf("GetPairs after the writer stopped = %d pairs; want 1: reads go on", n)
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		if !errors.Is(err, model.ErrCorrupt) {
			t.Errorf("Close() = %v; want the damage reported", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return: it waits for the transaction left open")
	}
	// The file's lock is released: it can be opened again (here, where
	// nothing is damaged, it opens).
	s2, err := OpenBolt(ctx, &BoltOptions{Path: path, SweepInterval: -1, OpenTimeout: time.Second})
	if err != nil {
		t.Fatalf("OpenBolt after Close of a stopped writer: %v", err)
	}
	s2.Close()
}

// MaxBytes counts heads: pairs whose 1 MiB heads exceed a 1 MiB budget are
// not kept, and the file stops growing.
func TestBoltBudgetBoundsFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.db")
	s := openBolt(t, &BoltOptions{Path: path, MaxBytes: 1 << 20, InitialMmapSize: -1})
	req := getReq("u")
	req.Header = http.Header{"X-Big": {strings.Repeat("h", 1<<20)}}
	for i := range 60 {
		store(t, s, req, okResp("x"), fmt.Sprint("k", i))
	}
	st := mustStats(t, s)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Pairs != 0 || st.Bytes > 1<<20 || fi.Size() > 16<<20 {
		t.Errorf("60 pairs of 1 MiB heads under a 1 MiB budget: Stats() = %+v, file %d MiB; want no pair, a file under 16 MiB", st, fi.Size()>>20)
	}
}
