package template

import (
	"fmt"
	"time"

	"github.com/hishel-go/hishel/model"
)

// policy holds the rules of a pair's life that every backend shares, with
// the defaults applied.
type policy struct {
	defaultTTL    time.Duration // 0: no expiry
	refresh       bool
	sweepInterval time.Duration // <= 0: no background sweep
	retention     time.Duration
	incompleteAge time.Duration
	maxBytes      int64 // 0: no budget
	chunkSize     int
	now           func() time.Time
}

// newPolicy applies the defaults documented on the options types.
func newPolicy(defaultTTL time.Duration, refresh model.Refresh, sweep, retention, incompleteAge time.Duration,
	maxBytes int64, chunkSize int, now func() time.Time) (policy, error) {
	p := policy{
		defaultTTL:    max(defaultTTL, 0),
		refresh:       refresh != model.NoRefresh,
		sweepInterval: sweep,
		retention:     retention,
		incompleteAge: incompleteAge,
		maxBytes:      maxBytes,
		chunkSize:     chunkSize,
		now:           now,
	}
	if p.sweepInterval == 0 {
		p.sweepInterval = DefaultSweepInterval
	}
	if p.retention <= 0 {
		p.retention = DefaultDeletedRetention
	}
	if p.incompleteAge <= 0 {
		p.incompleteAge = DefaultIncompleteAge
	}
	if p.maxBytes < 0 {
		return p, fmt.Errorf("hishel: negative MaxBytes %d: %w", p.maxBytes, model.ErrInvalid)
	}
	if p.chunkSize <= 0 {
		p.chunkSize = DefaultChunkSize
	}
	if p.chunkSize > 16<<20 {
		return p, fmt.Errorf("hishel: ChunkSize %d over 16 MiB: %w", p.chunkSize, model.ErrInvalid)
	}
	if p.now == nil {
		p.now = time.Now
	}
	return p, nil
}

// ttlFor resolves a request's TTL and refresh options against the defaults.
func (p *policy) ttlFor(o model.RequestOptions) (ttl time.Duration, refresh bool) {
	switch {
	case o.TTL > 0:
		ttl = o.TTL
	case o.TTL == 0:
		ttl = p.defaultTTL
	}
	switch o.Refresh {
	case model.RefreshOnAccess:
		refresh = true
	case model.NoRefresh:
		refresh = false
	default:
		refresh = p.refresh
	}
	return ttl, refresh
}

// maintain runs a backend's maintenance goroutine until stop is closed:
// tick every tickEvery (if positive), sweep every sweepEvery (if positive),
// and tick once more before it closes done.
func maintain(stop <-chan struct{}, done chan<- struct{}, tickEvery time.Duration, tick func(),
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
			tick()
			return
		case <-tickC:
			tick()
		case <-sweepC:
			sweep()
		}
	}
}

// fillChunk copies as much of p as fits into the chunk being filled, cur,
// and returns cur, the rest of p, and whether cur is now a full chunk of
// size bytes. A new chunk starts at the size of what fills it (at least
// 512 bytes), then grows to at least 4 KiB and doubles up to size, so that
// a small body costs its own size, not a chunk's.
func fillChunk(cur, p []byte, size int) (_ []byte, rest []byte, full bool) {
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
