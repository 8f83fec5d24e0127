package template

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/model"
)

// accessLog returns the access log a closed file at path holds.
func accessLog(tb testing.TB, path string) map[model.PairID]int64 {
	tb.Helper()
	got := map[model.PairID]int64{}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	err = db.View(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bolt.BucketMeta).Cursor()
		for k, v := c.Seek(bolt.MetaAccessLog); k != nil && bytes.HasPrefix(k, bolt.MetaAccessLog); k, v = c.Next() {
			if err := bolt.DecodeAccessLog(v, func(id model.PairID, at int64) { got[id] = at }); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return got
}

// checkAccessIndex checks that the LRU and expiry indexes hold exactly one
// entry per complete pair, the one its record names, and returns the
// records by key.
func checkAccessIndex(tb testing.TB, s *Bolt) map[string]*bolt.Record {
	tb.Helper()
	recs := map[string]*bolt.Record{}
	err := s.view(func(t *readTx) error {
		acc, exp := map[string]bool{}, map[string]bool{}
		tx := t.tx
		_ = tx.Bucket(bolt.BucketAccess).ForEach(func(k, _ []byte) error { acc[string(k)] = true; return nil })
		_ = tx.Bucket(bolt.BucketExpiry).ForEach(func(k, _ []byte) error { exp[string(k)] = true; return nil })
		return tx.Bucket(bolt.BucketPairs).ForEach(func(k, v []byte) error {
			rec, err := bolt.DecodeRecord(v)
			if err != nil {
				return err
			}
			recs[rec.Key] = rec
			if !acc[string(bolt.TimeKey(rec.LastAccess, rec.ID))] {
				tb.Errorf("pair %s: no access index entry for its last access", rec.Key)
			}
			if rec.Expires != 0 && !exp[string(bolt.TimeKey(rec.Expires, rec.ID))] {
				tb.Errorf("pair %s: no expiry index entry for its expiry", rec.Key)
			}
			delete(acc, string(bolt.TimeKey(rec.LastAccess, rec.ID)))
			delete(exp, string(bolt.TimeKey(rec.Expires, rec.ID)))
			return nil
		})
	})
	if err != nil {
		tb.Fatal(err)
	}
	return recs
}

// Access times gathered when a Bolt closes are not written into their
// records (a page per pair read) but logged, and the next OpenBolt takes
// them back: a pair read before Close keeps its refreshed TTL after the
// reopen, and the background flush then writes it into its record and the
// indexes.
func TestBoltAccessLog(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	path := filepath.Join(t.TempDir(), "c.db")
	opts := &BoltOptions{Path: path, Now: c.Now, DefaultTTL: 10 * time.Second, AccessFlushInterval: time.Hour}
	s := openBolt(t, opts)
	for _, k := range []string{"a", "b", "c"} {
		store(t, s, getReq("https://example.com/"+k), okResp(k), k)
	}
	created := c.Now()
	c.Advance(9 * time.Second)
	read := c.Now()
	for _, k := range []string{"a", "b"} {
		if n := len(mustGet(t, s, k)); n != 1 {
			t.Fatalf("GetPairs(%q) at 9s = %d pairs; want 1", k, n)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	logged := accessLog(t, path)
	if len(logged) != 2 {
		t.Fatalf("access log after Close has %d entries; want 2", len(logged))
	}
	for id, at := range logged {
		if at != bolt.UnixNano(read) {
			t.Errorf("access log: pair %s read at %d; want %d", id, at, bolt.UnixNano(read))
		}
	}

	s = openBolt(t, opts)
	// The log is taken back as gathered times: written by the flush.
	s.flushAccess(ctx)
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	recs := checkAccessIndex(t, s)
	for k, want := range map[string]time.Time{"a": read, "b": read, "c": created} {
		if got := bolt.Time(recs[k].LastAccess); !got.Equal(want) {
			t.Errorf("pair %q: LastAccess %v after the reopen and flush; want %v", k, got, want)
		}
	}
	if got, want := bolt.Time(recs["a"].Expires), read.Add(10*time.Second); !got.Equal(want) {
		t.Errorf("pair a: Expires %v after the reopen and flush; want %v", got, want)
	}
	c.Advance(3 * time.Second) // 12s: past the stored expiry (10s), not the refreshed one (19s)
	for k, want := range map[string]int{"a": 1, "b": 1, "c": 0} {
		if got := len(mustGet(t, s, k)); got != want {
			t.Errorf("after the reopen, GetPairs(%q) at 12s = %d pairs; want %d", k, got, want)
		}
	}
	s.flushAccess(ctx)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(accessLog(t, path)); n != 0 {
		t.Errorf("access log after the flush and Close: %d entries; want none", n)
	}
}

// A damaged access log makes OpenBolt fail with ErrCorrupt, as damaged
// counters do; Rebuild starts over.
func TestBoltAccessLogDamaged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.db")
	s := openBolt(t, &BoltOptions{Path: path})
	store(t, s, getReq("https://example.com/"), okResp("x"), "k")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string][]byte{
		"checksum": append(bolt.AppendAccess(nil, model.NewPairID(), 1), 1, 2, 3, 4),
		"length":   bolt.SealAccessLog([]byte("short")),
		"time":     bolt.SealAccessLog(bolt.AppendAccess(nil, model.NewPairID(), 0)),
	} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "c.db")
			copyFile(t, path, p)
			rawUpdate(t, p, func(tx *bbolt.Tx) error { return tx.Bucket(bolt.BucketMeta).Put(bolt.AccessLogKey(0), v) })
			s, err := OpenBolt(context.Background(), &BoltOptions{Path: p})
			if err == nil {
				s.Close()
			}
			if !errors.Is(err, model.ErrCorrupt) {
				t.Fatalf("OpenBolt with a damaged access log: %v; want ErrCorrupt", err)
			}
			s, err = OpenBolt(context.Background(), &BoltOptions{Path: p, Rebuild: true})
			if err != nil {
				t.Fatalf("OpenBolt with Rebuild: %v", err)
			}
			s.Close()
		})
	}
}

