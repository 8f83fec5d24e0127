package template

import (
	"context"
	"fmt"
	"iter"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/hishel-go/hishel/backend"
	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/model"
)

// Attribute names.
const (
	aPK       = "pk"
	aSK       = "sk"
	aNonce    = "n"
	aState    = "s"  // 0 incomplete, 1 complete, 2 deleted, 3 tombstone
	aTime     = "t"  // what the state's sweep looks at: created, expiry (or never), deleted
	aHasResp  = "h"  // 0/1
	aReqDone  = "qd" // 0/1
	aRespDone = "pd" // 0/1
	aReqSize  = "qz"
	aRespSize = "pz"
	aReqN     = "qn"
	aRespN    = "pn"
	aCreated  = "c"
	aDone     = "d"
	aExpires  = "x"
	aDeleted  = "del"
	aAccess   = "a"
	aKey      = "k" // the key entry's pk
	aSize     = "sz"
	aVersion  = "v"
	aRec      = "r"
	aRecCRC   = "rc"
	aData     = "b"
	aCRC      = "cc"
)

const (
	stIncomplete = 0
	stComplete   = 1
	stDeleted    = 2
	stGone       = 3
	never        = int64(1) << 62 // aTime of a complete pair without expiry
)

const headSK = "h"

func num(n int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
}
func str(s string) types.AttributeValue { return &types.AttributeValueMemberS{Value: s} }

func headKey(id model.PairID) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{aPK: str(pairPK(id)), aSK: str(headSK)}
}

// head is a pair's head item, decoded.
type head struct {
	id                                            model.PairID
	nonce, state                                  int64
	hasResp, reqDone, respDone                    bool
	reqSize, respSize, reqN, respN                int64
	created, done, expires, deleted, access, size int64
	version                                       int64
	key                                           string
	rec                                           []byte
	recCRC                                        int64
}

func getNum(item map[string]types.AttributeValue, name string) int64 {
	if v, ok := item[name].(*types.AttributeValueMemberN); ok {
		n, _ := strconv.ParseInt(v.Value, 10, 64)
		return n
	}
	return 0
}

func getStr(item map[string]types.AttributeValue, name string) string {
	if v, ok := item[name].(*types.AttributeValueMemberS); ok {
		return v.Value
	}
	return ""
}

func decodeHead(item map[string]types.AttributeValue) (*head, bool) {
	id, ok := parsePairPK(getStr(item, aPK))
	if !ok {
		return nil, false
	}
	h := &head{id: id, nonce: getNum(item, aNonce), state: getNum(item, aState),
		hasResp: getNum(item, aHasResp) == 1, reqDone: getNum(item, aReqDone) == 1, respDone: getNum(item, aRespDone) == 1,
		reqSize: getNum(item, aReqSize), respSize: getNum(item, aRespSize), reqN: getNum(item, aReqN), respN: getNum(item, aRespN),
		created: getNum(item, aCreated), done: getNum(item, aDone), expires: getNum(item, aExpires), deleted: getNum(item, aDeleted),
		access: getNum(item, aAccess), size: getNum(item, aSize), version: getNum(item, aVersion), key: getStr(item, aKey),
		recCRC: getNum(item, aRecCRC)}
	if b, ok := item[aRec].(*types.AttributeValueMemberB); ok {
		h.rec = b.Value
	}
	return h, true
}

