package template

import (
	"errors"
	"net/http"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/hishel-go/hishel/backend"
	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/model"
)

// Whatever a pair document holds (written by another version, damaged, or
// by someone else), decoding it gives a record that matches the document
// or an error wrapping ErrCorrupt or ErrFormatVersion: never a panic. The
// fuzzer varies the raw BSON document and, separately, the fields of one
// that decodes, with a good or a bad checksum.
func FuzzRecord(f *testing.F) {
	id := model.PairID{1, 2, 3}
	r := &bolt.Record{ID: id, Nonce: 42, Created: 1, TTL: 3, Key: "k", Method: "GET", URL: "u", Status: 200,
		ReqHeader: http.Header{"A": {"1", "2"}}, RespHeader: http.Header{"Vary": {"A"}}, RespSize: 5}
	rec := bolt.EncodeRecord(r)
	doc, err := bson.Marshal(pairDoc{ID: idString(id), Nonce: 42, State: stComplete, Rec: rec, RecCRC: int64(backend.Checksum(rec))})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(doc, rec, idString(id), int64(42), int32(stComplete), int32(layoutDocs), true)
	f.Add([]byte{5, 0, 0, 0, 0}, []byte{1}, "zz", int64(-1), int32(stDeleted), int32(7), false)
	f.Add(doc[:len(doc)/2], rec[:len(rec)/2], idString(id)[1:], int64(42), int32(99), int32(layoutGridFS), true)
	f.Fuzz(func(t *testing.T, raw, rec []byte, docID string, nonce int64, state, layout int32, goodCRC bool) {
		m := &Mongo{bad: make(map[model.PairID]struct{})}
		check := func(d *pairDoc) {
			got, err := m.record(d)
			if err != nil {
				if !errors.Is(err, model.ErrCorrupt) && !errors.Is(err, model.ErrFormatVersion) {
					t.Fatalf("record error = %v; want ErrCorrupt or ErrFormatVersion", err)
				}
				return
			}
			if idString(got.ID) != d.ID || got.Nonce != uint64(d.Nonce) {
				t.Fatalf("record = pair %s nonce %d; the document is %q nonce %d", got.ID, got.Nonce, d.ID, d.Nonce)
			}
		}
		var d pairDoc
		if bson.Unmarshal(raw, &d) == nil { // the driver fails a document that does not decode
			check(&d)
		}
		d = pairDoc{ID: docID, Nonce: nonce, State: state, Layout: layout, Rec: rec, RecCRC: int64(backend.Checksum(rec))}
		if !goodCRC {
			d.RecCRC++
		}
		check(&d)
	})
}
