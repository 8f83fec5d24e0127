package template

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/hishel-go/hishel/backend"
	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/model"
)

// readAhead is how many chunks a body reader asks for at once (256 KiB
// of 64 KiB chunks).
const readAhead = 4

// flushAt is how many bytes of a body a stream gathers before it writes
// them (BatchWriteItem, 25 items a call).
const flushAt = 1 << 20

// chunkPrefix is the sort key prefix of one body's chunks.
func chunkPrefix(nonce int64, kind bolt.Kind) string {
	k := "q"
	if kind == bolt.KindResponse {
		k = "p"
	}
	return "c#" + strconv.FormatInt(nonce, 16) + "#" + k + "#"
}

// chunkSK is a chunk's sort key: the sequence number in 16 hex digits, so
// that sort keys order chunks.
func chunkSK(prefix string, seq int64) string { return fmt.Sprintf("%s%016x", prefix, seq) }

func (d *DynamoDB) newStream(ctx context.Context, r *bolt.Record, kind bolt.Kind, src *model.Body) *backend.Stream {
	k := &dynSink{d: d, r: r, kind: kind, prefix: chunkPrefix(int64(r.Nonce), kind)}
	return backend.NewStream(ctx, r.ID, src, k, d.pol.ChunkSize, flushAt)
}

// dynSink writes a body's chunks and, at its end, marks the body done and
// completes the pair if its other body is done too.
type dynSink struct {
	d      *DynamoDB
	r      *bolt.Record
	kind   bolt.Kind
	prefix string
	seq    int64
}

func (k *dynSink) Check() error {
	if k.d.closed.Load() {
		return model.ErrClosed
	}
	return nil
}

// Store writes chunks after an update that raises the pair's chunk count,
// which matches only the incomplete pair: a pair removed, abandoned or
// aborted meanwhile fails the stream instead.
func (k *dynSink) Store(ctx context.Context, chunks [][]byte, size int64, final bool) error {
	d := k.d
	if err := d.check(ctx); err != nil {
		return err
	}
	done, n, sz := "qd", "qn", "qz"
	if k.kind == bolt.KindResponse {
		done, n, sz = "pd", "pn", "pz"
	}
	gone := fmt.Errorf("hishel: pair %s was removed while its body was stored: %w", k.r.ID, model.ErrNotFound)
	cond := "s = :inc AND n = :n"
	vals := func() map[string]types.AttributeValue {
		return map[string]types.AttributeValue{":inc": num(stIncomplete), ":n": num(int64(k.r.Nonce))}
	}
	if len(chunks) > 0 {
		v := vals()
		v[":cnt"] = num(k.seq + int64(len(chunks)))
		ok, err := d.update(ctx, k.r.ID, "SET "+n+" = :cnt", cond, v)
		if err != nil {
			return err
		}
		if !ok {
			return gone
		}
		pk := str(pairPK(k.r.ID))
		var puts []types.WriteRequest
		for i, c := range chunks {
			puts = append(puts, types.WriteRequest{PutRequest: &types.PutRequest{Item: map[string]types.AttributeValue{
				aPK: pk, aSK: str(chunkSK(k.prefix, k.seq+int64(i))), aData: &types.AttributeValueMemberB{Value: c},
				aCRC: num(int64(backend.Checksum(c)))}}})
		}
		if err := d.batchWrite(ctx, puts); err != nil {
			return err
		}
		k.seq += int64(len(chunks))
	}
	if !final {
		return nil
	}
	v := vals()
	v[":one"], v[":cnt"], v[":size"] = num(1), num(k.seq), num(size)
	ok, err := d.update(ctx, k.r.ID, "SET "+done+" = :one, "+n+" = :cnt, "+sz+" = :size ADD sz :size", cond, v)
	if err != nil {
		return err
	}
	if !ok {
		return gone
	}
	if k.kind == bolt.KindRequest {
		k.r.Flags |= bolt.FlagRequestDone
		k.r.ReqSize = size
	} else {
		k.r.Flags |= bolt.FlagResponseDone
		k.r.RespSize = size
	}
	_, err = d.complete(ctx, k.r)
	return err
}

// Abort makes the pair a tombstone and deletes its chunks at once.
func (k *dynSink) Abort() {
	d := k.d
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	now := d.now()
	_, _ = d.update(ctx, k.r.ID, "SET s = :gone, #del = :now, t = :now", "n = :n AND d = :zero",
		map[string]types.AttributeValue{":gone": num(stGone), ":now": num(now), ":n": num(int64(k.r.Nonce)), ":zero": num(0)})
	_ = d.deleteChunks(ctx, k.r.ID)
}

// batchWrite writes reqs, 25 at a time, until none is left unprocessed.
func (d *DynamoDB) batchWrite(ctx context.Context, reqs []types.WriteRequest) error {
	for len(reqs) > 0 {
		n := min(len(reqs), 25)
		batch := map[string][]types.WriteRequest{*d.table: reqs[:n]}
		reqs = reqs[n:]
		for wait := 10 * time.Millisecond; len(batch) > 0; wait = min(2*wait, time.Second) {
			out, err := d.db.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: batch})
			if err != nil {
				return d.wrap(ctx, "write", err)
			}
			batch = out.UnprocessedItems
			if len(batch) > 0 {
				select {
				case <-time.After(wait):
				case <-ctx.Done():
					return ctx.Err()
				}
			}
		}
	}
	return nil
}

