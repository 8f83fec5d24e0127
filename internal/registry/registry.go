// Package registry maps store URL schemes to the functions that open them,
// for cache.Open and cacheasync.Open (as database/sql maps driver names).
package registry

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/hishel-go/hishel/model"
)

// Registry maps schemes to openers of type F. The zero value is empty and
// ready; it is safe for concurrent use.
type Registry[F any] struct {
	api string // "cache" or "cacheasync", for messages

	mu sync.RWMutex
	m  map[string]F
}

// New returns an empty Registry for package api.
func New[F any](api string) *Registry[F] { return &Registry[F]{api: api} }

// Register makes open the opener of scheme. It panics if scheme is not a
// valid URL scheme in lower case, or is registered already: both are
// programming errors, made in a package's init.
func (r *Registry[F]) Register(scheme string, open F) {
	if !validScheme(scheme) {
		panic(fmt.Sprintf("%s: Register: %q is not a lower-case URL scheme", r.api, scheme))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.m[scheme]; dup {
		panic(fmt.Sprintf("%s: Register called twice for scheme %q", r.api, scheme))
	}
	if r.m == nil {
		r.m = make(map[string]F)
	}
	r.m[scheme] = open
}

// Schemes returns the registered schemes, sorted.
func (r *Registry[F]) Schemes() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []string
	for s := range r.m {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// Lookup parses rawURL and returns it with the opener of its scheme. A URL
// that does not parse, has no scheme, or names an unregistered one fails
// with an error wrapping model.ErrInvalid that lists the registered
// schemes.
func (r *Registry[F]) Lookup(rawURL string) (*url.URL, F, error) {
	var zero F
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Error quotes the URL, password included: say less.
		return nil, zero, fmt.Errorf("%s: open: store URL does not parse (%v); want scheme:..., one of %s: %w",
			r.api, unwrapURLError(err), r.list(), model.ErrInvalid)
	}
	if u.Scheme == "" {
		return nil, zero, fmt.Errorf("%s: open %s: store URL has no scheme; want one of %s, such as bolt:///path/cache.db: %w",
			r.api, u.Redacted(), r.list(), model.ErrInvalid)
	}
	r.mu.RLock()
	open, ok := r.m[u.Scheme]
	r.mu.RUnlock()
	if !ok {
		return nil, zero, fmt.Errorf("%s: open %s: unknown scheme %q; registered: %s (a backend registers its scheme when its package is imported, as with _ \"github.com/hishel-go/hishel/sqlite\"): %w",
			r.api, u.Redacted(), u.Scheme, r.list(), model.ErrInvalid)
	}
	return u, open, nil
}

func (r *Registry[F]) list() string {
	s := r.Schemes()
	for i := range s {
		s[i] += "://"
	}
	return strings.Join(s, ", ")
}

// unwrapURLError returns the cause of a *url.Error, without the URL.
func unwrapURLError(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}

// validScheme reports whether s is an RFC 3986 scheme in lower case.
func validScheme(s string) bool {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for _, c := range s {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
