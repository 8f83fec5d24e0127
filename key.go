package hishel

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// ErrUncacheable is returned by a key function for a request the cache
// cannot key; the Transport then passes the request through uncached.
var ErrUncacheable = errors.New("hishel: request cannot be keyed")

// KeyFunc derives the cache key of a request from its method and absolute
// URL. Pairs stored under one key are the variants of one resource (Vary).
// Invalidation after unsafe methods calls it for the URIs it invalidates,
// so it must depend on nothing else. The Transport passes "GET" for a HEAD
// request, so that a HEAD finds the stored GET responses it may be answered
// from and freshen (RFC 9111 §4, §4.3.5).
type KeyFunc func(method, rawURL string) (string, error)

// DefaultKey is the default KeyFunc: the method, a space, and the URL
// normalised: scheme and host lower-cased, the scheme's default port
// dropped, an empty path made "/", the fragment removed. The query is kept
// as it is (its order can matter to the origin). A URL that is not absolute
// http or https fails with ErrUncacheable.
func DefaultKey(method, rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrUncacheable, err)
	}
	return urlKey(method, u)
}

// urlKey is DefaultKey for a parsed URL.
func urlKey(method string, u *url.URL) (string, error) {
	scheme := strings.ToLower(u.Scheme)
	if (scheme != "http" && scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%w: %q is not an absolute http(s) URL", ErrUncacheable, u.Redacted())
	}
	host := strings.ToLower(u.Host)
	if h, p, ok := strings.Cut(host, ":"); ok && !strings.Contains(p, ":") &&
		(scheme == "http" && p == "80" || scheme == "https" && p == "443") {
		host = h
	}
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	var b strings.Builder
	b.Grow(len(method) + len(scheme) + len(host) + len(path) + len(u.RawQuery) + 8)
	b.WriteString(method)
	b.WriteByte(' ')
	b.WriteString(scheme)
	b.WriteString("://")
	b.WriteString(host)
	b.WriteString(path)
	if u.RawQuery != "" || u.ForceQuery {
		b.WriteByte('?')
		b.WriteString(u.RawQuery)
	}
	return b.String(), nil
}
