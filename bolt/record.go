package bolt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/hishel-go/hishel/model"
)

// Record flags.
const (
	// FlagRequestDone: the request body and its marker are stored.
	FlagRequestDone uint8 = 1 << iota
	// FlagResponseDone: the response body and its marker are stored.
	FlagResponseDone
	// FlagHasResponse: AddResponse has been called.
	FlagHasResponse
	// FlagDeleted: the pair is soft-deleted.
	FlagDeleted
	// FlagComplete: both bodies are stored and the pair is indexed by key.
	FlagComplete

	flagsKnown = FlagRequestDone | FlagResponseDone | FlagHasResponse | FlagDeleted | FlagComplete
)

// Record is what the pairs bucket holds for a pair: everything but the body
// bytes. Times are Unix nanoseconds, 0 for "not set".
type Record struct {
	ID model.PairID
	// Nonce is unique to this pair's incarnation and handed out in
	// increasing order: it prefixes the pair's chunk keys (see ChunkKey),
	// and readers use it to notice a replaced pair.
	Nonce uint64
	Flags uint8
	// Rev counts the changes UpdatePair made to the pair's heads: an
	// UpdatePairFunc whose function ran on an older revision is tried again.
	Rev uint64

	Created, Completed, Deleted, Expires, LastAccess int64
	// TTL is the effective TTL in nanoseconds, 0 for none; Refresh whether
	// reads restart it.
	TTL     int64
	Refresh bool

	Key string

	Method, URL string
	ReqHeader   http.Header
	ReqOptions  model.RequestOptions

	Status     int
	RespHeader http.Header

	ReqSize, RespSize int64
}

// Has reports whether all of flags are set.
func (r *Record) Has(flags uint8) bool { return r.Flags&flags == flags }

// State returns the pair's life state.
func (r *Record) State() model.PairState {
	switch {
	case r.Has(FlagDeleted):
		return model.StateDeleted
	case r.Has(FlagComplete):
		return model.StateComplete
	}
	return model.StateIncomplete
}

// Meta returns the pair metadata the record holds.
func (r *Record) Meta() model.PairMeta {
	return model.PairMeta{
		Created:      Time(r.Created),
		Completed:    Time(r.Completed),
		Deleted:      Time(r.Deleted),
		Expires:      Time(r.Expires),
		LastAccess:   Time(r.LastAccess),
		TTL:          time.Duration(r.TTL),
		Refresh:      r.Refresh,
		RequestSize:  r.ReqSize,
		ResponseSize: r.RespSize,
	}
}

// Info returns the record as a model.PairInfo (heads only, no bodies). Header
// maps are shared with the record.
func (r *Record) Info() model.PairInfo {
	return model.PairInfo{
		ID:       r.ID,
		State:    r.State(),
		Key:      r.Key,
		Request:  model.Request{Method: r.Method, URL: r.URL, Header: r.ReqHeader, Options: r.ReqOptions},
		Response: model.Response{Status: r.Status, Header: r.RespHeader},
		Meta:     r.Meta(),
	}
}

// RecordSizeHint returns an upper bound of len(EncodeRecord(r)), for
// accounting and buffer sizing without encoding: every varint counted at
// its largest.
func RecordSizeHint(r *Record) int {
	// The fixed fields, the string lengths and the checksum: 214 bytes at
	// most.
	n := 224 + len(r.Key) + len(r.Method) + len(r.URL)
	for _, h := range [...]http.Header{r.ReqHeader, r.RespHeader} {
		for k, vs := range h {
			n += len(k) + 2*binary.MaxVarintLen64
			for _, v := range vs {
				n += len(v) + binary.MaxVarintLen64
			}
		}
	}
	return n
}

