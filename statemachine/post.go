package statemachine

import (
	"net/http"
	"net/url"
	"time"

	"github.com/hishel-go/hishel/model"
)

// reusePost returns the StoreAndUse for a POST response that may answer
// later GET requests for the target URI (RFC 9110 §9.3.3), with the GET
// request to store it under, or nil. That takes a 200 with explicit
// freshness (RFC 9111 §4.2.1: max-age, s-maxage in a shared cache, or
// Expires) and a Content-Location naming the target URI itself (RFC 9110
// §8.7), which the cache would store as the answer to a GET.
func (o *Options) reusePost(req model.Request, resp model.Response, sentAt, now time.Time) (*StoreAndUse, model.Request) {
	if req.Method != "POST" || resp.Status != http.StatusOK || !o.supports("GET") {
		return nil, model.Request{}
	}
	cl := resp.Header["Content-Location"]
	if len(cl) != 1 || !sameURI(req.URL, trimOWS(cl[0])) {
		return nil, model.Request{}
	}
	cc, _, targeted := o.responseCC(resp.Header)
	if !(cc.MaxAge.Present || o.shared() && cc.SMaxAge.Present || !targeted && len(resp.Header["Expires"]) > 0) {
		return nil, model.Request{}
	}
	getReq := model.Request{Method: "GET", URL: req.URL, Header: req.Header, Options: req.Options}
	st, ok := o.store(getReq, resp, sentAt, now).(*StoreAndUse)
	if !ok {
		return nil, model.Request{}
	}
	st.Reason = why("POST response with explicit freshness and the target URI in Content-Location answers later GETs", "RFC 9110 §9.3.3")
	return st, getReq
}

// sameURI reports whether ref, resolved against the absolute URI target,
// is target: the same scheme and host (case-insensitively, default ports
// made explicit), path and query; fragments do not count.
func sameURI(target, ref string) bool {
	t, err := url.Parse(target)
	if err != nil || !t.IsAbs() {
		return false
	}
	r, err := t.Parse(ref)
	if err != nil {
		return false
	}
	path := func(u *url.URL) string {
		if p := u.EscapedPath(); p != "" {
			return p
		}
		return "/"
	}
	return sameOrigin(t, r) && path(t) == path(r) && t.RawQuery == r.RawQuery
}
