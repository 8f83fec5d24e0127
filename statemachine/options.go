package statemachine

import (
	"slices"
	"strings"
	"time"
)

// Defaults used when the corresponding Options field is zero.
const (
	// DefaultHeuristicFraction is the fraction of the time since
	// Last-Modified taken as a heuristic freshness lifetime (RFC 9111
	// §4.2.2 suggests 10%).
	DefaultHeuristicFraction = 0.1
	// DefaultHeuristicMax caps a heuristic freshness lifetime.
	DefaultHeuristicMax = 24 * time.Hour
)

// DefaultSupportedMethods are the methods whose responses are cached when
// Options.SupportedMethods is nil.
var DefaultSupportedMethods = []string{"GET", "HEAD"}

// HeuristicallyCacheableStatusCodes are the status codes RFC 9110 §15.1
// defines as heuristically cacheable: a response with one of them may be
// stored without explicit freshness, and given a heuristic lifetime (RFC
// 9111 §4.2.2). Set Options.CacheableStatusCodes to it to store nothing
// else, as Python Hishel's HEURISTICALLY_CACHEABLE_STATUS_CODES does.
var HeuristicallyCacheableStatusCodes = []int{200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501}

// understoodStatusCodes are the final status codes RFC 9110 §15 defines:
// the codes whose caching requirements this package knows (all of them
// follow the rules of RFC 9111 §3, and 206 those of §3.3 and §3.4), for
// must-understand (RFC 9111 §5.2.2.3).
var understoodStatusCodes = []int{
	200, 201, 202, 203, 204, 205, 206,
	300, 301, 302, 303, 304, 305, 307, 308,
	400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415, 416, 417, 421, 422, 426,
	500, 501, 502, 503, 504, 505,
}

// staleServable are the status codes whose stored responses may be served
// stale (max-stale, stale-while-revalidate, stale-if-error, AllowStale):
// the heuristically cacheable ones and the redirections 302, 303 and 307.
// Other responses, such as a 500 stored for its max-age, are reused only
// while fresh (RFC 9111 §4.2.4 lets a cache choose; serving a stale error
// in place of a failed origin helps nobody).
var staleServable = []int{200, 203, 204, 206, 300, 301, 302, 303, 307, 308, 404, 405, 410, 414, 501}

