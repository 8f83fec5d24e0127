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

// openDirAccess opens a Dir whose access times are written only when the
// test flushes them (no background flush or sweep), on clock c unless o
// has a clock.
func openDirAccess(t *testing.T, c *testclock.Clock, o DirOptions) *Dir {
	t.Helper()
	o.Path = filepath.Join(t.TempDir(), "d")
	if o.Now == nil {
		o.Now = c.Now
	}
	o.NoSync = true
	o.AccessFlushInterval = time.Hour
	o.SweepInterval = -1
	if o.DefaultTTL == 0 {
		o.DefaultTTL = time.Minute
	}
	d, err := OpenDir(context.Background(), &o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// dirPut stores a complete pair without bodies under key and returns its
// ID.
func dirPut(t *testing.T, d *Dir, key string) model.PairID {
	t.Helper()
	ctx := context.Background()
	inc, err := d.CreatePair(ctx, model.Request{Method: "GET", URL: "https://example.com/" + key})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.AddResponse(ctx, inc.ID, model.Response{Status: 200}, key); err != nil {
		t.Fatal(err)
	}
	return inc.ID
}

// dirCount returns how many pairs GetPairs serves under key.
func dirCount(t *testing.T, d *Dir, key string) int {
	t.Helper()
	ps, err := d.GetPairs(context.Background(), key)
	if err != nil {
		t.Fatalf("GetPairs(%q) error = %v", key, err)
	}
	for _, p := range ps {
		p.Close()
	}
	return len(ps)
}

// dirStored returns pair id's record as its file holds it.
func dirStored(t *testing.T, d *Dir, id model.PairID) *bolt.Record {
	t.Helper()
	rec, _, err := d.readRecord(id)
	if err != nil || rec == nil {
		t.Fatalf("readRecord(%s) = %v, %v", id, rec, err)
	}
	return rec
}

// holdDirFlush makes d's next access batch stop, before (written false)
// or after its records are written, until the test sends the outcome of
// its change on the returned release channel (nil: it goes on and
// finishes); held is closed once the batch stopped. Later batches run
// through.
func holdDirFlush(d *Dir, at bool) (held chan struct{}, release chan error) {
	held, release = make(chan struct{}), make(chan error)
	first := true
	d.flushHook = func(written bool) error {
		if written != at || !first {
			return nil
		}
		first = false
		close(held)
		return <-release
	}
	return held, release
}

var errDirInjected = errors.New("injected failure")

// A read gathered while the change that writes it runs counts for
// GetPairs and GetPair: a pair that refreshes on access, read a moment
// ago, is not judged by its stored expiry alone. If the change fails, the
// read is gathered again and the next flush writes it (a failure after
// the records were written leaves them written: Dir has no rollback).
func TestDirReadWhileFlushing(t *testing.T) {
	for _, tc := range []struct {
		name    string
		written bool // where the flush stops: after its records are written
		outcome error
	}{
		{"before/finish", false, nil},
		{"before/fail", false, errDirInjected},
		{"after/finish", true, nil},
		{"after/fail", true, errDirInjected},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			c := testclock.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
			d := openDirAccess(t, c, DirOptions{})
			id := dirPut(t, d, "a") // expires at 60s
			c.Advance(50 * time.Second)
			if n := dirCount(t, d, "a"); n != 1 { // refreshed: expires at 110s
				t.Fatalf("GetPairs at 50s = %d pairs; want 1", n)
			}
			read := c.Now()
			held, release := holdDirFlush(d, tc.written)
			flushed := make(chan error, 1)
			go func() { flushed <- d.flushAccess(ctx) }()
			<-held
			c.Advance(20 * time.Second) // 70s: past the expiry stored before the flush
			if _, err := d.GetPair(ctx, id); err != nil {
				t.Errorf("GetPair at 70s, the read at 50s being written: %v; want the pair", err)
			}
			if n := dirCount(t, d, "a"); n != 1 {
				t.Errorf("GetPairs at 70s, the read at 50s being written = %d pairs; want 1", n)
			}
			release <- tc.outcome
			if err := <-flushed; !errors.Is(err, tc.outcome) {
				t.Fatalf("flushAccess = %v; want %v", err, tc.outcome)
			}
			// The read at 50s is stored if the flush got past its records.
			wrote := tc.written || tc.outcome == nil
			if got := bolt.Time(dirStored(t, d, id).LastAccess); got.Equal(read) != wrote {
				t.Errorf("LastAccess once the flush ended (%v) = %v; the read at 50s is %v, written: %v", tc.outcome, got, read, wrote)
			}
			// Either way the next flush stores the read at 70s.
			if err := d.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			rec, want := dirStored(t, d, id), c.Now()
			if got := bolt.Time(rec.LastAccess); !got.Equal(want) {
				t.Errorf("LastAccess = %v; want %v", got, want)
			}
			if got := bolt.Time(rec.Expires); !got.Equal(want.Add(time.Minute)) {
				t.Errorf("Expires = %v; want %v", got, want.Add(time.Minute))
			}
			if n := d.reads.Pending(); n != 0 {
				t.Errorf("%d reads pending after Sync; want 0", n)
			}
		})
	}
}

