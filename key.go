package hishel

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// ErrUncacheable is returned by a key function for a request the cache
// cannot key; the Transport then passes the request through uncached.
var ErrUncacheable = errors.New("hishel: request cannot be keyed")

// DefaultMaxKeyBodySize is the largest request body the Transport reads
// into memory to key a request on it, when Options.MaxKeyBodySize is zero.
const DefaultMaxKeyBodySize = 64 << 10

// KeyFunc derives the cache key of a request. Pairs stored under one key are
// the variants of one resource (Vary); requests that must never share an
// answer must get different keys.
//
// The request is the one the Transport sends to the origin, and the KeyFunc
// must not change it nor read req.Body. A request with a body (to a method
// the cache stores) has had its body read into memory first, at most
// Options.MaxKeyBodySize bytes, and req.GetBody returns a fresh copy of it:
// a KeyFunc keys on the body through GetBody, as DefaultKey does. Headers
// such as a tenant's or the Host are there to key on too.
//
// The Transport keys a HEAD request as a GET (the KeyFunc gets a copy with
// method GET), so that a HEAD finds the stored GET responses it may be
// answered from and freshen (RFC 9111 §4, §4.3.5).
//
// Invalidation after an unsafe method (RFC 9111 §4.4) calls the KeyFunc with
// a copy of the unsafe request whose method and URL are the invalidated
// ones, without a body. An error (wrapping ErrUncacheable, say) makes the
// Transport pass the request through uncached.
type KeyFunc func(req *http.Request) (string, error)

// DefaultKey is the default KeyFunc: the method, a space, and the URL
// normalised: scheme and host lower-cased, the scheme's default port
// dropped, an empty path made "/", the fragment removed. The query is kept
// as it is (its order can matter to the origin). A request with a body adds
// " body-sha256:" and the SHA-256 of the body in hex, read through
// req.GetBody, so that two requests with different bodies (two POSTs of a
// search form, say) never share an answer. A URL that is not absolute http
// or https, or a body that cannot be read again (no GetBody), fails with
// ErrUncacheable.
func DefaultKey(req *http.Request) (string, error) {
	if req == nil || req.URL == nil {
		return "", fmt.Errorf("%w: no request URL", ErrUncacheable)
	}
	key, err := urlKey(req.Method, req.URL)
	if err != nil || !hasBody(req) {
		return key, err
	}
	if req.GetBody == nil {
		return "", fmt.Errorf("%w: the request body cannot be read again to key on it (no GetBody)", ErrUncacheable)
	}
	body, err := req.GetBody()
	if err != nil {
		return "", fmt.Errorf("%w: request body: %v", ErrUncacheable, err)
	}
	defer body.Close()
	h := sha256.New()
	if _, err := io.Copy(h, body); err != nil {
		return "", fmt.Errorf("%w: request body: %v", ErrUncacheable, err)
	}
	return bodyKey(key, h.Sum(nil)), nil
}

// URLKey returns DefaultKey's key for a request without a body: method and
// URL, normalised. It is the key to look up with Storage.GetPairs, say, the
// pairs the Transport stored for a GET of rawURL.
func URLKey(method, rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrUncacheable, err)
	}
	return urlKey(method, u)
}

// bodyKey adds a body's SHA-256 to the key of its request's URL.
func bodyKey(key string, sum []byte) string {
	return key + " body-sha256:" + hex.EncodeToString(sum)
}

// hasBody reports whether req has a body that may not be empty.
func hasBody(req *http.Request) bool {
	return req.Body != nil && req.Body != http.NoBody
}

// urlKey is DefaultKey for a parsed URL and no body.
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

// keyRequest is a request about to be keyed: the request itself, and its
// body when the Transport read it into memory to key on it.
type keyRequest struct {
	req  *http.Request
	body []byte // nil: no body
}

// readBody returns req ready to be keyed: when req has a body and its
// method is one the cache stores, the body is read into memory, at most
// limit bytes, and the returned request carries a replayable copy of it
// (Body, GetBody, ContentLength). The caller's body is closed. ok is false
// when the body is larger than limit: the returned request then sends the
// body whole (the bytes read, then the rest) and must not be cached.
func readBody(req *http.Request, limit int64) (kr keyRequest, ok bool, err error) {
	if !hasBody(req) {
		return keyRequest{req: req}, true, nil
	}
	var buf bytes.Buffer
	n, err := io.Copy(&buf, io.LimitReader(req.Body, max(limit, 0)+1))
	if err != nil {
		_ = req.Body.Close()
		return keyRequest{}, false, fmt.Errorf("hishel: reading the request body: %w", err)
	}
	out := *req // a shallow copy; nothing it shares is changed
	if n > limit {
		out.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(buf.Bytes()), req.Body), req.Body}
		out.GetBody = nil
		return keyRequest{req: &out}, false, nil
	}
	_ = req.Body.Close()
	if n == 0 {
		out.Body, out.ContentLength = http.NoBody, 0
		out.GetBody = func() (io.ReadCloser, error) { return http.NoBody, nil }
		return keyRequest{req: &out}, true, nil
	}
	body := buf.Bytes()
	out.Body, out.ContentLength = io.NopCloser(bytes.NewReader(body)), n
	out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	return keyRequest{req: &out, body: body}, true, nil
}

// key returns the cache key of kr: the default one, or Options.Key's, of
// the request without the query parameters Options.IgnoreParams names
// (the KeyFunc sees the URL without them). A HEAD request is keyed as a
// GET (see keyMethod). What MatchHeaders adds is not in it (requestKey).
func (t *Transport) key(kr keyRequest) (string, error) {
	req := kr.req
	u := t.shape.strip(req.URL)
	if m := keyMethod(req.Method); m != req.Method || u != req.URL {
		r := *req
		r.Method, r.URL = m, u
		req = &r
	}
	if t.opts.Key != nil {
		return t.opts.Key(req)
	}
	key, err := urlKey(req.Method, req.URL)
	if err != nil || kr.body == nil {
		return key, err
	}
	sum := sha256.Sum256(kr.body)
	return bodyKey(key, sum[:]), nil
}

// targetKey returns the key of an invalidated URI: that of a copy of req,
// the unsafe request, with the target's method and URL and no body.
func (t *Transport) targetKey(req *http.Request, method, rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrUncacheable, err)
	}
	tr := *req
	tr.Method, tr.URL = method, u
	tr.Body, tr.GetBody, tr.ContentLength = http.NoBody, nil, 0
	return t.key(keyRequest{req: &tr})
}