// The background flush writes access times accessBatch pairs per op, each
// batch in key order, and leaves the rest gathered (and seen by reads)
// until its turn; the indexes end consistent.
func TestBoltAccessFlushBatches(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	s := openBolt(t, &BoltOptions{NoSync: true, Now: c.Now, DefaultTTL: time.Minute, AccessFlushInterval: time.Hour})
	n := accessBatch + 100
	for i := range n {
		k := fmt.Sprint("k", i)
		store(t, s, getReq("https://example.com/"+k), okResp(k), k)
	}
	c.Advance(time.Second)
	for i := range n {
		if got := len(mustGet(t, s, fmt.Sprint("k", i))); got != 1 {
			t.Fatalf("GetPairs(k%d) = %d pairs; want 1", i, got)
		}
	}
	var more bool
	if err := s.w.do(ctx, true, func(t *wtx) error { more = s.applyAccessN(t, 10); return nil }); err != nil {
		t.Fatal(err)
	}
	s.accessMu.Lock()
	left := len(s.access)
	s.accessMu.Unlock()
	if !more || left != n-10 {
		t.Fatalf("applyAccessN(10) of %d: more %v, %d left; want true, %d", n, more, left, n-10)
	}
	s.flushAccess(ctx)
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	s.accessMu.Lock()
	left = len(s.access)
	s.accessMu.Unlock()
	if left != 0 {
		t.Fatalf("%d access times left after flushAccess; want 0", left)
	}
	for k, rec := range checkAccessIndex(t, s) {
		if got, want := bolt.Time(rec.LastAccess), c.Now(); !got.Equal(want) {
			t.Fatalf("pair %s: LastAccess %v; want %v", k, got, want)
		}
	}
}
