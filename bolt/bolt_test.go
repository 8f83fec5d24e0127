package bolt

import (
	"bytes"
	"errors"
	"math"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hishel-go/hishel/model"
)

func sampleRecord() *Record {
	return &Record{
		ID: model.NewPairID(), Nonce: 42, Flags: FlagComplete | FlagHasResponse, Rev: 3,
		Created: 1, Completed: 2, Deleted: 0, Expires: -5, LastAccess: math.MaxInt64, TTL: int64(time.Hour), Refresh: true,
		Key: "GET https://example.com/\x00\xff", Method: "GET", URL: "https://example.com/",
		ReqHeader:  http.Header{"Accept": {"a", "b"}, "Empty": {}, "X-Blank": {""}},
		ReqOptions: model.RequestOptions{TTL: model.NoExpiry, Refresh: model.NoRefresh, MaxTTL: time.Minute},
		Status:     206,
		RespHeader: http.Header{"Set-Cookie": {"a=1, b=2", "c=3"}},
		ReqSize:    7, RespSize: 1 << 40,
	}
}

// withCRC returns b with a good checksum: what a record of another layout
// with hishel's checksum, or a malformed one written so, looks like.
func withCRC(b []byte) []byte { return appendCRC(bytes.Clone(b)) }

func TestRecordRoundTrip(t *testing.T) {
	keyElsewhere := sampleRecord()
	keyElsewhere.Key = "other"
	keyTwice := sampleRecord()
	keyTwice.Key = "GET " + keyTwice.URL + " " + keyTwice.URL
	for _, r := range []*Record{sampleRecord(), keyElsewhere, keyTwice, {ReqHeader: http.Header{}, RespHeader: http.Header{}}} {
		got, err := DecodeRecord(EncodeRecord(r))
		if err != nil {
			t.Fatalf("DecodeRecord(EncodeRecord(r)) error: %v", err)
		}
		if diff := cmp.Diff(r, got); diff != "" {
			t.Errorf("round trip (-want +got):\n%s", diff)
		}
	}
}

// The URL is stored once when the key holds it, as hishel's default key
// does: a record is shorter by the URL's length than one with another key.
func TestRecordURLOnce(t *testing.T) {
	r := sampleRecord()
	r.URL = "https://example.com/" + strings.Repeat("x", 1000)
	r.Key = "GET " + r.URL
	other := *r
	other.Key = "GET https://example.org/" + strings.Repeat("x", 1000)
	if a, b := len(EncodeRecord(r)), len(EncodeRecord(&other)); b-a < 1000 {
		t.Errorf("record with the URL in its key: %d bytes; with another key as long: %d; want the URL stored once", a, b)
	}
}

func TestRecordDecodeErrors(t *testing.T) {
	good := EncodeRecord(sampleRecord())
	body := good[:len(good)-CRCLen]
	newer := bytes.Clone(body)
	newer[0] = FormatVersion + 1
	two := sampleRecord()
	two.RespHeader = http.Header{"Dup-Aa": {"1"}, "Dup-Ab": {"2"}}
	two.Key = "key"
	enc2 := EncodeRecord(two)
	dup := bytes.Replace(enc2[:len(enc2)-CRCLen], []byte("Dup-Ab"), []byte("Dup-Aa"), 1)
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 0x10
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, model.ErrCorrupt},
		{"newer version", withCRC(newer), model.ErrFormatVersion},
		{"version byte flipped", append([]byte{FormatVersion + 1}, good[1:]...), model.ErrCorrupt},
		{"a byte flipped", flipped, model.ErrCorrupt},
		{"truncated", good[:len(good)/2], model.ErrCorrupt},
		{"truncated, checksum fixed", withCRC(body[:len(body)/2]), model.ErrCorrupt},
		{"trailing", withCRC(append(bytes.Clone(body), 0)), model.ErrCorrupt},
		{"duplicate header name", withCRC(dup), model.ErrCorrupt},
		{"bad key encoding", withCRC(bytes.Replace(body, []byte("https://example.com/\x01"), []byte("https://example.com/\x07"), 1)), model.ErrCorrupt},
		{"huge length", withCRC(append([]byte{FormatVersion}, bytes.Repeat([]byte{0xff}, 40)...)), model.ErrCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := DecodeRecord(tt.in); !errors.Is(err, tt.want) {
				t.Fatalf("DecodeRecord(%s) err = %v; want %v", tt.name, err, tt.want)
			}
		})
	}
	for i := range body {
		// every prefix, checksummed or not: an error, never a panic
		if _, err := DecodeRecord(good[:i]); !errors.Is(err, model.ErrCorrupt) {
			t.Fatalf("DecodeRecord(%d-byte prefix) err = %v; want ErrCorrupt", i, err)
		}
		_, _ = DecodeRecord(withCRC(body[:i]))
	}
}

