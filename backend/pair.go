package backend

import (
	"fmt"
	"slices"

	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/model"
)

// CheckRequest is CreatePair's check of its request: a method, valid
// request options (see CheckRequestOptions), and a body nobody has read
// from (model.ErrInvalid, model.ErrBodyConsumed).
func CheckRequest(req model.Request) error {
	if req.Method == "" {
		return fmt.Errorf("hishel: create pair: empty method: %w", model.ErrInvalid)
	}
	if err := CheckRequestOptions(req.Options); err != nil {
		return err
	}
	if req.Body.Consumed() {
		return fmt.Errorf("hishel: create pair: request body: %w", model.ErrBodyConsumed)
	}
	return nil
}

// CheckResponse is AddResponse's check of its response: a status in
// 100-999, and a body nobody has read from.
func CheckResponse(resp model.Response) error {
	if resp.Status < 100 || resp.Status > 999 {
		return fmt.Errorf("hishel: add response: status %d: %w", resp.Status, model.ErrInvalid)
	}
	if resp.Body.Consumed() {
		return fmt.Errorf("hishel: add response: response body: %w", model.ErrBodyConsumed)
	}
	return nil
}

// Updated returns old with next's heads, key and TTL metadata, as
// UpdatePair stores them: bodies, sizes and the other metadata are kept,
// and its revision (Rev) goes up by one.
func Updated(old *bolt.Record, next model.CompletePair) *bolt.Record {
	rec := *old
	rec.Rev++
	rec.Key, rec.Expires = next.Key, bolt.UnixNano(next.Meta.Expires)
	rec.Created, rec.TTL, rec.Refresh = bolt.UnixNano(next.Meta.Created), int64(next.Meta.TTL), next.Meta.Refresh
	rec.Method, rec.URL, rec.ReqHeader, rec.ReqOptions = next.Request.Method, next.Request.URL, next.Request.Header.Clone(), next.Request.Options
	rec.Status, rec.RespHeader = next.Response.Status, next.Response.Header.Clone()
	return &rec
}

// Settle completes rec at now (Unix nanoseconds) if both of its bodies
// are stored and it has its response: it gets its completion time, its
// last access and its expiry. It reports whether it completed rec.
func Settle(rec *bolt.Record, now int64) bool {
	if rec.Has(bolt.FlagComplete) || !rec.Has(bolt.FlagRequestDone|bolt.FlagResponseDone|bolt.FlagHasResponse) {
		return false
	}
	rec.Flags |= bolt.FlagComplete
	rec.Completed, rec.LastAccess = now, now
	if rec.TTL > 0 {
		rec.Expires = now + rec.TTL
	}
	rec.Expires = CapExpiry(now, rec.ReqOptions, rec.Expires)
	return true
}

// Expiry returns when rec expires (0: never), given an access at
// pending (Unix nanoseconds) that is not stored yet: a pair that refreshes
// on access lives TTL from its last access, and at most its MaxTTL from
// its completion (CapExpiry).
func Expiry(rec *bolt.Record, pending int64) int64 {
	exp := rec.Expires
	if rec.Refresh && rec.TTL > 0 && exp != 0 && pending+rec.TTL > exp {
		exp = pending + rec.TTL
	}
	return CapExpiry(rec.Completed, rec.ReqOptions, exp)
}

// Size is what rec counts against MaxBytes and in model.Stats.Bytes: its
// heads (HeadBytes) and both bodies as stored so far.
func Size(rec *bolt.Record) int64 {
	return rec.ReqSize + rec.RespSize + HeadBytes(rec.Key, rec.Method, rec.URL, rec.ReqHeader, rec.RespHeader)
}

// SortNewest sorts pairs as GetPairs returns them: the latest completed
// first, then by ID.
func SortNewest(pairs []model.CompletePair) {
	slices.SortStableFunc(pairs, func(a, b model.CompletePair) int {
		if c := b.Meta.Completed.Compare(a.Meta.Completed); c != 0 {
			return c
		}
		return slices.Compare(a.ID[:], b.ID[:])
	})
}

// Changed reports whether cur, a pair's record as stored now, is no longer
// the pair that base was when UpdatePairFunc's function saw it: another
// UpdatePair changed it (its revision), or it was removed or replaced. A
// read's new access time is no change.
func Changed(base, cur *bolt.Record) bool {
	return cur.Rev != base.Rev || cur.Flags != base.Flags || cur.Nonce != base.Nonce
}

