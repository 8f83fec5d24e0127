package hishel

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hishel-go/hishel/model"
)

// URLRule says how the Transport treats the requests whose URL matches
// Pattern: how long their pairs are stored, or that they bypass the cache.
// Options.URLRules lists them; the first that matches a request applies.
//
//	URLRules: []hishel.URLRule{
//		{Pattern: "api.example.com/live/", NoCache: true},      // never cached
//		{Pattern: "*.example.com/static/", TTL: model.NoExpiry}, // kept until removed
//		{Pattern: "example.com/*.json", TTL: 10 * time.Minute},
//	}
type URLRule struct {
	// Pattern is matched against the request URL without its scheme:
	// host (lower case, without the scheme's default port), path and
	// query, as in "example.com/a/b?c=d". In it, * stands for any run of
	// characters ("/" too) and ? for one character; a scheme written
	// ("https://") is ignored. A pattern matches a URL that it matches a
	// prefix of: "example.com/static" matches example.com/static/app.js,
	// and a host alone, "example.com", every URL of that host.
	Pattern string
	// TTL is how long the pairs of matching requests are stored (their
	// storage TTL: a request's own TTL, set with WithRequestOptions, comes
	// first): zero keeps the storage's DefaultTTL, model.NoExpiry keeps
	// them until they are removed. It bounds how long a response may be
	// reused, never lengthens its HTTP freshness; with Cache.ForceCache
	// it is how long a response is reused, whatever its headers say.
	TTL time.Duration
	// NoCache makes matching requests bypass the cache: nothing is looked
	// up or stored for them (Cache-Status fwd=bypass). Unsafe methods
	// still invalidate what they affect.
	NoCache bool
}

// urlRules are Options.URLRules, checked, with their patterns ready.
type urlRules []urlRule

type urlRule struct {
	pattern string // without scheme, host part lower-cased, ending with *
	URLRule
}

func newURLRules(rules []URLRule) (urlRules, error) {
	var out urlRules
	for i, r := range rules {
		p := r.Pattern
		if _, rest, ok := strings.Cut(p, "://"); ok {
			p = rest
		}
		if p == "" {
			return nil, fmt.Errorf("hishel: Options.URLRules[%d]: empty pattern: %w", i, model.ErrInvalid)
		}
		if r.TTL < 0 && r.TTL != model.NoExpiry {
			return nil, fmt.Errorf("hishel: Options.URLRules[%d] (%s): negative TTL %v (model.NoExpiry means no expiry): %w", i, r.Pattern, r.TTL, model.ErrInvalid)
		}
		host, path, _ := strings.Cut(p, "/")
		p = strings.ToLower(host) + "/" + path // a host alone: all of it, not example.com.evil
		if !strings.HasSuffix(p, "*") {
			p += "*"
		}
		out = append(out, urlRule{pattern: p, URLRule: r})
	}
	return out, nil
}

// match returns the first rule that matches u, or nil.
func (rs urlRules) match(u *url.URL) *URLRule {
	if len(rs) == 0 || u == nil {
		return nil
	}
	target := ruleTarget(u)
	for i := range rs {
		if glob(rs[i].pattern, target) {
			return &rs[i].URLRule
		}
	}
	return nil
}

// ruleTarget is what URL rule patterns are matched against: host (lower
// case, without the scheme's default port), path ("/" when empty) and
// query.
func ruleTarget(u *url.URL) string {
	host := strings.ToLower(u.Host)
	if h, p, ok := strings.Cut(host, ":"); ok && !strings.Contains(p, ":") &&
		(u.Scheme == "http" && p == "80" || u.Scheme == "https" && p == "443") {
		host = h
	}
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	if u.RawQuery != "" {
		return host + path + "?" + u.RawQuery
	}
	return host + path
}

// lookupRequest is req as the state machine sees it: modelRequest's, with
// the TTL of the URL rule that matches it when the request sets none, and
// only-if-cached added when WithOnlyIfCached asks for it.
func (t *Transport) lookupRequest(req *http.Request) model.Request {
	return t.lookupRequestWith(req, t.storedHeader(req.Header), true)
}

// lookupRequestWith is lookupRequest(req) with the header h; without
// withURL, its URL is left empty (see Transport.hitLookup).
func (t *Transport) lookupRequestWith(req *http.Request, h http.Header, withURL bool) model.Request {
	mr := modelRequestNoURL(req, h)
	if withURL {
		mr.URL = req.URL.String()
	}
	if mr.Options.TTL == 0 {
		if r := t.rules.match(req.URL); r != nil {
			mr.Options.TTL = r.TTL
		}
	}
	if modeOf(req) == modeOnlyIfCached {
		h := mr.Header.Clone() // the caller's map must not change
		h["Cache-Control"] = append(h["Cache-Control"], "only-if-cached")
		mr.Header = h
	}
	return mr
}

// storedURL is the URL stored with the pair of req: req's, without the
// query parameters IgnoreParams names.
func (t *Transport) storedURL(req *http.Request, mreq model.Request) string {
	if u := t.shape.strip(req.URL); u != req.URL {
		return u.String()
	}
	return mreq.URL
}

// bypassed reports whether req bypasses the cache: a URL rule says
// NoCache and its method is one the cache stores.
func (t *Transport) bypassed(req *http.Request) bool {
	r := t.rules.match(req.URL)
	return r != nil && r.NoCache && t.supports(req.Method)
}

// filtered reports whether Options.StoreFilter keeps resp, the answer to
// req, out of the cache.
func (t *Transport) filtered(req *http.Request, resp *http.Response) bool {
	return t.opts.StoreFilter != nil && !t.opts.StoreFilter(req, resp)
}
