// Package statemachine is a sans-I/O HTTP cache (RFC 9111): given a request
// and the pairs stored under its key it says what the cache must do next,
// and given the origin's answer it says whether to store, freshen,
// invalidate or pass it through. It does no I/O, reads no bodies, keeps no
// state between calls and takes the time from an injected clock
// ([Options].Now), so every decision is a pure function of its inputs.
//
// # States
//
// Each state is a distinct type; each Next method returns a sealed
// interface that only the states that can follow implement, so a type
// switch over those states covers every case:
//
//	IdleClient ──► CacheMiss | FromCache | NeedRevalidation | GatewayTimeout | WriteThrough
//	             | PartialUpdate
//	PartialUpdate ──► CacheMiss | FromCache | NeedRevalidation | GatewayTimeout
//	CacheMiss ──► StoreAndUse | CouldNotBeStored
//	NeedRevalidation ──Next──► NeedToBeUpdated | InvalidatePairs | CacheMiss
//	                           | StoreAndUse | CouldNotBeStored | ServeStale
//	NeedRevalidation ──OnError──► ServeStale | GatewayTimeout
//	NeedToBeUpdated ──► FromCache
//	InvalidatePairs ──► StoreAndUse | CouldNotBeStored
//	WriteThrough ──► InvalidateURIs | CouldNotBeStored
//
// FromCache, StoreAndUse, CouldNotBeStored, ServeStale, GatewayTimeout and
// InvalidateURIs are final. A FromCache may carry a NeedRevalidation to run
// in the background (stale-while-revalidate). PartialUpdate, as in Python
// Hishel, says to combine stored partial responses before deciding (see
// Partial content below). Beyond Python Hishel's states,
// ServeStale answers from a stale pair when the origin fails
// (stale-if-error, max-stale, [Options].AllowStale), GatewayTimeout is the
// 504 of only-if-cached and must-revalidate, and WriteThrough and
// InvalidateURIs carry out the invalidation that follows an unsafe method.
//
// Every state has a [Reason]: a short text and the section of the RFC
// behind the decision.
//
// # Times
//
// Ages are computed as RFC 9111 §4.2.3 says, from the stored response's
// Date and Age fields and from the pair's request_time and response_time:
// pair.Meta.Created is the request time and pair.Meta.Completed the
// response time (Created when Completed is zero). Where those would be
// wrong, the state machine records the exchange's times in the stored
// header as [HeaderRequestTime] and [HeaderResponseTime] (RFC 3339), and
// they win over Meta: when it freshens a pair after a 304, when it stores a
// response that took a second or more to arrive (storage creates the pair
// only once the response is there), and in a pair combined from partial
// responses (the newest part's times). The age a response had when it
// arrived, its corrected initial age, is also given on the miss that
// stores it ([StoreAndUse].Age). These fields are
// removed from every origin response before it is stored and from every
// response served from the cache, so an origin cannot forge them. A stored
// response without a Date gets one, the time it was received (RFC 9110
// §6.6.1).
//
// # Reading malformed input
//
// Nothing in this package panics on malformed input; it reads it as the RFC
// prescribes, and otherwise in the most restrictive way:
//
//   - Cache-Control directive names are case-insensitive; stray commas,
//     empty elements and unknown directives are skipped; arguments are
//     accepted as token or quoted-string. A delta-seconds argument larger
//     than 2^31 is 2^31 (§1.2.2). A malformed, negative or missing
//     argument, or the same directive repeated with different values,
//     makes the directive invalid: an invalid max-age or s-maxage in a
//     response gives a freshness lifetime of zero (§4.2.1); an invalid
//     request max-age or min-fresh forces validation; an invalid
//     max-stale, stale-while-revalidate or stale-if-error allows nothing.
//     When directives conflict the most restrictive wins (no-cache over
//     max-age, private over public).
//   - HTTP-dates are parsed strictly in their three formats
//     ([ParseHTTPDate]). An invalid Expires, such as "0", means already
//     expired (§5.3), as do several Expires lines that disagree. An invalid
//     Date is replaced by the response time, an invalid Last-Modified
//     ignored.
//   - Age uses the first member of its first line; an invalid value is
//     ignored (§5.1).
//   - Pragma: no-cache counts as Cache-Control: no-cache when there is no
//     Cache-Control field (RFC 7234 §5.4): in requests, as the RFC says,
//     and, to be safe, in stored responses too.
//   - Vary is read across all its lines, with whitespace around members
//     ignored and names compared case-insensitively; "*" anywhere means the
//     response never matches (§4.1). Request fields compare after their
//     lines are combined and whitespace around list members is dropped;
//     Accept-Encoding and Accept-Language also match when they list the
//     same members in another order or case, weights counting ("gzip, br"
//     matches "BR,gzip;q=1", not "br;q=0.5, gzip"). An absent field
//     matches only an absent one.
//   - Range: see [ResolveRange]; anything but one well-formed byte range is
//     answered with the whole representation.
//
// # Targeted cache control
//
// A shared cache obeys targeted cache-control fields (RFC 9213): those
// named in [Options].TargetedFields, in order, then CDN-Cache-Control
// (unless [Options].IgnoreCDNCacheControl). The first whose value is a
// valid, non-empty RFC 8941 Dictionary (parsed strictly; one error and the
// field is ignored as a whole) replaces Cache-Control and Expires for this
// cache: its max-age, s-maxage, no-store, no-cache, private,
// must-revalidate, proxy-revalidate, public, immutable, must-understand,
// stale-while-revalidate and stale-if-error, with Age applied as usual.
// A private cache ignores them. Targeted fields are stored and served like
// any other field, so that caches further down the path can obey them too
// (RFC 9213 §3 expects a CDN to pass CDN-Cache-Control on).
//
// # Choices left to a cache
//
// Where the RFC lets a cache choose, this package chooses:
//
//   - Any final status code is stored when the response has explicit
//     freshness or public (RFC 9111 §3), unless
//     [Options].CacheableStatusCodes restricts them; must-understand keeps
//     out a status code RFC 9110 does not define (§5.2.2.3). A stored
//     response whose status is neither heuristically cacheable nor a
//     redirection (a 500 with max-age, say) is reused only while fresh:
//     never under max-stale, stale-while-revalidate, stale-if-error or
//     AllowStale (§4.2.4).
//   - Heuristic freshness is on by default ([Options].DisableHeuristics):
//     10% of the time between Last-Modified and Date, at most a day, for
//     heuristically cacheable status codes or public responses (§4.2.2).
//   - A response that could never be reused (no validator, and no
//     freshness or no-cache) is not stored; neither is a response with
//     Vary: "*", nor partial content this package cannot combine (see
//     Partial content).
//   - A shared cache reuses a pair for a request with Authorization, or a
//     pair stored for one, only when the response has public,
//     must-revalidate or s-maxage (§3.5).
//   - A 304 without any validator updates the single pair that was
//     nominated, even if that pair has a validator: origins often omit
//     Last-Modified from a 304 (§4.3.4 strictly asks that the stored pair
//     lack one too).
//   - A full response to a revalidation invalidates the nominated pairs
//     when it is 2xx, 3xx, 404 or 410; a 500, 502, 503 or 504 leaves them
//     and may be answered from them (stale-if-error, §4.3.3).
//   - A request with If-Match or If-Unmodified-Since goes to the origin
//     (§4.3.2); If-None-Match and If-Modified-Since are answered from the
//     cache with a 304 when they match a stored 200.
//   - immutable (RFC 8246): while fresh, the request's max-age is ignored
//     (a reload); no-cache is still honoured (a forced reload).
//   - GET, HEAD, OPTIONS and TRACE are safe (RFC 9110 §9.2.1); any other
//     method not in [Options].SupportedMethods is unsafe: it is written
//     through and invalidates on a 2xx or 3xx (§4.4). A 200 to a POST
//     with explicit freshness and a Content-Location naming the target
//     URI is then stored as the answer to a GET of it (RFC 9110 §9.3.3);
//     other statuses are not, since a GET would not have been answered
//     with them.
//   - A Range request is answered from a stored complete 200 whose
//     Content-Length is known ([ResolveRange], If-Range honoured), or
//     else from stored partial responses (see Partial content).
//   - A stored GET response also answers a HEAD request, when the caller
//     passes GET pairs for it (hishel.Transport keys HEAD like GET). A 200
//     answer to a HEAD request sent to validate them freshens the GET
//     responses whose validators (at least one) and Content-Length it
//     matches, and invalidates the others (§4.3.5: "consider stale";
//     removing them is the simplest way to make sure).
//
// # Partial content
//
// A 206 to a GET is stored as an ordinary pair (RFC 9111 §3.3) when it can
// be combined later: one Content-Range of known complete length, a
// Content-Length (if any) that agrees, and a strong entity-tag (§3.4);
// multipart/byteranges is not stored. Stored 206 pairs of one
// representation (the most recent one's entity-tag and length) are used
// only when no complete response answers the request:
//
//   - A run of them that overlap or abut is combined (*PartialUpdate)
//     when that serves the request: when it covers the whole
//     representation (the result is a complete 200 that answers any
//     request), or when it meets the range of a Range request (the result
//     is a 206 of the union). The combined header is the most recent
//     part's (RFC 9110 §15.3.7.3), with its times.
//   - A Range request (one satisfiable range; If-Range true, RFC 9110
//     §13.1.5) that one part holds is answered from it like from any
//     stored response: fresh, validated or stale as allowed.
//   - When parts hold the start or the end of the range (or both) but not
//     all of it, the origin is asked for the one missing run only, with
//     If-Range and the parts' entity-tag (*CacheMiss with Partial); a 206
//     of exactly that run with that entity-tag is joined with the stored
//     bytes ([CacheMiss.Join]) and stored as a new part. Anything else is
//     passed on if it is a full response, or the whole request is sent
//     again ([CacheMiss.Fallback]).
//   - Otherwise the request goes to the origin as it is.
//
// A part is never served to a request without Range, nor to HEAD. An
// If-Range that fails needs the whole representation, which parts cannot
// give.
//
// Not implemented: the obsolete Warning field.
package statemachine
