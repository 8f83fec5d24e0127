package statemachine

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hishel-go/hishel/model"
)

// Next says what the cache must do with req, given the complete pairs
// stored under its key (RFC 9111 §4):
//
//   - *WriteThrough for an unsafe method that is not cached (§4, §4.4);
//   - *PartialUpdate when stored partial responses (206) of one
//     representation can be combined (§3.4);
//   - *CacheMiss when no stored pair can be used, or (with Partial) when
//     stored partial responses hold part of the requested range;
//   - *FromCache when the newest usable pair is fresh, or stale and
//     allowed (max-stale, stale-while-revalidate), or ForceCache is set;
//   - *NeedRevalidation when it must be validated first;
//   - *GatewayTimeout when only-if-cached forbids contacting the origin
//     and nothing can be served (§5.2.1.7).
//
// A pair is usable when its request method matches (a stored GET also
// answers HEAD), its status is final and whole, its Vary fields match
// (§4.1) and, in a shared cache, the Authorization rule allows it (§3.5).
// Of the usable pairs the most recent (by Date, §4) is chosen. Without
// one, a GET may be answered from a stored partial response that holds
// the whole range it asks for (§3.3). Next reads headers only; it never
// reads a body nor modifies req, and it modifies pairs only as
// Options.ReuseHeaders allows.
func (s *IdleClient) Next(req model.Request, pairs []model.CompletePair) IdleNext {
	var o *Options
	if s != nil {
		o = s.Options
	}
	return o.idle(req, pairs, o.now(), true)
}

