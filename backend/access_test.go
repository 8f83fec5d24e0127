package backend

import (
	"errors"
	"testing"

	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/model"
)

// times returns the time a read begun now counts for pair id.
func times(a *AccessTimes, id model.PairID) int64 {
	r := a.BeginRead()
	defer a.EndRead(r)
	return a.Time(r, id)
}

func TestAccessTimesBatchVisibleUntilWritten(t *testing.T) {
	id := model.PairID{1}
	errTx := errors.New("rolled back")
	for _, tc := range []struct {
		name        string
		err         error // the batch's outcome
		wantPending int   // after End
	}{
		{"committed", nil, 0},
		{"rolled back", errTx, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var a AccessTimes
			r := a.BeginRead()
			a.Read(r, []*bolt.Record{{ID: id}}, 100, func(*bolt.Record, int64) int64 { return 0 })
			b := a.Take(false)
			if b == nil || len(b.Reads) != 1 || b.Reads[0].ID != id || b.Reads[0].At != 100 {
				t.Fatalf("Take = %+v; want the read of %s at 100", b, id)
			}
			if a.Pending() != 0 {
				t.Errorf("Pending() after Take = %d; want 0", a.Pending())
			}
			if got := times(&a, id); got != 100 {
				t.Errorf("Time while the batch is written = %d; want 100", got)
			}
			a.End(b, tc.err)
			if a.Pending() != tc.wantPending {
				t.Errorf("Pending() after End(%v) = %d; want %d", tc.err, a.Pending(), tc.wantPending)
			}
			if len(a.batches) != 0 {
				t.Errorf("%d batches kept with no read in flight; want 0", len(a.batches))
			}
		})
	}
}

// A batch rolled back goes back to pending without overwriting a later
// read; a later read already pending keeps its time.
func TestAccessTimesRollbackKeepsNewer(t *testing.T) {
	var a AccessTimes
	older, newer := model.PairID{1}, model.PairID{2}
	live := func(*bolt.Record, int64) int64 { return 0 }
	a.Read(a.BeginRead(), []*bolt.Record{{ID: older}, {ID: newer}}, 100, live)
	b := a.Take(false)
	a.Read(a.BeginRead(), []*bolt.Record{{ID: newer}}, 200, live)
	a.End(b, errors.New("rolled back"))
	if got := a.pending[older].At; got != 100 {
		t.Errorf("pending time of %s = %d; want 100 (gone back)", older, got)
	}
	if got := a.pending[newer].At; got != 200 {
		t.Errorf("pending time of %s = %d; want 200 (the later read)", newer, got)
	}
}

// A batch committed stays visible to a read that began before the commit
// (its snapshot may predate it), not to one that began after, and goes
// once the earlier read ends.
func TestAccessTimesCommittedSeenByEarlierReads(t *testing.T) {
	var a AccessTimes
	id := model.PairID{1}
	a.Read(a.BeginRead(), []*bolt.Record{{ID: id}}, 100, func(*bolt.Record, int64) int64 { return 0 })
	b := a.Take(false)
	before := a.BeginRead()
	a.End(b, nil)
	after := a.BeginRead()
	if got := a.Time(before, id); got != 100 {
		t.Errorf("Time for a read begun before the commit = %d; want 100", got)
	}
	if got := a.Time(after, id); got != 0 {
		t.Errorf("Time for a read begun after the commit = %d; want 0 (the database has it)", got)
	}
	a.EndRead(after)
	if len(a.batches) != 1 {
		t.Fatalf("%d batches while a read from before the commit runs; want 1", len(a.batches))
	}
	a.EndRead(before)
	if len(a.batches) != 0 {
		t.Errorf("%d batches once every read ended; want 0", len(a.batches))
	}
}

// Read judges expiry by the latest time gathered, in a batch being
// written included, and gathers a read only of the pairs it returns.
func TestAccessTimesRead(t *testing.T) {
	var a AccessTimes
	id, other := model.PairID{1}, model.PairID{2}
	a.Read(a.BeginRead(), []*bolt.Record{{ID: id}}, 100, func(*bolt.Record, int64) int64 { return 0 })
	b := a.Take(false)
	defer a.End(b, nil)
	// A pair lives 50ns past its latest access.
	expiry := func(rec *bolt.Record, at int64) int64 { return max(rec.Completed, at) + 50 }
	recs := []*bolt.Record{{ID: id, Completed: 10}, {ID: other, Completed: 10}}
	got := a.Read(a.BeginRead(), recs, 120, expiry)
	if len(got) != 1 || got[0].ID != id || got[0].LastAccess != 120 {
		t.Fatalf("Read at 120 = %v; want only %s (read at 100, in a batch being written), accessed at 120", got, id)
	}
	if a.pending[id].At != 120 {
		t.Errorf("pending time of %s = %d; want 120", id, a.pending[id].At)
	}
	if _, ok := a.pending[other]; ok {
		t.Errorf("the expired pair's read was gathered")
	}
}

// With inFlight, Take's reads hold the batches being written too, and
// those stay theirs: a rollback of one gives back only its own reads.
func TestAccessTimesTakeInFlight(t *testing.T) {
	var a AccessTimes
	x, y := model.PairID{1}, model.PairID{2}
	live := func(*bolt.Record, int64) int64 { return 0 }
	a.Read(a.BeginRead(), []*bolt.Record{{ID: x}}, 100, live)
	flush := a.Take(false)
	a.Read(a.BeginRead(), []*bolt.Record{{ID: y}}, 200, live)
	rank := a.Take(true)
	if len(rank.Reads) != 2 || rank.Reads[0].ID != x || rank.Reads[1].ID != y {
		t.Fatalf("Take(true).Reads = %+v; want %s and %s in ID order", rank.Reads, x, y)
	}
	if got := a.Take(false); got != nil {
		t.Errorf("Take(false) with nothing pending = %+v; want nil", got)
	}
	a.End(rank, errors.New("rolled back"))
	if _, ok := a.pending[x]; ok || a.pending[y].At != 200 {
		t.Errorf("pending after the ranking batch rolled back = %v; want only %s", a.pending, y)
	}
	a.End(flush, nil)
}

func TestAccessTimesForgetAndClear(t *testing.T) {
	var a AccessTimes
	x, y := model.PairID{1}, model.PairID{2}
	live := func(*bolt.Record, int64) int64 { return 0 }
	a.Read(a.BeginRead(), []*bolt.Record{{ID: x}, {ID: y}}, 100, live)
	b := a.Take(false)
	a.Read(a.BeginRead(), []*bolt.Record{{ID: x}}, 200, live)
	a.Forget(x)
	if got := times(&a, x); got != 0 {
		t.Errorf("Time(%s) after Forget = %d; want 0", x, got)
	}
	a.Clear()
	if got := times(&a, y); got != 0 {
		t.Errorf("Time(%s) after Clear = %d; want 0", y, got)
	}
	a.End(b, errors.New("rolled back"))
	if a.Pending() != 0 {
		t.Errorf("Pending() after a rollback of forgotten reads = %d; want 0", a.Pending())
	}
}
