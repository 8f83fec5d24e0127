package backend

import (
	"bytes"
	"slices"
	"sync"

	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/model"
)

// Access is a read of a pair that a backend has gathered and not written
// yet: when it happened (unix ns) and, for a pair with a MaxTTL, the time
// past which the refresh it makes may not move the pair's expiry (0: no
// limit; see CapExpiry).
type Access struct{ At, Limit int64 }

// PairAccess is a pair's gathered Access.
type PairAccess struct {
	ID model.PairID
	Access
}

// AccessTimes gathers the access times of reads, for a backend that
// writes them in batches in transactions of its own or of other changes
// (SQLite, PostgreSQL), and keeps every read it gathered visible to the
// reads that judge expiry (a pair that refreshes on access) until the
// database shows it to them:
//
//   - a read is pending until a transaction takes it (Take);
//   - a batch taken stays visible while its transaction runs, and goes
//     back to pending if the transaction rolls back (End), without
//     overwriting a read gathered since;
//   - a batch committed stays visible to the reads that began (BeginRead)
//     before its commit, whose snapshot of the database may not hold it,
//     and is dropped once they have all ended.
//
// A read that judges expiry brackets its query with BeginRead and Read
// (or Time and EndRead). A transaction that takes a batch calls End
// exactly once when it commits or rolls back, whatever fn did.
//
// The zero AccessTimes is ready to use, and safe for concurrent use.
type AccessTimes struct {
	mu      sync.Mutex
	pending map[model.PairID]Access
	// batches are those taken: running, or committed while a read that
	// began before the commit is in flight.
	batches []*AccessBatch
	commits uint64         // batches committed so far
	reads   map[uint64]int // reads in flight, by commits when they began
}

// AccessBatch is access times taken by a transaction (see
// AccessTimes.Take).
type AccessBatch struct {
	// Reads are the times the transaction writes, in pair ID order: the
	// writer's to read, never to change.
	Reads []PairAccess
	// times are the reads the batch owns (those it took from pending),
	// as reads see them: Forget and Clear delete from it. Guarded by
	// AccessTimes.mu.
	times     map[model.PairID]Access
	committed bool
	commit    uint64 // AccessTimes.commits once it committed
}

// AccessRead is a read in flight (see AccessTimes.BeginRead).
type AccessRead struct{ since uint64 }

// Pending returns how many reads are gathered and not taken.
func (a *AccessTimes) Pending() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.pending)
}

// BeginRead marks the start of a read that judges expiry by gathered
// times, before its query; Read, or EndRead, ends it.
func (a *AccessTimes) BeginRead() AccessRead {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.reads == nil {
		a.reads = make(map[uint64]int)
	}
	a.reads[a.commits]++
	return AccessRead{since: a.commits}
}

// EndRead ends r without a Read.
func (a *AccessTimes) EndRead(r AccessRead) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.endRead(r)
}

func (a *AccessTimes) endRead(r AccessRead) {
	if a.reads[r.since]--; a.reads[r.since] <= 0 {
		delete(a.reads, r.since)
	}
	a.prune()
}

// Time returns the latest gathered access time of pair id (0: none) that
// r, begun with BeginRead, may not find in the database.
func (a *AccessTimes) Time(r AccessRead, id model.PairID) int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.time(r, id)
}

func (a *AccessTimes) time(r AccessRead, id model.PairID) int64 {
	at := a.pending[id].At
	for _, b := range a.batches {
		if b.committed && b.commit <= r.since {
			continue // in r's snapshot
		}
		if t, ok := b.times[id]; ok && t.At > at {
			at = t.At
		}
	}
	return at
}

// Read ends r, a read of recs at now, and returns those of recs that
// are live: each one's expiry, by expiry(rec, its latest gathered access
// time, 0 for none), is 0 or after now. Each live record's read at now is
// gathered and noted in it: LastAccess is now, and Expires what the read
// makes it (Expiry).
func (a *AccessTimes) Read(r AccessRead, recs []*bolt.Record, now int64, expiry func(*bolt.Record, int64) int64) []*bolt.Record {
	a.mu.Lock()
	defer a.mu.Unlock()
	defer a.endRead(r)
	live := recs[:0]
	for _, rec := range recs {
		exp := expiry(rec, a.time(r, rec.ID))
		if exp != 0 && now >= exp {
			continue
		}
		if a.pending == nil {
			a.pending = make(map[model.PairID]Access)
		}
		a.pending[rec.ID] = Access{At: now, Limit: CapExpiry(rec.Completed, rec.ReqOptions, 0)}
		rec.LastAccess, rec.Expires = now, exp
		rec.Expires = Expiry(rec, now)
		live = append(live, rec)
	}
	return live
}

// Take takes the pending reads for a transaction to write, as a batch
// that the transaction must End; nil if there is nothing to write. With
// inFlight, the batch's Reads also hold the times of the batches other
// transactions are writing (they stay theirs): a transaction that ranks
// pairs by access time writes them too, so that its ranking counts them
// whatever those transactions become.
func (a *AccessTimes) Take(inFlight bool) *AccessBatch {
	a.mu.Lock()
	defer a.mu.Unlock()
	b := &AccessBatch{times: a.pending}
	a.pending = nil
	reads := make(map[model.PairID]Access, len(b.times))
	for id, t := range b.times {
		reads[id] = t
	}
	if inFlight {
		for _, o := range a.batches {
			if o.committed {
				continue
			}
			for id, t := range o.times {
				if t.At > reads[id].At {
					reads[id] = t
				}
			}
		}
	}
	if len(reads) == 0 {
		return nil
	}
	b.Reads = make([]PairAccess, 0, len(reads))
	for id, t := range reads {
		b.Reads = append(b.Reads, PairAccess{ID: id, Access: t})
	}
	slices.SortFunc(b.Reads, func(x, y PairAccess) int { return bytes.Compare(x.ID[:], y.ID[:]) })
	a.batches = append(a.batches, b)
	return b
}

// End ends b's transaction: committed if err is nil, rolled back
// otherwise, when b's reads go back to pending unless a later read of
// the same pair was gathered meanwhile.
func (a *AccessTimes) End(b *AccessBatch, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err == nil {
		a.commits++
		b.committed, b.commit = true, a.commits
	} else {
		for id, t := range b.times {
			if t.At > a.pending[id].At {
				if a.pending == nil {
					a.pending = make(map[model.PairID]Access)
				}
				a.pending[id] = t
			}
		}
		a.batches = slices.DeleteFunc(a.batches, func(o *AccessBatch) bool { return o == b })
	}
	a.prune()
}

// prune drops the committed batches that no read in flight began before.
func (a *AccessTimes) prune() {
	oldest, reading := uint64(0), false
	for since := range a.reads {
		if !reading || since < oldest {
			oldest, reading = since, true
		}
	}
	a.batches = slices.DeleteFunc(a.batches, func(b *AccessBatch) bool {
		return b.committed && (!reading || b.commit <= oldest)
	})
}

// Forget drops every gathered read of pair id: a change to the pair
// (UpdatePair) decides its expiry from now on.
func (a *AccessTimes) Forget(id model.PairID) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.pending, id)
	for _, b := range a.batches {
		delete(b.times, id)
	}
}

// Clear drops every gathered read (Clear of the store).
func (a *AccessTimes) Clear() {
	a.mu.Lock()
	defer a.mu.Unlock()
	clear(a.pending)
	for _, b := range a.batches {
		clear(b.times)
	}
}
