package template

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"math/rand/v2"
	"slices"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/hishel-go/hishel/backend"
	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/model"
)

// Pair document field names.
const (
	fID       = "_id"
	fNonce    = "n"   // int64: the incarnation; chunk IDs carry it
	fState    = "s"   // int32: stIncomplete ... stGone
	fHasResp  = "h"   // bool: AddResponse was called
	fReqDone  = "qd"  // bool: the request body is stored
	fRespDone = "pd"  // bool: the response body is stored
	fReqN     = "qn"  // int64: request chunks that may exist
	fRespN    = "pn"  // int64: response chunks that may exist
	fReqSize  = "qz"  // int64: request body size, once stored
	fRespSize = "pz"  // int64: response body size, once stored
	fCreated  = "c"   // int64 Unix ns
	fDone     = "d"   // int64 Unix ns: completed
	fExpires  = "x"   // int64 Unix ns, 0: never
	fDeleted  = "del" // int64 Unix ns: soft-deleted, or made a tombstone
	fAccess   = "a"   // int64 Unix ns: last access (LRU)
	fKey      = "k"   // string: keyHash, set with the response
	fSize     = "sz"  // int64: stored bytes, heads (backend.Size) and bodies
	fVersion  = "v"   // int64: bumped by every head update
	fRec      = "r"   // binary: bolt.EncodeRecord of the heads
	fRecCRC   = "rc"  // int64: CRC-32C of fRec
	fLayout   = "g"   // int32: body layout (layoutDocs, layoutGridFS)
)

// Pair states.
const (
	stIncomplete int32 = iota
	stComplete
	stDeleted
	stGone // tombstone: aborted, abandoned or purged; chunks being deleted
)

// pairDoc is a pair document.
type pairDoc struct {
	ID       string `bson:"_id"`
	Nonce    int64  `bson:"n"`
	State    int32  `bson:"s"`
	HasResp  bool   `bson:"h"`
	ReqDone  bool   `bson:"qd"`
	RespDone bool   `bson:"pd"`
	ReqN     int64  `bson:"qn"`
	RespN    int64  `bson:"pn"`
	ReqSize  int64  `bson:"qz"`
	RespSize int64  `bson:"pz"`
	Created  int64  `bson:"c"`
	Done     int64  `bson:"d"`
	Expires  int64  `bson:"x"`
	Deleted  int64  `bson:"del"`
	Access   int64  `bson:"a"`
	Key      string `bson:"k,omitempty"`
	Size     int64  `bson:"sz"`
	Version  int64  `bson:"v"`
	Rec      []byte `bson:"r"`
	RecCRC   int64  `bson:"rc"`
	Layout   int32  `bson:"g"`
}

// record decodes d's heads and completes them with its fields: the
// bolt.Record the pair is. A record that fails its checksum or does not
// decode is model.ErrCorrupt, and the pair is noted for the sweep.
func (m *Mongo) record(d *pairDoc) (*bolt.Record, error) {
	id, ok := parseID(d.ID)
	if !ok {
		return nil, fmt.Errorf("hishel: mongodb pair document %q: bad _id: %w", d.ID, model.ErrCorrupt)
	}
	if d.RecCRC != int64(backend.Checksum(d.Rec)) {
		m.noteBad(id)
		return nil, fmt.Errorf("hishel: record of pair %s: checksum mismatch: %w", id, model.ErrCorrupt)
	}
	r, err := bolt.DecodeRecord(d.Rec)
	if err != nil {
		m.noteBad(id)
		return nil, fmt.Errorf("hishel: record of pair %s: %w", id, err)
	}
	if r.ID != id || r.Nonce != uint64(d.Nonce) || d.Layout < 0 || d.Layout > layoutGridFS {
		m.noteBad(id)
		return nil, fmt.Errorf("hishel: record of pair %s does not match its document: %w", id, model.ErrCorrupt)
	}
	r.Flags = 0
	for _, f := range []struct {
		on   bool
		flag uint8
	}{{d.ReqDone, bolt.FlagRequestDone}, {d.RespDone, bolt.FlagResponseDone}, {d.HasResp, bolt.FlagHasResponse},
		{d.State == stComplete || d.State == stDeleted && d.Done != 0, bolt.FlagComplete}, {d.State >= stDeleted, bolt.FlagDeleted}} {
		if f.on {
			r.Flags |= f.flag
		}
	}
	r.Created, r.Completed, r.Expires, r.LastAccess = d.Created, d.Done, d.Expires, d.Access
	if d.State >= stDeleted {
		r.Deleted = d.Deleted
	}
	r.ReqSize, r.RespSize = d.ReqSize, d.RespSize
	return r, nil
}

