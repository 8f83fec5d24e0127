package hishel

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/hishel-go/hishel/model"
	"github.com/hishel-go/hishel/statemachine"
)

// deleter is what Invalidate and invalidation with MatchHeaders need of a
// Storage beyond the Storage interface; every store of packages cache and
// cacheasync (through cache's wrappers) has it.
type deleter interface {
	Delete(ctx context.Context, f model.Filter) (int, error)
}

// Invalidate removes every response the cache holds for rawURL: every
// variant (Vary, MatchHeaders) stored for every method the cache stores
// (GET, which HEAD shares, and the others of Options.Cache.SupportedMethods)
// and for every request with a body, as after an unsafe request (RFC 9111
// §4.4). It returns how many pairs it removed; they are soft-deleted, as
// the storage's Remove does. IgnoreParams applies to rawURL as to requests.
// A response being stored while Invalidate runs may be stored after it.
//
// With the default key function, without MatchHeaders and with no method
// but GET and HEAD stored, Invalidate finds the pairs by their keys (a
// Bolt store reads its keys index). Otherwise keys cannot be derived from
// the URL alone, and it removes the pairs whose request URL is rawURL
// (compared as model.Filter compares URLs), which a Bolt store finds by
// reading every record. A Storage without a Delete method (the stores of
// package cache all have one) is searched by key only.
//
// A URL that is not an absolute http or https URL fails with an error
// wrapping ErrUncacheable.
func (t *Transport) Invalidate(ctx context.Context, rawURL string) (int, error) {
	if err := model.CheckContext(ctx); err != nil {
		return 0, fmt.Errorf("hishel: invalidate: %w", err)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return 0, fmt.Errorf("hishel: invalidate: %w: %v", ErrUncacheable, err)
	}
	if s := strings.ToLower(u.Scheme); s != "http" && s != "https" || u.Host == "" {
		return 0, fmt.Errorf("hishel: invalidate: %w: %q is not an absolute http(s) URL", ErrUncacheable, u.Redacted())
	}
	u = t.shape.strip(u)
	var keys []string
	for _, m := range append([]string{http.MethodGet}, t.methods()...) {
		r := (&http.Request{Method: m, URL: u, Header: http.Header{}, Body: http.NoBody}).WithContext(ctx)
		k, err := t.key(keyRequest{req: r})
		if err != nil {
			return 0, fmt.Errorf("hishel: invalidate: %w", err)
		}
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	d, ok := t.del, t.del != nil
	switch {
	case !ok:
		return t.removeByKeys(ctx, keys)
	case t.keysCover():
		return d.Delete(ctx, model.Filter{Keys: keys})
	}
	return d.Delete(ctx, model.Filter{URL: u.String()})
}

// Invalidate removes every response the cache holds for rawURL; see
// Transport.Invalidate.
func (h *CacheHandler) Invalidate(ctx context.Context, rawURL string) (int, error) {
	return h.t.Invalidate(ctx, rawURL)
}

// methods are the methods the cache stores.
func (t *Transport) methods() []string {
	if ms := t.opts.Cache.SupportedMethods; ms != nil {
		return ms
	}
	return statemachine.DefaultSupportedMethods
}

// keysCover reports whether the keys of a URL, for each method the cache
// stores, are all the keys its pairs can be stored under: the default key
// function, which depends on method and URL alone, no MatchHeaders, and no
// method but GET and HEAD (whose requests have no body to key on).
func (t *Transport) keysCover() bool {
	if t.opts.Key != nil || len(t.shape.headers) > 0 {
		return false
	}
	for _, m := range t.methods() {
		if m != http.MethodGet && m != http.MethodHead {
			return false
		}
	}
	return true
}

// removeByKeys removes every pair stored under keys through GetPairs and
// Remove, for a Storage without Delete. It goes on after a failure and
// returns the first.
func (t *Transport) removeByKeys(ctx context.Context, keys []string) (int, error) {
	n := 0
	var first error
	for _, k := range keys {
		pairs, err := t.store.GetPairs(ctx, k)
		if err != nil {
			first = cmp.Or(first, fmt.Errorf("hishel: invalidate: %w", err))
			continue
		}
		closeOthers(pairs, model.PairID{})
		for _, p := range pairs {
			if err := t.store.Remove(ctx, p.ID); err != nil {
				first = cmp.Or(first, fmt.Errorf("hishel: invalidate: %w", err))
				continue
			}
			n++
		}
	}
	return n, first
}

// invalidateTargets removes what an unsafe request invalidates (RFC 9111
// §4.4): every pair stored under the keys of its targets and, with
// MatchHeaders, under those keys with any header values added.
func (t *Transport) invalidateTargets(req *http.Request, targets []statemachine.Target) {
	keys := t.targetKeys(req, targets)
	if len(keys) == 0 {
		return
	}
	ctx := req.Context()
	if d := t.del; d != nil && len(t.shape.headers) > 0 {
		_, err := d.Delete(ctx, model.Filter{Func: func(pi model.PairInfo) bool {
			for _, k := range keys {
				if pi.Key == k || strings.HasPrefix(pi.Key, k+matchSep) {
					return true
				}
			}
			return false
		}})
		if err != nil {
			t.storeFailed(req, "", "invalidate", err)
		}
		return
	}
	if _, err := t.removeByKeys(ctx, keys); err != nil {
		t.storeFailed(req, "", "invalidate", err)
	}
}