// record decodes h's heads and completes them with its attributes.
func (d *DynamoDB) record(h *head) (*bolt.Record, error) {
	if h.recCRC != int64(backend.Checksum(h.rec)) {
		d.noteBad(h.id)
		return nil, fmt.Errorf("hishel: record of pair %s: checksum mismatch: %w", h.id, model.ErrCorrupt)
	}
	r, err := bolt.DecodeRecord(h.rec)
	if err != nil {
		d.noteBad(h.id)
		return nil, fmt.Errorf("hishel: record of pair %s: %w", h.id, err)
	}
	if r.ID != h.id || r.Nonce != uint64(h.nonce) {
		d.noteBad(h.id)
		return nil, fmt.Errorf("hishel: record of pair %s does not match its item: %w", h.id, model.ErrCorrupt)
	}
	r.Flags = 0
	for _, f := range []struct {
		on   bool
		flag uint8
	}{{h.reqDone, bolt.FlagRequestDone}, {h.respDone, bolt.FlagResponseDone}, {h.hasResp, bolt.FlagHasResponse},
		{h.done != 0, bolt.FlagComplete}, {h.state >= stDeleted, bolt.FlagDeleted}} {
		if f.on {
			r.Flags |= f.flag
		}
	}
	r.Created, r.Completed, r.Expires, r.LastAccess = h.created, h.done, h.expires, h.access
	if h.state >= stDeleted {
		r.Deleted = h.deleted
	}
	r.ReqSize, r.RespSize = h.reqSize, h.respSize
	return r, nil
}

// encode returns r's record attribute and its CRC; a record over an
// item's room is model.ErrInvalid.
func encode(r *bolt.Record) (types.AttributeValue, types.AttributeValue, error) {
	b := bolt.EncodeRecord(r)
	if len(b) > maxHead {
		return nil, nil, fmt.Errorf("hishel: pair %s: heads of %d bytes do not fit a DynamoDB item: %w", r.ID, len(b), model.ErrInvalid)
	}
	return &types.AttributeValueMemberB{Value: b}, num(int64(backend.Checksum(b))), nil
}

// load reads pair id's head, strongly consistent; nil if there is none.
func (d *DynamoDB) load(ctx context.Context, id model.PairID) (*head, error) {
	out, err := d.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: d.table, Key: headKey(id), ConsistentRead: aws.Bool(true)})
	if err != nil {
		return nil, d.wrap(ctx, "read pair", err)
	}
	if out.Item == nil {
		return nil, nil
	}
	h, ok := decodeHead(out.Item)
	if !ok {
		return nil, fmt.Errorf("hishel: dynamodb item of pair %s: %w", id, model.ErrCorrupt)
	}
	return h, nil
}

// update applies expr to pair id's head if cond holds; it reports whether
// it did.
func (d *DynamoDB) update(ctx context.Context, id model.PairID, expr, cond string, vals map[string]types.AttributeValue) (bool, error) {
	in := &dynamodb.UpdateItemInput{TableName: d.table, Key: headKey(id), UpdateExpression: aws.String(expr),
		ExpressionAttributeValues: vals, ExpressionAttributeNames: map[string]string{"#del": aDeleted}}
	if cond != "" {
		in.ConditionExpression = aws.String(cond)
	}
	if !usesDel(expr, cond) {
		in.ExpressionAttributeNames = nil
	}
	_, err := d.db.UpdateItem(ctx, in)
	if failedCondition(err) {
		return false, nil
	}
	if err != nil {
		return false, d.wrap(ctx, "update pair", err)
	}
	return true, nil
}

func usesDel(exprs ...string) bool {
	for _, e := range exprs {
		for i := 0; i+4 <= len(e); i++ {
			if e[i:i+4] == "#del" {
				return true
			}
		}
	}
	return false
}

