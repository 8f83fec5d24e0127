package statemachine

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/hishel-go/hishel/model"
)

// store decides whether resp, the origin's response to req sent at sentAt
// and received at now, may be stored (RFC 9111 §3).
func (o *Options) store(req model.Request, resp model.Response, sentAt, now time.Time) StoreNext {
	no := func(text, section string) StoreNext {
		return &CouldNotBeStored{Response: resp, Reason: why(text, section)}
	}
	switch st := resp.Status; {
	case !o.supports(req.Method):
		return no("method not cached", "RFC 9111 §3")
	case st < 200 || st > 599:
		return no("status code is not final", "RFC 9111 §3")
	case st == 304:
		return no("a 304 updates stored responses and is not stored itself", "RFC 9111 §4.3.4")
	case !o.cacheableStatus(st):
		return no("status code not configured as cacheable", "")
	case st == http.StatusPartialContent && req.Method != "GET":
		return no("partial content answers only a GET", "RFC 9111 §3.3")
	case st == http.StatusPartialContent:
		if _, ok := rangeOf(resp.Header); !ok {
			return no("partial content is stored only with one byte range of known length and a strong entity-tag", "RFC 9111 §3.3")
		}
	}
	cc, ccPresent, targeted := o.responseCC(resp.Header)
	shared := o.shared()
	yes := func(text, section string) StoreNext {
		stored := resp
		stored.Header = storedHeader(resp.Header, &cc, shared, now)
		if sentAt.IsZero() || sentAt.After(now) {
			sentAt = now
		}
		if now.Sub(sentAt) >= time.Second {
			// Storage's Meta times are those of the store, not of the
			// exchange: record the delay (RFC 9111 §4.2.3).
			stored.Header[HeaderRequestTime] = []string{sentAt.UTC().Format(time.RFC3339Nano)}
			stored.Header[HeaderResponseTime] = []string{now.UTC().Format(time.RFC3339Nano)}
		}
		age := currentAge(resp.Header, sentAt, now, dateValue(resp.Header, now, now), now)
		return &StoreAndUse{Response: stored, TTL: req.Options.TTL, Age: age, Reason: why(text, section)}
	}
	if o.forceCache() {
		return yes("force cache: stored whatever the headers say", "")
	}
	reqCC, _ := parseHeaderCC(req.Header)
	switch {
	case reqCC.NoStore:
		return no("request has no-store", "RFC 9111 §5.2.1.5")
	case cc.MustUnderstand && !slices.Contains(understoodStatusCodes, resp.Status):
		return no("must-understand with a status code whose caching rules are not implemented", "RFC 9111 §5.2.2.3")
	case cc.NoStore && !cc.MustUnderstand:
		// With must-understand and an understood status, no-store is
		// ignored (§5.2.2.3).
		return no("response has no-store", "RFC 9111 §5.2.2.5")
	case shared && cc.Private:
		return no("private response in a shared cache", "RFC 9111 §5.2.2.7")
	case shared && hasAuthorization(req.Header) && !authAllowed(&cc):
		return no("request has Authorization and the response does not allow a shared cache to store it", "RFC 9111 §3.5")
	case varyStar(resp.Header):
		return no(`Vary: "*" never matches a later request`, "RFC 9111 §4.1")
	}
	expires := !targeted && len(resp.Header["Expires"]) > 0 || cc.MaxAge.Present || shared && cc.SMaxAge.Present
	explicit := cc.Public || !shared && cc.Private || expires
	if shared && !expires && len(resp.Header["Set-Cookie"]) > 0 {
		// Set-Cookie is one user's: a shared cache keeps it only when the
		// origin said for how long the response is fresh, never on a
		// lifetime of its own guessing (or for revalidation alone).
		return no("Set-Cookie without explicit freshness in a shared cache", "RFC 9111 §4.2.2")
	}
	if !explicit && !slices.Contains(HeuristicallyCacheableStatusCodes, resp.Status) {
		return no("no explicit freshness and the status code is not heuristically cacheable", "RFC 9111 §3")
	}
	// A response that can never be reused is not worth storing (§3: a
	// cache MAY store).
	_, validator := etag(resp.Header)
	if !validator {
		_, _, validator = headerDate(resp.Header, "Last-Modified", now)
	}
	lifetime, _ := o.freshnessLifetime(resp.Header, &cc, targeted, resp.Status, dateValue(resp.Header, now, now), now)
	noCache := cc.NoCache || !ccPresent && hasPragmaNoCache(resp.Header)
	staleUse := cc.StaleWhileRevalidate.Valid || cc.StaleIfError.Valid || o.allowStale()
	if !validator && (noCache || lifetime == 0 && !staleUse) {
		return no("never reusable: no validator, and no freshness or no-cache", "RFC 9111 §3")
	}
	sn := yes("storable", "RFC 9111 §3")
	if !validator && !o.allowStale() {
		// Without a validator the response cannot be revalidated (nor
		// freshened by a 304): once stale beyond its stale-* windows it
		// is of no use, and storage may reclaim it then.
		st := sn.(*StoreAndUse)
		window := max(deltaLifetime(cc.StaleWhileRevalidate), deltaLifetime(cc.StaleIfError))
		st.MaxTTL = max(lifetime-st.Age+window, time.Nanosecond)
	}
	return sn
}

// InvalidationTargets lists the stored pairs to invalidate after resp
// answered the unsafe request req (RFC 9111 §4.4): for every supported
// method, the target URI and the URIs of the Location and Content-Location
// fields (resolved against the target, without fragment) that share its
// origin. It lists nothing when resp is an error (not 2xx or 3xx) or req's
// method is safe. URIs that do not parse are left out, except the target,
// which is listed as it is.
func InvalidationTargets(req model.Request, resp model.Response, opts *Options) []Target {
	if isSafe(req.Method) || resp.Status < 200 || resp.Status >= 400 {
		return nil
	}
	methods := opts.methods()
	urls := []string{req.URL}
	if base, err := url.Parse(req.URL); err == nil && base.IsAbs() {
		for _, f := range [...]string{"Location", "Content-Location"} {
			vs := resp.Header[f]
			if len(vs) == 0 {
				continue
			}
			u, err := base.Parse(trimOWS(vs[0]))
			if err != nil || !sameOrigin(base, u) {
				continue
			}
			u.Fragment, u.RawFragment = "", ""
			if s := u.String(); !slices.Contains(urls, s) {
				urls = append(urls, s)
			}
		}
	}
	out := make([]Target, 0, len(urls)*len(methods))
	for _, u := range urls {
		for _, m := range methods {
			out = append(out, Target{Method: m, URL: u})
		}
	}
	return out
}

// sameOrigin compares scheme, host and port (RFC 9110 §4.3.1), with
// default ports made explicit.
func sameOrigin(a, b *url.URL) bool {
	return strings.EqualFold(a.Scheme, b.Scheme) &&
		strings.EqualFold(a.Hostname(), b.Hostname()) &&
		port(a) == port(b)
}

func port(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	switch strings.ToLower(u.Scheme) {
	case "http":
		return "80"
	case "https":
		return "443"
	}
	return ""
}