// NewRecord is the start of CreatePair, the same in every backend: it
// checks req (CheckRequest) and its TTL (TTLFor), and returns the record
// of the new incomplete pair: the ID opts give (model.WithID) or a new
// one, with nonce, created and last accessed now (p.Now), its request body
// stored already when it has none.
func (p *Policy) NewRecord(req model.Request, opts []model.CreateOption, nonce uint64) (*bolt.Record, error) {
	if err := CheckRequest(req); err != nil {
		return nil, err
	}
	ttl, refresh, err := p.TTLFor(req.Options)
	if err != nil {
		return nil, fmt.Errorf("hishel: create pair: %w", err)
	}
	id := model.ApplyCreateOptions(opts).ID
	if id.IsZero() {
		id = model.NewPairID()
	}
	now := bolt.UnixNano(p.Now())
	rec := &bolt.Record{
		ID: id, Nonce: nonce, Created: now, LastAccess: now,
		TTL: int64(ttl), Refresh: refresh, Method: req.Method, URL: req.URL,
		ReqHeader: req.Header.Clone(), ReqOptions: req.Options,
	}
	if req.Body == nil {
		rec.Flags |= bolt.FlagRequestDone
	}
	return rec, nil
}

// Respond returns old, pair id as stored, with resp's status and a copy
// of its header under key, as AddResponse stores it (settled first, see
// Settle): its response body is stored already when resp has none. A
// pair that is missing or removed is model.ErrNotFound; one that has a
// response already, model.ErrInvalid.
func Respond(id model.PairID, old *bolt.Record, resp model.Response, key string) (*bolt.Record, error) {
	if old == nil || old.Has(bolt.FlagDeleted) {
		return nil, fmt.Errorf("hishel: add response to pair %s: %w", id, model.ErrNotFound)
	}
	if old.Has(bolt.FlagHasResponse) {
		return nil, fmt.Errorf("hishel: add response to pair %s: pair already has a response: %w", id, model.ErrInvalid)
	}
	rec := *old
	rec.Flags |= bolt.FlagHasResponse
	rec.Key, rec.Status, rec.RespHeader = key, resp.Status, resp.Header.Clone()
	if resp.Body == nil {
		rec.Flags |= bolt.FlagResponseDone
	}
	return &rec, nil
}

// Responded is the pair AddResponse returns once it stored rec: resp
// itself (the caller's header map; its body the caller's to replace with
// the stream that stores it), rec's request heads with a header map of
// their own, its key and metadata, and no request body.
func Responded(rec *bolt.Record, resp model.Response) model.CompletePair {
	info := rec.Info()
	out := model.CompletePair{ID: rec.ID, Request: info.Request, Response: resp, Key: rec.Key, Meta: info.Meta}
	out.Request.Header = info.Request.Header.Clone()
	return out
}

// BodyStored returns old, pair id as stored now, with its body of kind
// stored whole (size bytes): what a Sink stores with the body's
// completion marker (settled first, see Settle). A pair that is gone,
// removed, or another pair under the same ID (not of nonce) is
// model.ErrNotFound.
func BodyStored(id model.PairID, nonce uint64, old *bolt.Record, kind bolt.Kind, size int64) (*bolt.Record, error) {
	if old == nil || old.Nonce != nonce || old.Has(bolt.FlagDeleted) {
		return nil, fmt.Errorf("hishel: pair %s was removed while its body was stored: %w", id, model.ErrNotFound)
	}
	rec := *old
	if kind == bolt.KindRequest {
		rec.Flags |= bolt.FlagRequestDone
		rec.ReqSize = size
	} else {
		rec.Flags |= bolt.FlagResponseDone
		rec.RespSize = size
	}
	return &rec, nil
}

// Heads returns rec as a CompletePair without bodies, its header maps
// rec's: a backend sets the bodies to read them back.
func Heads(rec *bolt.Record) model.CompletePair {
	info := rec.Info()
	return model.CompletePair{ID: rec.ID, Request: info.Request, Response: info.Response, Key: rec.Key, Meta: info.Meta}
}

// Current is what UpdatePairFunc's function is given of old, pair id as
// stored: its heads, with header maps of their own, and no bodies. A pair
// that is missing or not complete is model.ErrNotFound.
func Current(id model.PairID, old *bolt.Record) (model.CompletePair, error) {
	if old == nil || old.State() != model.StateComplete {
		return model.CompletePair{}, fmt.Errorf("hishel: update pair %s: %w", id, model.ErrNotFound)
	}
	cur := Heads(old)
	cur.Request.Header, cur.Response.Header = cur.Request.Header.Clone(), cur.Response.Header.Clone()
	return cur, nil
}