// CreatePair stores a new incomplete pair for req and returns it. Its
// request body is stored as the caller reads the returned pair's
// Request.Body to the end (a nil body is stored at once as empty). ctx
// governs that body stream too: cancelling it aborts the pair.
//
// With model.WithID the pair gets the caller's ID; an ID already in use
// fails with model.ErrDuplicateID. A body that has already been read from
// fails with model.ErrBodyConsumed.
func (d *DynamoDB) CreatePair(ctx context.Context, req model.Request, opts ...model.CreateOption) (model.IncompletePair, error) {
	if err := d.check(ctx); err != nil {
		return model.IncompletePair{}, err
	}
	if err := backend.CheckRequest(req); err != nil {
		return model.IncompletePair{}, err
	}
	ttl, refresh, err := d.pol.TTLFor(req.Options)
	if err != nil {
		return model.IncompletePair{}, fmt.Errorf("hishel: create pair: %w", err)
	}
	id := model.ApplyCreateOptions(opts).ID
	if id.IsZero() {
		id = model.NewPairID()
	}
	now := d.now()
	r := &bolt.Record{ID: id, Nonce: rand.Uint64() >> 1, Created: now, LastAccess: now, TTL: int64(ttl), Refresh: refresh,
		Method: req.Method, URL: req.URL, ReqHeader: req.Header.Clone(), ReqOptions: req.Options}
	rec, crc, err := encode(r)
	if err != nil {
		return model.IncompletePair{}, err
	}
	reqDone := int64(0)
	if req.Body == nil {
		reqDone = 1
	}
	item := map[string]types.AttributeValue{aPK: str(pairPK(id)), aSK: str(headSK), aNonce: num(int64(r.Nonce)),
		aState: num(stIncomplete), aTime: num(now), aHasResp: num(0), aReqDone: num(reqDone), aRespDone: num(0),
		aReqSize: num(0), aRespSize: num(0), aReqN: num(0), aRespN: num(0), aCreated: num(now), aDone: num(0),
		aExpires: num(0), aDeleted: num(0), aAccess: num(now), aSize: num(backend.Size(r)), aVersion: num(0), aRec: rec, aRecCRC: crc}
	for try := 0; ; try++ {
		_, err = d.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: d.table, Item: item, ConditionExpression: aws.String("attribute_not_exists(pk)")})
		if err == nil {
			break
		}
		if !failedCondition(err) {
			return model.IncompletePair{}, d.wrap(ctx, "create pair", err)
		}
		if try > 0 || !d.replaceTombstone(ctx, id) {
			return model.IncompletePair{}, fmt.Errorf("hishel: create pair %s: %w", id, model.ErrDuplicateID)
		}
	}
	out := model.IncompletePair{ID: id, Request: req, Meta: r.Meta()}
	if req.Body != nil {
		out.Request.Body = model.NewBody(d.newStream(ctx, r, bolt.KindRequest, req.Body))
	}
	return out, nil
}

// replaceTombstone deletes the tombstone of pair id, with its chunks.
func (d *DynamoDB) replaceTombstone(ctx context.Context, id model.PairID) bool {
	h, err := d.load(ctx, id)
	if err != nil || h == nil || h.state != stGone {
		return false
	}
	if d.deleteChunks(ctx, h.id) != nil {
		return false
	}
	_, err = d.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: d.table, Key: headKey(id),
		ConditionExpression: aws.String("s = :gone AND n = :n"), ExpressionAttributeValues: map[string]types.AttributeValue{":gone": num(stGone), ":n": num(h.nonce)}})
	return err == nil
}

