package template

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"

	"github.com/hishel-go/hishel/backend"
	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/model"
)

// keys names the Redis keys of one storage (one prefix).
type keys struct{ p string }

func idHex(id model.PairID) string { return hex.EncodeToString(id[:]) }

func (k keys) rec(id model.PairID) string { return k.p + "r:" + idHex(id) }

// chunk is the key of chunk seq of body kind (bolt.KindRequest or
// bolt.KindResponse) of the pair incarnation id, nonce.
func (k keys) chunk(id model.PairID, nonce uint64, kind bolt.Kind, seq int) string {
	return k.p + "c:" + idHex(id) + ":" + nonceHex(nonce) + ":" + kindName(kind) + ":" + strconv.Itoa(seq)
}

func (k keys) keySet(key string) string {
	h := sha256.Sum256([]byte(key))
	return k.p + "k:" + hex.EncodeToString(h[:])
}

// The storage's own keys: indexes (sorted sets of pair IDs by time),
// suspects, and the byte counts.
func (k keys) incomplete() string { return k.p + "i" }
func (k keys) expiring() string   { return k.p + "x" }
func (k keys) deleted() string    { return k.p + "d" }
func (k keys) lru() string        { return k.p + "a" }
func (k keys) suspects() string   { return k.p + "z" }
func (k keys) sizes() string      { return k.p + "b" }
func (k keys) total() string      { return k.p + "n" }

func nonceHex(n uint64) string { return fmt.Sprintf("%016x", n) }

func kindName(k bolt.Kind) string {
	if k == bolt.KindRequest {
		return "q"
	}
	return "s"
}

// Record hash fields.
const (
	fRecord = "r"  // heads and metadata: recordVersion, bolt.EncodeRecord, CRC-32C
	fAccess = "t"  // last access and expiry: 8+8 bytes, CRC-32C
	fRev    = "v"  // revision: decimal, changed by every change of fRecord
	fNonce  = "n"  // the incarnation's nonce, 16 hex digits
	fState  = "s"  // "0" incomplete, "1" complete, "2" soft-deleted
	fReqN   = "wq" // request body chunks written
	fRespN  = "ws" // response body chunks written
	fUntil  = "du" // store time (ns) until which the chunks' TTLs last
)

const (
	stateIncomplete = "0"
	stateComplete   = "1"
	stateDeleted    = "2"
)

// recordVersion is the first byte of every fRecord value.
const recordVersion = 1

// encodeRecord encodes r (its Expires and LastAccess live in fAccess).
func encodeRecord(r *bolt.Record) string {
	rr := *r
	rr.Expires, rr.LastAccess = 0, 0
	b := append([]byte{recordVersion}, bolt.EncodeRecord(&rr)...)
	return string(binary.BigEndian.AppendUint32(b, backend.Checksum(b)))
}

