package hishel

import (
	"net/http"
	"strconv"

	"github.com/hishel-go/hishel/statemachine"
)

// storePost stores a POST response that may answer later GETs of its
// target URI (RFC 9110 §9.3.3), under the GET's key, while the caller
// reads it. The invalidation of RFC 9111 §4.4 has been done.
func (t *Transport) storePost(req *http.Request, inv *statemachine.InvalidateURIs, resp *http.Response) (*http.Response, error) {
	getReq := req.Clone(req.Context())
	getReq.Method = http.MethodGet
	getReq.Body, getReq.ContentLength, getReq.GetBody = nil, 0, nil
	key, err := t.requestKey(keyRequest{req: getReq})
	if err != nil {
		setCacheStatus(resp.Header, "fwd=method; fwd-status="+strconv.Itoa(resp.StatusCode))
		return resp, nil
	}
	return t.store1(getReq, key, t.lookupRequest(getReq), inv.Store, resp, "method")
}