// AddResponse attaches resp to the incomplete pair id under the cache key
// key, and returns the pair. The response body is stored as the caller reads
// the returned pair's Response.Body to the end (a nil body is stored at once
// as empty); once both bodies are stored the pair is served by GetPairs.
// ctx governs that body stream: cancelling it aborts the pair.
//
// The returned pair's Response.Header is resp.Header itself; storage keeps
// a copy, so the caller may change either afterwards.
//
// An unknown or removed id fails with model.ErrNotFound; a pair that already
// has a response, or a status outside 100-999, with model.ErrInvalid.
func (d *DynamoDB) AddResponse(ctx context.Context, id model.PairID, resp model.Response, key string) (model.CompletePair, error) {
	if err := d.check(ctx); err != nil {
		return model.CompletePair{}, err
	}
	if err := backend.CheckResponse(resp); err != nil {
		return model.CompletePair{}, err
	}
	h, err := d.load(ctx, id)
	if err != nil {
		return model.CompletePair{}, err
	}
	if h == nil || h.state != stIncomplete {
		if h != nil && h.state == stComplete {
			return model.CompletePair{}, fmt.Errorf("hishel: add response to pair %s: pair already has a response: %w", id, model.ErrInvalid)
		}
		return model.CompletePair{}, fmt.Errorf("hishel: add response to pair %s: %w", id, model.ErrNotFound)
	}
	if h.hasResp {
		return model.CompletePair{}, fmt.Errorf("hishel: add response to pair %s: pair already has a response: %w", id, model.ErrInvalid)
	}
	r, err := d.record(h)
	if err != nil {
		return model.CompletePair{}, err
	}
	before := backend.Size(r)
	r.Key, r.Status, r.RespHeader = key, resp.Status, resp.Header.Clone()
	rec, crc, err := encode(r)
	if err != nil {
		return model.CompletePair{}, err
	}
	// The key's entry first: it must exist before the pair completes.
	if err := d.putKeyEntry(ctx, keyPK(key), id); err != nil {
		return model.CompletePair{}, err
	}
	respDone := int64(0)
	if resp.Body == nil {
		respDone = 1
	}
	ok, err := d.update(ctx, id, "SET h = :one, k = :k, pd = :pd, r = :r, rc = :rc ADD sz :heads", "s = :inc AND n = :n AND h = :zero",
		map[string]types.AttributeValue{":one": num(1), ":k": str(keyPK(key)), ":pd": num(respDone), ":r": rec, ":rc": crc,
			":heads": num(backend.Size(r) - before), ":inc": num(stIncomplete), ":n": num(h.nonce), ":zero": num(0)})
	if err != nil {
		return model.CompletePair{}, err
	}
	if !ok {
		return model.CompletePair{}, fmt.Errorf("hishel: add response to pair %s: pair changed meanwhile: %w", id, model.ErrNotFound)
	}
	r.Flags |= bolt.FlagHasResponse
	if resp.Body == nil {
		r.Flags |= bolt.FlagResponseDone
		if _, err := d.complete(ctx, r); err != nil {
			return model.CompletePair{}, err
		}
	}
	info := r.Info()
	out := model.CompletePair{ID: id, Request: info.Request, Response: resp, Key: key, Meta: info.Meta}
	out.Request.Header = info.Request.Header.Clone()
	if resp.Body != nil {
		out.Response.Body = model.NewBody(d.newStream(ctx, r, bolt.KindResponse, resp.Body))
	}
	return out, nil
}

func (d *DynamoDB) putKeyEntry(ctx context.Context, kpk string, id model.PairID) error {
	_, err := d.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: d.table,
		Item: map[string]types.AttributeValue{aPK: str(kpk), aSK: str(pairPK(id))}})
	return d.wrap(ctx, "index key", err)
}

func (d *DynamoDB) deleteKeyEntry(ctx context.Context, kpk string, id model.PairID) error {
	if kpk == "" {
		return nil
	}
	_, err := d.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: d.table,
		Key: map[string]types.AttributeValue{aPK: str(kpk), aSK: str(pairPK(id))}})
	return d.wrap(ctx, "index key", err)
}

// complete makes pair r complete if both of its bodies are stored and it is
// still the incomplete pair r, then applies the variant cap and budgets.
func (d *DynamoDB) complete(ctx context.Context, r *bolt.Record) (bool, error) {
	now := d.now()
	var exp int64
	t := never
	if r.TTL > 0 {
		exp = now + r.TTL
	}
	if exp = backend.CapExpiry(now, r.ReqOptions, exp); exp != 0 {
		t = exp
	}
	ok, err := d.update(ctx, r.ID, "SET s = :done, d = :now, a = :now, x = :x, t = :t",
		"s = :inc AND n = :n AND h = :one AND qd = :one AND pd = :one",
		map[string]types.AttributeValue{":done": num(stComplete), ":now": num(now), ":x": num(exp), ":t": num(t),
			":inc": num(stIncomplete), ":n": num(int64(r.Nonce)), ":one": num(1)})
	if err != nil || !ok {
		return false, err
	}
	r.Flags |= bolt.FlagComplete
	r.Completed, r.LastAccess, r.Expires = now, now, exp
	if err := d.capVariants(ctx, keyPK(r.Key)); err != nil {
		return true, err
	}
	_, err = d.enforceBudget(ctx)
	return true, err
}

