package statemachine

import (
	"net/http"
	"slices"
	"time"

	"github.com/hishel-go/hishel/model"
)

// secs converts delta-seconds to a Duration.
func secs(n int64) time.Duration { return time.Duration(n) * time.Second }

// entry is a stored pair analysed at one moment: its directives, times,
// freshness lifetime and current age.
type entry struct {
	pair      *model.CompletePair
	cc        CacheControl
	ccPresent bool
	targeted  bool // cc is a targeted field's: Expires is ignored (RFC 9213 §2.1)
	reqT      time.Time
	respT     time.Time
	date      time.Time // date_value: the Date field, or response_time
	lifetime  time.Duration
	heuristic bool
	age       time.Duration
}

// dateValue returns the Date field of h, or fallback when it is absent or
// invalid.
func dateValue(h http.Header, fallback, now time.Time) time.Time {
	if d, _, ok := headerDate(h, "Date", now); ok {
		return d
	}
	return fallback
}

// analyse computes what the state machine needs to know about p at now.
func (o *Options) analyse(p *model.CompletePair, now time.Time) entry {
	h := p.Response.Header
	e := entry{pair: p}
	e.cc, e.ccPresent, e.targeted = o.responseCC(h)
	e.reqT, e.respT = pairTimes(reqRespTimes{p.Meta.Created, p.Meta.Completed}, h)
	e.date = dateValue(h, e.respT, now)
	e.lifetime, e.heuristic = o.freshnessLifetime(h, &e.cc, e.targeted, p.Response.Status, e.date, now)
	e.age = currentAge(h, e.reqT, e.respT, e.date, now)
	return e
}

func (e *entry) fresh() bool { return e.lifetime > e.age }

// noCache reports whether the stored response may never be used without
// validation: no-cache, or Pragma: no-cache without Cache-Control (read as
// RFC 7234 §5.4 reads it in requests).
func (e *entry) noCache() bool {
	return e.cc.NoCache || !e.ccPresent && hasPragmaNoCache(e.pair.Response.Header)
}

// staleness is how long the response has been stale (negative while
// fresh).
func (e *entry) staleness() time.Duration { return e.age - e.lifetime }

// freshnessLifetime implements RFC 9111 §4.2.1, in its order: s-maxage
// (shared caches only), max-age, Expires minus Date, then a heuristic
// (§4.2.2). An invalid or conflicting explicit value gives a lifetime of
// zero: the response is stale (§4.2.1, §5.3). When cc comes from a
// targeted field, Expires is ignored (RFC 9213 §2.1).
func (o *Options) freshnessLifetime(h http.Header, cc *CacheControl, targeted bool, status int, date, now time.Time) (time.Duration, bool) {
	if o.shared() && cc.SMaxAge.Present {
		return deltaLifetime(cc.SMaxAge), false
	}
	if cc.MaxAge.Present {
		return deltaLifetime(cc.MaxAge), false
	}
	if vs := h["Expires"]; len(vs) > 0 && !targeted {
		exp, ok := ParseHTTPDate(vs[0], now)
		for _, v := range vs[1:] {
			if t, ok2 := ParseHTTPDate(v, now); !ok2 || !t.Equal(exp) {
				ok = false
			}
		}
		if !ok || !exp.After(date) {
			return 0, false
		}
		return exp.Sub(date), false
	}
	on, fraction, maxLife := o.heuristics()
	if !on || !(slices.Contains(HeuristicallyCacheableStatusCodes, status) || cc.Public) {
		return 0, false
	}
	lm, _, ok := headerDate(h, "Last-Modified", now)
	if !ok || !lm.Before(date) {
		return 0, false
	}
	f := float64(date.Sub(lm)) * fraction
	if f >= float64(maxLife) {
		return maxLife, true
	}
	return time.Duration(f), true
}

func deltaLifetime(d Delta) time.Duration {
	if !d.Valid {
		return 0
	}
	return secs(d.Seconds)
}

// ageValue returns the Age field's value in seconds (RFC 9111 §5.1): the
// first member of the first line; an invalid value is ignored (zero).
func ageValue(h http.Header) int64 {
	vs := h["Age"]
	if len(vs) == 0 {
		return 0
	}
	first, _ := nextElement(vs[0])
	n, ok := parseDeltaSeconds(trimOWS(first))
	if !ok {
		return 0
	}
	return n
}

// currentAge implements RFC 9111 §4.2.3.
func currentAge(h http.Header, reqT, respT, date, now time.Time) time.Duration {
	apparent := max(0, respT.Sub(date))
	delay := max(0, respT.Sub(reqT))
	corrected := secs(ageValue(h)) + delay
	initial := max(apparent, corrected)
	resident := max(0, now.Sub(respT))
	return initial + resident
}
