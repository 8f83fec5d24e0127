package template

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/hishel-go/hishel/backend"
	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/model"
)

// Body layouts.
const (
	layoutDocs   = 0 // Collection_chunks: {_id, d, c}
	layoutGridFS = 1 // GridFS bucket Collection: files and chunks
)

// flushAt is how many bytes of a body a stream gathers before it writes
// them as chunks: one insert per MiB.
const flushAt = 1 << 20

// layout is where one body layout keeps chunks.
type layout struct {
	gridfs bool
	chunks *mongo.Collection
	files  *mongo.Collection // GridFS only
}

// fileID is the GridFS file ID of one body of a pair's incarnation, and
// the prefix of its chunks' IDs in the documents layout.
func fileID(id string, nonce int64, kind bolt.Kind) string {
	k := "q"
	if kind == bolt.KindResponse {
		k = "p"
	}
	return id + "." + strconv.FormatInt(nonce, 16) + "." + k
}

// chunkID is the _id of chunk seq of a body: exact IDs are what every
// chunk is read and deleted by (FerretDB looks up string _ids without a
// scan; MongoDB by its _id index).
func chunkID(file string, seq int64) string { return file + strconv.FormatInt(seq, 10) }

// chunkDoc is a stored chunk, in either layout.
func (l *layout) chunkDoc(file string, seq int64, data []byte) bson.D {
	crc := int64(backend.Checksum(data))
	if l.gridfs {
		return bson.D{{Key: "_id", Value: chunkID(file, seq)}, {Key: "files_id", Value: file}, {Key: "n", Value: int32(seq)},
			{Key: "data", Value: bson.Binary{Data: data}}, {Key: "crc", Value: crc}}
	}
	return bson.D{{Key: "_id", Value: chunkID(file, seq)}, {Key: "d", Value: bson.Binary{Data: data}}, {Key: "c", Value: crc}}
}

// storedChunk is a chunk document as read, in either layout.
type storedChunk struct {
	D    []byte `bson:"d"`
	C    int64  `bson:"c"`
	Data []byte `bson:"data"`
	CRC  int64  `bson:"crc"`
}

// newStream returns the stream that stores body src of pair r as it is
// read.
func (m *Mongo) newStream(ctx context.Context, r *bolt.Record, kind bolt.Kind, src *model.Body) *backend.Stream {
	k := &mongoSink{m: m, r: r, kind: kind, lay: &m.lay[m.layout()], file: fileID(idString(r.ID), int64(r.Nonce), kind)}
	return backend.NewStream(ctx, r.ID, src, k, m.pol.ChunkSize, flushAt)
}

// mongoSink writes a body's chunks and, at its end, marks the body done
// and completes the pair if its other body is done too.
type mongoSink struct {
	m    *Mongo
	r    *bolt.Record
	kind bolt.Kind
	lay  *layout
	file string
	seq  int64 // chunks written
}

func (k *mongoSink) Check() error {
	if k.m.closed.Load() {
		return model.ErrClosed
	}
	return nil
}

func (k *mongoSink) filter() bson.D {
	return bson.D{{Key: fID, Value: idString(k.r.ID)}, {Key: fNonce, Value: int64(k.r.Nonce)}, {Key: fState, Value: stIncomplete}}
}

func (k *mongoSink) fields() (done, n, size string) {
	if k.kind == bolt.KindRequest {
		return fReqDone, fReqN, fReqSize
	}
	return fRespDone, fRespN, fRespSize
}

