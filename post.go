package hishel

import (
	"net/http"
	"strconv"

	"github.com/hishel-go/hishel/statemachine"
)

// storePost stores a POST response that may answer later GETs of its
// target URI (RFC 9110 §9.3.3), under the GET's key, while the caller
// reads it. The invalidation of RFC 9111 §4.4 has been done.
func (t *Transport) storePost(req *http.Request, inv *statemachine.InvalidateURIs, resp *http.Response) *http.Response {
	getReq := req.Clone(req.Context())
	getReq.Method = http.MethodGet
	getReq.Body, getReq.ContentLength, getReq.GetBody = nil, 0, nil
	key, err := t.requestKey(getReq)
	if err != nil {
		setCacheStatus(resp.Header, "fwd=request; fwd-status="+strconv.Itoa(resp.StatusCode))
		return resp
	}
	t.decide(getReq, key, inv.Store)
	return t.storeAndUse(getReq, key, inv.Store, resp, "request")
}
