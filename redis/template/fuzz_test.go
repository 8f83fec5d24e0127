package template

import (
	"errors"
	"net/http"
	"testing"

	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/model"
)

// Whatever a Redis value holds (written by another version, damaged, or
// by someone else), decoding it gives the value written or an error
// wrapping ErrCorrupt or ErrFormatVersion: never a panic, never other
// bytes.
func FuzzDecode(f *testing.F) {
	id := model.PairID{1, 2, 3}
	r := &bolt.Record{ID: id, Nonce: 42, Flags: bolt.FlagComplete | bolt.FlagHasResponse | bolt.FlagRequestDone | bolt.FlagResponseDone,
		Created: 1, Completed: 2, TTL: 3, Key: "k", Method: "GET", URL: "u", Status: 200,
		ReqHeader: http.Header{"A": {"1", "2"}}, RespHeader: http.Header{"Vary": {"A"}}, RespSize: 5}
	f.Add([]byte(encodeRecord(r)), []byte(encodeAccess(id, 7, 8)), []byte(encodeChunk(id, 42, bolt.KindResponse, 3, []byte("data"))))
	f.Add([]byte{recordVersion}, []byte{}, []byte{1, 2, 3})
	f.Add([]byte{2, 0, 0, 0, 0}, make([]byte, 20), make([]byte, 4))
	f.Fuzz(func(t *testing.T, rec, access, chunk []byte) {
		ok := func(err error) bool {
			return err == nil || errors.Is(err, model.ErrCorrupt) || errors.Is(err, model.ErrFormatVersion)
		}
		got, err := decodeRecord(id, string(rec))
		if !ok(err) {
			t.Fatalf("decodeRecord error = %v; want ErrCorrupt or ErrFormatVersion", err)
		}
		if err == nil && encodeRecord(got) != string(rec) {
			t.Fatalf("decodeRecord accepted a value it does not write back the same")
		}
		last, exp, err := decodeAccess(id, string(access))
		if !ok(err) {
			t.Fatalf("decodeAccess error = %v", err)
		}
		if err == nil && encodeAccess(id, last, exp) != string(access) {
			t.Fatalf("decodeAccess accepted a value it does not write back the same")
		}
		data, err := decodeChunk(id, 42, bolt.KindResponse, 3, chunk)
		if !ok(err) {
			t.Fatalf("decodeChunk error = %v", err)
		}
		if err == nil && encodeChunk(id, 42, bolt.KindResponse, 3, data) != string(chunk) {
			t.Fatalf("decodeChunk accepted a value it does not write back the same")
		}
		vals := []any{string(rec), string(access), "1", nonceHex(42), stateComplete, "0", "1", string(chunk)}
		if _, _, err := parseStored(id, vals); !ok(err) {
			t.Fatalf("parseStored error = %v", err)
		}
	})
}
