//go:build unix

package template

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/internal/testclock"
	"github.com/hishel-go/hishel/internal/testserver"
	"github.com/hishel-go/hishel/model"
)

var accessTables atomic.Int64

// openAccess opens a store with tables of its own in database dsn, whose
// access times are written only when the test flushes them (no background
// flush or sweep), on clock c.
func openAccess(t *testing.T, dsn string, c *testclock.Clock, o PostgresOptions) *Postgres {
	t.Helper()
	o.ConnString = dsn
	o.Table = fmt.Sprint("acc", accessTables.Add(1))
	o.Now = c.Now
	o.AccessFlushInterval = time.Hour
	o.SweepInterval = -1
	if o.DefaultTTL == 0 {
		o.DefaultTTL = time.Minute
	}
	s, err := OpenPostgres(context.Background(), &o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// putPair stores a complete pair without bodies under key and returns its
// ID.
func putPair(ctx context.Context, s *Postgres, key string) (model.PairID, error) {
	inc, err := s.CreatePair(ctx, model.Request{Method: "GET", URL: "https://example.com/" + key})
	if err != nil {
		return model.PairID{}, err
	}
	_, err = s.AddResponse(ctx, inc.ID, model.Response{Status: 200}, key)
	return inc.ID, err
}

func mustPut(t *testing.T, s *Postgres, key string) model.PairID {
	t.Helper()
	id, err := putPair(context.Background(), s, key)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// count returns how many pairs GetPairs serves under key.
func count(t *testing.T, s *Postgres, key string) int {
	t.Helper()
	ps, err := s.GetPairs(context.Background(), key)
	if err != nil {
		t.Fatalf("GetPairs(%q) error = %v", key, err)
	}
	for _, p := range ps {
		p.Close()
	}
	return len(ps)
}

// stored returns pair id's record as the database holds it.
func stored(t *testing.T, s *Postgres, id model.PairID) *bolt.Record {
	t.Helper()
	rec, _, err := s.load(context.Background(), nil, id, false)
	if err != nil || rec == nil {
		t.Fatalf("load(%s) = %v, %v", id, rec, err)
	}
	return rec
}

// holdFlush makes s's next access batch stop, before (written false) or
// after its statement, until the test sends the outcome of its
// transaction on the returned release channel (nil: commit); held is
// closed once the batch stopped. Later batches run through.
func holdFlush(s *Postgres, at bool) (held chan struct{}, release chan error) {
	held, release = make(chan struct{}), make(chan error)
	var first atomic.Bool
	first.Store(true)
	s.flushHook = func(written bool) error {
		if written != at || !first.CompareAndSwap(true, false) {
			return nil
		}
		close(held)
		return <-release
	}
	return held, release
}

var errInjected = errors.New("injected failure")

func newAccessClock() *testclock.Clock {
	return testclock.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
}

// A read gathered while the transaction that writes it runs counts for
// GetPairs and GetPair: a pair that refreshes on access, read a moment
// ago, is not judged by its stored expiry alone. If the transaction rolls
// back, the read is gathered again and the next flush writes it.
func TestPostgresReadWhileFlushing(t *testing.T) {
	dsn := testserver.Postgres(t).DSN()
	for _, tc := range []struct {
		name    string
		outcome error
	}{{"commit", nil}, {"rollback", errInjected}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			c := newAccessClock()
			s := openAccess(t, dsn, c, PostgresOptions{})
			id := mustPut(t, s, "a") // expires at 60s
			c.Advance(50 * time.Second)
			if n := count(t, s, "a"); n != 1 { // refreshed: expires at 110s
				t.Fatalf("GetPairs at 50s = %d pairs; want 1", n)
			}
			read := c.Now()
			held, release := holdFlush(s, true)
			flushed := make(chan error, 1)
			go func() { flushed <- s.flushAccess(ctx) }()
			<-held
			c.Advance(20 * time.Second) // 70s: past the stored expiry
			if _, err := s.GetPair(ctx, id); err != nil {
				t.Errorf("GetPair at 70s, the read at 50s being written: %v; want the pair", err)
			}
			if n := count(t, s, "a"); n != 1 {
				t.Errorf("GetPairs at 70s, the read at 50s being written = %d pairs; want 1", n)
			}
			release <- tc.outcome
			if err := <-flushed; !errors.Is(err, tc.outcome) {
				t.Fatalf("flushAccess = %v; want %v", err, tc.outcome)
			}
			// Committed, the read at 50s is stored; rolled back, not.
			if got, want := bolt.Time(stored(t, s, id).LastAccess), read; got.Equal(want) != (tc.outcome == nil) {
				t.Errorf("LastAccess once the flush ended (%v) = %v; the read at 50s is %v", tc.outcome, got, want)
			}
			// Either way the next flush stores the read at 70s.
			if err := s.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			rec, want := stored(t, s, id), c.Now()
			if got := bolt.Time(rec.LastAccess); !got.Equal(want) {
				t.Errorf("LastAccess = %v; want %v", got, want)
			}
			if got := bolt.Time(rec.Expires); !got.Equal(want.Add(time.Minute)) {
				t.Errorf("Expires = %v; want %v", got, want.Add(time.Minute))
			}
			if n := s.reads.Pending(); n != 0 {
				t.Errorf("%d reads pending after Sync; want 0", n)
			}
		})
	}
}

// A flush whose transaction fails loses none of its reads: the next flush
// writes them. One that fails to serialize is tried again by inTx, and
// the attempt that commits writes them, once: nothing is left to write.
func TestPostgresFailedFlushKeepsReads(t *testing.T) {
	dsn := testserver.Postgres(t).DSN()
	serialization := &pgconn.PgError{Code: "40001", Message: "could not serialize access (injected)"}
	for _, tc := range []struct {
		name     string
		written  bool  // the failure comes after the statement
		err      error // the failure
		attempts int   // batches written (or tried) by the first flush
		retried  bool  // inTx tries again: the first flush writes the reads
	}{
		{"before the statement", false, errInjected, 1, false},
		{"after the statement", true, errInjected, 1, false},
		{"retried serialization failure", true, serialization, 2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			c := newAccessClock()
			s := openAccess(t, dsn, c, PostgresOptions{})
			id := mustPut(t, s, "a")
			completed := stored(t, s, id).LastAccess
			c.Advance(50 * time.Second)
			if n := count(t, s, "a"); n != 1 {
				t.Fatalf("GetPairs at 50s = %d pairs; want 1", n)
			}
			read := c.Now()
			var batches, failed int
			s.flushHook = func(written bool) error {
				if !written {
					batches++
				}
				if written == tc.written && failed == 0 {
					failed++
					return tc.err
				}
				return nil
			}
			err := s.flushAccess(ctx)
			if tc.retried && err != nil || !tc.retried && !errors.Is(err, tc.err) {
				t.Fatalf("flushAccess = %v; want %v", err, map[bool]error{true: nil, false: tc.err}[tc.retried])
			}
			if batches != tc.attempts {
				t.Errorf("flushAccess wrote %d batches; want %d", batches, tc.attempts)
			}
			if !tc.retried {
				if got := stored(t, s, id).LastAccess; got != completed {
					t.Fatalf("LastAccess after the failed flush = %v; want %v (rolled back)", bolt.Time(got), bolt.Time(completed))
				}
				if err := s.flushAccess(ctx); err != nil {
					t.Fatal(err)
				}
				if batches != tc.attempts+1 {
					t.Errorf("the next flush wrote %d batches; want 1", batches-tc.attempts)
				}
			}
			rec := stored(t, s, id)
			if got := bolt.Time(rec.LastAccess); !got.Equal(read) {
				t.Errorf("LastAccess = %v; want %v", got, read)
			}
			if got := bolt.Time(rec.Expires); !got.Equal(read.Add(time.Minute)) {
				t.Errorf("Expires = %v; want %v", got, read.Add(time.Minute))
			}
			// Written once: nothing is left pending to be written again.
			before := batches
			if err := s.flushAccess(ctx); err != nil {
				t.Fatal(err)
			}
			if n := s.reads.Pending(); n != 0 || batches != before {
				t.Errorf("after the reads are written, %d pending and a further flush wrote %d batches; want 0 and 0", n, batches-before)
			}
		})
	}
}