func TestKeyOrder(t *testing.T) {
	id := model.NewPairID()
	const nonce = 1<<40 + 7
	var keys [][]byte
	for _, seq := range []uint64{MarkerSeq, 0, 1, 255, 256, 1 << 40} {
		keys = append(keys, ChunkKey(nonce, KindResponse, seq, []byte{byte(seq)}))
	}
	keys = append(keys, ChunkKey(nonce, KindRequest, MarkerSeq, nil))
	sort.Slice(keys, func(i, j int) bool { return bytes.Compare(keys[i], keys[j]) < 0 })
	var seqs []uint64
	for _, k := range keys {
		got, kind, seq, err := ParseChunkKey(k)
		if err != nil || got != nonce {
			t.Fatalf("ParseChunkKey(%x) = %v, %v", k, got, err)
		}
		if !bytes.HasPrefix(k, ChunkPrefix(nonce)) || !bytes.HasPrefix(k, ChunkSeek(nonce, kind, seq)) {
			t.Fatalf("ChunkKey(%d, ...) does not start with ChunkPrefix and ChunkSeek", nonce)
		}
		if kind == KindRequest {
			if len(seqs) != 0 {
				t.Fatalf("request marker sorts after response chunks")
			}
			continue
		}
		seqs = append(seqs, seq)
	}
	if want := []uint64{0, 1, 255, 256, 1 << 40, MarkerSeq}; !cmp.Equal(seqs, want) {
		t.Errorf("chunk order = %v; want %v (marker last)", seqs, want)
	}
	// Pairs with increasing nonces have increasing chunk keys, markers
	// included: a later pair's chunks never sort among an earlier one's.
	for _, n := range []uint64{0, 1, 255, 256, 1 << 32, math.MaxUint64 - 1} {
		if bytes.Compare(ChunkKey(n, KindResponse, MarkerSeq, []byte{0xff}), ChunkKey(n+1, KindRequest, 0, nil)) >= 0 {
			t.Errorf("chunks of nonce %d do not sort before those of %d", n, n+1)
		}
	}

	times := []int64{math.MinInt64, -1, 0, 1, time.Now().UnixNano(), math.MaxInt64}
	for i := 1; i < len(times); i++ {
		a, b := TimeKey(times[i-1], id), TimeKey(times[i], id)
		if bytes.Compare(a, b) >= 0 {
			t.Errorf("TimeKey(%d) does not sort before TimeKey(%d)", times[i-1], times[i])
		}
		if bytes.Compare(a[:8], TimeBound(times[i-1])) > 0 {
			t.Errorf("TimeKey(%d) sorts after its bound", times[i-1])
		}
		got, gotID, err := ParseTimeKey(b)
		if err != nil || got != times[i] || gotID != id {
			t.Errorf("ParseTimeKey(TimeKey(%d)) = %d, %v, %v", times[i], got, gotID, err)
		}
	}
}

func TestChunkChecksum(t *testing.T) {
	v := []byte("chunk bytes")
	k := ChunkKey(7, KindResponse, 3, v)
	if err := CheckChunk(k, v); err != nil {
		t.Fatalf("CheckChunk(ChunkKey(v), v) = %v", err)
	}
	bad := map[string]func() ([]byte, []byte){
		"value byte":   func() ([]byte, []byte) { w := bytes.Clone(v); w[0] ^= 1; return k, w },
		"value short":  func() ([]byte, []byte) { return k, v[:len(v)-1] },
		"position":     func() ([]byte, []byte) { k2 := bytes.Clone(k); k2[16] ^= 1; return k2, v },
		"checksum":     func() ([]byte, []byte) { k2 := bytes.Clone(k); k2[ChunkKeyLen-1] ^= 1; return k2, v },
		"key too long": func() ([]byte, []byte) { return append(bytes.Clone(k), 0), v },
		"other chunk":  func() ([]byte, []byte) { return ChunkKey(7, KindResponse, 4, v), append(bytes.Clone(v), 'x') },
	}
	for name, f := range bad {
		if err := CheckChunk(f()); !errors.Is(err, model.ErrCorrupt) {
			t.Errorf("CheckChunk(%s changed) = %v; want ErrCorrupt", name, err)
		}
	}
}