// idle is IdleClient.Next at now; combine allows a PartialUpdate.
func (o *Options) idle(req model.Request, pairs []model.CompletePair, now time.Time, combine bool) IdleNext {
	if !o.supports(req.Method) {
		if !isSafe(req.Method) {
			return &WriteThrough{Request: req, opts: o, sentAt: now,
				Reason: why("unsafe method written through to the origin", "RFC 9111 §4")}
		}
		return o.miss(req, why("method not cached", "RFC 9111 §3"))
	}
	force := o.forceCache()
	reqCC, reqCCPresent := parseHeaderCC(req.Header)
	onlyIfCached := reqCC.OnlyIfCached
	if !force && (len(req.Header["If-Match"]) > 0 || len(req.Header["If-Unmodified-Since"]) > 0) {
		if onlyIfCached {
			return gatewayTimeout(nil, why("only-if-cached, but the request's preconditions are for the origin", "RFC 9111 §5.2.1.7"))
		}
		return o.miss(req, why("If-Match and If-Unmodified-Since are evaluated by the origin", "RFC 9111 §4.3.2"))
	}

	// The most recent usable response (RFC 9111 §4); dates are parsed only
	// when there is more than one to choose from.
	best := -1
	var bestDate time.Time
	for i := range pairs {
		p := &pairs[i]
		if !o.usable(p, &req, force) {
			continue
		}
		if best < 0 {
			best = i
			continue
		}
		if bestDate.IsZero() {
			bestDate = pairDate(&pairs[best], now)
		}
		if d := pairDate(p, now); d.After(bestDate) {
			best, bestDate = i, d
		}
	}
	if best < 0 && req.Method == "GET" {
		var st IdleNext
		if st, best = o.partials(&req, pairs, now, combine, force, onlyIfCached); st != nil {
			return st
		}
	}
	if best < 0 {
		if onlyIfCached {
			return gatewayTimeout(nil, why("only-if-cached, and no stored response matches", "RFC 9111 §5.2.1.7"))
		}
		return o.miss(req, why("no stored response matches the request", "RFC 9111 §4"))
	}

	e := o.analyse(&pairs[best], now)
	if force {
		return &FromCache{Served: o.serve(&req, &e, true, o.reuseHeaders()), Stale: !e.fresh(),
			Reason: why("force cache: stored responses are reused whatever their headers say", "")}
	}

	fresh := e.fresh()
	reqNoCache := reqCC.NoCache || (!reqCCPresent && hasPragmaNoCache(req.Header))
	var need Reason
	switch {
	case o.alwaysRevalidate():
		need = why("always revalidate", "")
	case e.cc.NoCache:
		need = why("stored response has no-cache", "RFC 9111 §5.2.2.4")
	case e.noCache():
		need = why("stored response has Pragma: no-cache and no Cache-Control", "RFC 7234 §5.4")
	case reqNoCache:
		need = why("request has no-cache", "RFC 9111 §5.2.1.4")
	case reqCC.MaxAge.Present && !(e.cc.Immutable && fresh) &&
		(!reqCC.MaxAge.Valid || e.age > secs(reqCC.MaxAge.Seconds)):
		need = why("stored response is older than the request's max-age", "RFC 9111 §5.2.1.1")
	case reqCC.MinFresh.Present && fresh &&
		(!reqCC.MinFresh.Valid || e.lifetime-e.age < secs(reqCC.MinFresh.Seconds)):
		need = why("stored response will not stay fresh for the request's min-fresh", "RFC 9111 §5.2.1.3")
	case fresh:
		return &FromCache{Served: o.serve(&req, &e, true, o.reuseHeaders()), Reason: why("stored response is fresh", "RFC 9111 §4.2")}
	default:
		need = why("stored response is stale", "RFC 9111 §4.2")
		if p := o.staleProhibited(&e); p.Text != "" {
			need = p
			break
		}
		if !slices.Contains(staleServable, e.pair.Response.Status) {
			need = why("stale, and a response with this status is reused only while fresh", "RFC 9111 §4.2.4")
			break
		}
		st := e.staleness()
		if reqCC.MaxStale.Valid && st <= secs(reqCC.MaxStale.Seconds) {
			return &FromCache{Served: o.serve(&req, &e, true, o.reuseHeaders()), Stale: true,
				Reason: why("stale within the request's max-stale", "RFC 9111 §5.2.1.2")}
		}
		if e.cc.StaleWhileRevalidate.Valid && st <= secs(e.cc.StaleWhileRevalidate.Seconds) {
			// Not reused: the background revalidation needs the stored
			// header as it is.
			return &FromCache{Served: o.serve(&req, &e, true, false), Stale: true,
				Revalidate: o.revalidation(req, pairs, best, now, why("stale-while-revalidate background revalidation", "RFC 5861 §3")),
				Reason:     why("stale within stale-while-revalidate; revalidate in the background", "RFC 5861 §3")}
		}
	}
	if onlyIfCached {
		return gatewayTimeout(nil, why("only-if-cached, but the stored response needs validation: "+need.Text, "RFC 9111 §5.2.1.7"))
	}
	return o.revalidation(req, pairs, best, now, need)
}

func gatewayTimeout(err error, r Reason) *GatewayTimeout {
	return &GatewayTimeout{Status: http.StatusGatewayTimeout, Err: err, Reason: r}
}

// usable reports whether a stored pair can answer req at all (RFC 9111 §4,
// §4.1, §3.5), fresh or not.
func (o *Options) usable(p *model.CompletePair, req *model.Request, force bool) bool {
	if p.Request.Method != req.Method && !(req.Method == "HEAD" && p.Request.Method == "GET") {
		return false
	}
	if st := p.Response.Status; st < 200 || st > 599 || st == 206 || st == 304 {
		return false
	}
	return o.selectable(p, req, force)
}

// selectable reports whether a stored pair's Vary fields match req's
// (§4.1) and, in a shared cache, the Authorization rule allows it for req
// (§3.5).
func (o *Options) selectable(p *model.CompletePair, req *model.Request, force bool) bool {
	if !varyMatches(p.Response.Header, p.Request.Header, req.Header, force) {
		return false
	}
	if o.shared() && !force && (hasAuthorization(p.Request.Header) || hasAuthorization(req.Header)) {
		cc, _, _ := o.responseCC(p.Response.Header)
		if !authAllowed(&cc) {
			return false
		}
	}
	return true
}

