package hishel

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/hishel-go/hishel/model"
)

// matchSep starts what Options.MatchHeaders adds to a cache key: the hash
// of the request's values of those fields.
const matchSep = " headers-sha256:"

// keyShape is how Options shape cache keys and stored URLs: the query
// parameters kept out of both (IgnoreParams) and the request header fields
// whose values join the key (MatchHeaders).
type keyShape struct {
	ignore  []string // IgnoreParams patterns
	headers []string // MatchHeaders, canonical, sorted, each once
}

func newKeyShape(o *Options) (keyShape, error) {
	var k keyShape
	for _, p := range o.IgnoreParams {
		if p == "" {
			return k, fmt.Errorf("hishel: Options.IgnoreParams: an empty pattern: %w", model.ErrInvalid)
		}
		k.ignore = append(k.ignore, p)
	}
	for _, h := range o.MatchHeaders {
		c := http.CanonicalHeaderKey(strings.TrimSpace(h))
		if c == "" || strings.ContainsAny(c, " \t\r\n:") {
			return k, fmt.Errorf("hishel: Options.MatchHeaders: %q is not a header field name: %w", h, model.ErrInvalid)
		}
		if !slices.Contains(k.headers, c) {
			k.headers = append(k.headers, c)
		}
	}
	slices.Sort(k.headers)
	return k, nil
}

// ignored reports whether the query parameter name is kept out.
func (k *keyShape) ignored(name string) bool {
	for _, p := range k.ignore {
		if glob(p, name) {
			return true
		}
	}
	return false
}

// strip returns u without the query parameters IgnoreParams names: u
// itself when it has none of them, a copy otherwise. The other parameters
// keep their order and their bytes; a query left empty goes, "?" and all.
func (k *keyShape) strip(u *url.URL) *url.URL {
	if len(k.ignore) == 0 || u == nil || u.RawQuery == "" {
		return u
	}
	parts := strings.Split(u.RawQuery, "&")
	kept := parts[:0:0]
	for _, part := range parts {
		name, _, _ := strings.Cut(part, "=")
		if n, err := url.QueryUnescape(name); err == nil {
			name = n
		}
		if part == "" || !k.ignored(name) {
			kept = append(kept, part)
		}
	}
	if len(kept) == len(parts) {
		return u
	}
	out := *u
	out.RawQuery = strings.Join(kept, "&")
	if out.RawQuery == "" {
		out.ForceQuery = false
	}
	return &out
}

// suffix returns what MatchHeaders adds to the key of a request with
// header h: matchSep and the SHA-256, in hex, of the fields' values (so
// that no value, a token say, is stored in a key); "" without
// MatchHeaders. A field that is absent and one that is empty differ.
func (k *keyShape) suffix(h http.Header) string {
	if len(k.headers) == 0 {
		return ""
	}
	sum := sha256.New()
	var b []byte
	for _, name := range k.headers {
		vs, ok := h[name]
		b = append(b[:0], name...)
		if !ok {
			b = append(b, '!') // absent
		}
		b = strconv.AppendInt(append(b, ':'), int64(len(vs)), 10)
		for _, v := range vs {
			b = strconv.AppendInt(append(b, '\n'), int64(len(v)), 10)
			b = append(append(b, ':'), v...)
		}
		b = append(b, '\n')
		sum.Write(b)
	}
	return matchSep + hex.EncodeToString(sum.Sum(nil))
}

// glob reports whether s matches pattern, in which * stands for any run of
// characters (none, or "/" too) and ? for any one character (a UTF-8
// sequence, or one byte that is not part of one); every other byte stands
// for itself.
func glob(pattern, s string) bool {
	// The classic two-pointer match: on a mismatch, go back to the last
	// star and let it take one more character.
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && pattern[p] == '?':
			_, n := utf8.DecodeRuneInString(s[i:])
			p++
			i += n
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case p < len(pattern) && pattern[p] == s[i]:
			p++
			i++
		case star >= 0:
			_, n := utf8.DecodeRuneInString(s[mark:])
			p = star + 1
			mark += n
			i = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}
