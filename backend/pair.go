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