// Store writes chunks. Before it does, it raises the pair's chunk count in
// an update that matches only the incomplete pair: a pair removed,
// abandoned or aborted meanwhile fails the stream instead.
func (k *mongoSink) Store(ctx context.Context, chunks [][]byte, size int64, final bool) error {
	m := k.m
	if err := m.check(ctx); err != nil {
		return err
	}
	fDoneName, fN, fSz := k.fields()
	gone := fmt.Errorf("hishel: pair %s was removed while its body was stored: %w", k.r.ID, model.ErrNotFound)
	if len(chunks) > 0 {
		res, err := m.pairs.UpdateOne(ctx, k.filter(), bson.D{{Key: "$max", Value: bson.D{{Key: fN, Value: k.seq + int64(len(chunks))}}}})
		if err != nil {
			return m.wrap(ctx, "store body", err)
		}
		if res.MatchedCount == 0 {
			return gone
		}
		docs := make([]any, len(chunks))
		for i, c := range chunks {
			docs[i] = k.lay.chunkDoc(k.file, k.seq+int64(i), c)
		}
		if _, err := k.lay.chunks.InsertMany(ctx, docs); err != nil {
			return m.wrap(ctx, "store body", err)
		}
		k.seq += int64(len(chunks))
	}
	if !final {
		return nil
	}
	if k.lay.gridfs {
		// The GridFS file document, written last, as GridFS has it.
		_, err := k.lay.files.InsertOne(ctx, bson.D{{Key: "_id", Value: k.file}, {Key: "length", Value: size},
			{Key: "chunkSize", Value: int32(m.pol.ChunkSize)}, {Key: "uploadDate", Value: time.Now()},
			{Key: "filename", Value: k.file}, {Key: "metadata", Value: bson.D{{Key: "pair", Value: k.r.ID.String()}}}})
		if err != nil {
			return m.wrap(ctx, "store body", err)
		}
	}
	res, err := m.pairs.UpdateOne(ctx, k.filter(), bson.D{
		{Key: "$set", Value: bson.D{{Key: fDoneName, Value: true}, {Key: fN, Value: k.seq}, {Key: fSz, Value: size}}},
		{Key: "$inc", Value: bson.D{{Key: fSize, Value: size}}}})
	if err != nil {
		return m.wrap(ctx, "store body", err)
	}
	if res.MatchedCount == 0 {
		return gone
	}
	if k.kind == bolt.KindRequest {
		k.r.Flags |= bolt.FlagRequestDone
		k.r.ReqSize = size
	} else {
		k.r.Flags |= bolt.FlagResponseDone
		k.r.RespSize = size
	}
	// The last body to end completes the pair. A server that applies an
	// update by rewriting the whole document it read (FerretDB v1) can
	// lose this body's flag to the other body's update made at the same
	// moment: then set it again, until the pair is complete or the other
	// body is not done yet.
	for range 8 {
		done, err := m.complete(ctx, k.r)
		if err != nil || done {
			return err
		}
		d, err := m.load(ctx, k.r.ID)
		if err != nil {
			return err
		}
		if d == nil || d.Nonce != int64(k.r.Nonce) || d.State != stIncomplete {
			if d != nil && d.Nonce == int64(k.r.Nonce) && d.State == stComplete {
				return nil
			}
			return gone
		}
		mine := d.ReqDone
		if k.kind == bolt.KindResponse {
			mine = d.RespDone
		}
		if mine {
			return nil // the other body completes the pair when it ends
		}
		if _, err := m.pairs.UpdateOne(ctx, k.filter(), bson.D{{Key: "$set", Value: bson.D{{Key: fDoneName, Value: true}, {Key: fN, Value: k.seq}, {Key: fSz, Value: size}}}}); err != nil {
			return m.wrap(ctx, "store body", err)
		}
	}
	return nil
}

// Abort makes the pair a tombstone and deletes its chunks at once.
func (k *mongoSink) Abort() {
	m := k.m
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, _ = m.pairs.UpdateOne(ctx, bson.D{{Key: fID, Value: idString(k.r.ID)}, {Key: fNonce, Value: int64(k.r.Nonce)},
		{Key: fDone, Value: int64(0)}}, bson.D{{Key: "$set", Value: bson.D{{Key: fState, Value: stGone}, {Key: fDeleted, Value: m.now()}}}})
	d := &pairDoc{ID: idString(k.r.ID), Nonce: int64(k.r.Nonce), Layout: int32(m.layout())}
	if cur, err := m.load(ctx, k.r.ID); err == nil && cur != nil && cur.Nonce == d.Nonce {
		d = cur
	}
	if k.kind == bolt.KindRequest {
		d.ReqN = max(d.ReqN, k.seq)
	} else {
		d.RespN = max(d.RespN, k.seq)
	}
	_ = m.deleteChunks(ctx, d)
}

// bury turns pair d, if it is still in state from (and the same
// incarnation), into a tombstone and deletes its chunks. It reports
// whether it did.
func (m *Mongo) bury(ctx context.Context, d *pairDoc, from int32) (bool, error) {
	res, err := m.pairs.UpdateOne(ctx, bson.D{{Key: fID, Value: d.ID}, {Key: fNonce, Value: d.Nonce}, {Key: fState, Value: from}},
		bson.D{{Key: "$set", Value: bson.D{{Key: fState, Value: stGone}, {Key: fDeleted, Value: m.now()}}}})
	if err != nil {
		return false, m.wrap(ctx, "remove pair", err)
	}
	if res.ModifiedCount == 0 {
		return false, nil
	}
	return true, m.deleteChunks(ctx, d)
}

