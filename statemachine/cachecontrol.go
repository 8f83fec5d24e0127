package statemachine

import (
	"net/http"
	"net/textproto"
	"strings"
)

// MaxDelta is the largest delta-seconds value the state machine represents:
// 2^31 seconds. A larger argument, or one that overflows while it is parsed,
// is taken as MaxDelta (RFC 9111 §1.2.2).
const MaxDelta int64 = 1 << 31

// Delta is the argument of a delta-seconds cache directive (max-age,
// s-maxage, max-stale, min-fresh, stale-while-revalidate, stale-if-error).
//
// Present reports that the directive appeared at all. Valid reports that
// every occurrence had a well-formed argument and that all occurrences
// agree; an invalid or conflicting directive is present but not valid, and
// the state machine reads it in the most restrictive way (see the package
// documentation). Seconds is meaningful only when Valid.
type Delta struct {
	Present bool
	Valid   bool
	Seconds int64
}

// set records one occurrence of a delta directive: seconds is its value and
// ok reports whether it parsed.
func (d *Delta) set(seconds int64, ok bool) {
	if !d.Present {
		*d = Delta{Present: true, Valid: ok}
		if ok {
			d.Seconds = seconds
		}
		return
	}
	// A repeated directive is valid only if every occurrence agrees
	// (RFC 9111 §4.2.1: use the first or consider the response stale).
	if !ok || !d.Valid || d.Seconds != seconds {
		d.Valid, d.Seconds = false, 0
	}
}

// CacheControl is a parsed Cache-Control field (RFC 9111 §5.2): the
// directives of every field line, request and response directives alike.
// Directive names are compared case-insensitively; unknown directives are
// ignored.
type CacheControl struct {
	MaxAge               Delta // max-age (request and response)
	SMaxAge              Delta // s-maxage (response)
	MaxStale             Delta // max-stale (request); no argument means MaxDelta
	MinFresh             Delta // min-fresh (request)
	StaleWhileRevalidate Delta // stale-while-revalidate (RFC 5861 §3)
	StaleIfError         Delta // stale-if-error (RFC 5861 §4), request and response

	// NoCache is the unqualified no-cache directive, in a request or a
	// response. A qualified no-cache="a, b" response directive sets
	// NoCacheFields instead (canonical field names). A qualified form with
	// no usable field name is read as unqualified.
	NoCache       bool
	NoCacheFields []string

	// Private is the unqualified private response directive; a qualified
	// private="a, b" sets PrivateFields, read like NoCacheFields.
	Private       bool
	PrivateFields []string

	NoStore         bool // no-store
	NoTransform     bool // no-transform
	OnlyIfCached    bool // only-if-cached (request)
	MustRevalidate  bool // must-revalidate (response)
	ProxyRevalidate bool // proxy-revalidate (response)
	MustUnderstand  bool // must-understand (response)
	Public          bool // public (response)
	Immutable       bool // immutable (response, RFC 8246)
}

// ParseCacheControl parses the Cache-Control field lines in values. It
// never fails: elements that are not directives (stray commas, bare
// quotes, empty names) are skipped, and a known directive with a malformed
// argument is recorded as present but invalid. It allocates only for
// qualified no-cache and private directives.
func ParseCacheControl(values []string) CacheControl {
	var cc CacheControl
	for _, v := range values {
		for v != "" {
			var elem string
			elem, v = nextElement(v)
			cc.directive(elem)
		}
	}
	return cc
}

// parseHeaderCC parses the Cache-Control field of h and reports whether
// the field is present.
func parseHeaderCC(h http.Header) (CacheControl, bool) {
	vs := h["Cache-Control"]
	return ParseCacheControl(vs), len(vs) > 0
}

// nextElement returns the first element of a comma-separated list and the
// rest after its comma. Commas inside quoted-strings do not separate
// elements; an unterminated quoted-string runs to the end of s.
func nextElement(s string) (elem, rest string) {
	inQuote := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case inQuote && c == '\\':
			i++
		case c == '"':
			inQuote = !inQuote
		case !inQuote && c == ',':
			return s[:i], s[i+1:]
		}
	}
	return s, ""
}