// EncodeRecord encodes r, with a checksum at its end. Header field names
// are written in sorted order and every value of a field separately, so a
// decoded record has the same header. A cache key that contains the URL
// (as hishel's default keys do) is written as what surrounds the URL, so
// that the URL is stored once.
func EncodeRecord(r *Record) []byte {
	b := make([]byte, 0, RecordSizeHint(r))
	b = append(b, FormatVersion)
	b = append(b, r.ID[:]...)
	b = binary.BigEndian.AppendUint64(b, r.Nonce)
	b = append(b, r.Flags)
	b = binary.AppendUvarint(b, r.Rev)
	for _, t := range [...]int64{r.Created, r.Completed, r.Deleted, r.Expires, r.LastAccess, r.TTL} {
		b = binary.AppendVarint(b, t)
	}
	if r.Refresh {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = appendString(b, r.Method)
	b = appendString(b, r.URL)
	if i := strings.Index(r.Key, r.URL); r.URL != "" && i >= 0 {
		b = append(b, keyAroundURL)
		b = appendString(b, r.Key[:i])
		b = appendString(b, r.Key[i+len(r.URL):])
	} else {
		b = append(b, keyWhole)
		b = appendString(b, r.Key)
	}
	b = appendHeader(b, r.ReqHeader)
	b = binary.AppendVarint(b, int64(r.ReqOptions.TTL))
	b = append(b, byte(r.ReqOptions.Refresh))
	b = binary.AppendVarint(b, int64(r.ReqOptions.MaxTTL))
	b = binary.AppendVarint(b, int64(r.Status))
	b = appendHeader(b, r.RespHeader)
	b = binary.AppendVarint(b, r.ReqSize)
	b = binary.AppendVarint(b, r.RespSize)
	return appendCRC(b)
}

// How a record holds its cache key.
const (
	keyWhole     byte = 0 // the key
	keyAroundURL byte = 1 // what precedes the URL in the key, and what follows it
)

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendHeader(b []byte, h http.Header) []byte {
	var buf [24]string
	names := buf[:0]
	for k := range h {
		names = append(names, k)
	}
	slices.Sort(names)
	b = binary.AppendUvarint(b, uint64(len(names)))
	for _, k := range names {
		b = appendString(b, k)
		vs := h[k]
		b = binary.AppendUvarint(b, uint64(len(vs)))
		for _, v := range vs {
			b = appendString(b, v)
		}
	}
	return b
}

// DecodeRecord decodes a record, copying everything it keeps out of b.
// A record whose checksum fails, or that is malformed, yields an error
// wrapping [model.ErrCorrupt]; a record of another format version (with a
// good checksum), one wrapping [model.ErrFormatVersion].
func DecodeRecord(b []byte) (*Record, error) {
	b, err := checkCRC(b, "record")
	if err != nil {
		return nil, err
	}
	return decodeRecord(b)
}

// decodeRecord decodes a record whose checksum has been checked and cut off.
func decodeRecord(b []byte) (*Record, error) {
	d := decoder{b: b, str: string(b)}
	if err := d.version(); err != nil {
		return nil, fmt.Errorf("record: %w", err)
	}
	r := &Record{}
	copy(r.ID[:], d.bytes(16))
	r.Nonce = binary.BigEndian.Uint64(pad8(d.bytes(8)))
	r.Flags = d.byte()
	if d.err == nil && r.Flags&^flagsKnown != 0 {
		d.fail("unknown flags")
	}
	r.Rev = d.uvarint()
	for _, t := range [...]*int64{&r.Created, &r.Completed, &r.Deleted, &r.Expires, &r.LastAccess, &r.TTL} {
		*t = d.varint()
	}
	switch d.byte() {
	case 0:
	case 1:
		r.Refresh = true
	default:
		d.fail("bad refresh flag")
	}
	r.Method = d.string()
	r.URL = d.string()
	switch d.byte() {
	case keyWhole:
		r.Key = d.string()
	case keyAroundURL:
		pre, suf := d.string(), d.string()
		r.Key = pre + r.URL + suf
	default:
		d.fail("bad key encoding")
	}
	r.ReqHeader = d.header()
	r.ReqOptions.TTL = time.Duration(d.varint())
	r.ReqOptions.Refresh = model.Refresh(d.byte())
	if d.err == nil && r.ReqOptions.Refresh > model.NoRefresh {
		d.fail("bad refresh option")
	}
	r.ReqOptions.MaxTTL = time.Duration(d.varint())
	status := d.varint()
	if d.err == nil && (status < 0 || status > 999) {
		d.fail("status out of range")
	}
	r.Status = int(status)
	r.RespHeader = d.header()
	r.ReqSize = d.varint()
	r.RespSize = d.varint()
	if d.err == nil && (r.ReqSize < 0 || r.RespSize < 0 || r.TTL < 0 || r.ReqOptions.MaxTTL < 0) {
		d.fail("negative size or ttl")
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return nil, fmt.Errorf("record: %w", d.err)
	}
	return r, nil
}

// RecordHead is the start of a record: what checking an index entry
// against its pair needs, without the headers.
type RecordHead struct {
	Flags      uint8
	Completed  int64
	LastAccess int64
	// The cache key is pre ‖ url ‖ suf when around is set, pre otherwise:
	// parts of the input, not copies.
	pre, url, suf []byte
	around        bool
}

// Head returns r's head, as DecodeRecordHead(EncodeRecord(r)) would.
func (r *Record) Head() RecordHead {
	return RecordHead{Flags: r.Flags, Completed: r.Completed, LastAccess: r.LastAccess, pre: []byte(r.Key)}
}

// State returns the pair's life state, as Record.State does.
func (h RecordHead) State() model.PairState { return (&Record{Flags: h.Flags}).State() }

// KeyIs reports whether the record's cache key is key.
func (h RecordHead) KeyIs(key string) bool {
	if !h.around {
		return string(h.pre) == key
	}
	n := len(h.pre)
	return len(key) == n+len(h.url)+len(h.suf) && key[:n] == string(h.pre) &&
		key[n:n+len(h.url)] == string(h.url) && key[n+len(h.url):] == string(h.suf)
}

// Key returns the record's cache key.
func (h RecordHead) Key() string {
	if !h.around {
		return string(h.pre)
	}
	return string(h.pre) + string(h.url) + string(h.suf)
}

// DecodeRecordHead decodes the head of record b, up to and including its
// cache key, and nothing after it, once b's checksum is verified: a
// record DecodeRecord accepts gives the same flags, last access and key;
// one it rejects may decode here if the fault lies past the key. Errors
// wrap model.ErrCorrupt or model.ErrFormatVersion, as DecodeRecord's do.
func DecodeRecordHead(b []byte) (RecordHead, error) {
	b, err := checkCRC(b, "record")
	if err != nil {
		return RecordHead{}, err
	}
	d := decoder{b: b}
	if err := d.version(); err != nil {
		return RecordHead{}, fmt.Errorf("record: %w", err)
	}
	var h RecordHead
	d.bytes(16 + 8) // ID, nonce
	h.Flags = d.byte()
	if d.err == nil && h.Flags&^flagsKnown != 0 {
		d.fail("unknown flags")
	}
	d.uvarint()        // Rev
	for i := range 6 { // Created, Completed, Deleted, Expires, LastAccess, TTL
		switch v := d.varint(); {
		case i == 1:
			h.Completed = v
		case i == 4:
			h.LastAccess = v
		case i == 5 && v < 0 && d.err == nil:
			d.fail("negative size or ttl")
		}
	}
	if r := d.byte(); d.err == nil && r > 1 {
		d.fail("bad refresh flag")
	}
	d.bytes(d.length()) // method
	h.url = d.bytes(d.length())
	switch d.byte() {
	case keyWhole:
		h.pre = d.bytes(d.length())
	case keyAroundURL:
		h.around = true
		h.pre = d.bytes(d.length())
		h.suf = d.bytes(d.length())
	default:
		d.fail("bad key encoding")
	}
	if d.err != nil {
		return RecordHead{}, fmt.Errorf("record: %w", d.err)
	}
	return h, nil
}

func pad8(b []byte) []byte {
	if len(b) == 8 {
		return b
	}
	return make([]byte, 8)
}

// decoder reads the encoding; the first failure sticks in err and later reads
// return zero values.
type decoder struct {
	b   []byte
	err error
	// str, if set, is a copy of all the input, of which b is a suffix:
	// strings are cut from it instead of being allocated one by one.
	str string
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%s: %w", what, model.ErrCorrupt)
	}
}

