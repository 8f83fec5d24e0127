package template

import (
	"errors"
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/model"
)

func testID(b byte) model.PairID {
	var id model.PairID
	for i := range id {
		id[i] = b + byte(i)
	}
	return id
}

// Every entry's name parses back to the entry; other names do not parse.
func TestEntryNames(t *testing.T) {
	id := testID(1)
	for _, e := range []entry{
		{kind: entKey, key: keyHash("GET https://example.com/"), id: id, wid: 7},
		{kind: entIncomplete, t: 1_700_000_000_000_000_000, id: id, wid: 1<<64 - 1},
		{kind: entAccess, t: 5, id: id, bytes: 1 << 40, wid: 3},
		{kind: entExpiry, t: 6, id: id, wid: 4},
		{kind: entDeleted, t: tombstoneTime, id: id, bytes: 0, wid: 5},
	} {
		got, ok := parseEntry(e.name())
		if !ok || got != e {
			t.Errorf("parseEntry(%q) = %+v, %v; want %+v", e.name(), got, ok, e)
		}
	}
	for _, bad := range []string{"", "k/", "t/a/", "t/q/0000000000000001.0102030405060708090a0b0c0d0e0f10.0000000000000001",
		"t/i/0000000000000001.0102030405060708090a0b0c0d0e0f10", "t/a/0000000000000001.0102030405060708090a0b0c0d0e0f10.0000000000000001",
		"t/i/000000000000000g.0102030405060708090a0b0c0d0e0f10.0000000000000001", "k/abc/0102030405060708090a0b0c0d0e0f10.0000000000000001",
		"t/i/8000000000000000.0102030405060708090a0b0c0d0e0f10.0000000000000001", "p/0102030405060708090a0b0c0d0e0f10"} {
		if e, ok := parseEntry(bad); ok {
			t.Errorf("parseEntry(%q) = %+v, true; want false", bad, e)
		}
	}
}

// plan keeps the entries that serve a record, lower bounds of last access
// and expiry included unless exact, and makes the others.
func TestPlan(t *testing.T) {
	id := testID(2)
	rec := &bolt.Record{ID: id, Key: "k", Flags: bolt.FlagComplete | bolt.FlagRequestDone | bolt.FlagResponseDone | bolt.FlagHasResponse,
		Created: 10, LastAccess: 20, Expires: 80, RespSize: 9}
	sz := size(rec) // the 9 body bytes and the heads (the key, here)
	if sz != 9+int64(len("k")) {
		t.Errorf("size = %d; want %d: the body and the key", sz, 9+len("k"))
	}
	_, first := plan(nil, rec, 1, true)
	want := []entry{{kind: entKey, key: keyHash("k"), id: id, wid: 1}, {kind: entAccess, t: 20, id: id, bytes: sz, wid: 1},
		{kind: entExpiry, t: 80, id: id, wid: 1}}
	if diff := cmp.Diff(want, first, cmp.AllowUnexported(entry{})); diff != "" {
		t.Fatalf("plan of a complete pair (-want +got):\n%s", diff)
	}
	read := *rec
	read.LastAccess, read.Expires = 50, 110 // an access refreshed it
	keep, add := plan(first, &read, 2, false)
	if len(keep) != 3 || len(add) != 0 {
		t.Errorf("plan after an access keeps %d, adds %v; want the 3 entries kept (lower bounds)", len(keep), add)
	}
	keep, add = plan(first, &read, 2, true)
	if len(keep) != 1 || len(add) != 2 || add[0].t != 50 || add[1].t != 110 {
		t.Errorf("exact plan after an access keeps %v, adds %v; want the key entry kept, access and expiry at 50 and 110", keep, add)
	}
	shorter := *rec
	shorter.Expires = 60 // UpdatePair moved the expiry earlier
	if _, add := plan(first, &shorter, 3, false); len(add) != 1 || add[0].kind != entExpiry || add[0].t != 60 {
		t.Errorf("plan after an earlier expiry adds %v; want an expiry entry at 60", add)
	}
	gone := *rec
	gone.Flags |= bolt.FlagDeleted
	gone.Deleted = 90
	keep, add = plan(first, &gone, 4, false)
	if len(keep) != 0 || len(add) != 1 || add[0].kind != entDeleted || add[0].bytes != sz {
		t.Errorf("plan of a removed pair keeps %v, adds %v; want one deletion entry of %d bytes", keep, add, sz)
	}
}

// A head round-trips; any damaged byte is ErrCorrupt (the checksum), never
// a different head.
func TestHeadEncoding(t *testing.T) {
	id := testID(3)
	rec := &bolt.Record{ID: id, Key: "k", Method: "GET", URL: "https://example.com/", Status: 200, Created: 1, LastAccess: 2,
		ReqHeader: http.Header{}, RespHeader: http.Header{"Etag": {`"x"`}},
		Flags: bolt.FlagComplete | bolt.FlagRequestDone | bolt.FlagResponseDone | bolt.FlagHasResponse, RespSize: 5}
	h := &head{rec: rec, rev: 3, wid: 99, segs: [2]uint64{0, 1}, chunks: [2]uint64{0, 1}}
	_, h.ents = plan(nil, rec, h.wid, true)
	b := h.encode()
	got, err := decodeHead(b)
	if err != nil {
		t.Fatalf("decodeHead(encode()) error = %v", err)
	}
	if diff := cmp.Diff(h, got, cmp.AllowUnexported(head{}, entry{})); diff != "" {
		t.Errorf("decodeHead(encode()) (-want +got):\n%s", diff)
	}
	for i := range b {
		d := append([]byte(nil), b...)
		d[i] ^= 0x10
		if _, err := decodeHead(d); !errors.Is(err, model.ErrCorrupt) && !errors.Is(err, model.ErrFormatVersion) {
			t.Fatalf("decodeHead with byte %d damaged: error = %v; want ErrCorrupt", i, err)
		}
	}
}

// decodeHead never panics, and what it accepts encodes back to itself.
func FuzzDecodeHead(f *testing.F) {
	rec := &bolt.Record{ID: testID(4), Method: "GET", Created: 1, LastAccess: 1}
	h := &head{rec: rec, rev: 1, wid: 2}
	_, h.ents = plan(nil, rec, 2, true)
	f.Add(h.encode())
	f.Add([]byte{headVersion, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := decodeHead(b)
		if err != nil {
			if !errors.Is(err, model.ErrCorrupt) && !errors.Is(err, model.ErrFormatVersion) {
				t.Fatalf("decodeHead error = %v; want ErrCorrupt or ErrFormatVersion", err)
			}
			return
		}
		if _, err := decodeHead(h.encode()); err != nil {
			t.Fatalf("decodeHead(encode()) of an accepted head: %v", err)
		}
	})
}
