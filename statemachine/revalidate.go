package statemachine

import (
	"net/http"
	"slices"
	"time"

	"github.com/hishel-go/hishel/model"
)

// Next says what to do with the origin's answer to the conditional
// request (RFC 9111 §4.3.3). Call it as soon as the response head arrives:
// the clock's reading then is the response time. It reads only resp's
// status and header.
//
//   - 304 Not Modified: *NeedToBeUpdated with the stored pairs the 304
//     identifies, freshened (§4.3.4); *CacheMiss, to repeat the request
//     unconditionally, when it identifies none.
//   - 500, 502, 503 or 504: *ServeStale when a stale response may be
//     served on error (stale-if-error, max-stale); otherwise the error
//     response is passed on as *CouldNotBeStored (or *StoreAndUse if its
//     status is configured as cacheable), and the stored pairs are kept.
//   - 200 to a HEAD request: *NeedToBeUpdated for the nominated GET
//     responses whose validators and Content-Length it matches, freshened
//     with its fields, with the others to invalidate; *InvalidatePairs for
//     them all when none matches (RFC 9111 §4.3.5).
//   - any other full response replaces the nominated pairs: for a 2xx or
//     3xx, a 404 or a 410 response, *InvalidatePairs for them, whose Next
//     says whether to store the new one; for other responses, whether to
//     store it (*StoreAndUse or *CouldNotBeStored) directly.
func (s *NeedRevalidation) Next(resp model.Response) RevalidationNext {
	o := s.opts
	now := o.now()
	if resp.Status == http.StatusNotModified {
		matched := match304(s.Pairs, resp.Header, now)
		if len(matched) == 0 {
			return o.miss(s.original, why("the 304 identifies no stored response; repeat the request unconditionally", "RFC 9111 §4.3.4"))
		}
		reqT := s.sentAt
		if reqT.After(now) {
			reqT = now
		}
		up := &NeedToBeUpdated{
			Updates: make([]model.CompletePair, len(matched)),
			Reason:  why("304 Not Modified: freshen the stored response", "RFC 9111 §4.3.4"),
		}
		for i, j := range matched {
			p := s.Pairs[j]
			p.Response.Header = o.freshenHeader(p.Response.Header, resp.Header, reqT, now)
			up.Updates[i] = p
		}
		e := o.analyse(&up.Updates[0], now)
		up.next = &FromCache{
			Served: o.serve(&s.original, &e, false, false),
			Stale:  !e.fresh(),
			Reason: why("validated by the origin", "RFC 9111 §4.3.4"),
		}
		return up
	}
	if s.original.Method == "HEAD" && resp.Status == http.StatusOK {
		return s.headUpdate(resp, now)
	}
	if isErrorStatus(resp.Status) {
		if st, _ := s.stale(now, false); st != nil {
			return st
		}
		return o.store(s.original, resp, s.sentAt, now)
	}
	next := o.store(s.original, resp, s.sentAt, now)
	if resp.Status >= 200 && (resp.Status < 400 || resp.Status == 404 || resp.Status == 410) {
		ids := make([]model.PairID, len(s.Pairs))
		for i := range s.Pairs {
			ids[i] = s.Pairs[i].ID
		}
		return &InvalidatePairs{PairIDs: ids, next: next,
			Reason: why("a full response replaces the stored responses", "RFC 9111 §4.3.3")}
	}
	return next
}

// OnError says what to do when the origin could not be reached for the
// validation (err is the transport's error): *ServeStale when a stale
// response may be served (stale-if-error, max-stale, or Options.AllowStale
// for a disconnected cache, RFC 9111 §4.2.4), otherwise *GatewayTimeout.
func (s *NeedRevalidation) OnError(err error) ErrorNext {
	st, r := s.stale(s.opts.now(), true)
	if st != nil {
		st.Err = err
		return st
	}
	return gatewayTimeout(err, r)
}

// isErrorStatus reports the statuses stale-if-error treats as errors
// (RFC 5861 §4).
func isErrorStatus(code int) bool {
	switch code {
	case 500, 502, 503, 504:
		return true
	}
	return false
}

