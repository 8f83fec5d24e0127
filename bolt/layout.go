package bolt

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"strconv"
	"time"

	"github.com/hishel-go/hishel/model"
)

// FormatVersion is the version of the database layout and record encoding
// written by this package. Version 3 added checksums to records, chunks
// and the meta values, and stores a record's URL once.
const FormatVersion byte = 3

// CRCLen is the length of a checksum: CRC-32C, little endian.
const CRCLen = 4

// castagnoli is the CRC-32C table, computed with CPU instructions where
// the platform has them. It is the checksum of backend.Checksum, which this
// package (a layer below backend) cannot import.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// checksum returns the CRC-32C of p.
func checksum(p []byte) uint32 { return crc32.Checksum(p, castagnoli) }

// appendCRC appends the CRC-32C of b to b.
func appendCRC(b []byte) []byte {
	return binary.LittleEndian.AppendUint32(b, checksum(b))
}

// checkCRC checks that b ends with the CRC-32C of what precedes it, and
// returns what precedes it.
func checkCRC(b []byte, what string) ([]byte, error) {
	if len(b) < CRCLen {
		return nil, fmt.Errorf("%s of %d bytes: %w", what, len(b), model.ErrCorrupt)
	}
	body := b[:len(b)-CRCLen]
	if checksum(body) != binary.LittleEndian.Uint32(b[len(body):]) {
		return nil, fmt.Errorf("%s: checksum mismatch: %w", what, model.ErrCorrupt)
	}
	return body, nil
}

// Bucket names.
var (
	BucketMeta       = []byte("meta")
	BucketPairs      = []byte("pairs")
	BucketKeys       = []byte("keys")
	BucketChunks     = []byte("chunks")
	BucketExpiry     = []byte("expiry")
	BucketDeleted    = []byte("deleted")
	BucketIncomplete = []byte("incomplete")
	BucketAccess     = []byte("access")
	BucketStale      = []byte("stale")

	// Buckets lists every bucket a hishel database has.
	Buckets = [][]byte{BucketMeta, BucketPairs, BucketKeys, BucketChunks,
		BucketExpiry, BucketDeleted, BucketIncomplete, BucketAccess, BucketStale}

	// MetaFormat and MetaStats are the keys of the meta bucket.
	MetaFormat = []byte("format")
	MetaStats  = []byte("stats")
	// MetaNonce holds the highest pair nonce ever handed out (see
	// EncodeNonce), so that a reopened database never hands one out again.
	MetaNonce = []byte("nonce")
	// MetaAccessLog is the prefix of the meta bucket keys that hold the
	// access times a store gathered and had not written into its records
	// when it closed (see EncodeAccessLog), followed by an 8-byte big
	// endian sequence number. The next open reads them back and deletes
	// them.
	MetaAccessLog = []byte("access-log/")
)

// AccessLogKey returns the meta bucket key of access log value seq.
func AccessLogKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), MetaAccessLog...), seq)
}

// AccessEntryLen is the length of one access log entry: a pair ID and an
// access time (unix ns, big endian).
const AccessEntryLen = IDLen + 8

// AppendAccess appends the access log entry of pair id, read at time at
// (unix ns), to b. A value is entries followed by a checksum (see
// SealAccessLog).
func AppendAccess(b []byte, id model.PairID, at int64) []byte {
	return binary.BigEndian.AppendUint64(append(b, id[:]...), uint64(at))
}

// SealAccessLog appends the checksum of the entries in b, and returns the
// access log value.
func SealAccessLog(b []byte) []byte { return appendCRC(b) }

// DecodeAccessLog calls fn with every entry of access log value b, once
// its checksum and length are checked.
func DecodeAccessLog(b []byte, fn func(id model.PairID, at int64)) error {
	v, err := checkCRC(b, "access log")
	if err != nil {
		return err
	}
	if len(v)%AccessEntryLen != 0 {
		return fmt.Errorf("access log of %d bytes: %w", len(v), model.ErrCorrupt)
	}
	for ; len(v) > 0; v = v[AccessEntryLen:] {
		at := int64(binary.BigEndian.Uint64(v[IDLen:]))
		if at <= 0 {
			return fmt.Errorf("access log: time %d: %w", at, model.ErrCorrupt)
		}
		fn(model.PairID(v[:IDLen]), at)
	}
	return nil
}

