package hishel

import (
	"net/http"

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

// requestKey derives the cache key of kr: key's (Options.Key, or
// DefaultKey's rule, on the request without the query parameters
// IgnoreParams names), then what MatchHeaders adds.
func (t *Transport) requestKey(kr keyRequest) (string, error) {
	key, err := t.key(kr)
	if err != nil {
		return "", err
	}
	return key + t.shape.suffix(kr.req.Header), nil
}

// targetKeys are the distinct keys of invalidation targets, after req, the
// unsafe request (see targetKey); HEAD and GET share theirs.
func (t *Transport) targetKeys(req *http.Request, targets []statemachine.Target) []string {
	var keys []string
	seen := map[string]bool{}
	for _, tg := range targets {
		k, err := t.targetKey(req, tg.Method, tg.URL)
		if err != nil || seen[k] {
			continue
		}
		seen[k] = true
		keys = append(keys, k)
	}
	return keys
}