// Eviction ranks by a read whose flush is under way when the budget is
// exceeded, whether that flush then commits or rolls back: under MaxPairs
// 2, pairs a and b stored, a read, then c stored while a's read is being
// written (its transaction has not written it yet), b goes.
func TestPostgresEvictionCountsFlushingReads(t *testing.T) {
	dsn := testserver.Postgres(t).DSN()
	for _, tc := range []struct {
		name    string
		outcome error
	}{{"commit", nil}, {"rollback", errInjected}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			c := newAccessClock()
			s := openAccess(t, dsn, c, PostgresOptions{MaxPairs: 2, DefaultTTL: time.Hour})
			mustPut(t, s, "a")
			c.Advance(time.Second)
			mustPut(t, s, "b")
			c.Advance(time.Second)
			if n := count(t, s, "a"); n != 1 {
				t.Fatalf("GetPairs(a) = %d pairs; want 1", n)
			}
			c.Advance(time.Second)
			held, release := holdFlush(s, false)
			flushed := make(chan error, 1)
			go func() { flushed <- s.flushAccess(ctx) }()
			<-held
			// c completes, and a pair is evicted, while a's flush waits.
			if _, err := putPair(ctx, s, "c"); err != nil {
				t.Fatalf("storing c: %v", err)
			}
			release <- tc.outcome
			if err := <-flushed; !errors.Is(err, tc.outcome) {
				t.Fatalf("flushAccess = %v; want %v", err, tc.outcome)
			}
			for k, want := range map[string]int{"a": 1, "b": 0, "c": 1} {
				if got := count(t, s, k); got != want {
					t.Errorf("GetPairs(%q) after c is stored under MaxPairs 2 = %d pairs; want %d", k, got, want)
				}
			}
		})
	}
}

