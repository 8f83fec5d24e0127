package template

import (
	"github.com/hishel-go/hishel/backend"
	"github.com/hishel-go/hishel/bolt"
)

// headBytes is what r's heads count in the byte budget (backend.HeadBytes).
func headBytes(r *bolt.Record) int64 {
	return backend.HeadBytes(r.Key, r.Method, r.URL, r.ReqHeader, r.RespHeader)
}

// capExpiry bounds exp, r's expiry, by its MaxTTL (backend.CapExpiry).
func capExpiry(r *bolt.Record, exp int64) int64 {
	return backend.CapExpiry(r.Completed, r.ReqOptions, exp)
}