// keyHeads returns the heads of the pairs whose entries are under a key's
// partition: a strongly consistent Query, then BatchGetItem.
func (d *DynamoDB) keyHeads(ctx context.Context, kpk string) ([]*head, error) {
	var ids []model.PairID
	p := dynamodb.NewQueryPaginator(d.db, &dynamodb.QueryInput{TableName: d.table, ConsistentRead: aws.Bool(true),
		KeyConditionExpression: aws.String("pk = :k"), ExpressionAttributeValues: map[string]types.AttributeValue{":k": str(kpk)}})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return nil, d.wrap(ctx, "get pairs", err)
		}
		for _, it := range out.Items {
			if id, ok := parsePairPK(getStr(it, aSK)); ok {
				ids = append(ids, id)
			}
		}
	}
	return d.heads(ctx, ids)
}

// heads reads the heads of ids (consistent BatchGetItem); missing ones are
// left out.
func (d *DynamoDB) heads(ctx context.Context, ids []model.PairID) ([]*head, error) {
	var out []*head
	for len(ids) > 0 {
		n := min(len(ids), 100)
		keys := make([]map[string]types.AttributeValue, n)
		for i, id := range ids[:n] {
			keys[i] = headKey(id)
		}
		ids = ids[n:]
		req := map[string]types.KeysAndAttributes{*d.table: {Keys: keys, ConsistentRead: aws.Bool(true)}}
		for len(req) > 0 {
			res, err := d.db.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: req})
			if err != nil {
				return nil, d.wrap(ctx, "read pairs", err)
			}
			for _, it := range res.Responses[*d.table] {
				if h, ok := decodeHead(it); ok {
					out = append(out, h)
				}
			}
			req = res.UnprocessedKeys
		}
	}
	return out, nil
}

