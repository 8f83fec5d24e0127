package template

import (
	"errors"
	"net/http"
	"strconv"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/hishel-go/hishel/backend"
	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/model"
)

// Whatever a head item holds (written by another version, damaged, or by
// someone else), decoding it gives a record that matches the item or an
// error wrapping ErrCorrupt or ErrFormatVersion: never a panic. The fuzzer
// varies the item's key, numbers (as DynamoDB sends them, strings),
// record bytes and checksum, and the record attribute's type.
func FuzzRecord(f *testing.F) {
	id := model.PairID{1, 2, 3}
	r := &bolt.Record{ID: id, Nonce: 42, Created: 1, TTL: 3, Key: "k", Method: "GET", URL: "u", Status: 200,
		ReqHeader: http.Header{"A": {"1", "2"}}, RespHeader: http.Header{"Vary": {"A"}}, RespSize: 5}
	rec := bolt.EncodeRecord(r)
	f.Add(pairPK(id), "42", "1", "2", rec, true, false)
	f.Add("p#zz", "-1", "x", "", []byte{1}, false, false)
	f.Add(pairPK(id)[:10], "99999999999999999999", "3", "1", rec[:len(rec)/2], true, true)
	f.Fuzz(func(t *testing.T, pk, nonce, state, done string, rec []byte, goodCRC, recAsString bool) {
		d := &DynamoDB{bad: make(map[model.PairID]struct{})}
		crc := int64(backend.Checksum(rec))
		if !goodCRC {
			crc++
		}
		item := map[string]types.AttributeValue{aPK: str(pk), aSK: str(headSK),
			aNonce: &types.AttributeValueMemberN{Value: nonce}, aState: &types.AttributeValueMemberN{Value: state},
			aDone: &types.AttributeValueMemberN{Value: done}, aRecCRC: num(crc), aRec: &types.AttributeValueMemberB{Value: rec}}
		if recAsString {
			item[aRec] = str(string(rec))
		}
		h, ok := decodeHead(item)
		if !ok {
			return // not a head item: listings skip it
		}
		got, err := d.record(h)
		if err != nil {
			if !errors.Is(err, model.ErrCorrupt) && !errors.Is(err, model.ErrFormatVersion) {
				t.Fatalf("record error = %v; want ErrCorrupt or ErrFormatVersion", err)
			}
			return
		}
		wantID, _ := parsePairPK(pk)
		wantNonce, _ := strconv.ParseInt(nonce, 10, 64)
		if got.ID != wantID || got.Nonce != uint64(wantNonce) {
			t.Fatalf("record = pair %s nonce %d; the item is %q nonce %q", got.ID, got.Nonce, pk, nonce)
		}
	})
}
