package model

import (
	"net/http"
	"time"
)

// NoExpiry, as a TTL, means that a pair never expires. It is the only
// negative TTL storage accepts: any other is ErrInvalid.
const NoExpiry time.Duration = -1

// Refresh says whether reading a pair restarts its TTL.
type Refresh uint8

const (
	// RefreshDefault follows the storage's RefreshTTLOnAccess option.
	RefreshDefault Refresh = iota
	// RefreshOnAccess restarts the pair's TTL whenever it is read.
	RefreshOnAccess
	// NoRefresh keeps the pair's expiry fixed from when it was stored.
	NoRefresh
)

// String returns the constant's name.
func (r Refresh) String() string {
	switch r {
	case RefreshDefault:
		return "RefreshDefault"
	case RefreshOnAccess:
		return "RefreshOnAccess"
	case NoRefresh:
		return "NoRefresh"
	}
	return "Refresh(invalid)"
}

// RequestOptions are per-request storage settings. The zero value follows
// the storage's defaults.
type RequestOptions struct {
	// TTL overrides the storage's DefaultTTL for the pair: zero uses the
	// default, NoExpiry keeps the pair until it is removed, and a positive
	// duration expires it that long after it is stored (or last read, when
	// its TTL is refreshed on access). Any other negative duration is
	// refused with ErrInvalid by CreatePair.
	TTL time.Duration
	// Refresh overrides the storage's RefreshTTLOnAccess for the pair.
	Refresh Refresh
	// MaxTTL, if positive, bounds the pair's life whatever its TTL: it
	// expires at most MaxTTL after it is stored, however often it is read.
	// hishel.Transport sets it for a response that can be neither served
	// nor revalidated once it is that old (no validator, and stale beyond
	// its stale-while-revalidate and stale-if-error windows), so that a
	// sweep reclaims it then. Zero: no bound.
	MaxTTL time.Duration
}

// Request is an HTTP request as storage and the state machine see it.
type Request struct {
	Method string
	// URL is the absolute request URL.
	URL    string
	Header http.Header
	// Body is the request body; nil is an empty body.
	Body *Body
	// Options are the per-request storage options; they are stored with the
	// pair and survive a reopen of the database.
	Options RequestOptions
}

// Response is an HTTP response as storage and the state machine see it.
type Response struct {
	// Status is the HTTP status code.
	Status int
	Header http.Header
	// Body is the response body; nil is an empty body.
	Body *Body
}

// PairMeta is what storage knows about a pair besides its request and response.
type PairMeta struct {
	// Created is when the pair was created.
	Created time.Time
	// Completed is when both bodies were fully stored; zero while incomplete.
	Completed time.Time
	// Deleted is when the pair was soft-deleted; zero for a live pair.
	Deleted time.Time
	// Expires is when the pair expires; zero means never.
	Expires time.Time
	// LastAccess is when the pair was last served by GetPairs (or stored).
	LastAccess time.Time
	// TTL is the pair's effective time to live; zero means it never expires.
	TTL time.Duration
	// Refresh reports whether reading the pair restarts its TTL.
	Refresh bool
	// RequestSize and ResponseSize are the stored body sizes in bytes, known
	// once each body is complete.
	RequestSize, ResponseSize int64
}

// IncompletePair is a pair whose response is not stored yet. The request
// body, if any, is stored as the caller reads Request.Body.
type IncompletePair struct {
	ID      PairID
	Request Request
	Meta    PairMeta
}

// CompletePair is a request with its response, stored under Key. Bodies of
// pairs returned by GetPairs stream from storage and must be closed (or read
// to the end) by the caller.
type CompletePair struct {
	ID       PairID
	Request  Request
	Response Response
	// Key is the cache key the pair is stored under; any bytes, any length.
	Key  string
	Meta PairMeta
}

// Close closes both bodies of the pair, releasing what they hold.
func (p CompletePair) Close() error {
	err1 := p.Request.Body.Close()
	err2 := p.Response.Body.Close()
	if err1 != nil {
		return err1
	}
	return err2
}

// PairState says where a pair is in its life.
type PairState uint8

const (
	// StateIncomplete: a body is still being stored, or no response yet.
	StateIncomplete PairState = iota + 1
	// StateComplete: both bodies stored; served by GetPairs.
	StateComplete
	// StateDeleted: soft-deleted, hidden, reclaimed by a later sweep.
	StateDeleted
)

// String returns a lower-case name for the state.
func (s PairState) String() string {
	switch s {
	case StateIncomplete:
		return "incomplete"
	case StateComplete:
		return "complete"
	case StateDeleted:
		return "deleted"
	}
	return "invalid"
}

// PairInfo describes a stored pair for inspection: its request and response
// heads (bodies are nil) and its metadata.
type PairInfo struct {
	ID       PairID
	State    PairState
	Key      string
	Request  Request
	Response Response
	Meta     PairMeta
}

// Stats counts what a storage holds.
type Stats struct {
	// Pairs is the number of live complete pairs (expired ones included
	// until a sweep soft-deletes them).
	Pairs int
	// Incomplete is the number of pairs still being stored.
	Incomplete int
	// Deleted is the number of soft-deleted pairs awaiting reclamation.
	Deleted int
	// Bytes is the number of bytes stored, over all pairs: for each pair
	// its cache key, method, URL, request and response header fields
	// (names and values) and both bodies (see the storages' MaxBytes).
	Bytes int64
	// Evicted counts the complete, live pairs this store has removed to
	// keep within its bounds since it was opened: the least recently used
	// pairs beyond MaxBytes or MaxPairs, and the variants beyond
	// MaxVariants under one key (a pair larger than MaxBytes on its own
	// counts once, as it is removed as soon as it completes). It is a
	// cumulative counter of this store value (this process's handle), not
	// of the storage: it starts at zero when the store is opened, only
	// grows (Clear does not reset it), and does not count evictions made
	// by other processes sharing the storage. Pairs that were no longer
	// live do not count: soft-deleted pairs reclaimed early to fit
	// MaxBytes, and pairs the sweep removes for their TTL, retention, age
	// or damage (SweepResult reports those per sweep), nor removals by
	// Remove, Delete or Clear.
	Evicted int64
}

// SweepResult says what one sweep did.
type SweepResult struct {
	// Expired pairs were soft-deleted because their TTL ran out.
	Expired int
	// Purged soft-deleted pairs were removed after their retention.
	Purged int
	// Abandoned incomplete pairs were removed for being too old.
	Abandoned int
	// Evicted pairs were removed, least recently used first, to keep the
	// storage within its size budget (MaxBytes, MaxPairs): soft-deleted
	// pairs reclaimed early for MaxBytes included, unlike Stats.Evicted.
	Evicted int
	// Corrupt pairs were removed because their record or one of their
	// chunks failed its checksum, or a chunk was missing: reads had
	// reported them with ErrCorrupt.
	Corrupt int
}

// CreateOption configures CreatePair.
type CreateOption func(*CreateOptions)

// CreateOptions is what the CreateOption functions set.
type CreateOptions struct {
	// ID is the caller-chosen pair ID; zero means a new random ID.
	ID PairID
}

// WithID makes CreatePair use id instead of a random ID. Creating a second
// pair with an ID in use fails with [ErrDuplicateID].
func WithID(id PairID) CreateOption {
	return func(o *CreateOptions) { o.ID = id }
}

// ApplyCreateOptions folds opts into a CreateOptions value. Backends call it.
func ApplyCreateOptions(opts []CreateOption) CreateOptions {
	var o CreateOptions
	for _, f := range opts {
		if f != nil {
			f(&o)
		}
	}
	return o
}