// EncodeNonce encodes the MetaNonce value: 8 bytes, big endian, and a
// checksum.
func EncodeNonce(n uint64) []byte {
	return appendCRC(binary.BigEndian.AppendUint64(make([]byte, 0, 8+CRCLen), n))
}

// DecodeNonce decodes the MetaNonce value; nil is 0.
func DecodeNonce(b []byte) (uint64, error) {
	if b == nil {
		return 0, nil
	}
	v, err := checkCRC(b, "nonce")
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("nonce of %d bytes: %w", len(v), model.ErrCorrupt)
	}
	return binary.BigEndian.Uint64(v), nil
}

// Index says which index a stale bucket entry is from.
type Index byte

const (
	// IndexKeys marks a keys bucket entry (a KeysKey).
	IndexKeys Index = 1
	// IndexAccess marks an access bucket entry (a TimeKey).
	IndexAccess Index = 2
)

// StaleKey returns the stale bucket key of the entry with sequence number
// seq: entries are logged in increasing seq order, so the log only grows at
// its end and is trimmed from its start.
func StaleKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// StaleValue returns the stale bucket value naming index entry k of idx.
func StaleValue(idx Index, k []byte) []byte { return append([]byte{byte(idx)}, k...) }

// ParseStale splits a stale bucket entry.
func ParseStale(k, v []byte) (seq uint64, idx Index, entry []byte, err error) {
	if len(k) != 8 || len(v) < 1 {
		return 0, 0, nil, fmt.Errorf("stale entry of %d and %d bytes: %w", len(k), len(v), model.ErrCorrupt)
	}
	idx, entry = Index(v[0]), v[1:]
	switch {
	case idx == IndexKeys && len(entry) == KeysKeyLen, idx == IndexAccess && len(entry) == TimeKeyLen:
	default:
		return 0, 0, nil, fmt.Errorf("stale entry for index %d of %d bytes: %w", idx, len(entry), model.ErrCorrupt)
	}
	return binary.BigEndian.Uint64(k), idx, entry, nil
}

// Kind says which body of a pair a chunk belongs to.
type Kind byte

const (
	// KindRequest marks request body chunks.
	KindRequest Kind = 0
	// KindResponse marks response body chunks.
	KindResponse Kind = 1
	// KindFile, added to a body's kind, marks the chunks of a body whose
	// bytes are kept in a file beside the database (see BodyFileName)
	// instead of in the chunks bucket: each chunk's value is its length
	// (EncodeFileChunk), its bytes follow the previous chunk's in the
	// file, and its key's checksum covers those bytes. The body's marker
	// is kept as any other.
	KindFile Kind = 2
)

// BodyFileName is the name, in the bodies directory beside the database,
// of the file holding the body of kind (KindFile included) of the pair
// with the given nonce: 16 hexadecimal digits, a dot and the kind.
func BodyFileName(nonce uint64, kind Kind) string {
	return fmt.Sprintf("%016x.%d", nonce, kind|KindFile)
}

// ParseBodyFileName is BodyFileName's inverse; ok is false for a name it
// did not make.
func ParseBodyFileName(name string) (nonce uint64, kind Kind, ok bool) {
	if len(name) != 18 || name[16] != '.' || (name[17] != '2' && name[17] != '3') {
		return 0, 0, false
	}
	nonce, err := strconv.ParseUint(name[:16], 16, 64)
	if err != nil {
		return 0, 0, false
	}
	return nonce, Kind(name[17] - '0'), true
}

// EncodeFileChunk is the value stored for a chunk of n bytes kept in a
// body file (see KindFile).
func EncodeFileChunk(n int) []byte { return binary.BigEndian.AppendUint64(nil, uint64(n)) }

