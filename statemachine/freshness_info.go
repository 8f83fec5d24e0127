package statemachine

import (
	"time"

	"github.com/hishel-go/hishel/model"
)

// Freshness is how fresh a stored response is (RFC 9111 §4.2), for
// inspection tools: the state machine's own view of it.
type Freshness struct {
	// Lifetime is the response's freshness lifetime, Heuristic whether it
	// is a heuristic one (§4.2.2); Age its current age (§4.2.3).
	Lifetime  time.Duration
	Heuristic bool
	Age       time.Duration
	// FreshUntil is when the response becomes stale, or became stale when
	// it is in the past: now plus Lifetime less Age.
	FreshUntil time.Time
}

// Fresh reports whether the response is fresh.
func (f Freshness) Fresh() bool { return f.Lifetime > f.Age }

// Freshness returns the freshness of the stored pair p as of the clock's
// now, as Next would judge it (shared or private, heuristics).
func (o *Options) Freshness(p *model.CompletePair) Freshness {
	now := o.now()
	e := o.analyse(p, now)
	return Freshness{Lifetime: e.lifetime, Heuristic: e.heuristic, Age: e.age, FreshUntil: now.Add(e.lifetime - e.age)}
}