func (d *DynamoDB) deleteItems(ctx context.Context, keys []map[string]types.AttributeValue) error {
	reqs := make([]types.WriteRequest, len(keys))
	for i, k := range keys {
		reqs[i] = types.WriteRequest{DeleteRequest: &types.DeleteRequest{Key: map[string]types.AttributeValue{aPK: k[aPK], aSK: k[aSK]}}}
	}
	return d.batchWrite(ctx, reqs)
}

// deleteChunks deletes every chunk under pair id's partition.
func (d *DynamoDB) deleteChunks(ctx context.Context, id model.PairID) error {
	p := dynamodb.NewQueryPaginator(d.db, &dynamodb.QueryInput{TableName: d.table, ConsistentRead: aws.Bool(true),
		KeyConditionExpression: aws.String("pk = :p AND begins_with(sk, :c)"), ProjectionExpression: aws.String("pk, sk"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":p": str(pairPK(id)), ":c": str("c#")}})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return d.wrap(ctx, "delete chunks", err)
		}
		if err := d.deleteItems(ctx, out.Items); err != nil {
			return err
		}
	}
	return nil
}

// bury turns pair h, if it is still in state from (and the same
// incarnation), into a tombstone, deletes its chunks and its key entry, and
// reports whether it did.
func (d *DynamoDB) bury(ctx context.Context, h *head, from int64) (bool, error) {
	now := d.now()
	ok, err := d.update(ctx, h.id, "SET s = :gone, #del = :now, t = :now", "s = :from AND n = :n",
		map[string]types.AttributeValue{":gone": num(stGone), ":now": num(now), ":from": num(from), ":n": num(h.nonce)})
	if err != nil || !ok {
		return false, err
	}
	if err := d.deleteChunks(ctx, h.id); err != nil {
		return true, err
	}
	if full, err := d.load(ctx, h.id); err == nil && full != nil && full.nonce == h.nonce {
		return true, d.deleteKeyEntry(ctx, full.key, h.id)
	}
	return true, nil
}

// body returns a reader of one of pair h's bodies.
func (d *DynamoDB) body(h *head, kind bolt.Kind) *model.Body {
	n, size := h.reqN, h.reqSize
	if kind == bolt.KindResponse {
		n, size = h.respN, h.respSize
	}
	if size == 0 {
		return model.NewBody(nil)
	}
	return model.NewChunkBody(&dynReader{d: d, id: h.id, nonce: h.nonce, prefix: chunkPrefix(h.nonce, kind), n: n, left: size}, nil)
}

// dynReader streams a stored body back, up to readAhead chunks per Query. A
// chunk that is missing ends the body with model.ErrRemoved if the pair is
// gone, with model.ErrCorrupt if not: never early.
type dynReader struct {
	d      *DynamoDB
	id     model.PairID
	nonce  int64
	prefix string
	n      int64
	next   int64
	left   int64
	buf    [][]byte
}

// NextChunk implements model.ChunkSource; the caller owns the chunk.
func (r *dynReader) NextChunk() ([]byte, error) {
	if r.next >= r.n && r.left == 0 && len(r.buf) == 0 {
		return nil, io.EOF
	}
	d := r.d
	if d.closed.Load() {
		return nil, model.ErrClosed
	}
	if len(r.buf) == 0 {
		if err := r.fill(); err != nil {
			return nil, err
		}
	}
	c := r.buf[0]
	r.buf = r.buf[1:]
	return c, nil
}

// fill reads the next chunks, checked, into r.buf.
func (r *dynReader) fill() error {
	d := r.d
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	last := min(r.n-1, r.next+readAhead-1)
	out, err := d.db.Query(ctx, &dynamodb.QueryInput{TableName: d.table, ConsistentRead: aws.Bool(true),
		KeyConditionExpression: aws.String("pk = :p AND sk BETWEEN :a AND :b"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":p": str(pairPK(r.id)),
			":a": str(chunkSK(r.prefix, r.next)), ":b": str(chunkSK(r.prefix, last))}})
	if err != nil {
		return d.wrap(ctx, "read body", err)
	}
	for _, it := range out.Items {
		if getStr(it, aSK) != chunkSK(r.prefix, r.next) {
			break
		}
		b, _ := it[aData].(*types.AttributeValueMemberB)
		if b == nil || getNum(it, aCRC) != int64(backend.Checksum(b.Value)) || int64(len(b.Value)) > r.left || len(b.Value) == 0 {
			d.noteBad(r.id)
			return fmt.Errorf("hishel: body of pair %s, chunk %d: checksum or size mismatch: %w", r.id, r.next, model.ErrCorrupt)
		}
		r.buf = append(r.buf, b.Value)
		r.next++
		r.left -= int64(len(b.Value))
	}
	if r.next == r.n && r.left != 0 {
		d.noteBad(r.id)
		return fmt.Errorf("hishel: body of pair %s: shorter than stored: %w", r.id, model.ErrCorrupt)
	}
	if len(r.buf) > 0 {
		return nil
	}
	// The next chunk is missing: say why.
	h, err := d.load(ctx, r.id)
	switch {
	case d.closed.Load():
		return model.ErrClosed
	case err != nil:
		return err
	case h == nil || h.nonce != r.nonce || h.state == stGone:
		return fmt.Errorf("hishel: body of pair %s: %w", r.id, model.ErrRemoved)
	}
	d.noteBad(r.id)
	return fmt.Errorf("hishel: body of pair %s: chunk %d missing: %w", r.id, r.next, model.ErrCorrupt)
}