// directive records one list element of a Cache-Control field.
func (cc *CacheControl) directive(elem string) {
	elem = trimOWS(elem)
	if elem == "" {
		return
	}
	name, arg, hasArg := strings.Cut(elem, "=")
	// The grammar allows no whitespace around "=": a name or argument
	// with surrounding whitespace is recognised but its argument is
	// invalid.
	badSpace := hasArg && (trimOWS(name) != name || trimOWS(arg) != arg)
	name = trimOWS(name)
	if !isToken(name) {
		return
	}
	var val string
	valOK := false
	if hasArg && !badSpace {
		val, valOK = parseArg(arg)
	}
	switch directiveName(name) {
	case "max-age":
		cc.MaxAge.set(deltaArg(hasArg, valOK, val))
	case "s-maxage":
		cc.SMaxAge.set(deltaArg(hasArg, valOK, val))
	case "max-stale":
		if !hasArg {
			cc.MaxStale.set(MaxDelta, true)
		} else {
			cc.MaxStale.set(deltaArg(hasArg, valOK, val))
		}
	case "min-fresh":
		cc.MinFresh.set(deltaArg(hasArg, valOK, val))
	case "stale-while-revalidate":
		cc.StaleWhileRevalidate.set(deltaArg(hasArg, valOK, val))
	case "stale-if-error":
		cc.StaleIfError.set(deltaArg(hasArg, valOK, val))
	case "no-cache":
		if !hasArg {
			cc.NoCache = true
			return
		}
		var ok bool
		if cc.NoCacheFields, ok = appendFieldNames(cc.NoCacheFields, val, valOK); !ok {
			cc.NoCache = true
		}
	case "private":
		if !hasArg {
			cc.Private = true
			return
		}
		var ok bool
		if cc.PrivateFields, ok = appendFieldNames(cc.PrivateFields, val, valOK); !ok {
			cc.Private = true
		}
	case "no-store":
		cc.NoStore = true
	case "no-transform":
		cc.NoTransform = true
	case "only-if-cached":
		cc.OnlyIfCached = true
	case "must-revalidate":
		cc.MustRevalidate = true
	case "proxy-revalidate":
		cc.ProxyRevalidate = true
	case "must-understand":
		cc.MustUnderstand = true
	case "public":
		cc.Public = true
	case "immutable":
		cc.Immutable = true
	}
}

// directiveNames are the Cache-Control directives CacheControl records.
var directiveNames = [...]string{
	"max-age", "s-maxage", "max-stale", "min-fresh", "stale-while-revalidate", "stale-if-error",
	"no-cache", "private", "no-store", "no-transform", "only-if-cached", "must-revalidate",
	"proxy-revalidate", "must-understand", "public", "immutable",
}

// directiveName returns the directive name token in lower case when it is
// one of directiveNames in any case (directive names are
// case-insensitive, RFC 9111 §5.2), and otherwise token itself. A token
// is ASCII, so ASCII case folding is all the folding there is; a name
// already in lower case, as nearly all are, is returned as it is.
func directiveName(token string) string {
	for i := 0; i < len(token); i++ {
		if c := token[i]; 'A' <= c && c <= 'Z' {
			for _, d := range directiveNames {
				if strings.EqualFold(token, d) {
					return d
				}
			}
			return token
		}
	}
	return token
}

// deltaArg parses a delta-seconds argument. Both the token and the
// quoted-string forms are accepted (RFC 9111 §5.2).
func deltaArg(hasArg, valOK bool, val string) (int64, bool) {
	if !hasArg || !valOK {
		return 0, false
	}
	return parseDeltaSeconds(val)
}

// parseDeltaSeconds parses 1*DIGIT, clamping at MaxDelta (RFC 9111 §1.2.2).
// Signs, spaces and any other character make it invalid.
func parseDeltaSeconds(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		if n < MaxDelta {
			n = n*10 + int64(c-'0')
		}
	}
	if n > MaxDelta {
		n = MaxDelta
	}
	return n, true
}

// parseArg returns a directive argument: a token, or the unescaped
// content of a quoted-string. ok is false for anything else.
func parseArg(arg string) (string, bool) {
	if arg == "" {
		return "", false
	}
	if arg[0] != '"' {
		return arg, isToken(arg)
	}
	if len(arg) < 2 || arg[len(arg)-1] != '"' {
		return "", false
	}
	body := arg[1 : len(arg)-1]
	if strings.IndexByte(body, '\\') < 0 {
		if strings.IndexByte(body, '"') >= 0 {
			return "", false
		}
		return body, true
	}
	var b strings.Builder
	for i := 0; i < len(body); i++ {
		c := body[i]
		switch {
		case c == '\\':
			if i+1 == len(body) {
				return "", false
			}
			i++
			b.WriteByte(body[i])
		case c == '"':
			return "", false
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), true
}

// appendFieldNames appends the canonical field names listed in a qualified
// no-cache or private argument. ok is false when the argument is malformed
// or names no valid field, and the caller reads the directive unqualified.
func appendFieldNames(dst []string, val string, valOK bool) ([]string, bool) {
	if !valOK {
		return dst, false
	}
	n := 0
	for val != "" {
		var f string
		f, val, _ = strings.Cut(val, ",")
		f = trimOWS(f)
		if f == "" {
			continue
		}
		if !isToken(f) {
			return dst, false
		}
		dst = append(dst, textproto.CanonicalMIMEHeaderKey(f))
		n++
	}
	return dst, n > 0
}

// trimOWS trims optional whitespace (SP and HTAB) at both ends.
func trimOWS(s string) string {
	for s != "" && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for s != "" && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// isToken reports whether s is a non-empty RFC 9110 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTchar(s[i]) {
			return false
		}
	}
	return true
}

func isTchar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// hasPragmaNoCache reports whether a Pragma field contains no-cache.
func hasPragmaNoCache(h http.Header) bool {
	for _, v := range h["Pragma"] {
		for v != "" {
			var elem string
			elem, v = nextElement(v)
			if strings.EqualFold(trimOWS(elem), "no-cache") {
				return true
			}
		}
	}
	return false
}
