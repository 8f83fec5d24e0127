package statemachine

import (
	"net/http"
	"net/textproto"
	"slices"
	"strings"
	"time"
)

// Header fields the state machine writes into stored responses it
// freshens (see the package documentation on times). They are stripped
// from every response received from an origin and from every response
// served from the cache.
const (
	HeaderRequestTime  = "Hishel-Request-Time"
	HeaderResponseTime = "Hishel-Response-Time"
)

// isHopByHop reports whether the canonical field name k is a
// connection-specific field (RFC 9110 §7.6.1) or a proxy-specific field a
// cache must not store (RFC 9111 §3.1).
func isHopByHop(k string) bool {
	switch k {
	case "Connection", "Keep-Alive", "Proxy-Connection", "Te", "Transfer-Encoding", "Upgrade",
		"Proxy-Authenticate", "Proxy-Authentication-Info", "Proxy-Authorization":
		return true
	}
	return false
}

// cleanHeader returns a copy of h without the hop-by-hop fields, the
// fields the Connection field lists, the state machine's time fields and
// the extra fields named in drop.
//
// Like http.Header.Clone, it copies every value into one backing array.
// extra reserves room for that many more single-valued fields: in the map,
// and in spare, extra one-value slices (length 1, capacity 1) that the
// caller may set them to.
func cleanHeader(h http.Header, drop []string, extra int) (out http.Header, spare []string) {
	nv := 0
	for _, vs := range h {
		nv += len(vs)
	}
	all := make([]string, nv+extra)
	spare = all[nv:]
	all = all[:nv]
	out = make(http.Header, len(h)+extra)
	conn := h["Connection"]
	for k, vs := range h {
		if vs == nil || unserved(k, conn, drop) {
			continue
		}
		n := copy(all, vs)
		out[k] = all[:n:n]
		all = all[n:]
	}
	return out, spare
}

// stripHeader removes from h, in place, the fields cleanHeader leaves out
// of its copy.
func stripHeader(h http.Header, drop []string) {
	conn := h["Connection"]
	for k, vs := range h {
		if vs == nil || unserved(k, conn, drop) {
			delete(h, k)
		}
	}
}

// unserved reports whether the field k of a stored response is left out
// of a response served from it: a hop-by-hop field, a field the Connection
// values conn list, a state machine time field or a field named in drop.
func unserved(k string, conn, drop []string) bool {
	return isHopByHop(k) || k == HeaderRequestTime || k == HeaderResponseTime ||
		slices.Contains(drop, k) || listsField(conn, k)
}

// listsField reports whether the Connection values name the field k.
func listsField(conn []string, k string) bool {
	if len(conn) == 0 {
		return false
	}
	return hasToken(conn, k)
}

// storedHeader is the header to store for an origin response (RFC 9111
// §3.1): hop-by-hop and Connection-listed fields removed, private=fields
// removed by a shared cache (§5.2.2.7), and a Date added when the origin
// sent none (RFC 9110 §6.6.1).
func storedHeader(h http.Header, cc *CacheControl, shared bool, responseTime time.Time) http.Header {
	var drop []string
	if shared {
		drop = cc.PrivateFields
	}
	out, spare := cleanHeader(h, drop, 1)
	if len(out["Date"]) == 0 {
		spare[0] = responseTime.UTC().Format(http.TimeFormat)
		out["Date"] = spare[:1:1]
	}
	return out
}

// freshenHeader updates a stored header with the fields of a 304 response
// (RFC 9111 §3.2, §4.3.4): each field of the 304 replaces the stored one,
// except hop-by-hop and Connection-listed fields, Content-Length (never
// copied) and Content-Range. The new request and response times are
// recorded, a Date added when the 304 has none, and the stored Age dropped
// when the 304 has none.
func (o *Options) freshenHeader(stored, h304 http.Header, reqT, respT time.Time) http.Header {
	out := stored.Clone()
	if out == nil {
		out = make(http.Header)
	}
	conn := h304["Connection"]
	for k, vs := range h304 {
		if isHopByHop(k) || k == HeaderRequestTime || k == HeaderResponseTime ||
			k == "Content-Length" || k == "Content-Range" || listsField(conn, k) {
			continue
		}
		out[k] = slices.Clone(vs)
	}
	if len(h304["Date"]) == 0 {
		out["Date"] = []string{respT.UTC().Format(http.TimeFormat)}
	}
	if len(h304["Age"]) == 0 {
		// The stored Age described the old message; the 304 is the new
		// one, and it came without an Age.
		delete(out, "Age")
	}
	if o.shared() {
		cc, _, _ := o.responseCC(out)
		for _, f := range cc.PrivateFields {
			delete(out, f)
		}
	}
	out[HeaderRequestTime] = []string{reqT.UTC().Format(time.RFC3339Nano)}
	out[HeaderResponseTime] = []string{respT.UTC().Format(time.RFC3339Nano)}
	return out
}