// stale returns a ServeStale for the newest nominated pair when it may be
// served after the origin failed, or nil and why not.
func (s *NeedRevalidation) stale(now time.Time, disconnected bool) (*ServeStale, Reason) {
	o := s.opts
	e := o.analyse(&s.Pairs[0], now)
	// no-cache forbids any unvalidated use; must-revalidate and its kin
	// only a stale one.
	if p := o.staleProhibited(&e); p.Text != "" && (!e.fresh() || e.noCache()) {
		return nil, p
	}
	reqCC, reqCCPresent := parseHeaderCC(s.original.Header)
	st := e.staleness()
	var r Reason
	onlyDisconnected := false
	switch {
	case st >= 0 && !slices.Contains(staleServable, e.pair.Response.Status):
		return nil, why("a stale response with this status is never served in place of the origin's", "RFC 9111 §4.2.4")
	case st < 0:
		r = why("validation failed; the stored response is still fresh", "RFC 9111 §4.2")
	case reqCC.StaleIfError.Valid && st <= secs(reqCC.StaleIfError.Seconds):
		r = why("stale within the request's stale-if-error", "RFC 5861 §4")
	case e.cc.StaleIfError.Valid && st <= secs(e.cc.StaleIfError.Seconds):
		r = why("stale within the response's stale-if-error", "RFC 5861 §4")
	case reqCC.MaxStale.Valid && st <= secs(reqCC.MaxStale.Seconds):
		r = why("stale within the request's max-stale", "RFC 9111 §5.2.1.2")
	case disconnected && o.allowStale():
		if p := requestWantsValidated(&reqCC, reqCCPresent, s.original.Header); p.Text != "" {
			return nil, p
		}
		r = why("origin unreachable; stale responses allowed", "RFC 9111 §4.2.4")
		onlyDisconnected = true
	default:
		return nil, why("origin failed and no stale response may be served", "RFC 9111 §4.2.4")
	}
	return &ServeStale{Served: o.serve(&s.original, &e, true, false), Disconnected: onlyDisconnected, Reason: r}, r
}

// requestWantsValidated returns why the request's own directives forbid
// a disconnected cache to answer it with a stale response, or the zero
// Reason: no-cache (or Pragma: no-cache), max-age without max-stale, and
// min-fresh all say that the client does not want one (RFC 9111 §4.2.4,
// §5.2.1).
func requestWantsValidated(cc *CacheControl, ccPresent bool, h http.Header) Reason {
	switch {
	case cc.NoCache || !ccPresent && hasPragmaNoCache(h):
		return why("origin unreachable and the request has no-cache", "RFC 9111 §5.2.1.4")
	case cc.MaxAge.Present && !cc.MaxStale.Present:
		return why("origin unreachable and the request's max-age refuses a stale response", "RFC 9111 §5.2.1.1")
	case cc.MinFresh.Present:
		return why("origin unreachable and the request's min-fresh refuses a stale response", "RFC 9111 §5.2.1.3")
	}
	return Reason{}
}

// match304 returns the indexes of the stored pairs a 304 identifies (RFC
// 9111 §4.3.4): every pair with one of its strong entity-tags; else the
// most recent with its weak entity-tag; else, without entity-tags, the
// most recent with its Last-Modified; else, when the 304 carries no
// validator and one pair was nominated, that pair.
func match304(pairs []model.CompletePair, h http.Header, now time.Time) []int {
	tag, hasTag := etag(h)
	if hasTag && !isWeak(tag) {
		var out []int
		for i := range pairs {
			if t, ok := etag(pairs[i].Response.Header); ok && strongMatch(t, tag) {
				out = append(out, i)
			}
		}
		return out
	}
	if hasTag {
		for i := range pairs { // newest first
			if t, ok := etag(pairs[i].Response.Header); ok && weakMatch(t, tag) {
				return []int{i}
			}
		}
		return nil
	}
	lm, present, ok := headerDate(h, "Last-Modified", now)
	if present {
		if !ok {
			return nil
		}
		for i := range pairs {
			if slm, _, ok := headerDate(pairs[i].Response.Header, "Last-Modified", now); ok && slm.Equal(lm) {
				return []int{i}
			}
		}
		return nil
	}
	if len(pairs) == 1 {
		return []int{0}
	}
	return nil
}
