package template

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/hishel-go/hishel/backend"
	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/model"
)

// The objects of a store under its prefix P (see S3's doc comment):
//
//	P hishel-format                       format version
//	P p/<id>                              a pair's head: its record, revision, bodies' markers, index entries
//	P b/<id>/<nonce>-<kind>-<n>           a body's segments: its chunks, each with a CRC-32C
//	P k/<key hash>/<id>.<w>               the key index: a complete pair under that key
//	P t/i/<created>.<id>.<w>              incomplete pairs, by creation
//	P t/a/<access>.<id>.<bytes>.<w>       complete pairs, by last access (a lower bound)
//	P t/x/<expires>.<id>.<w>              complete pairs that expire, by expiry (a lower bound)
//	P t/d/<deleted>.<id>.<bytes>.<w>      soft-deleted pairs, by deletion
//
// IDs, nonces, hashes, times and sizes are fixed-width lower-case hex, so
// that a listing (in UTF-8 binary order) is in ID or time order. <w> is the
// head write that made the entry: no entry name is ever made twice, so an
// entry that the current head does not list is never listed again, and
// deleting it races with nothing (but a write still in flight; see
// staleAge). Each index keeps its entries in one "directory", which is what
// servers that store objects as files (versitygw's posix backend) list
// fastest.
const (
	formatObject  = "hishel-format"
	formatVersion = 1
	headVersion   = 1
)

// Entry kinds: the key index and the time indexes.
const (
	entKey        = 'k'
	entIncomplete = 'i'
	entAccess     = 'a'
	entExpiry     = 'x'
	entDeleted    = 'd'
)

type names struct{ p string }

func (n names) format() string                { return n.p + formatObject }
func (n names) head(id model.PairID) string   { return n.p + "p/" + hex.EncodeToString(id[:]) }
func (n names) heads() string                 { return n.p + "p/" }
func (n names) bodies(id model.PairID) string { return n.p + "b/" + hex.EncodeToString(id[:]) + "/" }
func (n names) keyIndex(key string) string    { return n.p + "k/" + keyHash(key) + "/" }
func (n names) index(kind byte) string        { return n.p + "t/" + string(kind) + "/" }
func (n names) entry(e entry) string          { return n.p + e.name() }

func (n names) segments(id model.PairID, nonce uint64) string {
	return fmt.Sprintf("%s%016x-", n.bodies(id), nonce)
}

func (n names) segment(id model.PairID, nonce uint64, kind bolt.Kind, seq int) string {
	return fmt.Sprintf("%s%d-%08x", n.segments(id, nonce), kind, seq)
}

func keyHash(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])
}

func parseID(s string) (model.PairID, bool) {
	var id model.PairID
	if len(s) != 32 {
		return id, false
	}
	_, err := hex.Decode(id[:], []byte(s))
	return id, err == nil
}

// entry is one index object of a pair.
type entry struct {
	kind  byte
	t     int64  // i, a, x, d: the time it sorts by
	key   string // k: the hash of the key
	id    model.PairID
	bytes int64  // a, d: the pair's stored bytes
	wid   uint64 // the head write that made it
}

// name is e's object name under the store's prefix.
func (e entry) name() string {
	id := hex.EncodeToString(e.id[:])
	switch e.kind {
	case entKey:
		return fmt.Sprintf("k/%s/%s.%016x", e.key, id, e.wid)
	case entAccess, entDeleted:
		return fmt.Sprintf("t/%c/%016x.%s.%016x.%016x", e.kind, uint64(e.t), id, uint64(e.bytes), e.wid)
	}
	return fmt.Sprintf("t/%c/%016x.%s.%016x", e.kind, uint64(e.t), id, e.wid)
}

// parseEntry parses an entry's object name (under the prefix).
func parseEntry(name string) (entry, bool) {
	var e entry
	hexU := func(s string, n int) (uint64, bool) {
		if len(s) != n {
			return 0, false
		}
		v, err := strconv.ParseUint(s, 16, 64)
		return v, err == nil
	}
	switch {
	case strings.HasPrefix(name, "k/"):
		hash, rest, ok := strings.Cut(name[2:], "/")
		f := strings.Split(rest, ".")
		if !ok || len(hash) != 64 || len(f) != 2 {
			return e, false
		}
		var ok1, ok2 bool
		e.kind, e.key = entKey, hash
		e.id, ok1 = parseID(f[0])
		e.wid, ok2 = hexU(f[1], 16)
		return e, ok1 && ok2
	case len(name) > 4 && strings.HasPrefix(name, "t/") && name[3] == '/':
		e.kind = name[2]
		f := strings.Split(name[4:], ".")
		want := 3
		if e.kind == entAccess || e.kind == entDeleted {
			want = 4
		}
		if len(f) != want || !strings.ContainsRune("iaxd", rune(e.kind)) {
			return e, false
		}
		t, ok1 := hexU(f[0], 16)
		id, ok2 := parseID(f[1])
		wid, ok3 := hexU(f[len(f)-1], 16)
		e.t, e.id, e.wid = int64(t), id, wid
		ok4 := true
		if want == 4 {
			var b uint64
			b, ok4 = hexU(f[2], 16)
			e.bytes = int64(b)
		}
		return e, ok1 && ok2 && ok3 && ok4 && e.t >= 0 && e.bytes >= 0
	}
	return e, false
}

