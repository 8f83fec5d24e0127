package template

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/hishel-go/hishel/backend"
	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/model"
)

// The objects of a store under its prefix P (see S3's doc comment):
//
//	P hishel-format              format version and Clear epoch
//	P p/<id>                     a pair's head: its record, revision, bodies' markers
//	P b/<id>/<nonce>/<kind>/<n>  a body's segments: its chunks, each with a CRC-32C
//	P k/<key hash>/<id>          the key index: a complete pair under that key
//	P t/<x|d|i|a>/<time>/<id>    time indexes: expiry, deletion, creation of
//	                             incomplete pairs, last access
//	P s/<instance>               one store instance's counters
//
// IDs, nonces, hashes and times are fixed-width lower-case hex, so that a
// listing (in UTF-8 binary order) is in ID or time order.
const (
	formatObject  = "hishel-format"
	formatVersion = 1
	headVersion   = 1
)

// Time index names.
const (
	idxExpiry     = "x"
	idxDeleted    = "d"
	idxIncomplete = "i"
	idxAccess     = "a"
)

type names struct{ p string }

func (n names) format() string                { return n.p + formatObject }
func (n names) head(id model.PairID) string   { return n.p + "p/" + hex.EncodeToString(id[:]) }
func (n names) heads() string                 { return n.p + "p/" }
func (n names) bodies(id model.PairID) string { return n.p + "b/" + hex.EncodeToString(id[:]) + "/" }
func (n names) keyIndex(key string) string {
	h := sha256.Sum256([]byte(key))
	return n.p + "k/" + hex.EncodeToString(h[:]) + "/"
}
func (n names) counters() string            { return n.p + "s/" }
func (n names) timeIndex(idx string) string { return n.p + "t/" + idx + "/" }
func (n names) keyEntry(key string, id model.PairID) string {
	return n.keyIndex(key) + hex.EncodeToString(id[:])
}

func (n names) segment(id model.PairID, nonce uint64, kind bolt.Kind, seq int) string {
	return fmt.Sprintf("%s%016x/%d/%08x", n.bodies(id), nonce, kind, seq)
}

func (n names) timeEntry(idx string, t int64, id model.PairID) string {
	return fmt.Sprintf("%s%016x/%s", n.timeIndex(idx), uint64(t), hex.EncodeToString(id[:]))
}

// parseTimeEntry splits a time index object name (after its index's
// prefix).
func parseTimeEntry(rest string) (int64, model.PairID, bool) {
	ts, ids, ok := strings.Cut(rest, "/")
	var id model.PairID
	if !ok || len(ts) != 16 || len(ids) != 32 {
		return 0, id, false
	}
	t, err := strconv.ParseUint(ts, 16, 64)
	if err != nil {
		return 0, id, false
	}
	if _, err := hex.Decode(id[:], []byte(ids)); err != nil {
		return 0, id, false
	}
	return int64(t), id, true
}

func parseID(s string) (model.PairID, bool) {
	var id model.PairID
	if len(s) != 32 {
		return id, false
	}
	_, err := hex.Decode(id[:], []byte(s))
	return id, err == nil
}

// head is what a pair's head object holds: its record (package bolt's
// encoding: heads, state flags, times, sizes) and beyond it a revision,
// bumped by every write (so that an ETag never repeats: conditional writes
// compare ETags, which S3 servers derive from the content) and each body's
// completion marker (its segments and chunks; its size is in the record).
type head struct {
	rec    *bolt.Record
	rev    uint64
	segs   [2]uint64
	chunks [2]uint64
}

// encode returns h as a head object: a version byte, the revision and
// markers as uvarints, the record, and the CRC-32C of all that.
func (h *head) encode() []byte {
	b := []byte{headVersion}
	b = binary.AppendUvarint(b, h.rev)
	for k := range 2 {
		b = binary.AppendUvarint(b, h.segs[k])
		b = binary.AppendUvarint(b, h.chunks[k])
	}
	b = append(b, bolt.EncodeRecord(h.rec)...)
	return binary.BigEndian.AppendUint32(b, backend.Checksum(b))
}