// MaxVariants ranks a key's variants by a read whose flush is under way
// when a new variant completes: under MaxVariants 2, variants a and b
// stored under one key, a read, then c stored while a's read is being
// written, b goes.
func TestPostgresVariantsCountFlushingReads(t *testing.T) {
	dsn := testserver.Postgres(t).DSN()
	ctx := context.Background()
	c := newAccessClock()
	s := openAccess(t, dsn, c, PostgresOptions{MaxVariants: 2, DefaultTTL: time.Hour})
	ids := map[string]model.PairID{}
	for _, v := range []string{"a", "b"} {
		inc, err := s.CreatePair(ctx, model.Request{Method: "GET", URL: "https://example.com/" + v})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.AddResponse(ctx, inc.ID, model.Response{Status: 200}, "k"); err != nil {
			t.Fatal(err)
		}
		ids[v] = inc.ID
		c.Advance(time.Second)
	}
	ps, err := s.GetPairs(ctx, "k")
	if err != nil || len(ps) != 2 {
		t.Fatalf("GetPairs(k) = %d pairs, %v; want 2", len(ps), err)
	}
	for _, p := range ps {
		p.Close()
	}
	if err := s.flushAccess(ctx); err != nil {
		t.Fatal(err)
	}
	// A read of a alone (GetPairs reads every variant of the key: gather
	// one as it would).
	c.Advance(time.Second)
	s.reads.Read(s.reads.BeginRead(), []*bolt.Record{stored(t, s, ids["a"])}, bolt.UnixNano(c.Now()), s.expiry)
	c.Advance(time.Second)
	held, release := holdFlush(s, false)
	flushed := make(chan error, 1)
	go func() { flushed <- s.flushAccess(ctx) }()
	<-held
	inc, err := s.CreatePair(ctx, model.Request{Method: "GET", URL: "https://example.com/c"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddResponse(ctx, inc.ID, model.Response{Status: 200}, "k"); err != nil {
		t.Fatal(err)
	}
	release <- nil
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
	ps, err = s.GetPairs(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	got := map[model.PairID]bool{}
	for _, p := range ps {
		got[p.ID] = true
		p.Close()
	}
	if len(got) != 2 || !got[ids["a"]] || !got[inc.ID] {
		t.Errorf("variants under k after c = %v; want a (%s) and c (%s)", got, ids["a"], inc.ID)
	}
}