var errEmpty = errors.New("empty value")

func (d *decoder) version() error {
	if len(d.b) == 0 {
		return fmt.Errorf("%w: %w", errEmpty, model.ErrCorrupt)
	}
	if v := d.b[0]; v != FormatVersion {
		return fmt.Errorf("version %d, this build reads %d: %w", v, FormatVersion, model.ErrFormatVersion)
	}
	d.b = d.b[1:]
	return nil
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 1 {
		d.fail("truncated")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) bytes(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || len(d.b) < n {
		d.fail("truncated")
		return nil
	}
	p := d.b[:n]
	d.b = d.b[n:]
	return p
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// length reads a count or length that cannot exceed the bytes left.
func (d *decoder) length() int {
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)) {
		d.fail("length beyond end")
		return 0
	}
	return int(n)
}

func (d *decoder) string() string {
	n := d.length()
	off := len(d.str) - len(d.b)
	p := d.bytes(n)
	if d.str != "" && d.err == nil {
		return d.str[off : off+n]
	}
	return string(p)
}

func (d *decoder) header() http.Header {
	n := d.length()
	h := make(http.Header, n)
	vals := make([]string, 0, n) // every field's values, one after another
	for i := 0; i < n && d.err == nil; i++ {
		k := d.string()
		nv := d.length()
		if d.err != nil {
			break
		}
		start := len(vals)
		for j := 0; j < nv && d.err == nil; j++ {
			vals = append(vals, d.string())
		}
		h[k] = vals[start:len(vals):len(vals)] // full: appending to it copies
		// k was there already if the map did not grow.
		if len(h) != i+1 {
			d.fail("duplicate header name")
			break
		}
	}
	return h
}
