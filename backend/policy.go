package backend

import (
	"fmt"
	"time"

	"github.com/hishel-go/hishel/model"
)

// Defaults of the settings every backend shares.
const (
	DefaultSweepInterval    = 10 * time.Minute
	DefaultDeletedRetention = 7 * 24 * time.Hour
	DefaultIncompleteAge    = time.Hour
	DefaultChunkSize        = 64 << 10
	// MaxChunkSize is the largest ChunkSize a backend accepts.
	MaxChunkSize = 16 << 20
	// DefaultMaxVariants is the most complete live pairs kept per cache
	// key when MaxVariants is zero.
	DefaultMaxVariants = 32
)

// Settings are the options every backend offers under the same names, as
// a user sets them: zero fields mean the defaults. A backend's options
// struct has these fields and hands them to [NewPolicy].
type Settings struct {
	// DefaultTTL is how long a pair lives after it is stored (or last
	// read, see RefreshTTLOnAccess) unless its request says otherwise.
	// Zero or model.NoExpiry: pairs never expire; any other negative
	// value is invalid.
	DefaultTTL time.Duration
	// RefreshTTLOnAccess says whether reading a pair restarts its TTL:
	// yes unless model.NoRefresh.
	RefreshTTLOnAccess model.Refresh
	// SweepInterval is how often the background sweep runs. Default
	// DefaultSweepInterval; negative: never.
	SweepInterval time.Duration
	// DeletedRetention is how long soft-deleted pairs are kept. Default
	// DefaultDeletedRetention.
	DeletedRetention time.Duration
	// IncompleteAge is how old an incomplete pair gets before a sweep
	// removes it. Default DefaultIncompleteAge.
	IncompleteAge time.Duration
	// MaxBytes is a budget for stored bytes; zero: none; negative: invalid.
	MaxBytes int64
	// MaxPairs caps the live complete pairs; zero: no cap; negative:
	// invalid.
	MaxPairs int
	// MaxVariants caps the complete live pairs kept per cache key:
	// storing one more under a key evicts the least recently used others
	// beyond it. Zero: DefaultMaxVariants; negative: no cap.
	MaxVariants int
	// ChunkSize is the size of stored body chunks. Default
	// DefaultChunkSize; at most MaxChunkSize.
	ChunkSize int
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Policy is the rules of a pair's life that every backend shares, with the
// defaults applied: how long pairs live, when sweeps run and what they
// reclaim, and the budgets. A backend keeps one, made by [NewPolicy].
type Policy struct {
	// DefaultTTL is the TTL of a pair whose request sets none; zero: no
	// expiry.
	DefaultTTL time.Duration
	// Refresh is whether reading a pair restarts its TTL, unless its
	// request says otherwise.
	Refresh bool
	// SweepInterval is the background sweep's period; zero or negative:
	// no background sweep.
	SweepInterval time.Duration
	// Retention is how long soft-deleted pairs are kept.
	Retention time.Duration
	// IncompleteAge is the age at which a sweep removes an incomplete pair.
	IncompleteAge time.Duration
	// MaxBytes is the byte budget; zero: none.
	MaxBytes int64
	// MaxPairs is the cap on live complete pairs; zero: none.
	MaxPairs int
	// MaxVariants is the cap on complete live pairs per key; zero: none.
	MaxVariants int
	// ChunkSize is the size of stored body chunks.
	ChunkSize int
	// Now is the clock.
	Now func() time.Time
}

// NewPolicy applies the defaults documented on [Settings]. Invalid
// settings fail with an error wrapping model.ErrInvalid.
func NewPolicy(s Settings) (Policy, error) {
	p := Policy{
		DefaultTTL:    s.DefaultTTL,
		Refresh:       s.RefreshTTLOnAccess != model.NoRefresh,
		SweepInterval: s.SweepInterval,
		Retention:     s.DeletedRetention,
		IncompleteAge: s.IncompleteAge,
		MaxBytes:      s.MaxBytes,
		MaxPairs:      s.MaxPairs,
		MaxVariants:   s.MaxVariants,
		ChunkSize:     s.ChunkSize,
		Now:           s.Now,
	}
	switch {
	case p.MaxVariants == 0:
		p.MaxVariants = DefaultMaxVariants
	case p.MaxVariants < 0:
		p.MaxVariants = 0
	}
	switch {
	case p.DefaultTTL == model.NoExpiry:
		p.DefaultTTL = 0
	case p.DefaultTTL < 0:
		return p, fmt.Errorf("hishel: negative DefaultTTL %v (model.NoExpiry means none): %w", p.DefaultTTL, model.ErrInvalid)
	}
	if p.SweepInterval == 0 {
		p.SweepInterval = DefaultSweepInterval
	}
	if p.Retention <= 0 {
		p.Retention = DefaultDeletedRetention
	}
	if p.IncompleteAge <= 0 {
		p.IncompleteAge = DefaultIncompleteAge
	}
	if p.MaxBytes < 0 {
		return p, fmt.Errorf("hishel: negative MaxBytes %d: %w", p.MaxBytes, model.ErrInvalid)
	}
	if p.MaxPairs < 0 {
		return p, fmt.Errorf("hishel: negative MaxPairs %d: %w", p.MaxPairs, model.ErrInvalid)
	}
	if p.ChunkSize <= 0 {
		p.ChunkSize = DefaultChunkSize
	}
	if p.ChunkSize > MaxChunkSize {
		return p, fmt.Errorf("hishel: ChunkSize %d over 16 MiB: %w", p.ChunkSize, model.ErrInvalid)
	}
	if p.Now == nil {
		p.Now = time.Now
	}
	return p, nil
}

// TTLFor resolves a request's TTL and refresh options against the
// defaults: ttl zero means the pair never expires. A negative TTL other
// than model.NoExpiry fails with an error wrapping model.ErrInvalid.
func (p *Policy) TTLFor(o model.RequestOptions) (ttl time.Duration, refresh bool, err error) {
	switch {
	case o.TTL > 0:
		ttl = o.TTL
	case o.TTL == 0:
		ttl = p.DefaultTTL
	case o.TTL != model.NoExpiry:
		return 0, false, fmt.Errorf("hishel: negative TTL %v (model.NoExpiry means none): %w", o.TTL, model.ErrInvalid)
	}
	switch o.Refresh {
	case model.RefreshOnAccess:
		refresh = true
	case model.NoRefresh:
		refresh = false
	default:
		refresh = p.Refresh
	}
	return ttl, refresh, nil
}

// Maintain runs a backend's maintenance loop until stop is closed: it
// calls tick every tickEvery (if positive) and sweep every sweepEvery (if
// positive), then tick once more, and closes done. A backend runs it in
// the goroutine it owns from open to Close (go Maintain(...)); Close
// closes stop and waits for done. tick and sweep run one at a time, in
// that goroutine.
func Maintain(stop <-chan struct{}, done chan<- struct{}, tickEvery time.Duration, tick func(),
	sweepEvery time.Duration, sweep func()) {
	defer close(done)
	var tickC, sweepC <-chan time.Time
	if tickEvery > 0 {
		tk := time.NewTicker(tickEvery)
		defer tk.Stop()
		tickC = tk.C
	}
	if sweepEvery > 0 {
		tk := time.NewTicker(sweepEvery)
		defer tk.Stop()
		sweepC = tk.C
	}
	for {
		select {
		case <-stop:
			if tick != nil {
				tick()
			}
			return
		case <-tickC:
			tick()
		case <-sweepC:
			sweep()
		}
	}
}

// FillChunk copies as much of p as fits into the chunk being filled, cur,
// and returns cur, the rest of p, and whether cur is now a full chunk of
// size bytes. A new chunk starts at the size of what fills it (at least
// 512 bytes), then grows to at least 4 KiB and doubles up to size, so that
// a small body costs its own size, not a chunk's.
func FillChunk(cur, p []byte, size int) (_ []byte, rest []byte, full bool) {
	if len(cur) == cap(cur) && cap(cur) < size {
		want := max(4<<10, 2*cap(cur), len(cur)+len(p))
		if cap(cur) == 0 {
			want = max(512, len(p))
		}
		grown := make([]byte, len(cur), min(size, want))
		copy(grown, cur)
		cur = grown
	}
	n := min(len(p), cap(cur)-len(cur))
	cur = append(cur, p[:n]...)
	return cur, p[n:], len(cur) == size
}

// CallUpdate calls fn, the function given to UpdatePairFunc, with p, and
// turns a panic in it into an error: a caller's bug fails that call
// only, before anything changes.
func CallUpdate(fn func(model.CompletePair) (model.CompletePair, error), p model.CompletePair) (next model.CompletePair, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("hishel: panic in storage operation: %v", r)
		}
	}()
	return fn(p)
}