// DecodeFileChunk returns the length EncodeFileChunk stored, which must be
// at most limit.
func DecodeFileChunk(v []byte, limit int) (int, error) {
	if len(v) != 8 {
		return 0, fmt.Errorf("file chunk reference of %d bytes, want 8: %w", len(v), model.ErrCorrupt)
	}
	n := binary.BigEndian.Uint64(v)
	if n == 0 || n > uint64(limit) {
		return 0, fmt.Errorf("file chunk of %d bytes (at most %d): %w", n, limit, model.ErrCorrupt)
	}
	return int(n), nil
}

// MarkerSeq is the sequence number of a body's completion marker; it sorts
// after every chunk of the body.
const MarkerSeq = math.MaxUint64

// Sizes of the fixed-length keys.
const (
	IDLen      = 16
	HashLen    = sha256.Size
	KeysKeyLen = HashLen + IDLen
	// ChunkSeekLen is the length of a chunk's position (ChunkSeek), and
	// ChunkKeyLen of its key: the position and a checksum.
	ChunkSeekLen = 8 + 1 + 8
	ChunkKeyLen  = ChunkSeekLen + CRCLen
	TimeKeyLen   = 8 + IDLen
)

// KeyHash is the hash under which a cache key is indexed.
func KeyHash(key string) [HashLen]byte { return sha256.Sum256([]byte(key)) }

// KeysKey returns the keys-bucket entry for a pair under a cache key hash.
func KeysKey(h [HashLen]byte, id model.PairID) []byte {
	k := make([]byte, KeysKeyLen)
	copy(k, h[:])
	copy(k[HashLen:], id[:])
	return k
}

// ChunkKey returns the chunks-bucket key of chunk seq, holding v, of a body
// of the pair whose record has the given nonce: the chunk's position
// (ChunkSeek) and the CRC-32C of the position and v. The checksum rides in
// the key so that a chunk is stored as the very bytes the body gave, never
// copied to make room for it; [CheckChunk] verifies it.
//
// Chunks are keyed by nonce, not by pair ID: nonces are handed out in
// increasing order, so the chunks of pairs written together are neighbours
// in the B-tree, a commit appends to a few leaves instead of rewriting one
// random leaf per pair, and a sweep of pairs written together frees whole
// leaves.
func ChunkKey(nonce uint64, kind Kind, seq uint64, v []byte) []byte {
	k := make([]byte, ChunkSeekLen, ChunkKeyLen)
	putChunkSeek(k, nonce, kind, seq)
	crc := crc32.Update(checksum(k), castagnoli, v)
	return binary.LittleEndian.AppendUint32(k, crc)
}

// ChunkSeek returns the position of chunk seq in the chunks bucket: the
// prefix of its key, to Seek to.
func ChunkSeek(nonce uint64, kind Kind, seq uint64) []byte {
	k := make([]byte, ChunkSeekLen)
	putChunkSeek(k, nonce, kind, seq)
	return k
}

func putChunkSeek(k []byte, nonce uint64, kind Kind, seq uint64) {
	binary.BigEndian.PutUint64(k, nonce)
	k[8] = byte(kind)
	binary.BigEndian.PutUint64(k[9:], seq)
}

// ChunkPrefix returns the prefix shared by every chunk key of a pair.
func ChunkPrefix(nonce uint64) []byte { return binary.BigEndian.AppendUint64(nil, nonce) }

// ParseChunkKey splits a chunks-bucket key. It does not verify the
// checksum (see CheckChunk).
func ParseChunkKey(k []byte) (nonce uint64, kind Kind, seq uint64, err error) {
	if len(k) != ChunkKeyLen {
		return 0, 0, 0, fmt.Errorf("chunk key of %d bytes, want %d: %w", len(k), ChunkKeyLen, model.ErrCorrupt)
	}
	return binary.BigEndian.Uint64(k), Kind(k[8]), binary.BigEndian.Uint64(k[9:]), nil
}

