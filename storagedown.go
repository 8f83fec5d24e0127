package hishel

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/hishel-go/hishel/model"
	"github.com/hishel-go/hishel/statemachine"
)

// storageDown answers a request whose lookup failed (the storage's server
// is down or slow, say: model.ErrUnavailable) from the origin, without
// trying to store the response: a storage that failed the lookup would
// most likely fail, or keep the request waiting, again. The response says
// so in Cache-Status (detail=storage-unavailable, or storage-error for
// any other failure); the failure was logged. The storage is asked again
// by the next request.
func (t *Transport) storageDown(req *http.Request, st *statemachine.CacheMiss, err error) (*http.Response, error) {
	resp, ferr := t.send(outgoing(req.Context(), req, st.Request))
	if ferr != nil {
		return nil, ferr
	}
	detail := "storage-error"
	if errors.Is(err, model.ErrUnavailable) {
		detail = "storage-unavailable"
	}
	setCacheStatus(resp.Header, "fwd=uri-miss; fwd-status="+strconv.Itoa(resp.StatusCode)+"; detail="+detail)
	return resp, nil
}