// pairTimes returns a stored pair's request_time and response_time (RFC
// 9111 §4.2.3): Meta.Created and Meta.Completed (Created when Completed is
// zero), unless the response carries the state machine's time fields,
// written when it was stored after a slow exchange, freshened, or combined
// from partial responses.
func pairTimes(meta reqRespTimes, h http.Header) (reqT, respT time.Time) {
	reqT, respT = meta.created, meta.completed
	if respT.IsZero() {
		respT = reqT
	}
	if hr, ok := rfc3339Field(h, HeaderResponseTime); ok {
		hq, ok := rfc3339Field(h, HeaderRequestTime)
		if !ok || hq.After(hr) {
			hq = hr
		}
		reqT, respT = hq, hr
	}
	if reqT.IsZero() || reqT.After(respT) {
		reqT = respT
	}
	return reqT, respT
}

type reqRespTimes struct{ created, completed time.Time }

func rfc3339Field(h http.Header, name string) (time.Time, bool) {
	vs := h[name]
	if len(vs) == 0 {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, vs[0])
	return t, err == nil
}

// varyMatches reports whether the request header req selects the stored
// response whose header is resp and whose request header is storedReq
// (RFC 9111 §4.1). Every Vary line and every member counts; "*" anywhere
// never matches, unless ignoreStar. Accept-Encoding and Accept-Language
// also match when they mean the same (weightedListsMatch).
func varyMatches(resp, storedReq, req http.Header, ignoreStar bool) bool {
	for _, v := range resp["Vary"] {
		for v != "" {
			var name string
			name, v = nextElement(v)
			name = trimOWS(name)
			switch {
			case name == "":
				continue
			case name == "*":
				if ignoreStar {
					continue
				}
				return false
			}
			// Header maps have canonical keys: try the name as it is
			// before canonicalising it (which costs a scan).
			a, aok := storedReq[name]
			b, bok := req[name]
			if !aok && !bok {
				if c := textproto.CanonicalMIMEHeaderKey(name); c != name {
					a, b = storedReq[c], req[c]
				}
			}
			if fieldValuesMatch(a, b) {
				continue
			}
			if strings.EqualFold(name, "Accept-Encoding") || strings.EqualFold(name, "Accept-Language") {
				if match, ok := weightedListsMatch(a, b); ok && match {
					continue
				}
			}
			return false
		}
	}
	return true
}

// varyStar reports whether a Vary field contains "*".
func varyStar(h http.Header) bool { return hasToken(h["Vary"], "*") }

// fieldValuesMatch compares two field's lines after combining lines and
// removing whitespace around list members (RFC 9111 §4.1). A field absent
// from one request matches only if it is absent from the other.
func fieldValuesMatch(a, b []string) bool {
	if (len(a) == 0) != (len(b) == 0) {
		return false
	}
	ai, bi := 0, 0
	var ar, br string
	for {
		var ae, be string
		var aok, bok bool
		ae, ar, ai, aok = nextMember(a, ar, ai)
		be, br, bi, bok = nextMember(b, br, bi)
		if aok != bok || ae != be {
			return false
		}
		if !aok {
			return true
		}
	}
}

// nextMember yields the next non-empty list member across field lines:
// rest is what is left of the current line and i the index of the next
// line to start.
func nextMember(lines []string, rest string, i int) (member, newRest string, newI int, ok bool) {
	for {
		for rest != "" {
			var e string
			e, rest = nextElement(rest)
			if e = trimOWS(e); e != "" {
				return e, rest, i, true
			}
		}
		if i >= len(lines) {
			return "", "", i, false
		}
		rest = lines[i]
		i++
	}
}

// etag returns the entity-tag of h's ETag field (its first line) and
// whether it is a syntactically valid strong or weak entity-tag.
func etag(h http.Header) (string, bool) {
	vs := h["Etag"]
	if len(vs) == 0 {
		return "", false
	}
	t := trimOWS(vs[0])
	return t, validETag(t)
}

// validETag checks entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE.
func validETag(t string) bool {
	t = strings.TrimPrefix(t, "W/")
	if len(t) < 2 || t[0] != '"' || t[len(t)-1] != '"' {
		return false
	}
	for i := 1; i < len(t)-1; i++ {
		c := t[i]
		if c == '"' || c < 0x21 || c == 0x7f {
			return false
		}
	}
	return true
}

func isWeak(t string) bool { return strings.HasPrefix(t, "W/") }

// strongMatch is the strong comparison of RFC 9110 §8.8.3.2.
func strongMatch(a, b string) bool { return !isWeak(a) && !isWeak(b) && a == b }

// weakMatch is the weak comparison of RFC 9110 §8.8.3.2.
func weakMatch(a, b string) bool {
	return strings.TrimPrefix(a, "W/") == strings.TrimPrefix(b, "W/")
}

// hasAuthorization reports whether a request header carries credentials.
func hasAuthorization(h http.Header) bool { return len(h["Authorization"]) > 0 }
