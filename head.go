package hishel

import (
	"net/http"
	"net/url"

	"github.com/hishel-go/hishel/model"
	"github.com/hishel-go/hishel/statemachine"
)

// keyMethod is the method a request is keyed by: HEAD is keyed like GET,
// so that a stored GET response answers a HEAD request and a 200 to HEAD
// freshens or invalidates it (RFC 9111 §4, §4.3.5). HEAD pairs are stored
// under the same key; their request method keeps them from answering a GET.
func keyMethod(method string) string {
	if method == http.MethodHead {
		return http.MethodGet
	}
	return method
}

// requestKey derives req's cache key: with the KeyFunc, or DefaultKey's
// rule on the parsed URL, then what MatchHeaders adds.
func (t *Transport) requestKey(req *http.Request) (string, error) {
	key, err := t.keyFor(keyMethod(req.Method), req.URL)
	if err != nil {
		return "", err
	}
	return key + t.shape.suffix(req.Header), nil
}

// keyFor is the key of method and u, without the query parameters
// IgnoreParams names, and before MatchHeaders.
func (t *Transport) keyFor(method string, u *url.URL) (string, error) {
	u = t.shape.strip(u)
	if t.opts.Key == nil {
		return urlKey(method, u)
	}
	return t.key(method, u.String())
}

// targetKeys are the distinct keys of invalidation targets, before
// MatchHeaders; HEAD and GET share theirs.
func (t *Transport) targetKeys(targets []statemachine.Target) []string {
	var keys []string
	seen := map[string]bool{}
	for _, tg := range targets {
		u, err := url.Parse(tg.URL)
		if err != nil {
			continue
		}
		k, err := t.keyFor(keyMethod(tg.Method), u)
		if err != nil || seen[k] {
			continue
		}
		seen[k] = true
		keys = append(keys, k)
	}
	return keys
}

// removeAll removes the pairs of ids (a HEAD response's invalidations).
func (t *Transport) removeAll(req *http.Request, ids []model.PairID) {
	for _, id := range ids {
		if err := t.store.Remove(req.Context(), id); err != nil {
			t.logError(req, "remove pair", err)
		}
	}
}