// decodeRecord decodes what encodeRecord wrote for pair id. A damaged
// value is model.ErrCorrupt; one of another version model.ErrFormatVersion.
func decodeRecord(id model.PairID, s string) (*bolt.Record, error) {
	b := []byte(s)
	if len(b) < 5 {
		return nil, fmt.Errorf("hishel: record of pair %s: %d bytes: %w", id, len(b), model.ErrCorrupt)
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if backend.Checksum(body) != sum {
		return nil, fmt.Errorf("hishel: record of pair %s: checksum mismatch: %w", id, model.ErrCorrupt)
	}
	if body[0] != recordVersion {
		return nil, fmt.Errorf("hishel: record of pair %s: version %d: %w", id, body[0], model.ErrFormatVersion)
	}
	r, err := bolt.DecodeRecord(body[1:])
	if err != nil {
		return nil, fmt.Errorf("hishel: record of pair %s: %w", id, err)
	}
	if r.ID != id {
		return nil, fmt.Errorf("hishel: record of pair %s holds pair %s: %w", id, r.ID, model.ErrCorrupt)
	}
	return r, nil
}

// encodeAccess encodes a pair's last access and expiry (Unix ns).
func encodeAccess(id model.PairID, last, expires int64) string {
	b := make([]byte, 16, 20)
	binary.BigEndian.PutUint64(b, uint64(last))
	binary.BigEndian.PutUint64(b[8:], uint64(expires))
	sum := backend.UpdateChecksum(backend.Checksum(id[:]), b)
	return string(binary.BigEndian.AppendUint32(b, sum))
}

func decodeAccess(id model.PairID, s string) (last, expires int64, err error) {
	if len(s) != 20 {
		return 0, 0, fmt.Errorf("hishel: access times of pair %s: %d bytes: %w", id, len(s), model.ErrCorrupt)
	}
	b := []byte(s)
	if backend.UpdateChecksum(backend.Checksum(id[:]), b[:16]) != binary.BigEndian.Uint32(b[16:]) {
		return 0, 0, fmt.Errorf("hishel: access times of pair %s: checksum mismatch: %w", id, model.ErrCorrupt)
	}
	return int64(binary.BigEndian.Uint64(b)), int64(binary.BigEndian.Uint64(b[8:])), nil
}

// chunkSum is the CRC-32C of a chunk's place (pair, incarnation, body,
// sequence number) and bytes: a chunk read back from another place fails
// it as surely as a damaged one.
func chunkSum(id model.PairID, nonce uint64, kind bolt.Kind, seq int, data []byte) uint32 {
	var place [16 + 8 + 1 + 8]byte
	copy(place[:], id[:])
	binary.BigEndian.PutUint64(place[16:], nonce)
	place[24] = byte(kind)
	binary.BigEndian.PutUint64(place[25:], uint64(seq))
	return backend.UpdateChecksum(backend.Checksum(place[:]), data)
}

// encodeChunk returns the stored value of a chunk: its bytes and their sum.
func encodeChunk(id model.PairID, nonce uint64, kind bolt.Kind, seq int, data []byte) string {
	b := make([]byte, len(data), len(data)+4)
	copy(b, data)
	return string(binary.BigEndian.AppendUint32(b, chunkSum(id, nonce, kind, seq, data)))
}

// decodeChunk checks a stored chunk and returns its bytes, which share v's
// memory.
func decodeChunk(id model.PairID, nonce uint64, kind bolt.Kind, seq int, v []byte) ([]byte, error) {
	if len(v) < 4 {
		return nil, fmt.Errorf("hishel: chunk %d of pair %s: %d bytes: %w", seq, id, len(v), model.ErrCorrupt)
	}
	data := v[:len(v)-4]
	if chunkSum(id, nonce, kind, seq, data) != binary.BigEndian.Uint32(v[len(v)-4:]) {
		return nil, fmt.Errorf("hishel: chunk %d of pair %s: checksum mismatch: %w", seq, id, model.ErrCorrupt)
	}
	return data, nil
}

// stored is a pair's record hash as read.
type stored struct {
	rec        *bolt.Record // LastAccess and Expires from fAccess
	rev        string
	nonce      string
	state      string
	nReq, nRes int   // chunks written
	until      int64 // fUntil
}

// recordFields are the fields read for a stored pair, in parseStored's order.
var recordFields = []string{fRecord, fAccess, fRev, fNonce, fState, fReqN, fRespN, fUntil}

// parseStored parses the values of recordFields. ok is false when the pair
// has no record; a damaged one is model.ErrCorrupt.
func parseStored(id model.PairID, vals []any) (st *stored, ok bool, err error) {
	if len(vals) != len(recordFields) {
		return nil, false, fmt.Errorf("hishel: record of pair %s: %d fields: %w", id, len(vals), model.ErrCorrupt)
	}
	str := func(i int) (string, bool) {
		s, ok := vals[i].(string)
		return s, ok
	}
	nonce, ok := str(3)
	if !ok {
		return nil, false, nil
	}
	corrupt := func(what string) error {
		return fmt.Errorf("hishel: record of pair %s: %s: %w", id, what, model.ErrCorrupt)
	}
	r, okR := str(0)
	a, okA := str(1)
	rev, okV := str(2)
	state, okS := str(4)
	if !okR || !okA || !okV || !okS {
		return nil, true, corrupt("missing fields")
	}
	rec, err := decodeRecord(id, r)
	if err != nil {
		return nil, true, err
	}
	if nonceHex(rec.Nonce) != nonce {
		return nil, true, corrupt("nonce mismatch")
	}
	if want := stateOf(rec); want != state {
		return nil, true, corrupt("state mismatch")
	}
	rec.LastAccess, rec.Expires, err = decodeAccess(id, a)
	if err != nil {
		return nil, true, err
	}
	st = &stored{rec: rec, rev: rev, nonce: nonce, state: state}
	for i, dst := range []*int{&st.nReq, &st.nRes} {
		if s, ok := str(5 + i); ok {
			if *dst, err = strconv.Atoi(s); err != nil || *dst < 0 {
				return nil, true, corrupt("chunk count")
			}
		}
	}
	if s, ok := str(7); ok {
		if st.until, err = strconv.ParseInt(s, 10, 64); err != nil {
			return nil, true, corrupt("chunk expiry")
		}
	}
	return st, true, nil
}

func stateOf(r *bolt.Record) string {
	switch r.State() {
	case model.StateComplete:
		return stateComplete
	case model.StateDeleted:
		return stateDeleted
	}
	return stateIncomplete
}

// nextRev returns the revision after rev.
func nextRev(rev string) string {
	n, _ := strconv.ParseUint(rev, 10, 64)
	return strconv.FormatUint(n+1, 10)
}