// capVariants evicts the least recently used complete pairs under a key
// beyond MaxVariants.
func (d *DynamoDB) capVariants(ctx context.Context, kpk string) error {
	if d.pol.MaxVariants <= 0 {
		return nil
	}
	hs, err := d.keyHeads(ctx, kpk)
	if err != nil {
		return err
	}
	hs = slices.DeleteFunc(hs, func(h *head) bool { return h.state != stComplete || h.key != kpk })
	if len(hs) <= d.pol.MaxVariants {
		return nil
	}
	sort.Slice(hs, func(i, j int) bool {
		if hs[i].access != hs[j].access {
			return hs[i].access > hs[j].access
		}
		return hs[i].done > hs[j].done
	})
	for _, h := range hs[d.pol.MaxVariants:] {
		ok, err := d.bury(ctx, h, stComplete)
		if ok {
			d.evicted.Add(1)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func live(h *head, now int64) bool {
	return h.state == stComplete && (h.expires == 0 || now < h.expires)
}

// GetPairs returns every live, complete, unexpired pair stored under key,
// newest first. Their bodies stream from storage as they are read; each must
// be read to the end or closed. Reading a pair counts as an access: it
// restarts the pair's TTL if the pair refreshes on access, and moves it to
// the back of the eviction order.
func (d *DynamoDB) GetPairs(ctx context.Context, key string) ([]model.CompletePair, error) {
	if err := d.check(ctx); err != nil {
		return nil, err
	}
	kpk := keyPK(key)
	hs, err := d.keyHeads(ctx, kpk)
	if err != nil {
		return nil, err
	}
	now := d.now()
	var out []model.CompletePair
	for _, h := range hs {
		if !live(h, now) || h.key != kpk {
			continue
		}
		r, err := d.record(h)
		if err != nil {
			return nil, err
		}
		if r.Key != key {
			continue
		}
		expr, vals := "SET a = :now", map[string]types.AttributeValue{":now": num(now), ":n": num(h.nonce), ":done": num(stComplete)}
		r.LastAccess = now
		if exp := backend.Expiry(r, now); exp != r.Expires {
			r.Expires = exp
			expr += ", x = :x, t = :x"
			vals[":x"] = num(r.Expires)
		}
		// Only forward in time, and only while the pair is complete.
		vals[":prev"] = num(now)
		if _, err := d.update(ctx, h.id, expr, "s = :done AND n = :n AND a <= :prev", vals); err != nil {
			return nil, err
		}
		out = append(out, d.pair(h, r))
	}
	backend.SortNewest(out)
	return out, nil
}

func (d *DynamoDB) pair(h *head, r *bolt.Record) model.CompletePair {
	info := r.Info()
	cp := model.CompletePair{ID: r.ID, Request: info.Request, Response: info.Response, Key: r.Key, Meta: info.Meta}
	cp.Request.Body = d.body(h, bolt.KindRequest)
	cp.Response.Body = d.body(h, bolt.KindResponse)
	return cp
}

// GetPair returns the live, complete, unexpired pair id, with bodies
// streamed as in GetPairs, or model.ErrNotFound. It does not count as an
// access.
func (d *DynamoDB) GetPair(ctx context.Context, id model.PairID) (model.CompletePair, error) {
	if err := d.check(ctx); err != nil {
		return model.CompletePair{}, err
	}
	h, err := d.load(ctx, id)
	if err != nil {
		return model.CompletePair{}, err
	}
	if h == nil || !live(h, d.now()) {
		return model.CompletePair{}, fmt.Errorf("hishel: get pair %s: %w", id, model.ErrNotFound)
	}
	r, err := d.record(h)
	if err != nil {
		return model.CompletePair{}, err
	}
	return d.pair(h, r), nil
}

// UpdatePair replaces the stored pair id with pair, atomically: its request
// and response heads (method, URL, headers, options, status), its key (the
// pair moves to the new key), and its Created, Expires, TTL and Refresh
// metadata. Bodies and the other metadata are kept as stored. It returns
// the pair as stored, with bodies streamed as in GetPairs.
//
// A pair that does not exist, is incomplete or removed fails with
// model.ErrNotFound; a pair.ID other than id (or zero), with
// model.ErrIDChanged.
func (d *DynamoDB) UpdatePair(ctx context.Context, id model.PairID, pair model.CompletePair) (model.CompletePair, error) {
	return d.UpdatePairFunc(ctx, id, func(model.CompletePair) (model.CompletePair, error) { return pair, nil })
}

// UpdatePairFunc is UpdatePair with the new value computed by fn from the
// stored pair, atomically: the result is written only if the pair did not
// change since fn's input was read (another process's update included);
// otherwise fn runs again on the new value. fn receives the pair with nil
// bodies and holds nothing while it runs, so it may call the storage. If fn
// returns an error, nothing changes and UpdatePairFunc returns that error.
func (d *DynamoDB) UpdatePairFunc(ctx context.Context, id model.PairID, fn func(model.CompletePair) (model.CompletePair, error)) (model.CompletePair, error) {
	if err := d.check(ctx); err != nil {
		return model.CompletePair{}, err
	}
	type base struct {
		h *head
		r *bolt.Record
	}
	read := func(ctx context.Context) (model.CompletePair, base, error) {
		h, err := d.load(ctx, id)
		if err != nil {
			return model.CompletePair{}, base{}, err
		}
		if h == nil || h.state != stComplete {
			return model.CompletePair{}, base{}, fmt.Errorf("hishel: update pair %s: %w", id, model.ErrNotFound)
		}
		r, err := d.record(h)
		if err != nil {
			return model.CompletePair{}, base{}, err
		}
		info := r.Info()
		cur := model.CompletePair{ID: id, Request: info.Request, Response: info.Response, Key: r.Key, Meta: info.Meta}
		cur.Request.Header, cur.Response.Header = cur.Request.Header.Clone(), cur.Response.Header.Clone()
		return cur, base{h, r}, nil
	}
	write := func(ctx context.Context, next model.CompletePair, b base) (model.CompletePair, bool, error) {
		if err := backend.CheckUpdate(id, next); err != nil {
			return model.CompletePair{}, false, err
		}
		h := b.h
		r := backend.Updated(b.r, next)
		rec, crc, err := encode(r)
		if err != nil {
			return model.CompletePair{}, false, err
		}
		kpk := keyPK(r.Key)
		if kpk != h.key {
			if err := d.putKeyEntry(ctx, kpk, id); err != nil {
				return model.CompletePair{}, false, err
			}
		}
		t := r.Expires
		if t == 0 {
			t = never
		}
		ok, err := d.update(ctx, id, "SET k = :k, c = :c, x = :x, t = :t, v = :v1, r = :r, rc = :rc ADD sz :heads", "s = :done AND n = :n AND v = :v",
			map[string]types.AttributeValue{":k": str(kpk), ":c": num(r.Created), ":x": num(r.Expires), ":t": num(t),
				":v1": num(h.version + 1), ":r": rec, ":rc": crc, ":heads": num(backend.Size(r) - backend.Size(b.r)),
				":done": num(stComplete), ":n": num(h.nonce), ":v": num(h.version)})
		if err != nil || !ok {
			return model.CompletePair{}, !ok, err // not ok: changed (or gone) since it was read
		}
		if kpk != h.key {
			if err := d.deleteKeyEntry(ctx, h.key, id); err != nil {
				return model.CompletePair{}, false, err
			}
			if err := d.capVariants(ctx, kpk); err != nil {
				return model.CompletePair{}, false, err
			}
		}
		h.key, h.created, h.expires, h.version = kpk, r.Created, r.Expires, h.version+1
		return d.pair(h, r), false, nil
	}
	return backend.UpdatePairFunc(ctx, id, fn, read, write)
}

// Remove soft-deletes the pair id: it is hidden at once and reclaimed by a
// sweep after DeletedRetention. Removing an unknown or already removed pair
// does nothing. Removing an incomplete pair aborts the bodies still being
// stored.
func (d *DynamoDB) Remove(ctx context.Context, id model.PairID) error {
	if err := d.check(ctx); err != nil {
		return err
	}
	now := d.now()
	_, err := d.update(ctx, id, "SET s = :del, #del = :now, t = :now", "s IN (:inc, :done)",
		map[string]types.AttributeValue{":del": num(stDeleted), ":now": num(now), ":inc": num(stIncomplete), ":done": num(stComplete)})
	return err
}

// Clear removes every pair at once (it scans and deletes every item of
// the table). Bodies being read fail with model.ErrRemoved; bodies being
// stored fail and are not stored.
func (d *DynamoDB) Clear(ctx context.Context) error {
	if err := d.check(ctx); err != nil {
		return err
	}
	var keys []map[string]types.AttributeValue
	p := dynamodb.NewScanPaginator(d.db, &dynamodb.ScanInput{TableName: d.table, ConsistentRead: aws.Bool(true),
		ProjectionExpression: aws.String("pk, sk")})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return d.wrap(ctx, "clear", err)
		}
		// Heads first: a writer's next conditional write then fails.
		for _, it := range out.Items {
			if getStr(it, aSK) == headSK {
				keys = append([]map[string]types.AttributeValue{it}, keys...)
			} else {
				keys = append(keys, it)
			}
		}
	}
	return d.deleteItems(ctx, keys)
}

// Pairs returns the stored pairs f matches, in ID order, whatever their
// state unless f says (see model.Filter), heads and metadata only; the
// loop body may call the storage. Every filter scans the table's heads.
func (d *DynamoDB) Pairs(ctx context.Context, f model.Filter) iter.Seq2[model.PairInfo, error] {
	return backend.Finder{All: d.listAll}.Pairs(ctx, f, d.pol.Now)
}

// Delete soft-deletes the pairs f matches, as Remove does, and returns how
// many: it lists them with Pairs and removes each (backend.Delete). Pairs
// stored while it runs may or may not be deleted.
func (d *DynamoDB) Delete(ctx context.Context, f model.Filter) (int, error) {
	return backend.Delete(ctx, f, d.Pairs, d.Remove)
}

// listAll calls fn for every stored pair, in ID order, whatever its state:
// incomplete, complete (expired or not) and soft-deleted. The PairInfo has
// heads and metadata only. fn may call the storage. An error from fn stops
// the iteration and is returned. It scans the table for the pairs' IDs,
// sorts them, and reads their heads 100 at a time.
func (d *DynamoDB) listAll(ctx context.Context, fn func(model.PairInfo) error) error {
	if err := d.check(ctx); err != nil {
		return err
	}
	var ids []model.PairID
	if err := d.scanHeads(ctx, func(h *head) {
		if h.state < stGone {
			ids = append(ids, h.id)
		}
	}); err != nil {
		return err
	}
	slices.SortFunc(ids, func(a, b model.PairID) int { return slices.Compare(a[:], b[:]) })
	for len(ids) > 0 {
		n := min(len(ids), 100)
		hs, err := d.heads(ctx, ids[:n])
		if err != nil {
			return err
		}
		ids = ids[n:]
		slices.SortFunc(hs, func(a, b *head) int { return slices.Compare(a.id[:], b.id[:]) })
		for _, h := range hs {
			if h.state >= stGone {
				continue
			}
			r, err := d.record(h)
			if err != nil {
				return err
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := fn(r.Info()); err != nil {
				return err
			}
		}
	}
	return nil
}

// scanHeads calls fn with every head of the table (state, size and ID
// only), from a strongly consistent scan.
func (d *DynamoDB) scanHeads(ctx context.Context, fn func(*head)) error {
	p := dynamodb.NewScanPaginator(d.db, &dynamodb.ScanInput{TableName: d.table, ConsistentRead: aws.Bool(true),
		FilterExpression: aws.String("sk = :h"), ProjectionExpression: aws.String("pk, s, sz"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":h": str(headSK)}})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return d.wrap(ctx, "scan", err)
		}
		for _, it := range out.Items {
			if h, ok := decodeHead(it); ok {
				fn(h)
			}
		}
	}
	return nil
}

// Sync returns at once: every change is acknowledged before its call
// returns.
func (d *DynamoDB) Sync(ctx context.Context) error { return d.check(ctx) }

// Stats counts the stored pairs by state and their bytes (heads and
// bodies, backend.Size), from a strongly consistent scan of the table, and
// reports the evictions this DynamoDB made (Evicted: other processes
// count their own).
func (d *DynamoDB) Stats(ctx context.Context) (model.Stats, error) {
	var st model.Stats
	if err := d.check(ctx); err != nil {
		return st, err
	}
	err := d.scanHeads(ctx, func(h *head) {
		switch h.state {
		case stIncomplete:
			st.Incomplete++
		case stComplete:
			st.Pairs++
		case stDeleted:
			st.Deleted++
		default:
			return
		}
		st.Bytes += h.size
	})
	if err != nil {
		return model.Stats{}, err
	}
	st.Evicted = d.evicted.Load()
	return st, nil
}
