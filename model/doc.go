// Package model holds the values that hishel-go's storage, state machine and
// HTTP integration exchange: requests, responses, the request/response pairs
// that storage keeps, their IDs and metadata, and [Body], the byte stream type
// that both the blocking ([io.Reader]) and the channel ([Body.Chunks]) APIs
// use.
//
// # Pairs
//
// A pair is created incomplete, when a request is seen ([IncompletePair]), and
// becomes complete when its response has been stored ([CompletePair]). Storage
// serves only complete pairs; the state machine reasons only about complete
// pairs.
//
// # Bodies
//
// A nil *Body is an empty body. A Body is a one-shot stream: it is read once,
// by one goroutine at a time, and then closed. Headers are [net/http.Header]
// values and keep every value of a multi-valued field separately (Set-Cookie
// is never joined).
//
// # Errors
//
// The sentinel errors in this package are shared by every storage backend and
// by both generated APIs, so callers branch on them with [errors.Is] whatever
// API they use.
package model