// CheckChunk verifies that chunk key k carries the checksum of its
// position and of v, the value stored under it.
func CheckChunk(k, v []byte) error {
	if len(k) != ChunkKeyLen {
		return fmt.Errorf("chunk key of %d bytes, want %d: %w", len(k), ChunkKeyLen, model.ErrCorrupt)
	}
	crc := crc32.Update(checksum(k[:ChunkSeekLen]), castagnoli, v)
	if crc != binary.LittleEndian.Uint32(k[ChunkSeekLen:]) {
		return fmt.Errorf("chunk %x: checksum mismatch: %w", k[:ChunkSeekLen], model.ErrCorrupt)
	}
	return nil
}

// TimeKey returns an index key ordering t (at nanosecond precision, before
// or after 1970) ahead of id.
func TimeKey(t int64, id model.PairID) []byte {
	k := make([]byte, TimeKeyLen)
	binary.BigEndian.PutUint64(k, uint64(t)^(1<<63))
	copy(k[8:], id[:])
	return k
}

// ParseTimeKey splits an index key made by TimeKey.
func ParseTimeKey(k []byte) (t int64, id model.PairID, err error) {
	if len(k) != TimeKeyLen {
		return 0, id, fmt.Errorf("index key of %d bytes, want %d: %w", len(k), TimeKeyLen, model.ErrCorrupt)
	}
	copy(id[:], k[8:])
	return int64(binary.BigEndian.Uint64(k) ^ (1 << 63)), id, nil
}

// TimeBound returns the smallest index key after every key of time t, for
// scanning an index up to and including t.
func TimeBound(t int64) []byte {
	k := make([]byte, 8)
	binary.BigEndian.PutUint64(k, uint64(t)^(1<<63))
	return k
}

// UnixNano converts t for storage; the zero time is stored as 0.
func UnixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// Time converts a stored time back; 0 is the zero time.
func Time(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// Marker is the value of a body's completion marker.
type Marker struct {
	// Size is the body's length in bytes; Chunks the number of chunks.
	Size   int64
	Chunks uint64
}

// EncodeMarker encodes a completion marker value.
func EncodeMarker(m Marker) []byte {
	b := []byte{FormatVersion}
	b = binary.AppendUvarint(b, uint64(m.Size))
	return binary.AppendUvarint(b, m.Chunks)
}

// DecodeMarker decodes a completion marker value.
func DecodeMarker(b []byte) (Marker, error) {
	d := decoder{b: b}
	var m Marker
	if err := d.version(); err != nil {
		return m, fmt.Errorf("marker: %w", err)
	}
	m.Size = int64(d.uvarint())
	m.Chunks = d.uvarint()
	if d.err == nil && m.Size < 0 {
		d.fail("negative size")
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return Marker{}, fmt.Errorf("marker: %w", d.err)
	}
	return m, nil
}

// Stats are the counters kept in the meta bucket.
type Stats = model.Stats

// EncodeStats encodes the counters, with a checksum.
func EncodeStats(s Stats) []byte {
	b := []byte{FormatVersion}
	b = binary.AppendUvarint(b, uint64(s.Pairs))
	b = binary.AppendUvarint(b, uint64(s.Incomplete))
	b = binary.AppendUvarint(b, uint64(s.Deleted))
	return appendCRC(binary.AppendUvarint(b, uint64(s.Bytes)))
}

// DecodeStats decodes the counters; a nil value is all zeros.
func DecodeStats(b []byte) (Stats, error) {
	var s Stats
	if b == nil {
		return s, nil
	}
	b, err := checkCRC(b, "stats")
	if err != nil {
		return s, err
	}
	d := decoder{b: b}
	if err := d.version(); err != nil {
		return s, fmt.Errorf("stats: %w", err)
	}
	s.Pairs = int(d.uvarint())
	s.Incomplete = int(d.uvarint())
	s.Deleted = int(d.uvarint())
	s.Bytes = int64(d.uvarint())
	if d.err == nil && (s.Pairs < 0 || s.Incomplete < 0 || s.Deleted < 0 || s.Bytes < 0) {
		d.fail("negative counter")
	}
	if d.err != nil {
		return Stats{}, fmt.Errorf("stats: %w", d.err)
	}
	return s, nil
}