// deleteChunks deletes every chunk that pair d may have: the counts in its
// document bound them.
func (m *Mongo) deleteChunks(ctx context.Context, d *pairDoc) error {
	l := &m.lay[d.Layout]
	for _, b := range []struct {
		kind bolt.Kind
		n    int64
	}{{bolt.KindRequest, d.ReqN}, {bolt.KindResponse, d.RespN}} {
		file := fileID(d.ID, d.Nonce, b.kind)
		for from := int64(0); from < b.n; from += 1000 {
			var dels []mongo.WriteModel
			for seq := from; seq < min(b.n, from+1000); seq++ {
				dels = append(dels, mongo.NewDeleteOneModel().SetFilter(bson.D{{Key: "_id", Value: chunkID(file, seq)}}))
			}
			if _, err := l.chunks.BulkWrite(ctx, dels, options.BulkWrite().SetOrdered(false)); err != nil {
				return m.wrap(ctx, "delete chunks", err)
			}
		}
		if l.files != nil {
			if _, err := l.files.DeleteOne(ctx, bson.D{{Key: "_id", Value: file}}); err != nil {
				return m.wrap(ctx, "delete chunks", err)
			}
		}
	}
	return nil
}

// body returns a reader of one of pair r's bodies, stored per d.
func (m *Mongo) body(d *pairDoc, r *bolt.Record, kind bolt.Kind) *model.Body {
	n, size := d.ReqN, d.ReqSize
	if kind == bolt.KindResponse {
		n, size = d.RespN, d.RespSize
	}
	if size == 0 {
		return model.NewBody(nil)
	}
	return model.NewChunkBody(&mongoReader{m: m, id: r.ID, doc: d.ID, nonce: d.Nonce, lay: &m.lay[d.Layout],
		file: fileID(d.ID, d.Nonce, kind), n: n, left: size}, nil)
}

// mongoReader streams a stored body back, one chunk per read by its _id.
// A chunk that is missing ends the body with model.ErrRemoved if the pair
// is gone, with model.ErrCorrupt if it is not: never early.
type mongoReader struct {
	m     *Mongo
	id    model.PairID
	doc   string
	nonce int64
	lay   *layout
	file  string
	n     int64 // chunks
	next  int64
	left  int64 // bytes
}

// NextChunk implements model.ChunkSource; the caller owns the chunk.
func (r *mongoReader) NextChunk() ([]byte, error) {
	if r.next >= r.n && r.left == 0 {
		return nil, io.EOF
	}
	m := r.m
	if m.closed.Load() {
		return nil, model.ErrClosed
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var c storedChunk
	err := r.lay.chunks.FindOne(ctx, bson.D{{Key: "_id", Value: chunkID(r.file, r.next)}}).Decode(&c)
	if errors.Is(err, mongo.ErrNoDocuments) || err == nil && r.next >= r.n {
		return nil, r.missing(ctx)
	}
	if err != nil {
		return nil, m.wrap(ctx, "read body", err)
	}
	data, crc := c.D, c.C
	if r.lay.gridfs {
		data, crc = c.Data, c.CRC
	}
	if crc != int64(backend.Checksum(data)) || int64(len(data)) > r.left || len(data) == 0 {
		m.noteBad(r.id)
		return nil, fmt.Errorf("hishel: body of pair %s, chunk %d: checksum or size mismatch: %w", r.id, r.next, model.ErrCorrupt)
	}
	r.next++
	r.left -= int64(len(data))
	if r.next == r.n && r.left != 0 {
		m.noteBad(r.id)
		return nil, fmt.Errorf("hishel: body of pair %s: shorter than stored: %w", r.id, model.ErrCorrupt)
	}
	return data, nil
}

// missing says why a chunk is not there.
func (r *mongoReader) missing(ctx context.Context) error {
	var d pairDoc
	err := r.m.pairs.FindOne(ctx, bson.D{{Key: fID, Value: r.doc}}).Decode(&d)
	switch {
	case r.m.closed.Load():
		return model.ErrClosed
	case errors.Is(err, mongo.ErrNoDocuments) || err == nil && (d.Nonce != r.nonce || d.State == stGone):
		return fmt.Errorf("hishel: body of pair %s: %w", r.id, model.ErrRemoved)
	case err != nil:
		return r.m.wrap(ctx, "read body", err)
	}
	r.m.noteBad(r.id)
	return fmt.Errorf("hishel: body of pair %s: chunk %d missing: %w", r.id, r.next, model.ErrCorrupt)
}