// decodeHead decodes a head object defensively: a damaged one is
// model.ErrCorrupt, one of another version model.ErrFormatVersion.
func decodeHead(b []byte) (*head, error) {
	if len(b) < 1+4 {
		return nil, fmt.Errorf("head of %d bytes: %w", len(b), model.ErrCorrupt)
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if backend.Checksum(body) != sum {
		return nil, fmt.Errorf("head: checksum mismatch: %w", model.ErrCorrupt)
	}
	if body[0] != headVersion {
		return nil, fmt.Errorf("head version %d, this build reads %d: %w", body[0], headVersion, model.ErrFormatVersion)
	}
	body = body[1:]
	h := &head{}
	var vals [5]uint64
	for i := range vals {
		v, n := binary.Uvarint(body)
		if n <= 0 {
			return nil, fmt.Errorf("head: bad varint: %w", model.ErrCorrupt)
		}
		vals[i], body = v, body[n:]
	}
	h.rev, h.segs[0], h.chunks[0], h.segs[1], h.chunks[1] = vals[0], vals[1], vals[2], vals[3], vals[4]
	rec, err := bolt.DecodeRecord(body)
	if err != nil {
		return nil, fmt.Errorf("head: %w", err)
	}
	h.rec = rec
	return h, nil
}

func (h *head) clone() *head {
	c := *h
	r := *h.rec
	c.rec = &r
	return &c
}

// Segments are a body's chunks in objects of up to about a megabyte (one
// object per flush of the stream): each chunk is framed by its length and
// its CRC-32C (4 bytes each, big endian).
const frameHeader = 8

// frames is the segment of chunks, as an io.ReadSeeker over them that
// copies nothing (the SDK seeks to sign and to retry).
type frames struct {
	parts [][]byte
	size  int64
	off   int64
}

func newFrames(chunks [][]byte) *frames {
	f := &frames{}
	for _, c := range chunks {
		var h [frameHeader]byte
		binary.BigEndian.PutUint32(h[:4], uint32(len(c)))
		binary.BigEndian.PutUint32(h[4:], backend.Checksum(c))
		f.parts = append(f.parts, h[:], c)
		f.size += int64(frameHeader + len(c))
	}
	return f
}

func (f *frames) Read(p []byte) (int, error) {
	if f.off >= f.size {
		return 0, io.EOF
	}
	n, at := 0, int64(0)
	for _, part := range f.parts {
		end := at + int64(len(part))
		if f.off < end && n < len(p) {
			c := copy(p[n:], part[f.off-at:])
			n += c
			f.off += int64(c)
		}
		at = end
		if n == len(p) {
			break
		}
	}
	return n, nil
}

func (f *frames) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += f.off
	case io.SeekEnd:
		offset += f.size
	}
	if offset < 0 {
		return 0, errors.New("frames: negative offset")
	}
	f.off = offset
	return offset, nil
}

// counters are one store instance's counts, in the epoch they count for
// (a Clear starts a new epoch).
type counters struct {
	epoch uint64
	st    model.Stats
}

func (c counters) encode() []byte {
	b := []byte{headVersion}
	b = binary.AppendUvarint(b, c.epoch)
	for _, v := range []int64{int64(c.st.Pairs), int64(c.st.Incomplete), int64(c.st.Deleted), c.st.Bytes} {
		b = binary.AppendVarint(b, v)
	}
	return binary.BigEndian.AppendUint32(b, backend.Checksum(b))
}

func decodeCounters(b []byte) (counters, error) {
	var c counters
	if len(b) < 1+4 || backend.Checksum(b[:len(b)-4]) != binary.BigEndian.Uint32(b[len(b)-4:]) || b[0] != headVersion {
		return c, fmt.Errorf("counters: %w", model.ErrCorrupt)
	}
	b = b[1 : len(b)-4]
	v, n := binary.Uvarint(b)
	if n <= 0 {
		return c, fmt.Errorf("counters: %w", model.ErrCorrupt)
	}
	c.epoch, b = v, b[n:]
	var vals [4]int64
	for i := range vals {
		v, n := binary.Varint(b)
		if n <= 0 {
			return c, fmt.Errorf("counters: %w", model.ErrCorrupt)
		}
		vals[i], b = v, b[n:]
	}
	c.st = model.Stats{Pairs: int(vals[0]), Incomplete: int(vals[1]), Deleted: int(vals[2]), Bytes: vals[3]}
	return c, nil
}

// formatContent is the format object's content for epoch.
func formatContent(epoch uint64) []byte {
	return fmt.Appendf(nil, "hishel-go s3 store\nformat %d\nepoch %d\n", formatVersion, epoch)
}

func parseFormat(b []byte) (epoch uint64, err error) {
	var v int
	if _, err := fmt.Sscanf(string(b), "hishel-go s3 store\nformat %d\nepoch %d\n", &v, &epoch); err != nil {
		return 0, fmt.Errorf("format object: %v: %w", err, model.ErrCorrupt)
	}
	if v != formatVersion {
		return 0, fmt.Errorf("format version %d, this build reads %d: %w", v, formatVersion, model.ErrFormatVersion)
	}
	return epoch, nil
}