// plan returns the entries rec needs: those of have that serve it (kept)
// and new ones made by head write wid (added). The time indexes hold a
// lower bound of a pair's last access and expiry, so that an access moves
// no entry (sweeps and evictions move it when they meet it); exact asks
// for entries at the record's very times.
func plan(have []entry, rec *bolt.Record, wid uint64, exact bool) (keep, add []entry) {
	var want []entry
	size := size(rec)
	switch rec.State() {
	case model.StateIncomplete:
		want = []entry{{kind: entIncomplete, t: rec.Created}}
	case model.StateComplete:
		want = []entry{{kind: entKey, key: keyHash(rec.Key)}, {kind: entAccess, t: rec.LastAccess, bytes: size}}
		if rec.Expires != 0 {
			want = append(want, entry{kind: entExpiry, t: rec.Expires})
		}
	case model.StateDeleted:
		want = []entry{{kind: entDeleted, t: rec.Deleted, bytes: size}}
	}
	serves := func(e, w entry) bool {
		if e.kind != w.kind {
			return false
		}
		switch e.kind {
		case entKey:
			return e.key == w.key
		case entAccess:
			return e.bytes == w.bytes && (e.t == w.t || !exact && e.t < w.t)
		case entExpiry:
			return e.t == w.t || !exact && e.t < w.t
		}
		return e.t == w.t && e.bytes == w.bytes
	}
	for _, w := range want {
		i := slices.IndexFunc(have, func(e entry) bool { return serves(e, w) })
		if i >= 0 {
			keep = append(keep, have[i])
			continue
		}
		w.id, w.wid = rec.ID, wid
		add = append(add, w)
	}
	return keep, add
}

// minus returns the entries of a that are not in b.
func minus(a, b []entry) []entry {
	var out []entry
	for _, e := range a {
		if !slices.Contains(b, e) {
			out = append(out, e)
		}
	}
	return out
}

// head is what a pair's head object holds: its record (package bolt's
// encoding: heads, state flags, times, sizes) and beyond it a revision and
// the write's random ID (wid), new with every write (so that an ETag never
// repeats: conditional writes compare ETags, which S3 servers derive from
// the content; and so that a writer knows its own write when a retried
// request finds it done), each body's completion marker (its segments and
// chunks; its size is in the record), and the index entries the pair owns.
type head struct {
	rec    *bolt.Record
	rev    uint64
	wid    uint64
	segs   [2]uint64
	chunks [2]uint64
	ents   []entry
}

// lists reports whether h owns the entry e.
func (h *head) lists(e entry) bool { return slices.Contains(h.ents, e) }

// encode returns h as a head object: a version byte, the revision, write
// ID and markers as uvarints, the entries (a count, then each name with its
// length), the record, and the CRC-32C of all that.
func (h *head) encode() []byte {
	b := []byte{headVersion}
	b = binary.AppendUvarint(b, h.rev)
	b = binary.AppendUvarint(b, h.wid)
	for k := range 2 {
		b = binary.AppendUvarint(b, h.segs[k])
		b = binary.AppendUvarint(b, h.chunks[k])
	}
	b = binary.AppendUvarint(b, uint64(len(h.ents)))
	for _, e := range h.ents {
		n := e.name()
		b = binary.AppendUvarint(b, uint64(len(n)))
		b = append(b, n...)
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
	next := func() (uint64, bool) {
		v, n := binary.Uvarint(body)
		if n <= 0 {
			return 0, false
		}
		body = body[n:]
		return v, true
	}
	h := &head{}
	var vals [7]uint64
	for i := range vals {
		v, ok := next()
		if !ok {
			return nil, fmt.Errorf("head: bad varint: %w", model.ErrCorrupt)
		}
		vals[i] = v
	}
	h.rev, h.wid, h.segs[0], h.chunks[0], h.segs[1], h.chunks[1] = vals[0], vals[1], vals[2], vals[3], vals[4], vals[5]
	if vals[6] > 16 {
		return nil, fmt.Errorf("head: %d index entries: %w", vals[6], model.ErrCorrupt)
	}
	for range vals[6] {
		n, ok := next()
		if !ok || n > uint64(len(body)) {
			return nil, fmt.Errorf("head: bad entry: %w", model.ErrCorrupt)
		}
		e, ok := parseEntry(string(body[:n]))
		if !ok {
			return nil, fmt.Errorf("head: bad entry %q: %w", body[:n], model.ErrCorrupt)
		}
		h.ents = append(h.ents, e)
		body = body[n:]
	}
	rec, err := bolt.DecodeRecord(body)
	if err != nil {
		return nil, fmt.Errorf("head: %w", err)
	}
	h.rec = rec
	for _, e := range h.ents {
		if e.id != rec.ID {
			return nil, fmt.Errorf("head: entry of pair %s: %w", e.id, model.ErrCorrupt)
		}
	}
	return h, nil
}

func (h *head) clone() *head {
	c := *h
	r := *h.rec
	r.ReqHeader, r.RespHeader = r.ReqHeader.Clone(), r.RespHeader.Clone()
	c.rec = &r
	c.ents = slices.Clone(h.ents)
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

// formatContent is the format object's content.
func formatContent() []byte {
	return fmt.Appendf(nil, "hishel-go s3 store\nformat %d\n", formatVersion)
}

func parseFormat(b []byte) error {
	var v int
	if _, err := fmt.Sscanf(string(b), "hishel-go s3 store\nformat %d\n", &v); err != nil {
		return fmt.Errorf("format object: %v: %w", err, model.ErrCorrupt)
	}
	if v != formatVersion {
		return fmt.Errorf("format version %d, this build reads %d: %w", v, formatVersion, model.ErrFormatVersion)
	}
	return nil
}
