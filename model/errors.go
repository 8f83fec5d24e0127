package model

import "errors"

// Errors returned by storage backends. Backends wrap them with context, so
// compare with [errors.Is].
var (
	// ErrNotFound is returned when a pair ID is unknown, or names a pair that
	// is not complete or has been removed, where the operation needs a live
	// complete pair.
	ErrNotFound = errors.New("hishel: pair not found")

	// ErrDuplicateID is returned by CreatePair when a caller-chosen ID is
	// already used by a stored pair.
	ErrDuplicateID = errors.New("hishel: duplicate pair id")

	// ErrIDChanged is returned by UpdatePair when the updated pair carries a
	// different ID from the one being updated.
	ErrIDChanged = errors.New("hishel: pair id cannot change")

	// ErrClosed is returned when a storage, or a body stream that belongs to
	// it, is used after Close.
	ErrClosed = errors.New("hishel: storage closed")

	// ErrBodyConsumed is returned when a body handed to storage has already
	// been read from or closed, so storing it would store a short body.
	ErrBodyConsumed = errors.New("hishel: body already consumed")

	// ErrRemoved is returned by a stored body's Read when the pair's data was
	// removed from storage while it was being read. A reader never sees a
	// silently truncated body.
	ErrRemoved = errors.New("hishel: pair removed while its body was read")

	// ErrAborted is returned by a body's Read after the stream was closed
	// before its end or failed; the pair it belonged to is not stored.
	ErrAborted = errors.New("hishel: body stream aborted")

	// ErrLocked is returned when a database file is held by another process
	// and could not be opened before the open timeout.
	ErrLocked = errors.New("hishel: database file is in use by another process")

	// ErrCorrupt is returned when a file is damaged or not a hishel
	// database: a stored record or body chunk fails its checksum or cannot
	// be decoded, a chunk is missing, or the file's structure is broken. A
	// body's Read returns it rather than altered bytes.
	ErrCorrupt = errors.New("hishel: corrupt or foreign database")

	// ErrFormatVersion is returned when a database or record was written by
	// another format version than the one this build reads.
	ErrFormatVersion = errors.New("hishel: unknown storage format version")

	// ErrConflict is returned by UpdatePairFunc when the pair kept changing
	// (other UpdatePair calls) each time its function ran, and gave up.
	ErrConflict = errors.New("hishel: pair changed while it was being updated")

	// ErrUnavailable is returned when a storage's server cannot be reached
	// or does not answer in time (it is down, unreachable or overloaded).
	// Nothing is wrong with the call: it may succeed later. A backend that
	// meets it may fail the calls that follow at once, for a short while,
	// rather than wait for the server again. hishel.Transport answers from
	// the origin meanwhile.
	ErrUnavailable = errors.New("hishel: storage server unavailable")

	// ErrInvalid is returned for arguments a backend cannot store, such as an
	// empty method or a negative status code.
	ErrInvalid = errors.New("hishel: invalid argument")
)