// A flush whose change fails loses none of its reads: the next flush
// writes those it had not written.
func TestDirFailedFlushKeepsReads(t *testing.T) {
	for _, at := range []bool{false, true} {
		ctx := context.Background()
		c := testclock.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
		d := openDirAccess(t, c, DirOptions{})
		id := dirPut(t, d, "a")
		completed := dirStored(t, d, id).LastAccess
		c.Advance(50 * time.Second)
		if n := dirCount(t, d, "a"); n != 1 {
			t.Fatalf("GetPairs at 50s = %d pairs; want 1", n)
		}
		read := c.Now()
		d.flushHook = func(written bool) error {
			if written == at {
				return errDirInjected
			}
			return nil
		}
		if err := d.flushAccess(ctx); !errors.Is(err, errDirInjected) {
			t.Fatalf("flushAccess failing (after the records: %v) = %v; want %v", at, err, errDirInjected)
		}
		if got, want := dirStored(t, d, id).LastAccess, map[bool]int64{false: completed, true: bolt.UnixNano(read)}[at]; got != want {
			t.Fatalf("failure after the records: %v: LastAccess after the failed flush = %v; want %v", at, bolt.Time(got), bolt.Time(want))
		}
		if n := d.reads.Pending(); n != 1 {
			t.Errorf("failure after the records: %v: %d reads pending after the failed flush; want 1", at, n)
		}
		d.flushHook = nil
		if err := d.flushAccess(ctx); err != nil {
			t.Fatal(err)
		}
		rec := dirStored(t, d, id)
		if got := bolt.Time(rec.LastAccess); !got.Equal(read) {
			t.Errorf("failure after the records: %v: LastAccess after the next flush = %v; want %v", at, got, read)
		}
		if got := bolt.Time(rec.Expires); !got.Equal(read.Add(time.Minute)) {
			t.Errorf("failure after the records: %v: Expires after the next flush = %v; want %v", at, got, read.Add(time.Minute))
		}
		if n := d.reads.Pending(); n != 0 {
			t.Errorf("failure after the records: %v: %d reads pending after the next flush; want 0", at, n)
		}
	}
}

// Eviction ranks by a read whose flush was under way when the budget was
// exceeded, whether that flush finishes or fails: under MaxPairs 2, pairs
// a and b stored, a read, then c stored, b goes.
func TestDirEvictionCountsFlushingReads(t *testing.T) {
	for _, tc := range []struct {
		name    string
		outcome error
	}{{"finish", nil}, {"fail", errDirInjected}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			c := testclock.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
			d := openDirAccess(t, c, DirOptions{MaxPairs: 2, DefaultTTL: time.Hour})
			dirPut(t, d, "a")
			c.Advance(time.Second)
			dirPut(t, d, "b")
			c.Advance(time.Second)
			if n := dirCount(t, d, "a"); n != 1 {
				t.Fatalf("GetPairs(a) = %d pairs; want 1", n)
			}
			c.Advance(time.Second)
			held, release := holdDirFlush(d, false)
			flushed := make(chan error, 1)
			go func() { flushed <- d.flushAccess(ctx) }()
			<-held
			stored := make(chan error, 1)
			go func() { // waits for the lock
				inc, err := d.CreatePair(ctx, model.Request{Method: "GET", URL: "https://example.com/c"})
				if err == nil {
					_, err = d.AddResponse(ctx, inc.ID, model.Response{Status: 200}, "c")
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
				if got := dirCount(t, d, k); got != want {
					t.Errorf("GetPairs(%q) after c is stored under MaxPairs 2 = %d pairs; want %d", k, got, want)
				}
			}
		})
	}
}

// A flush that finishes while GetPairs is between reading a record and
// judging it does not hide the read it wrote from that GetPairs: the
// record it read is the one before the flush.
func TestDirReadAcrossFlush(t *testing.T) {
	ctx := context.Background()
	c := testclock.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	var during func() // run by the clock once, as GetPairs asks the time
	o := DirOptions{Now: func() time.Time {
		if f := during; f != nil {
			during = nil
			f()
		}
		return c.Now()
	}}
	d := openDirAccess(t, c, o)
	id := dirPut(t, d, "a") // expires at 60s
	c.Advance(50 * time.Second)
	if n := dirCount(t, d, "a"); n != 1 { // refreshed: expires at 110s
		t.Fatalf("GetPairs at 50s = %d pairs; want 1", n)
	}
	c.Advance(20 * time.Second) // 70s
	flushed := false
	during = func() {
		if err := d.flushAccess(ctx); err != nil {
			t.Errorf("flushAccess = %v", err)
		}
		flushed = true
	}
	if n := dirCount(t, d, "a"); n != 1 {
		t.Errorf("GetPairs at 70s, the read at 50s written as it judged = %d pairs; want 1", n)
	}
	if !flushed {
		t.Fatal("the flush did not run during GetPairs")
	}
	if got, want := bolt.Time(dirStored(t, d, id).LastAccess), c.Now().Add(-20*time.Second); !got.Equal(want) {
		t.Errorf("LastAccess after the flush = %v; want %v", got, want)
	}
}