// heads encodes r's heads for a pair document: fRec and fRecCRC.
func heads(r *bolt.Record) bson.D {
	b := bolt.EncodeRecord(r)
	return bson.D{{Key: fRec, Value: b}, {Key: fRecCRC, Value: int64(backend.Checksum(b))}}
}

// load reads pair id's document; nil if there is none.
func (m *Mongo) load(ctx context.Context, id model.PairID) (*pairDoc, error) {
	var d pairDoc
	err := m.pairs.FindOne(ctx, bson.D{{Key: fID, Value: idString(id)}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, nil
	}
	if err != nil {
		return nil, m.wrap(ctx, "read pair", err)
	}
	return &d, nil
}

// CreatePair stores a new incomplete pair for req and returns it. Its
// request body is stored as the caller reads the returned pair's
// Request.Body to the end (a nil body is stored at once as empty). ctx
// governs that body stream too: cancelling it aborts the pair.
//
// With model.WithID the pair gets the caller's ID; an ID already in use
// fails with model.ErrDuplicateID. A body that has already been read from
// fails with model.ErrBodyConsumed.
func (m *Mongo) CreatePair(ctx context.Context, req model.Request, opts ...model.CreateOption) (model.IncompletePair, error) {
	if err := m.check(ctx); err != nil {
		return model.IncompletePair{}, err
	}
	if err := backend.CheckRequest(req); err != nil {
		return model.IncompletePair{}, err
	}
	ttl, refresh, err := m.pol.TTLFor(req.Options)
	if err != nil {
		return model.IncompletePair{}, fmt.Errorf("hishel: create pair: %w", err)
	}
	id := model.ApplyCreateOptions(opts).ID
	if id.IsZero() {
		id = model.NewPairID()
	}
	now := m.now()
	r := &bolt.Record{ID: id, Nonce: rand.Uint64() >> 1, Created: now, LastAccess: now, TTL: int64(ttl), Refresh: refresh,
		Method: req.Method, URL: req.URL, ReqHeader: req.Header.Clone(), ReqOptions: req.Options}
	doc := append(bson.D{
		{Key: fID, Value: idString(id)}, {Key: fNonce, Value: int64(r.Nonce)}, {Key: fState, Value: stIncomplete},
		{Key: fHasResp, Value: false}, {Key: fReqDone, Value: req.Body == nil}, {Key: fRespDone, Value: false},
		{Key: fReqN, Value: int64(0)}, {Key: fRespN, Value: int64(0)}, {Key: fReqSize, Value: int64(0)}, {Key: fRespSize, Value: int64(0)},
		{Key: fCreated, Value: now}, {Key: fDone, Value: int64(0)}, {Key: fExpires, Value: int64(0)}, {Key: fDeleted, Value: int64(0)},
		{Key: fAccess, Value: now}, {Key: fSize, Value: backend.Size(r)}, {Key: fVersion, Value: int64(0)},
		{Key: fLayout, Value: int32(m.layout())},
	}, heads(r)...)
	for try := 0; ; try++ {
		_, err = m.pairs.InsertOne(ctx, doc)
		if err == nil {
			break
		}
		if !mongo.IsDuplicateKeyError(err) {
			return model.IncompletePair{}, m.wrap(ctx, "create pair", err)
		}
		// A tombstone holds the ID until a sweep: take its place.
		if try > 0 || !m.replaceTombstone(ctx, id) {
			return model.IncompletePair{}, fmt.Errorf("hishel: create pair %s: %w", id, model.ErrDuplicateID)
		}
	}
	out := model.IncompletePair{ID: id, Request: req, Meta: r.Meta()}
	if req.Body != nil {
		out.Request.Body = model.NewBody(m.newStream(ctx, r, bolt.KindRequest, req.Body))
	}
	return out, nil
}

// replaceTombstone deletes the tombstone of pair id, with its chunks, and
// reports whether it did.
func (m *Mongo) replaceTombstone(ctx context.Context, id model.PairID) bool {
	d, err := m.load(ctx, id)
	if err != nil || d == nil || d.State != stGone {
		return false
	}
	if m.deleteChunks(ctx, d) != nil {
		return false
	}
	res, err := m.pairs.DeleteOne(ctx, bson.D{{Key: fID, Value: d.ID}, {Key: fNonce, Value: d.Nonce}, {Key: fState, Value: stGone}})
	return err == nil && res.DeletedCount == 1
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
func (m *Mongo) AddResponse(ctx context.Context, id model.PairID, resp model.Response, key string) (model.CompletePair, error) {
	if err := m.check(ctx); err != nil {
		return model.CompletePair{}, err
	}
	if err := backend.CheckResponse(resp); err != nil {
		return model.CompletePair{}, err
	}
	d, err := m.load(ctx, id)
	if err != nil {
		return model.CompletePair{}, err
	}
	if d == nil || d.State != stIncomplete {
		if d != nil && d.State == stComplete {
			return model.CompletePair{}, fmt.Errorf("hishel: add response to pair %s: pair already has a response: %w", id, model.ErrInvalid)
		}
		return model.CompletePair{}, fmt.Errorf("hishel: add response to pair %s: %w", id, model.ErrNotFound)
	}
	if d.HasResp {
		return model.CompletePair{}, fmt.Errorf("hishel: add response to pair %s: pair already has a response: %w", id, model.ErrInvalid)
	}
	r, err := m.record(d)
	if err != nil {
		return model.CompletePair{}, err
	}
	before := backend.Size(r)
	r.Key, r.Status, r.RespHeader = key, resp.Status, resp.Header.Clone()
	set := append(bson.D{{Key: fHasResp, Value: true}, {Key: fKey, Value: keyHash(key)}, {Key: fRespDone, Value: resp.Body == nil}}, heads(r)...)
	res, err := m.pairs.UpdateOne(ctx, bson.D{{Key: fID, Value: d.ID}, {Key: fNonce, Value: d.Nonce}, {Key: fState, Value: stIncomplete}, {Key: fHasResp, Value: false}},
		bson.D{{Key: "$set", Value: set}, {Key: "$inc", Value: bson.D{{Key: fSize, Value: backend.Size(r) - before}}}})
	if err != nil {
		return model.CompletePair{}, m.wrap(ctx, "add response", err)
	}
	if res.MatchedCount == 0 {
		return model.CompletePair{}, fmt.Errorf("hishel: add response to pair %s: pair changed meanwhile: %w", id, model.ErrNotFound)
	}
	r.Flags |= bolt.FlagHasResponse
	if resp.Body == nil {
		r.Flags |= bolt.FlagResponseDone
		if _, err := m.complete(ctx, r); err != nil {
			return model.CompletePair{}, err
		}
	}
	info := r.Info()
	out := model.CompletePair{ID: id, Request: info.Request, Response: resp, Key: key, Meta: info.Meta}
	out.Request.Header = info.Request.Header.Clone()
	if resp.Body != nil {
		out.Response.Body = model.NewBody(m.newStream(ctx, r, bolt.KindResponse, resp.Body))
	}
	return out, nil
}

// complete makes pair r complete if both of its bodies are stored and it is
// still the incomplete pair r; the last body to end does. It reports
// whether this call completed it, and then applies the variant cap and the
// budgets.
func (m *Mongo) complete(ctx context.Context, r *bolt.Record) (bool, error) {
	now := m.now()
	var exp int64
	if r.TTL > 0 {
		exp = now + r.TTL
	}
	exp = backend.CapExpiry(now, r.ReqOptions, exp)
	res, err := m.pairs.UpdateOne(ctx, bson.D{{Key: fID, Value: idString(r.ID)}, {Key: fNonce, Value: int64(r.Nonce)},
		{Key: fState, Value: stIncomplete}, {Key: fHasResp, Value: true}, {Key: fReqDone, Value: true}, {Key: fRespDone, Value: true}},
		bson.D{{Key: "$set", Value: bson.D{{Key: fState, Value: stComplete}, {Key: fDone, Value: now}, {Key: fAccess, Value: now}, {Key: fExpires, Value: exp}}}})
	if err != nil {
		return false, m.wrap(ctx, "complete pair", err)
	}
	if res.ModifiedCount == 0 {
		return false, nil
	}
	r.Flags |= bolt.FlagComplete
	r.Completed, r.LastAccess, r.Expires = now, now, exp
	if err := m.capVariants(ctx, keyHash(r.Key)); err != nil {
		return true, err
	}
	_, err = m.enforceBudget(ctx)
	return true, err
}

// capVariants evicts the least recently used complete pairs under a key
// beyond MaxVariants.
func (m *Mongo) capVariants(ctx context.Context, kh string) error {
	if m.pol.MaxVariants <= 0 {
		return nil
	}
	cur, err := m.pairs.Find(ctx, bson.D{{Key: fKey, Value: kh}, {Key: fState, Value: stComplete}},
		options.Find().SetProjection(bson.D{{Key: fNonce, Value: 1}, {Key: fAccess, Value: 1}, {Key: fDone, Value: 1}, {Key: fReqN, Value: 1}, {Key: fRespN, Value: 1}, {Key: fLayout, Value: 1}}))
	if err != nil {
		return m.wrap(ctx, "variants", err)
	}
	var ds []pairDoc
	if err := cur.All(ctx, &ds); err != nil {
		return m.wrap(ctx, "variants", err)
	}
	if len(ds) <= m.pol.MaxVariants {
		return nil
	}
	slices.SortFunc(ds, byAccess)
	for i := range ds[m.pol.MaxVariants:] {
		ok, err := m.bury(ctx, &ds[m.pol.MaxVariants+i], stComplete)
		if ok {
			m.evicted.Add(1)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// live reports whether d is a complete pair that has not expired at now.
func live(d *pairDoc, now int64) bool {
	return d.State == stComplete && (d.Expires == 0 || now < d.Expires)
}

// touchGroup is the pairs whose reads GetPairs records with one update:
// their access time, and their expiry if expires is not zero.
type touchGroup struct {
	expires int64
	ids     []string
}

// GetPairs returns every live, complete, unexpired pair stored under key,
// newest first. Their bodies stream from storage as they are read; each must
// be read to the end or closed. Reading a pair counts as an access: it
// restarts the pair's TTL if the pair refreshes on access, and moves it to
// the back of the eviction order.
func (m *Mongo) GetPairs(ctx context.Context, key string) ([]model.CompletePair, error) {
	if err := m.check(ctx); err != nil {
		return nil, err
	}
	cur, err := m.pairs.Find(ctx, bson.D{{Key: fKey, Value: keyHash(key)}, {Key: fState, Value: stComplete}})
	if err != nil {
		return nil, m.wrap(ctx, "get pairs", err)
	}
	var ds []pairDoc
	if err := cur.All(ctx, &ds); err != nil {
		return nil, m.wrap(ctx, "get pairs", err)
	}
	now := m.now()
	var out []model.CompletePair
	// The reads are recorded with one update per new expiry (most often
	// one in all), not one per pair: FerretDB holds a connection of its
	// pool per statement of a bulk until the bulk ends.
	var touch []touchGroup
	for i := range ds {
		d := &ds[i]
		if !live(d, now) {
			continue
		}
		r, err := m.record(d)
		if err != nil {
			return nil, err
		}
		if r.Key != key {
			continue // another key with the same hash
		}
		r.LastAccess = now
		exp := int64(0) // unchanged
		if e := backend.Expiry(r, now); e != r.Expires {
			r.Expires, exp = e, e
		}
		j := slices.IndexFunc(touch, func(g touchGroup) bool { return g.expires == exp })
		if j < 0 {
			j = len(touch)
			touch = append(touch, touchGroup{expires: exp})
		}
		touch[j].ids = append(touch[j].ids, d.ID)
		out = append(out, m.pair(d, r))
	}
	if len(touch) > 0 {
		models := make([]mongo.WriteModel, len(touch))
		for i, g := range touch {
			set := bson.D{{Key: fAccess, Value: now}}
			if g.expires != 0 {
				set = append(set, bson.E{Key: fExpires, Value: g.expires})
			}
			models[i] = mongo.NewUpdateManyModel().SetFilter(bson.D{{Key: fID, Value: bson.D{{Key: "$in", Value: g.ids}}}}).
				SetUpdate(bson.D{{Key: "$max", Value: set}})
		}
		if _, err := m.pairs.BulkWrite(ctx, models, options.BulkWrite().SetOrdered(false)); err != nil {
			for _, p := range out {
				p.Close()
			}
			return nil, m.wrap(ctx, "record access", err)
		}
	}
	backend.SortNewest(out)
	return out, nil
}

// pair returns pair r of document d, with body readers.
func (m *Mongo) pair(d *pairDoc, r *bolt.Record) model.CompletePair {
	info := r.Info()
	cp := model.CompletePair{ID: r.ID, Request: info.Request, Response: info.Response, Key: r.Key, Meta: info.Meta}
	cp.Request.Body = m.body(d, r, bolt.KindRequest)
	cp.Response.Body = m.body(d, r, bolt.KindResponse)
	return cp
}

// GetPair returns the live, complete, unexpired pair id, with bodies
// streamed as in GetPairs, or model.ErrNotFound. It does not count as an
// access.
func (m *Mongo) GetPair(ctx context.Context, id model.PairID) (model.CompletePair, error) {
	if err := m.check(ctx); err != nil {
		return model.CompletePair{}, err
	}
	d, err := m.load(ctx, id)
	if err != nil {
		return model.CompletePair{}, err
	}
	if d == nil || !live(d, m.now()) {
		return model.CompletePair{}, fmt.Errorf("hishel: get pair %s: %w", id, model.ErrNotFound)
	}
	r, err := m.record(d)
	if err != nil {
		return model.CompletePair{}, err
	}
	return m.pair(d, r), nil
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
func (m *Mongo) UpdatePair(ctx context.Context, id model.PairID, pair model.CompletePair) (model.CompletePair, error) {
	return m.UpdatePairFunc(ctx, id, func(model.CompletePair) (model.CompletePair, error) { return pair, nil })
}

// UpdatePairFunc is UpdatePair with the new value computed by fn from the
// stored pair, atomically: the result is written only if the pair did not
// change since fn's input was read (another process's update included);
// otherwise fn runs again on the new value. fn receives the pair with nil
// bodies and holds nothing while it runs, so it may call the storage. If fn
// returns an error, nothing changes and UpdatePairFunc returns that error.
func (m *Mongo) UpdatePairFunc(ctx context.Context, id model.PairID, fn func(model.CompletePair) (model.CompletePair, error)) (model.CompletePair, error) {
	if err := m.check(ctx); err != nil {
		return model.CompletePair{}, err
	}
	type base struct {
		d *pairDoc
		r *bolt.Record
	}
	read := func(ctx context.Context) (model.CompletePair, base, error) {
		d, err := m.load(ctx, id)
		if err != nil {
			return model.CompletePair{}, base{}, err
		}
		if d == nil || d.State != stComplete {
			return model.CompletePair{}, base{}, fmt.Errorf("hishel: update pair %s: %w", id, model.ErrNotFound)
		}
		r, err := m.record(d)
		if err != nil {
			return model.CompletePair{}, base{}, err
		}
		info := r.Info()
		cur := model.CompletePair{ID: id, Request: info.Request, Response: info.Response, Key: r.Key, Meta: info.Meta}
		cur.Request.Header, cur.Response.Header = cur.Request.Header.Clone(), cur.Response.Header.Clone()
		return cur, base{d, r}, nil
	}
	write := func(ctx context.Context, next model.CompletePair, b base) (model.CompletePair, bool, error) {
		if err := backend.CheckUpdate(id, next); err != nil {
			return model.CompletePair{}, false, err
		}
		d := b.d
		r := backend.Updated(b.r, next)
		set := append(bson.D{{Key: fKey, Value: keyHash(r.Key)}, {Key: fCreated, Value: r.Created}, {Key: fExpires, Value: r.Expires},
			{Key: fVersion, Value: d.Version + 1}}, heads(r)...)
		res, err := m.pairs.UpdateOne(ctx, bson.D{{Key: fID, Value: d.ID}, {Key: fNonce, Value: d.Nonce}, {Key: fState, Value: stComplete},
			{Key: fVersion, Value: d.Version}}, bson.D{{Key: "$set", Value: set}, {Key: "$inc", Value: bson.D{{Key: fSize, Value: backend.Size(r) - backend.Size(b.r)}}}})
		if err != nil {
			return model.CompletePair{}, false, m.wrap(ctx, "update pair", err)
		}
		if res.MatchedCount != 1 {
			return model.CompletePair{}, true, nil // changed (or gone) since it was read
		}
		d.Key, d.Created, d.Expires, d.Version = keyHash(r.Key), r.Created, r.Expires, d.Version+1
		if r.Key != b.r.Key {
			if err := m.capVariants(ctx, d.Key); err != nil {
				return model.CompletePair{}, false, err
			}
		}
		return m.pair(d, r), false, nil
	}
	return backend.UpdatePairFunc(ctx, id, fn, read, write)
}

// Remove soft-deletes the pair id: it is hidden at once and reclaimed by a
// sweep after DeletedRetention. Removing an unknown or already removed pair
// does nothing. Removing an incomplete pair aborts the bodies still being
// stored.
func (m *Mongo) Remove(ctx context.Context, id model.PairID) error {
	if err := m.check(ctx); err != nil {
		return err
	}
	_, err := m.pairs.UpdateOne(ctx, bson.D{{Key: fID, Value: idString(id)}, {Key: fState, Value: bson.D{{Key: "$in", Value: bson.A{stIncomplete, stComplete}}}}},
		bson.D{{Key: "$set", Value: bson.D{{Key: fState, Value: stDeleted}, {Key: fDeleted, Value: m.now()}}}})
	return m.wrap(ctx, "remove pair", err)
}

// Clear removes every pair at once. Bodies being read fail with
// model.ErrRemoved; bodies being stored fail and are not stored.
func (m *Mongo) Clear(ctx context.Context) error {
	if err := m.check(ctx); err != nil {
		return err
	}
	if _, err := m.pairs.DeleteMany(ctx, bson.D{}); err != nil {
		return m.wrap(ctx, "clear", err)
	}
	for _, l := range m.lay {
		if _, err := l.chunks.DeleteMany(ctx, bson.D{}); err != nil {
			return m.wrap(ctx, "clear", err)
		}
		if l.files != nil {
			if _, err := l.files.DeleteMany(ctx, bson.D{}); err != nil {
				return m.wrap(ctx, "clear", err)
			}
		}
	}
	return nil
}

// Pairs returns the stored pairs f matches, in ID order, whatever their
// state unless f says (see model.Filter), heads and metadata only; the
// loop body may call the storage. Every filter reads every pair document's head.
func (m *Mongo) Pairs(ctx context.Context, f model.Filter) iter.Seq2[model.PairInfo, error] {
	return backend.Finder{All: m.listAll}.Pairs(ctx, f, m.pol.Now)
}

// Delete soft-deletes the pairs f matches, as Remove does, and returns how
// many: it lists them with Pairs and soft-deletes them with one update
// of up to deleteBatch pair documents at a time (each only if it is not
// deleted already). Pairs stored while it runs may or may not be deleted.
func (m *Mongo) Delete(ctx context.Context, f model.Filter) (int, error) {
	if ctx == nil {
		return 0, fmt.Errorf("hishel: delete: nil context: %w", model.ErrInvalid)
	}
	removed := 0
	var ids bson.A
	flush := func() error {
		if len(ids) == 0 {
			return nil
		}
		res, err := m.pairs.UpdateMany(ctx, bson.D{{Key: fID, Value: bson.D{{Key: "$in", Value: ids}}},
			{Key: fState, Value: bson.D{{Key: "$in", Value: bson.A{stIncomplete, stComplete}}}}},
			bson.D{{Key: "$set", Value: bson.D{{Key: fState, Value: stDeleted}, {Key: fDeleted, Value: m.now()}}}})
		if err != nil {
			return m.wrap(ctx, "delete", err)
		}
		removed += int(res.ModifiedCount)
		ids = ids[:0]
		return nil
	}
	for pi, err := range m.Pairs(ctx, f) {
		if err != nil {
			return removed, err
		}
		if pi.State == model.StateDeleted {
			continue
		}
		if ids = append(ids, idString(pi.ID)); len(ids) == deleteBatch {
			if err := flush(); err != nil {
				return removed, err
			}
		}
	}
	return removed, flush()
}

// deleteBatch is how many pairs one update of Delete soft-deletes.
const deleteBatch = 256

// listPage is how many pair heads listAll reads with one query.
const listPage = 256

// listAll calls fn for every stored pair, in ID order, whatever its state:
// incomplete, complete (expired or not) and soft-deleted. The PairInfo has
// heads and metadata only. It reads the heads a page at a time, each page
// a query of its own whose cursor is closed before fn is called, so fn may
// call the storage (Delete does). An error from fn stops the iteration and
// is returned.
func (m *Mongo) listAll(ctx context.Context, fn func(model.PairInfo) error) error {
	if err := m.check(ctx); err != nil {
		return err
	}
	return backend.Paged(listPage, func(ctx context.Context, after []byte, limit int) ([]model.PairInfo, error) {
		q := bson.D{{Key: fState, Value: bson.D{{Key: "$lt", Value: stGone}}}}
		if after != nil {
			var id model.PairID
			copy(id[:], after)
			q = append(q, bson.E{Key: fID, Value: bson.D{{Key: "$gt", Value: idString(id)}}})
		}
		cur, err := m.pairs.Find(ctx, q, options.Find().SetSort(bson.D{{Key: fID, Value: 1}}).SetLimit(int64(limit)))
		if err != nil {
			return nil, m.wrap(ctx, "list pairs", err)
		}
		defer cur.Close(context.WithoutCancel(ctx))
		var infos []model.PairInfo
		for cur.Next(ctx) {
			var d pairDoc
			if err := cur.Decode(&d); err != nil {
				return nil, m.wrap(ctx, "list pairs", err)
			}
			r, err := m.record(&d)
			if err != nil {
				return nil, err
			}
			infos = append(infos, r.Info())
		}
		if err := cur.Err(); err != nil {
			return nil, m.wrap(ctx, "list pairs", err)
		}
		return infos, nil
	})(ctx, fn)
}

// Sync returns at once: every change is acknowledged by the server before
// its call returns. It exists so that code written against any backend can
// call it.
func (m *Mongo) Sync(ctx context.Context) error { return m.check(ctx) }

// Stats counts the stored pairs by state and their bytes (heads and
// bodies, backend.Size), and reports the evictions this Mongo made
// (Evicted: other processes count their own). It reads
// two fields of every pair document (its cost grows with their number; an
// $group aggregation would do the same work on the server, and FerretDB
// v1 sums no fields in $group).
func (m *Mongo) Stats(ctx context.Context) (model.Stats, error) {
	var st model.Stats
	if err := m.check(ctx); err != nil {
		return st, err
	}
	cur, err := m.pairs.Find(ctx, bson.D{{Key: fState, Value: bson.D{{Key: "$lt", Value: stGone}}}},
		options.Find().SetProjection(bson.D{{Key: fState, Value: 1}, {Key: fSize, Value: 1}}).SetBatchSize(1000))
	if err != nil {
		return st, m.wrap(ctx, "stats", err)
	}
	defer cur.Close(context.WithoutCancel(ctx))
	for cur.Next(ctx) {
		var d struct {
			State int32 `bson:"s"`
			Size  int64 `bson:"sz"`
		}
		if err := cur.Decode(&d); err != nil {
			return st, m.wrap(ctx, "stats", err)
		}
		switch d.State {
		case stIncomplete:
			st.Incomplete++
		case stComplete:
			st.Pairs++
		case stDeleted:
			st.Deleted++
		}
		st.Bytes += d.Size
	}
	if err := cur.Err(); err != nil {
		return st, m.wrap(ctx, "stats", err)
	}
	st.Evicted = m.evicted.Load()
	return st, nil
}