// Options configure the state machine. A nil *Options, and the zero value,
// mean a private (client) cache with every default. Options are read, never
// written, so one value may be shared by any number of goroutines.
type Options struct {
	// Shared makes the cache a shared cache (a proxy or a server-side
	// cache, RFC 9111 §1): it honours s-maxage, proxy-revalidate and
	// private, and applies the Authorization rule of §3.5. It stores a
	// response with Set-Cookie only when the response has explicit
	// freshness (Expires, max-age or s-maxage), never on heuristic
	// freshness. The default is a private cache, as a client's cache is.
	Shared bool

	// TargetedFields are targeted cache-control fields (RFC 9213), such as
	// "Hishel-Cache-Control", that a shared cache obeys before
	// CDN-Cache-Control, in this order of precedence. The first of these
	// fields, then CDN-Cache-Control, whose value is a valid, non-empty
	// Structured Fields Dictionary (RFC 8941) governs the response, and
	// its Cache-Control and Expires are ignored; an invalid one is ignored
	// as a whole. A private cache ignores targeted fields. They are stored
	// and served like any other field: a cache further down the path may
	// be their target too (RFC 9213 §3).
	TargetedFields []string
	// IgnoreCDNCacheControl keeps a shared cache from obeying
	// CDN-Cache-Control, as a cache that is not part of a CDN may choose.
	IgnoreCDNCacheControl bool

	// SupportedMethods are the methods whose responses are looked up and
	// stored; nil means DefaultSupportedMethods (GET, HEAD). Listing an
	// unsafe method such as POST opts in to caching its responses by their
	// key (as Python Hishel allows); such requests then do not invalidate.
	// Method names are case-sensitive.
	SupportedMethods []string

	// AllowStale lets the cache answer with a stale stored response when
	// the origin cannot be reached (NeedRevalidation.OnError), unless a
	// directive forbids it (RFC 9111 §4.2.4: a disconnected cache): in the
	// response, no-cache, must-revalidate, and in a shared cache
	// proxy-revalidate and s-maxage; in the request, no-cache, max-age
	// without max-stale, and min-fresh. ServeStale.Disconnected then says
	// that nothing else allowed it.
	AllowStale bool

	// CacheableStatusCodes, when not empty, restricts storing to these
	// status codes (Python Hishel's cacheable_status_codes). Empty (the
	// default) means the rule of RFC 9111 §3: a response with any final
	// status code may be stored when it has explicit freshness (max-age,
	// s-maxage in a shared cache, Expires) or public; without them, only
	// a heuristically cacheable status code (RFC 9110 §15.1) is stored.
	// With ForceCache, empty means HeuristicallyCacheableStatusCodes.
	CacheableStatusCodes []int

	// DisableHeuristics turns heuristic freshness (RFC 9111 §4.2.2) off.
	// Heuristics are on by default: a response with no explicit expiration
	// time, a heuristically cacheable status code (or public) and a
	// Last-Modified date is fresh for HeuristicFraction of the time between
	// Last-Modified and Date, at most HeuristicMax.
	DisableHeuristics bool
	// HeuristicFraction is the fraction; zero (or less) means
	// DefaultHeuristicFraction.
	HeuristicFraction float64
	// HeuristicMax caps the heuristic lifetime; zero (or less) means
	// DefaultHeuristicMax.
	HeuristicMax time.Duration

	// AlwaysRevalidate sends every reuse of a stored response to the
	// origin for validation, fresh or not.
	AlwaysRevalidate bool

	// ForceCache stores every response to a supported method whose status
	// code is cacheable, and reuses it whatever its Cache-Control, Expires
	// or Pragma say, and whatever the request's directives say; only the
	// storage TTL ends its life. Vary still selects among stored variants,
	// except that "*" is ignored.
	ForceCache bool

	// ReuseHeaders lets IdleClient.Next serve a stored response from the
	// chosen pair's own Response.Header map, cleaned in place and given an
	// Age, instead of from a copy: the map becomes FromCache.Served.Header
	// (for a 304, Served.Header is a new map of a few of its fields), and
	// the pair no longer holds its headers as stored. It saves a header
	// copy on every hit. It applies to a FromCache without Revalidate (a
	// background revalidation needs the stored headers as they are); every
	// other state is unchanged. Set it only when the pairs given to Next
	// are the caller's own to change, as those a storage's GetPairs returns
	// are. hishel.Transport sets it.
	ReuseHeaders bool

	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

func (o *Options) now() time.Time {
	if o == nil || o.Now == nil {
		return time.Now()
	}
	return o.Now()
}

func (o *Options) shared() bool { return o != nil && o.Shared }

func (o *Options) supports(method string) bool {
	if o == nil || o.SupportedMethods == nil {
		return method == "GET" || method == "HEAD"
	}
	return slices.Contains(o.SupportedMethods, method)
}

func (o *Options) methods() []string {
	if o == nil || o.SupportedMethods == nil {
		return DefaultSupportedMethods
	}
	return o.SupportedMethods
}

// cacheableStatus reports whether the options let a response with code
// be stored at all (RFC 9111 §3 then decides).
func (o *Options) cacheableStatus(code int) bool {
	if o == nil || len(o.CacheableStatusCodes) == 0 {
		return !o.forceCache() || slices.Contains(HeuristicallyCacheableStatusCodes, code)
	}
	return slices.Contains(o.CacheableStatusCodes, code)
}

func (o *Options) heuristics() (on bool, fraction float64, maxLife time.Duration) {
	if o == nil {
		return true, DefaultHeuristicFraction, DefaultHeuristicMax
	}
	fraction, maxLife = o.HeuristicFraction, o.HeuristicMax
	if !(fraction > 0) {
		fraction = DefaultHeuristicFraction
	}
	if maxLife <= 0 {
		maxLife = DefaultHeuristicMax
	}
	return !o.DisableHeuristics, fraction, maxLife
}

func (o *Options) allowStale() bool       { return o != nil && o.AllowStale }
func (o *Options) alwaysRevalidate() bool { return o != nil && o.AlwaysRevalidate }
func (o *Options) forceCache() bool       { return o != nil && o.ForceCache }
func (o *Options) reuseHeaders() bool     { return o != nil && o.ReuseHeaders }

// Reason says why the state machine reached a state: a short text and the
// section of the specification that requires or allows it, such as
// "RFC 9111 §4.2.1". Callers can log it or expose it (in a Cache-Status
// field's detail, for instance).
type Reason struct {
	Text    string
	Section string
}

// String returns "text (section)", or the text alone when there is no
// section.
func (r Reason) String() string {
	if r.Section == "" {
		return r.Text
	}
	return r.Text + " (" + r.Section + ")"
}

func why(text, section string) Reason { return Reason{Text: text, Section: section} }

// isSafe reports whether a method is safe (RFC 9110 §9.2.1). Unknown
// methods are unsafe for invalidation (RFC 9111 §4.4).
func isSafe(method string) bool {
	switch method {
	case "GET", "HEAD", "OPTIONS", "TRACE":
		return true
	}
	return false
}

// hasToken reports whether a comma-separated list contains tok
// (case-insensitively), looking at every line.
func hasToken(values []string, tok string) bool {
	for _, v := range values {
		for v != "" {
			var elem string
			elem, v = nextElement(v)
			if strings.EqualFold(trimOWS(elem), tok) {
				return true
			}
		}
	}
	return false
}
