package statemachine

import (
	"net/http"
	"strconv"
	"time"

	"github.com/hishel-go/hishel/model"
)

// headUpdate handles a 200 answer to a HEAD request sent to validate stored
// pairs (RFC 9111 §4.3.5): each nominated GET response is freshened with
// the HEAD response's fields when their validators and Content-Length
// agree, and invalidated otherwise; stored HEAD responses it replaces.
func (s *NeedRevalidation) headUpdate(resp model.Response, now time.Time) RevalidationNext {
	o := s.opts
	reqT := s.sentAt
	if reqT.After(now) {
		reqT = now
	}
	var updates []model.CompletePair
	var stale []model.PairID
	for _, p := range s.Pairs {
		if p.Request.Method == "GET" && headMatches(&p, resp.Header, now) {
			p.Response.Header = o.freshenHeader(p.Response.Header, resp.Header, reqT, now)
			updates = append(updates, p)
			continue
		}
		stale = append(stale, p.ID)
	}
	if len(updates) == 0 {
		return &InvalidatePairs{PairIDs: stale, next: o.store(s.original, resp, s.sentAt, now),
			Reason: why("the HEAD response shows the stored responses out of date", "RFC 9111 §4.3.5")}
	}
	e := o.analyse(&updates[0], now)
	return &NeedToBeUpdated{
		Updates:    updates,
		Invalidate: stale,
		Reason:     why("the HEAD response freshens the stored GET response", "RFC 9111 §4.3.5"),
		next: &FromCache{
			Served: o.serve(&s.original, &e, false, false),
			Stale:  !e.fresh(),
			Reason: why("freshened by a HEAD response", "RFC 9111 §4.3.5"),
		},
	}
}

// headMatches reports whether a HEAD response describes the stored GET
// response p (RFC 9111 §4.3.5): it carries at least one validator (ETag,
// Last-Modified), each the same as the stored one, and its Content-Length,
// if any, is the stored response's. Without a validator nothing shows the
// representation unchanged, and the stored response is not updated.
func headMatches(p *model.CompletePair, head http.Header, now time.Time) bool {
	stored := p.Response.Header
	validators := 0
	if tag, ok := etag(head); len(head["Etag"]) > 0 {
		validators++
		st, sok := etag(stored)
		if !ok || !sok || st != tag {
			return false
		}
	}
	if lm, present, ok := headerDate(head, "Last-Modified", now); present {
		validators++
		slm, _, sok := headerDate(stored, "Last-Modified", now)
		if !ok || !sok || !slm.Equal(lm) {
			return false
		}
	}
	if validators == 0 {
		return false
	}
	if cl := head["Content-Length"]; len(cl) > 0 {
		n, ok := parsePos(trimOWS(cl[0]))
		if !ok {
			return false
		}
		if scl := stored["Content-Length"]; len(scl) > 0 {
			return trimOWS(scl[0]) == strconv.FormatInt(n, 10)
		}
		return !p.Meta.Completed.IsZero() && p.Meta.ResponseSize == n
	}
	return true
}
