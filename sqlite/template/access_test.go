package template

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/internal/testclock"
	"github.com/hishel-go/hishel/model"
)

// openAccess opens a SQLite whose access times are written only when the
// test flushes them (no background flush or sweep), on clock c.
func openAccess(t *testing.T, c *testclock.Clock, o SQLiteOptions) *SQLite {
	t.Helper()
	o.Path = filepath.Join(t.TempDir(), "access.db")
	o.Now = c.Now
	o.AccessFlushInterval = time.Hour
	o.SweepInterval = -1
	if o.DefaultTTL == 0 {
		o.DefaultTTL = time.Minute
	}
	s, err := OpenSQLite(context.Background(), &o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// putPair stores a complete pair without bodies under key and returns its
// ID.
func putPair(t *testing.T, s *SQLite, key string) model.PairID {
	t.Helper()
	ctx := context.Background()
	inc, err := s.CreatePair(ctx, model.Request{Method: "GET", URL: "https://example.com/" + key})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddResponse(ctx, inc.ID, model.Response{Status: 200}, key); err != nil {
		t.Fatal(err)
	}
	return inc.ID
}

// count returns how many pairs GetPairs serves under key.
func count(t *testing.T, s *SQLite, key string) int {
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
func stored(t *testing.T, s *SQLite, id model.PairID) *bolt.Record {
	t.Helper()
	rec, _, err := s.load(context.Background(), s.r, id)
	if err != nil || rec == nil {
		t.Fatalf("load(%s) = %v, %v", id, rec, err)
	}
	return rec
}

// holdFlush makes s's next access batch stop, before (written false) or
// after its statements, until the test sends the outcome of its
// transaction on the returned release channel (nil: commit); held is
// closed once the batch stopped. Later batches run through.
func holdFlush(s *SQLite, at bool) (held chan struct{}, release chan error) {
	held, release = make(chan struct{}), make(chan error)
	first := true
	s.flushHook = func(written bool) error {
		if written != at || !first {
			return nil
		}
		first = false
		close(held)
		return <-release
	}
	return held, release
}

var errInjected = errors.New("injected failure")

// A read gathered while the transaction that writes it runs counts for
// GetPairs and GetPair: a pair that refreshes on access, read a moment
// ago, is not judged by its stored expiry alone. If the transaction rolls
// back, the read is gathered again and the next flush writes it.
func TestSQLiteReadWhileFlushing(t *testing.T) {
	for _, tc := range []struct {
		name    string
		outcome error
	}{{"commit", nil}, {"rollback", errInjected}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			c := testclock.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
			s := openAccess(t, c, SQLiteOptions{})
			id := putPair(t, s, "a") // expires at 60s
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
			if got, want := bolt.Time(stored(t, s, id).LastAccess), read; (got.Equal(want)) != (tc.outcome == nil) {
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
// writes them.
func TestSQLiteFailedFlushKeepsReads(t *testing.T) {
	for _, at := range []bool{false, true} {
		ctx := context.Background()
		c := testclock.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
		s := openAccess(t, c, SQLiteOptions{})
		id := putPair(t, s, "a")
		completed := stored(t, s, id).LastAccess
		c.Advance(50 * time.Second)
		if n := count(t, s, "a"); n != 1 {
			t.Fatalf("GetPairs at 50s = %d pairs; want 1", n)
		}
		read := c.Now()
		s.flushHook = func(written bool) error {
			if written == at {
				return errInjected
			}
			return nil
		}
		if err := s.flushAccess(ctx); !errors.Is(err, errInjected) {
			t.Fatalf("flushAccess failing (after the statements: %v) = %v; want %v", at, err, errInjected)
		}
		if got := stored(t, s, id).LastAccess; got != completed {
			t.Fatalf("LastAccess after the failed flush = %v; want %v (rolled back)", bolt.Time(got), bolt.Time(completed))
		}
		s.flushHook = nil
		if err := s.flushAccess(ctx); err != nil {
			t.Fatal(err)
		}
		rec := stored(t, s, id)
		if got := bolt.Time(rec.LastAccess); !got.Equal(read) {
			t.Errorf("failure after the statements: %v: LastAccess after the next flush = %v; want %v", at, got, read)
		}
		if got := bolt.Time(rec.Expires); !got.Equal(read.Add(time.Minute)) {
			t.Errorf("failure after the statements: %v: Expires after the next flush = %v; want %v", at, got, read.Add(time.Minute))
		}
	}
}

// Eviction ranks by a read whose flush was under way when the budget was
// exceeded, whether that flush commits or rolls back: under MaxPairs 2,
// pairs a and b stored, a read, then c stored, b goes.
func TestSQLiteEvictionCountsFlushingReads(t *testing.T) {
	for _, tc := range []struct {
		name    string
		outcome error
	}{{"commit", nil}, {"rollback", errInjected}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			c := testclock.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
			s := openAccess(t, c, SQLiteOptions{MaxPairs: 2, DefaultTTL: time.Hour})
			putPair(t, s, "a")
			c.Advance(time.Second)
			putPair(t, s, "b")
			c.Advance(time.Second)
			if n := count(t, s, "a"); n != 1 {
				t.Fatalf("GetPairs(a) = %d pairs; want 1", n)
			}
			c.Advance(time.Second)
			held, release := holdFlush(s, false)
			flushed := make(chan error, 1)
			go func() { flushed <- s.flushAccess(ctx) }()
			<-held
			stored := make(chan error, 1)
			go func() { // waits for the write connection
				inc, err := s.CreatePair(ctx, model.Request{Method: "GET", URL: "https://example.com/c"})
				if err == nil {
					_, err = s.AddResponse(ctx, inc.ID, model.Response{Status: 200}, "c")
				}
				stored <- err
			}()
			release <- tc.outcome
			if err := <-flushed; !errors.Is(err, tc.outcome) {
				t.Fatalf("flushAccess = %v; want %v", err, tc.outcome)
			}
			if err := <-stored; err != nil {
				t.Fatalf("storing c: %v", err)
			}
			for k, want := range map[string]int{"a": 1, "b": 0, "c": 1} {
				if got := count(t, s, k); got != want {
					t.Errorf("GetPairs(%q) after c is stored under MaxPairs 2 = %d pairs; want %d", k, got, want)
				}
			}
		})
	}
}
