package model

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"
)

// PairID identifies a pair. It is 16 bytes: a time-ordered UUID (version 7)
// by default, or any value the caller chooses with [WithID].
type PairID [16]byte

// NewPairID returns a new version 7 UUID (RFC 9562 §5.7): the Unix time in
// milliseconds, then 74 random bits. IDs made later sort after earlier
// ones (within a millisecond, in random order), so storage keyed by pair ID
// appends instead of writing all over its index.
func NewPairID() PairID {
	var id PairID
	_, _ = rand.Read(id[:]) // crypto/rand.Read never returns an error.
	ms := uint64(time.Now().UnixMilli())
	id[0], id[1], id[2], id[3], id[4], id[5] = byte(ms>>40), byte(ms>>32), byte(ms>>24), byte(ms>>16), byte(ms>>8), byte(ms)
	id[6] = id[6]&0x0f | 0x70
	id[8] = id[8]&0x3f | 0x80
	return id
}

// IsZero reports whether id is the zero ID, which never names a pair.
func (id PairID) IsZero() bool { return id == PairID{} }

// String formats id as a UUID: 8-4-4-4-12 lowercase hex digits.
func (id PairID) String() string {
	var b [36]byte
	hex.Encode(b[0:8], id[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], id[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], id[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], id[8:10])
	b[23] = '-'
	hex.Encode(b[24:], id[10:])
	return string(b[:])
}

// MarshalText implements [encoding.TextMarshaler] with the UUID form.
func (id PairID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText implements [encoding.TextUnmarshaler]; see [ParsePairID].
func (id *PairID) UnmarshalText(b []byte) error {
	v, err := ParsePairID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// ParsePairID parses a UUID in its 36-character form, or 32 hex digits
// without dashes. It returns an error wrapping [ErrInvalid] otherwise.
func ParsePairID(s string) (PairID, error) {
	var id PairID
	var digits []byte
	switch len(s) {
	case 36:
		if s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
			return id, fmt.Errorf("parse pair id %q: misplaced dashes: %w", s, ErrInvalid)
		}
		digits = make([]byte, 0, 32)
		digits = append(digits, s[0:8]...)
		digits = append(digits, s[9:13]...)
		digits = append(digits, s[14:18]...)
		digits = append(digits, s[19:23]...)
		digits = append(digits, s[24:]...)
	case 32:
		digits = []byte(s)
	default:
		return id, fmt.Errorf("parse pair id %q: want 32 hex digits: %w", s, ErrInvalid)
	}
	if _, err := hex.Decode(id[:], digits); err != nil {
		return PairID{}, fmt.Errorf("parse pair id %q: %v: %w", s, err, ErrInvalid)
	}
	return id, nil
}
