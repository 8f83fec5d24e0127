package backend

import (
	"fmt"
	"net/http"

	"github.com/hishel-go/hishel/model"
)

// The bounds every backend keeps the same way: what a pair counts in the
// byte budget, how MaxTTL caps its expiry, and what UpdatePair accepts.

// HeadBytes is what a pair's heads count in the storage's byte budget
// (MaxBytes, model.Stats.Bytes): its cache key, method and URL, and the
// names and values of its request and response header fields. Its bodies
// count as they are stored.
func HeadBytes(key, method, url string, req, resp http.Header) int64 {
	return int64(len(key)+len(method)+len(url)) + headerBytes(req) + headerBytes(resp)
}

func headerBytes(h http.Header) int64 {
	var n int
	for k, vs := range h {
		n += len(k)
		for _, v := range vs {
			n += len(v)
		}
	}
	return int64(n)
}

// CheckRequestOptions rejects request options no backend can honour: a
// negative MaxTTL (model.ErrInvalid). Policy.TTLFor checks the TTL.
func CheckRequestOptions(o model.RequestOptions) error {
	if o.MaxTTL < 0 {
		return fmt.Errorf("hishel: negative MaxTTL %v: %w", o.MaxTTL, model.ErrInvalid)
	}
	return nil
}

// CapExpiry bounds exp, the expiry (unix ns, 0 for none) of a pair
// completed at completed (unix ns) with request options o, by o.MaxTTL
// counted from its completion: a pair expires at most MaxTTL after it is
// stored, whatever its TTL and however often it is read.
func CapExpiry(completed int64, o model.RequestOptions, exp int64) int64 {
	if o.MaxTTL <= 0 || completed == 0 {
		return exp
	}
	limit := completed + int64(o.MaxTTL)
	if exp == 0 || exp > limit {
		return limit
	}
	return exp
}

// CheckUpdate checks next, the new value of pair id given to UpdatePair:
// the same ID (else model.ErrIDChanged), a method, a status in 100-999, a
// TTL not negative and valid request options (else model.ErrInvalid).
func CheckUpdate(id model.PairID, next model.CompletePair) error {
	if next.ID != id {
		return fmt.Errorf("hishel: update pair %s: new id %s: %w", id, next.ID, model.ErrIDChanged)
	}
	if next.Request.Method == "" || next.Response.Status < 100 || next.Response.Status > 999 || next.Meta.TTL < 0 {
		return fmt.Errorf("hishel: update pair %s: empty method, bad status or negative TTL: %w", id, model.ErrInvalid)
	}
	return CheckRequestOptions(next.Request.Options)
}