// authAllowed reports whether a response explicitly allows a shared cache
// to reuse it for an authenticated request (RFC 9111 §3.5).
func authAllowed(cc *CacheControl) bool {
	return cc.Public || cc.MustRevalidate || cc.SMaxAge.Present
}

// staleProhibited returns why a stale stored response must not be served
// without validation, or the zero Reason (RFC 9111 §4.2.4).
func (o *Options) staleProhibited(e *entry) Reason {
	switch {
	case e.cc.NoCache:
		return why("stored response has no-cache", "RFC 9111 §5.2.2.4")
	case e.noCache():
		return why("stored response has Pragma: no-cache and no Cache-Control", "RFC 7234 §5.4")
	case e.cc.MustRevalidate:
		return why("stale and must-revalidate", "RFC 9111 §5.2.2.2")
	case o.shared() && e.cc.ProxyRevalidate:
		return why("stale and proxy-revalidate in a shared cache", "RFC 9111 §5.2.2.8")
	case o.shared() && e.cc.SMaxAge.Present:
		return why("stale and s-maxage in a shared cache", "RFC 9111 §5.2.2.10")
	}
	return Reason{}
}

// revalidation builds a NeedRevalidation for the usable pairs, the chosen
// one (best) first.
func (o *Options) revalidation(req model.Request, pairs []model.CompletePair, best int, now time.Time, r Reason) *NeedRevalidation {
	nominated := make([]model.CompletePair, 0, 1)
	nominated = append(nominated, pairs[best])
	for i := range pairs {
		if i != best && o.usable(&pairs[i], &req, false) {
			nominated = append(nominated, pairs[i])
		}
	}
	h := req.Header.Clone()
	if h == nil {
		h = make(http.Header)
	}
	delete(h, "If-None-Match")
	delete(h, "If-Modified-Since")
	var tags []string
	for i := range nominated {
		if t, ok := etag(nominated[i].Response.Header); ok && !containsTag(tags, t) {
			tags = append(tags, t)
		}
	}
	if len(tags) > 0 {
		h["If-None-Match"] = []string{strings.Join(tags, ", ")}
	}
	if lm, _, ok := headerDate(nominated[0].Response.Header, "Last-Modified", now); ok {
		h["If-Modified-Since"] = []string{lm.Format(http.TimeFormat)}
	}
	cond := req
	cond.Header = h
	return &NeedRevalidation{Request: cond, Pairs: nominated, Reason: r, opts: o, original: req, sentAt: now}
}

func containsTag(tags []string, t string) bool {
	for _, x := range tags {
		if x == t {
			return true
		}
	}
	return false
}

