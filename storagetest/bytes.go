package storagetest

import (
	"github.com/hishel-go/hishel/backend"
	"github.com/hishel-go/hishel/model"
)

// headBytes is what a pair's heads count in Stats.Bytes and against
// MaxBytes, in every backend (backend.HeadBytes): its cache key, method and
// URL, and the names and values of its request and response header fields.
// Its bodies count as they are stored.
func headBytes(p model.PairInfo) int64 {
	return backend.HeadBytes(p.Key, p.Request.Method, p.Request.URL, p.Request.Header, p.Response.Header)
}

// pairHead is headBytes of the pair req and resp make under key.
func pairHead(req model.Request, resp model.Response, key string) int64 {
	return headBytes(model.PairInfo{Key: key, Request: req, Response: resp})
}
