package model

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Filter selects stored pairs: a store's Pairs lists the pairs a Filter
// matches, and its Delete removes them. A pair matches when it meets every
// criterion that is set; the zero Filter matches every pair, whatever its
// state.
//
//	s.Pairs(ctx, model.Filter{URL: "https://example.com/a"})   // every method and variant of a URL
//	s.Delete(ctx, model.Filter{Expired: true})                  // what the next sweep would expire
//	s.Delete(ctx, model.Filter{OlderThan: 24 * time.Hour})      // stored more than a day ago
//
// Backends serve some criteria from their indexes (Bolt and Memory: Keys,
// Expired, State) and read every pair for the others.
type Filter struct {
	// Keys, when not empty, matches the complete pairs (expired or not)
	// stored under one of these cache keys: those GetPairs looks at.
	Keys []string
	// KeyPrefix, when not empty, matches the pairs whose cache key starts
	// with it.
	KeyPrefix string
	// URL, when not empty, matches the pairs whose request URL is this
	// one. URLs are compared as cache keys compare them: the scheme and
	// host in any case, an http or https URL's default port written or
	// not, an empty path or "/", the fragment ignored; the rest (path and
	// query) byte for byte. A URL that does not parse is compared as it
	// is written.
	URL string
	// URLPrefix, when not empty, matches the pairs whose request URL,
	// compared as for URL, starts with this one: "https://example.com/api/"
	// matches every URL under /api/.
	URLPrefix string
	// State, when not zero, matches the pairs in this state only.
	State PairState
	// Expired matches the complete pairs whose TTL has run out (their
	// Meta.Expires is set and not after the store's clock): those the
	// next sweep soft-deletes.
	Expired bool
	// OlderThan, when positive, matches the pairs created more than this
	// long ago by the store's clock; negative is invalid.
	OlderThan time.Duration
	// Func, when not nil, matches the pairs for which it returns true. It
	// is given heads and metadata (no bodies), only for pairs that meet
	// every other criterion, maybe more than once for a pair and from any
	// goroutine; it must be quick and must not call the store.
	Func func(PairInfo) bool
}

// IsZero reports whether f sets no criterion: it matches every pair.
func (f Filter) IsZero() bool {
	return len(f.Keys) == 0 && f.KeyPrefix == "" && f.URL == "" && f.URLPrefix == "" &&
		f.State == 0 && !f.Expired && f.OlderThan == 0 && f.Func == nil
}

// Matcher is a Filter checked and prepared for matching pairs at one
// instant, as a store does while it lists or deletes. Backends make one
// with [Filter.Matcher].
type Matcher struct {
	f         Filter
	now       time.Time
	url       string
	urlPrefix string
}

// Matcher checks f and returns the Matcher of its pairs at now (the store's
// clock). A State that is not one of the PairState constants, a negative
// OlderThan, or a URL or URLPrefix that does not parse is an error wrapping
// [ErrInvalid].
func (f Filter) Matcher(now time.Time) (*Matcher, error) {
	switch {
	case f.State != 0 && f.State != StateIncomplete && f.State != StateComplete && f.State != StateDeleted:
		return nil, fmt.Errorf("hishel: filter: state %d: %w", f.State, ErrInvalid)
	case f.OlderThan < 0:
		return nil, fmt.Errorf("hishel: filter: negative OlderThan %v: %w", f.OlderThan, ErrInvalid)
	}
	m := &Matcher{f: f, now: now}
	for _, u := range []struct {
		name string
		raw  string
		dst  *string
	}{{"URL", f.URL, &m.url}, {"URLPrefix", f.URLPrefix, &m.urlPrefix}} {
		if u.raw == "" {
			continue
		}
		if _, err := url.Parse(u.raw); err != nil {
			return nil, fmt.Errorf("hishel: filter: %s %q does not parse: %w", u.name, u.raw, ErrInvalid)
		}
		*u.dst = normalURL(u.raw)
	}
	return m, nil
}

// Match reports whether pi meets every criterion of the filter.
func (m *Matcher) Match(pi PairInfo) bool { return m.MatchHeads(pi) && m.MatchFunc(pi) }

// MatchHeads reports whether pi meets every criterion of the filter but
// Func: what a backend checks while it holds a lock, before it calls
// MatchFunc without it.
func (m *Matcher) MatchHeads(pi PairInfo) bool {
	f := &m.f
	switch {
	case f.State != 0 && pi.State != f.State,
		len(f.Keys) > 0 && (pi.State != StateComplete || !slices.Contains(f.Keys, pi.Key)),
		f.KeyPrefix != "" && !strings.HasPrefix(pi.Key, f.KeyPrefix),
		f.Expired && !(pi.State == StateComplete && !pi.Meta.Expires.IsZero() && !pi.Meta.Expires.After(m.now)),
		f.OlderThan > 0 && !pi.Meta.Created.Before(m.now.Add(-f.OlderThan)):
		return false
	}
	if m.url != "" || m.urlPrefix != "" {
		u := pi.Request.URL
		if !looksNormal(u) {
			u = normalURL(u)
		}
		if m.url != "" && u != m.url || m.urlPrefix != "" && !strings.HasPrefix(u, m.urlPrefix) {
			return false
		}
	}
	return true
}

// MatchFunc reports whether the filter's Func, if any, accepts pi.
func (m *Matcher) MatchFunc(pi PairInfo) bool { return m.f.Func == nil || m.f.Func(pi) }

// Filter returns the filter m was made from.
func (m *Matcher) Filter() Filter { return m.f }

// looksNormal reports, cheaply, whether normalURL(s) is s: s is an http or
// https URL with a lower-case host without userinfo or its scheme's
// default port, a path, no fragment, and no byte that parsing might
// rewrite. It may report false for a URL that is normal (normalURL then
// says so).
func looksNormal(s string) bool {
	var rest string
	var port string
	switch {
	case strings.HasPrefix(s, "https://"):
		rest, port = s[len("https://"):], ":443"
	case strings.HasPrefix(s, "http://"):
		rest, port = s[len("http://"):], ":80"
	default:
		return false
	}
	end := strings.IndexAny(rest, "/?#")
	if end <= 0 || rest[end] != '/' {
		return false // no host, or no path
	}
	host := rest[:end]
	if strings.HasSuffix(host, port) {
		return false
	}
	for i := 0; i < len(host); i++ {
		if c := host[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == ':') {
			return false // upper case, userinfo, IPv6, escapes...
		}
	}
	for i := end; i < len(rest); i++ {
		c := rest[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-._~/?=&+,;:@!$'()*", c) >= 0:
		default:
			return false // '#', '%', spaces and the rest: leave them to url.Parse
		}
	}
	return true
}

// normalURL returns raw as a Filter compares request URLs: the scheme and
// host lower-cased, an http or https URL's default port dropped, an empty
// path of a URL with a host made "/", the fragment removed, and the rest
// as written. A URL that does not parse is returned as it is.
func normalURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	u.Fragment, u.RawFragment = "", ""
	u.Scheme = strings.ToLower(u.Scheme)
	u.Host = strings.ToLower(u.Host)
	if h, p, ok := strings.Cut(u.Host, ":"); ok && !strings.Contains(p, ":") &&
		(u.Scheme == "http" && p == "80" || u.Scheme == "https" && p == "443") {
		u.Host = h
	}
	if u.Host != "" && u.Path == "" && u.RawPath == "" && u.Opaque == "" {
		u.Path = "/"
	}
	return u.String()
}
