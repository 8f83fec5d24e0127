package template

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hishel-go/hishel/model"
)

// readerStall is how long a body being read may go without a read before
// its pair may be evicted again: a reader that stalls longer (or is never
// read to its end nor closed) no longer holds its pair in the store.
const readerStall = time.Minute

// errEvicting is a pair being evicted, which GetPairs leaves out.
var errEvicting = errors.New("pair being evicted")

// readPin marks a pair whose body is being read in this process: eviction
// (MaxBytes, MaxPairs, MaxVariants) passes over it, so that a body being
// served is not cut short by the pressure of other pairs. Removal asked
// for (Remove, Delete, Clear, a sweep past retention) still ends the read
// with model.ErrRemoved.
type readPin struct {
	n  atomic.Int32 // bodies being read
	at atomic.Int64 // unix ns of their last read
}

// doomedFor is how long a pair evicted by a committed transaction stays
// unpinnable: longer than any GetPairs whose snapshot predates the commit
// takes to pin the bodies it read (microseconds to milliseconds).
const doomedFor = 10 * time.Second

// readPins holds the pins of the pairs being read, and the pairs being
// evicted. Bolt holds its file alone, so the pins of this process are all
// there are. Eviction and pinning meet under mu: a pair is either pinned
// first, and stays, or marked for eviction first, and then GetPairs, whose
// snapshot may predate the eviction's commit, leaves it out instead of
// pinning it (its body would end with model.ErrRemoved).
type readPins struct {
	mu     sync.Mutex
	pins   map[model.PairID]*readPin
	doomed map[model.PairID]int64 // unix ns of the eviction's commit; 0: not yet committed
	mark   int                    // len(doomed) after the last prune
}

// pin marks one more body of id as being read, at now. It returns nil if
// id is being evicted.
func (p *readPins) pin(id model.PairID, now int64) *readPin {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.doomed[id]; ok {
		return nil
	}
	if p.pins == nil {
		p.pins = make(map[model.PairID]*readPin)
	}
	r := p.pins[id]
	if r == nil {
		r = new(readPin)
		p.pins[id] = r
	}
	r.n.Add(1)
	r.at.Store(now)
	return r
}

// unpin marks one body of id, pinned as r, as no longer read.
func (p *readPins) unpin(id model.PairID, r *readPin) {
	if r.n.Add(-1) > 0 {
		return
	}
	p.mu.Lock()
	if p.pins[id] == r && r.n.Load() <= 0 {
		delete(p.pins, id)
	}
	p.mu.Unlock()
}

// evict reports whether id may be evicted at now: no body of it is being
// read, or its readers stalled beyond readerStall (their pin is dropped).
// If so, id is marked as being evicted until settle.
func (p *readPins) evict(id model.PairID, now int64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if r := p.pins[id]; r != nil {
		if r.n.Load() > 0 && now-r.at.Load() < int64(readerStall) {
			return false
		}
		delete(p.pins, id)
	}
	if p.doomed == nil {
		p.doomed = make(map[model.PairID]int64)
	}
	p.doomed[id] = 0
	return true
}

// settle ends the evictions of a transaction: committed at now, or rolled
// back (the pairs stay, and may be pinned again).
func (p *readPins) settle(ids []model.PairID, committed bool, now int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, id := range ids {
		if committed {
			p.doomed[id] = now
		} else {
			delete(p.doomed, id)
		}
	}
	if len(p.doomed) >= max(1024, 2*p.mark) { // amortised: each prune halves what is left to grow
		p.pruneDoomed(now)
	}
}

// pruneDoomed forgets the evictions committed doomedFor before now. The
// caller holds p.mu.
func (p *readPins) pruneDoomed(now int64) {
	for id, at := range p.doomed {
		if at != 0 && now-at >= int64(doomedFor) {
			delete(p.doomed, id)
		}
	}
	p.mark = len(p.doomed)
}

// prune drops the pins of readers stalled beyond readerStall (bodies
// neither read to their end nor closed) and old evictions, and says how
// many pins are left.
func (p *readPins) prune(now int64) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, r := range p.pins {
		if r.n.Load() <= 0 || now-r.at.Load() >= int64(readerStall) {
			delete(p.pins, id)
		}
	}
	p.pruneDoomed(now)
	return len(p.pins)
}