func TestNonce(t *testing.T) {
	for _, n := range []uint64{0, 1, math.MaxUint64} {
		if got, err := DecodeNonce(EncodeNonce(n)); err != nil || got != n {
			t.Errorf("DecodeNonce(EncodeNonce(%d)) = %d, %v", n, got, err)
		}
	}
	b := EncodeNonce(42)
	b[7] ^= 1
	for _, in := range [][]byte{b, {1, 2, 3}, withCRC([]byte{1})} {
		if _, err := DecodeNonce(in); !errors.Is(err, model.ErrCorrupt) {
			t.Errorf("DecodeNonce(%x) err = %v; want ErrCorrupt", in, err)
		}
	}
}

func TestMarkerAndStats(t *testing.T) {
	m := Marker{Size: 1 << 33, Chunks: 99}
	if got, err := DecodeMarker(EncodeMarker(m)); err != nil || got != m {
		t.Errorf("DecodeMarker(EncodeMarker(%v)) = %v, %v", m, got, err)
	}
	st := Stats{Pairs: 3, Incomplete: 1, Deleted: 2, Bytes: 12345}
	if got, err := DecodeStats(EncodeStats(st)); err != nil || got != st {
		t.Errorf("DecodeStats(EncodeStats(%v)) = %v, %v", st, got, err)
	}
	if _, err := DecodeMarker([]byte{FormatVersion, 0xff}); !errors.Is(err, model.ErrCorrupt) {
		t.Errorf("DecodeMarker(truncated) err = %v; want ErrCorrupt", err)
	}
	enc := EncodeStats(st)
	enc[2] ^= 1
	if _, err := DecodeStats(enc); !errors.Is(err, model.ErrCorrupt) {
		t.Errorf("DecodeStats(a byte flipped) err = %v; want ErrCorrupt", err)
	}
}

// FuzzDecodeRecord decodes its input as it is and with a good checksum
// appended, so that the decoder behind the checksum is fuzzed too.
func FuzzDecodeRecord(f *testing.F) {
	good := EncodeRecord(sampleRecord())
	f.Add(good, false)
	f.Add(good[:len(good)-CRCLen], true)
	f.Add(EncodeRecord(&Record{}), false)
	f.Add([]byte{}, false)
	f.Add([]byte{FormatVersion, 0xff, 0xff}, true)
	f.Fuzz(func(t *testing.T, b []byte, sum bool) {
		if sum {
			b = withCRC(b)
		}
		r, err := DecodeRecord(b)
		if err != nil {
			if !errors.Is(err, model.ErrCorrupt) && !errors.Is(err, model.ErrFormatVersion) {
				t.Fatalf("DecodeRecord error %v wraps neither ErrCorrupt nor ErrFormatVersion", err)
			}
			return
		}
		// What decodes must encode back to a record that decodes the same,
		// within the size RecordSizeHint promises.
		enc := EncodeRecord(r)
		if len(enc) > RecordSizeHint(r) {
			t.Fatalf("EncodeRecord: %d bytes; RecordSizeHint %d", len(enc), RecordSizeHint(r))
		}
		again, err := DecodeRecord(enc)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if diff := cmp.Diff(r, again); diff != "" {
			t.Fatalf("re-encode changed the record (-first +second):\n%s", diff)
		}
	})
}

// FuzzDecodeRecordHead checks that DecodeRecordHead never fails where
// DecodeRecord succeeds, and agrees with it.
func FuzzDecodeRecordHead(f *testing.F) {
	good := EncodeRecord(sampleRecord())
	f.Add(good, false)
	f.Add(good[:len(good)-CRCLen], true)
	f.Add(EncodeRecord(&Record{}), false)
	f.Add([]byte{}, false)
	f.Add([]byte{FormatVersion, 0xff, 0xff}, true)
	f.Fuzz(func(t *testing.T, b []byte, sum bool) {
		if sum {
			b = withCRC(b)
		}
		h, herr := DecodeRecordHead(b)
		if herr != nil && !errors.Is(herr, model.ErrCorrupt) && !errors.Is(herr, model.ErrFormatVersion) {
			t.Fatalf("DecodeRecordHead error %v wraps neither ErrCorrupt nor ErrFormatVersion", herr)
		}
		r, err := DecodeRecord(b)
		if err != nil {
			// A fault before the key fails both.
			if herr == nil && len(b) > 0 && b[0] == FormatVersion {
				if _, err := DecodeRecord(EncodeRecord(&Record{Flags: h.Flags, LastAccess: h.LastAccess, Key: h.Key()})); err != nil {
					t.Fatalf("DecodeRecordHead accepted a head DecodeRecord rejects: %v", err)
				}
			}
			return
		}
		if herr != nil {
			t.Fatalf("DecodeRecordHead: %v; DecodeRecord accepted the record", herr)
		}
		if h.Flags != r.Flags || h.LastAccess != r.LastAccess || h.Completed != r.Completed || h.Key() != r.Key || !h.KeyIs(r.Key) || h.State() != r.State() {
			t.Fatalf("DecodeRecordHead = %+v; DecodeRecord flags %x, last access %d, key %q", h, r.Flags, r.LastAccess, r.Key)
		}
	})
}