// serve builds the response sent from a stored entry for req: the stored
// header cleaned (and without no-cache=fields unless validated), a
// generated Age, and the request's own conditions (RFC 9111 §4.3.2) and
// Range (RFC 9110 §14) applied. With reuse, the served header is the
// stored response's header map itself, cleaned in place.
func (o *Options) serve(req *model.Request, e *entry, stripNoCache, reuse bool) Served {
	p := e.pair
	var drop []string
	if stripNoCache {
		drop = e.cc.NoCacheFields
	}
	age := strconv.FormatInt(min(int64(e.age/time.Second), MaxDelta), 10)
	var h http.Header
	if h = p.Response.Header; reuse && h != nil {
		stripHeader(h, drop)
		h["Age"] = []string{age}
	} else {
		var spare []string
		h, spare = cleanHeader(p.Response.Header, drop, 1)
		spare[0] = age
		h["Age"] = spare[:1:1]
	}
	s := Served{Pair: *p, Status: p.Response.Status, Header: h, Age: e.age, Lifetime: e.lifetime}
	if s.Status == http.StatusPartialContent && req.Method == "GET" {
		if notModified(req.Header, h) {
			s.Status = http.StatusNotModified
			s.Header = notModifiedHeader(h)
			return s
		}
		servePartial(&s, req, h)
		return s
	}
	if s.Status != 200 || (req.Method != "GET" && req.Method != "HEAD") {
		return s
	}
	if notModified(req.Header, h) {
		s.Status = http.StatusNotModified
		s.Header = notModifiedHeader(h)
		return s
	}
	rv := req.Header["Range"]
	if req.Method != "GET" || len(rv) == 0 || !ifRangeMatches(req.Header, h) {
		return s
	}
	size := int64(-1)
	if cl := h["Content-Length"]; len(cl) == 1 {
		if n, ok := parsePos(cl[0]); ok && n < 1<<62 {
			size = n
		}
	}
	if len(rv) != 1 {
		return s
	}
	ans := ResolveRange(rv[0], size)
	switch ans.Status {
	case http.StatusPartialContent:
		s.Status = ans.Status
		s.Range = &ans.Range
		h["Content-Range"] = []string{ans.ContentRange}
		h["Content-Length"] = []string{strconv.FormatInt(ans.Range.Length, 10)}
	case http.StatusRequestedRangeNotSatisfiable:
		s.Status = ans.Status
		h["Content-Range"] = []string{ans.ContentRange}
		h["Content-Length"] = []string{"0"}
	}
	return s
}

// notModified evaluates the request's If-None-Match, or else its
// If-Modified-Since, against a stored 200 (RFC 9111 §4.3.2, RFC 9110
// §13.1.2, §13.1.3).
func notModified(req, stored http.Header) bool {
	if inm := req["If-None-Match"]; len(inm) > 0 {
		tag, ok := etag(stored)
		for _, v := range inm {
			for v != "" {
				var m string
				m, v = nextElement(v)
				m = trimOWS(m)
				if m == "*" || ok && weakMatch(m, tag) {
					return true
				}
			}
		}
		return false
	}
	ims, present, ok := headerDate(req, "If-Modified-Since", time.Time{})
	if !present || !ok {
		return false
	}
	lm, _, ok := headerDate(stored, "Last-Modified", time.Time{})
	if !ok {
		if lm, _, ok = headerDate(stored, "Date", time.Time{}); !ok {
			return false
		}
	}
	return !lm.After(ims)
}

// notModifiedHeader keeps the fields a 304 carries (RFC 9110 §15.4.5).
func notModifiedHeader(h http.Header) http.Header {
	out := make(http.Header, 8)
	for _, k := range [...]string{"Cache-Control", "Content-Location", "Date", "Etag", "Expires", "Vary", "Last-Modified", "Age"} {
		if v, ok := h[k]; ok {
			out[k] = v
		}
	}
	return out
}

// ifRangeMatches evaluates If-Range (RFC 9110 §13.1.5): an entity-tag
// matches by strong comparison; a date when it equals Last-Modified and
// that is a strong validator, the stored Date being at least a second
// later (§8.8.2.2). Without If-Range the range applies.
func ifRangeMatches(req, stored http.Header) bool {
	ir := req["If-Range"]
	if len(ir) == 0 {
		return true
	}
	v := trimOWS(ir[0])
	if strings.HasPrefix(v, `"`) || strings.HasPrefix(v, "W/") {
		tag, ok := etag(stored)
		return ok && strongMatch(v, tag)
	}
	d, ok := ParseHTTPDate(v, time.Time{})
	if !ok {
		return false
	}
	lm, _, ok := headerDate(stored, "Last-Modified", time.Time{})
	if !ok || !lm.Equal(d) {
		return false
	}
	date, _, ok := headerDate(stored, "Date", time.Time{})
	return ok && !date.Before(lm.Add(time.Second))
}

// pairDate is p's Date, or its response time when it has none.
func pairDate(p *model.CompletePair, now time.Time) time.Time {
	_, respT := pairTimes(reqRespTimes{p.Meta.Created, p.Meta.Completed}, p.Response.Header)
	return dateValue(p.Response.Header, respT, now)
}