// FuzzParseStale checks that ParseStale takes back what StaleKey and
// StaleValue make, and rejects other shapes with ErrCorrupt.
func FuzzParseStale(f *testing.F) {
	f.Add(StaleKey(1), StaleValue(IndexKeys, make([]byte, KeysKeyLen)))
	f.Add(StaleKey(1<<40), StaleValue(IndexAccess, make([]byte, TimeKeyLen)))
	f.Add([]byte("bad"), []byte{})
	f.Fuzz(func(t *testing.T, k, v []byte) {
		seq, idx, entry, err := ParseStale(k, v)
		if err != nil {
			if !errors.Is(err, model.ErrCorrupt) {
				t.Fatalf("ParseStale error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		if !bytes.Equal(StaleKey(seq), k) || !bytes.Equal(StaleValue(idx, entry), v) {
			t.Fatalf("ParseStale(%x, %x) = %d, %d, %x: does not round trip", k, v, seq, idx, entry)
		}
	})
}

func FuzzDecodeMarker(f *testing.F) {
	f.Add(EncodeMarker(Marker{Size: 10, Chunks: 1}))
	f.Add([]byte{FormatVersion})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMarker(b)
		if err == nil && m.Size < 0 {
			t.Fatalf("DecodeMarker accepted a negative size")
		}
	})
}

func FuzzKeys(f *testing.F) {
	f.Add([]byte("GET https://example.com/"), int64(0), uint64(0))
	f.Add([]byte{}, int64(-1), uint64(MarkerSeq))
	f.Fuzz(func(t *testing.T, key []byte, ts int64, seq uint64) {
		h := KeyHash(string(key))
		id := model.PairID(h[:16])
		k := KeysKey(h, id)
		if len(k) != KeysKeyLen || !bytes.HasPrefix(k, h[:]) {
			t.Fatalf("KeysKey has the wrong shape")
		}
		nonce := uint64(ts)
		ck := ChunkKey(nonce, KindResponse, seq, key)
		gotNonce, kind, gotSeq, err := ParseChunkKey(ck)
		if err != nil || gotNonce != nonce || kind != KindResponse || gotSeq != seq || CheckChunk(ck, key) != nil {
			t.Fatalf("chunk key round trip failed")
		}
		if len(key) > 0 && CheckChunk(ck, key[1:]) == nil {
			t.Fatalf("CheckChunk accepted a chunk one byte short")
		}
		gotT, gotID, err := ParseTimeKey(TimeKey(ts, id))
		if err != nil || gotT != ts || gotID != id {
			t.Fatalf("time key round trip failed")
		}
		if _, _, _, err := ParseChunkKey(key); len(key) != ChunkKeyLen && err == nil {
			t.Fatalf("ParseChunkKey accepted %d bytes", len(key))
		}
	})
}

func BenchmarkDecodeRecord(b *testing.B) {
	r := sampleRecord()
	r.ReqHeader = http.Header{"Accept": {"text/html"}, "Accept-Language": {"en"}, "User-Agent": {"bench"}, "Cookie": {"c=1"}}
	r.RespHeader = http.Header{"Cache-Control": {"max-age=3600"}, "Content-Type": {"text/plain"}, "Content-Length": {"1024"}, "Date": {"Sat, 21 Nov 2026 08:00:00 GMT"}, "Etag": {`"x"`}}
	enc := EncodeRecord(r)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeRecord(enc); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzDecodeAccessLog checks that DecodeAccessLog takes back what
// AppendAccess and SealAccessLog make, and rejects anything else with
// ErrCorrupt.
func FuzzDecodeAccessLog(f *testing.F) {
	var id model.PairID
	copy(id[:], "0123456789abcdef")
	f.Add(SealAccessLog(AppendAccess(AppendAccess(nil, id, 1), id, 1<<62)))
	f.Add(SealAccessLog(nil))
	f.Add(SealAccessLog(AppendAccess(nil, id, -1)))
	f.Add([]byte("bad"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var again []byte
		err := DecodeAccessLog(b, func(id model.PairID, at int64) {
			if at <= 0 {
				t.Fatalf("DecodeAccessLog gave time %d", at)
			}
			again = AppendAccess(again, id, at)
		})
		if err != nil {
			if !errors.Is(err, model.ErrCorrupt) {
				t.Fatalf("DecodeAccessLog error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		if !bytes.Equal(SealAccessLog(again), b) {
			t.Fatalf("DecodeAccessLog(%x) does not round trip", b)
		}
	})
}
