package template

import (
	"bytes"
	"cmp"
	"container/heap"
	"container/list"
	"context"
	"fmt"
	"io"
	"iter"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hishel-go/hishel/backend"
	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/model"
)

// MemoryOptions configure a Memory storage. A nil *MemoryOptions, and every
// zero field, means the default; the fields mean what BoltOptions' fields of
// the same names mean.
type MemoryOptions struct {
	// DefaultTTL is how long a pair lives after it is stored (or last read,
	// see RefreshTTLOnAccess). Zero or model.NoExpiry: pairs never expire;
	// any other negative value is model.ErrInvalid.
	DefaultTTL time.Duration
	// RefreshTTLOnAccess says whether reading a pair restarts its TTL
	// (default yes; model.NoRefresh: no).
	RefreshTTLOnAccess model.Refresh
	// SweepInterval is how often the background sweep runs. Default 10
	// minutes; negative: never in the background.
	SweepInterval time.Duration
	// DeletedRetention is how long soft-deleted pairs are kept. Default 7 days.
	DeletedRetention time.Duration
	// IncompleteAge is how old an incomplete pair gets before a sweep
	// removes it. Default 1 hour.
	IncompleteAge time.Duration
	// MaxBytes is a budget for the bytes stored: every pair's cache key,
	// method, URL, header fields and bodies (see model.Stats.Bytes).
	// Beyond it the least recently used pairs are evicted. Zero: no budget.
	MaxBytes int64
	// MaxPairs caps the live complete pairs, like the capacity of Hishel's
	// in-memory storage (128 there): storing one more evicts the least
	// recently used (stored or read) pair at once. Zero: no cap.
	MaxPairs int
	// MaxVariants is the most complete pairs kept under one cache key
	// (Vary variants): storing one more evicts the least recently used
	// others beyond it. Default DefaultMaxVariants; negative: no cap.
	MaxVariants int
	// ChunkSize is the size of stored body chunks. Default 64 KiB.
	ChunkSize int
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

func (o *MemoryOptions) settings() backend.Settings {
	return backend.Settings{DefaultTTL: o.DefaultTTL, RefreshTTLOnAccess: o.RefreshTTLOnAccess,
		SweepInterval: o.SweepInterval, DeletedRetention: o.DeletedRetention, IncompleteAge: o.IncompleteAge,
		MaxBytes: o.MaxBytes, MaxPairs: o.MaxPairs, MaxVariants: o.MaxVariants, ChunkSize: o.ChunkSize, Now: o.Now}
}

// Memory stores pairs in the process's memory: fast, and gone when the
// process ends. It follows the same pair rules as Bolt (TTL, refresh on
// access, soft delete, sweeps, size budget); its size budget is what bounds
// its memory.
//
// A Memory is safe for concurrent use. It owns one goroutine, from
// OpenMemory until Close, that runs the background sweep. Its operations
// never wait for I/O, so its async API runs them in the caller's goroutine
// when it can.
//
//hishel:backend
//hishel:nonblocking
//hishel:scheme memory
type Memory struct {
	pol backend.Policy

	mu     sync.RWMutex
	closed bool
	shut   atomic.Bool // closed, for body readers, which take no lock
	pairs  map[model.PairID]*memPair
	keys   map[string]map[model.PairID]*memPair
	stats  model.Stats
	lru    *list.List // complete pairs, least recently used at the front
	expiry timeHeap   // complete pairs with an expiry; entries may be stale
	dels   timeHeap   // soft-deleted pairs; entries may be stale
	incs   timeHeap   // incomplete pairs by creation time; entries may be stale
	// evicted counts the live pairs evicted since the store was opened
	// (model.Stats.Evicted); Clear does not reset it.
	evicted int64

	stop      chan struct{}
	maintDone chan struct{}
	closeOnce sync.Once
}

// memPair is one stored pair. Its chunks are immutable once appended.
type memPair struct {
	rec    bolt.Record
	bodies [2][][]byte // by bolt.Kind
	// gone is set when the pair leaves m.pairs (purge, Clear, Close): its
	// body readers check it without taking m.mu.
	gone atomic.Bool
	lru  *list.Element
}

// OpenMemory returns an empty Memory storage and starts its sweep goroutine.
func OpenMemory(ctx context.Context, opts *MemoryOptions) (*Memory, error) {
	var o MemoryOptions
	if opts != nil {
		o = *opts
	}
	if err := model.CheckContext(ctx); err != nil {
		return nil, err
	}
	pol, err := backend.NewPolicy(o.settings())
	if err != nil {
		return nil, err
	}
	m := &Memory{
		pol:       pol,
		pairs:     make(map[model.PairID]*memPair),
		keys:      make(map[string]map[model.PairID]*memPair),
		lru:       list.New(),
		stop:      make(chan struct{}),
		maintDone: make(chan struct{}),
	}
	go backend.Maintain(m.stop, m.maintDone, 0, nil, pol.SweepInterval, func() { _, _ = m.Cleanup(context.Background()) })
	return m, nil
}

// OpenMemoryURL opens the Memory that a store URL names (see cache.Open):
// memory:// (or memory:), with the shared query parameters ttl, refresh,
// sweep, retention, incomplete-age, max-bytes, max-pairs and chunk-size
// setting MemoryOptions, as in memory://?max-pairs=128&ttl=10m. A bad URL
// fails with model.ErrInvalid.
func OpenMemoryURL(ctx context.Context, u *url.URL) (*Memory, error) {
	if u.Host != "" || u.Opaque != "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("hishel: store URL %s: memory URLs have no host or path; write memory:// with query parameters: %w", backend.Redacted(u), model.ErrInvalid)
	}
	var o MemoryOptions
	q := backend.NewQuery(u)
	s := o.settings()
	q.Settings(&s)
	if err := q.Done(); err != nil {
		return nil, err
	}
	o = MemoryOptions{DefaultTTL: s.DefaultTTL, RefreshTTLOnAccess: s.RefreshTTLOnAccess, SweepInterval: s.SweepInterval,
		DeletedRetention: s.DeletedRetention, IncompleteAge: s.IncompleteAge, MaxBytes: s.MaxBytes, MaxPairs: s.MaxPairs,
		MaxVariants: s.MaxVariants, ChunkSize: s.ChunkSize}
	return OpenMemory(ctx, &o)
}

// lock takes the write lock of an open storage.
func (m *Memory) lock(ctx context.Context) error {
	if err := model.CheckContext(ctx); err != nil {
		return err
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return model.ErrClosed
	}
	return nil
}

// CreatePair stores a new incomplete pair for req and returns it. Its
// request body is stored as the caller reads the returned pair's
// Request.Body to the end (a nil body is stored at once as empty). ctx
// governs that body stream too: cancelling it aborts the pair.
//
// With model.WithID the pair gets the caller's ID; an ID already in use
// fails with model.ErrDuplicateID. A body that has already been read from
// fails with model.ErrBodyConsumed.
func (m *Memory) CreatePair(ctx context.Context, req model.Request, opts ...model.CreateOption) (model.IncompletePair, error) {
	if req.Method == "" {
		return model.IncompletePair{}, fmt.Errorf("hishel: create pair: empty method: %w", model.ErrInvalid)
	}
	if req.Body.Consumed() {
		return model.IncompletePair{}, fmt.Errorf("hishel: create pair: request body: %w", model.ErrBodyConsumed)
	}
	if err := backend.CheckRequestOptions(req.Options); err != nil {
		return model.IncompletePair{}, err
	}
	id := model.ApplyCreateOptions(opts).ID
	if id.IsZero() {
		id = model.NewPairID()
	}
	if err := m.lock(ctx); err != nil {
		return model.IncompletePair{}, err
	}
	defer m.mu.Unlock()
	if _, dup := m.pairs[id]; dup {
		return model.IncompletePair{}, fmt.Errorf("hishel: create pair %s: %w", id, model.ErrDuplicateID)
	}
	now := m.pol.Now()
	ttl, refresh, err := m.pol.TTLFor(req.Options)
	if err != nil {
		return model.IncompletePair{}, fmt.Errorf("hishel: create pair: %w", err)
	}
	p := &memPair{rec: bolt.Record{
		ID: id, Nonce: rand.Uint64(), Created: bolt.UnixNano(now), LastAccess: bolt.UnixNano(now),
		TTL: int64(ttl), Refresh: refresh, Method: req.Method, URL: req.URL,
		ReqHeader: req.Header.Clone(), ReqOptions: req.Options,
	}}
	if req.Body == nil {
		p.rec.Flags |= bolt.FlagRequestDone
	}
	m.pairs[id] = p
	heap.Push(&m.incs, timeEntry{p.rec.Created, id})
	m.stats.Incomplete++
	m.stats.Bytes += headBytes(&p.rec)
	out := model.IncompletePair{ID: id, Request: req, Meta: p.rec.Meta()}
	if req.Body != nil {
		out.Request.Body = model.NewBody(m.newSaver(ctx, p, bolt.KindRequest, req.Body))
	}
	return out, nil
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
func (m *Memory) AddResponse(ctx context.Context, id model.PairID, resp model.Response, key string) (model.CompletePair, error) {
	if resp.Status < 100 || resp.Status > 999 {
		return model.CompletePair{}, fmt.Errorf("hishel: add response: status %d: %w", resp.Status, model.ErrInvalid)
	}
	if resp.Body.Consumed() {
		return model.CompletePair{}, fmt.Errorf("hishel: add response: response body: %w", model.ErrBodyConsumed)
	}
	if err := m.lock(ctx); err != nil {
		return model.CompletePair{}, err
	}
	defer m.mu.Unlock()
	p := m.pairs[id]
	if p == nil || p.rec.Has(bolt.FlagDeleted) {
		return model.CompletePair{}, fmt.Errorf("hishel: add response to pair %s: %w", id, model.ErrNotFound)
	}
	if p.rec.Has(bolt.FlagHasResponse) {
		return model.CompletePair{}, fmt.Errorf("hishel: add response to pair %s: pair already has a response: %w", id, model.ErrInvalid)
	}
	before := headBytes(&p.rec)
	p.rec.Flags |= bolt.FlagHasResponse
	p.rec.Key, p.rec.Status, p.rec.RespHeader = key, resp.Status, resp.Header.Clone()
	m.stats.Bytes += headBytes(&p.rec) - before
	if resp.Body == nil {
		p.rec.Flags |= bolt.FlagResponseDone
	}
	m.settle(p)
	info := p.rec.Info()
	out := model.CompletePair{ID: id, Request: info.Request, Response: resp, Key: key, Meta: info.Meta}
	out.Request.Header = info.Request.Header.Clone() // out.Response.Header is resp.Header
	if resp.Body != nil {
		out.Response.Body = model.NewBody(m.newSaver(ctx, p, bolt.KindResponse, resp.Body))
	}
	return out, nil
}

// settle completes p if both of its bodies are stored. m.mu is held.
func (m *Memory) settle(p *memPair) {
	r := &p.rec
	if r.Has(bolt.FlagComplete) || !r.Has(bolt.FlagRequestDone|bolt.FlagResponseDone|bolt.FlagHasResponse) {
		return
	}
	now := bolt.UnixNano(m.pol.Now())
	r.Flags |= bolt.FlagComplete
	r.Completed, r.LastAccess = now, now
	if r.TTL > 0 {
		r.Expires = now + r.TTL
	}
	if r.Expires = capExpiry(r, r.Expires); r.Expires != 0 {
		heap.Push(&m.expiry, timeEntry{r.Expires, r.ID})
	}
	if m.keys[r.Key] == nil {
		m.keys[r.Key] = make(map[model.PairID]*memPair)
	}
	m.keys[r.Key][r.ID] = p
	p.lru = m.lru.PushBack(p)
	m.stats.Incomplete--
	m.stats.Pairs++
	m.capVariants(p)
	m.enforceBudget(nil)
}

// capVariants evicts, beyond MaxVariants, the least recently used complete
// pairs under p's key (of pairs read together, the oldest), p (just
// completed) aside. m.mu is held.
func (m *Memory) capVariants(p *memPair) {
	limit := m.pol.MaxVariants
	if limit <= 0 { // no cap
		return
	}
	for vs := m.keys[p.rec.Key]; len(vs) > limit; {
		var old *memPair
		for _, q := range vs {
			if q != p && (old == nil || variantOrder(&q.rec, &old.rec) < 0) {
				old = q
			}
		}
		m.evict(old)
		m.evicted++
	}
}

func (m *Memory) live(p *memPair, now int64) bool {
	r := &p.rec
	return r.Has(bolt.FlagComplete) && !r.Has(bolt.FlagDeleted) && (r.Expires == 0 || now < r.Expires)
}

// GetPairs returns every live, complete, unexpired pair stored under key,
// newest first. Their bodies stream from storage as they are read; each must
// be read to the end or closed. Reading a pair counts as an access: it
// restarts the pair's TTL if the pair refreshes on access, and moves it to
// the back of the eviction order. The pairs' header maps are the caller's
// own to change.
func (m *Memory) GetPairs(ctx context.Context, key string) ([]model.CompletePair, error) {
	if err := m.lock(ctx); err != nil {
		return nil, err
	}
	now := bolt.UnixNano(m.pol.Now())
	var one [1]memSnap // the common case: one pair per key
	snaps := one[:0]
	for _, p := range m.keys[key] {
		if !m.live(p, now) {
			continue
		}
		r := &p.rec
		r.LastAccess = now
		m.lru.MoveToBack(p.lru)
		if r.Refresh && r.TTL > 0 && r.Expires != 0 {
			if exp := capExpiry(r, now+r.TTL); exp > r.Expires {
				r.Expires = exp
				heap.Push(&m.expiry, timeEntry{r.Expires, r.ID})
			}
		}
		snaps = append(snaps, m.snap(p))
	}
	m.mu.Unlock()
	// The pairs are built outside the lock: concurrent hits only take turns
	// for the bookkeeping above.
	out := make([]model.CompletePair, len(snaps))
	for i, sn := range snaps {
		out[i] = m.build(sn)
	}
	slices.SortStableFunc(out, func(a, b model.CompletePair) int {
		if c := b.Meta.Completed.Compare(a.Meta.Completed); c != 0 {
			return c
		}
		return slices.Compare(a.ID[:], b.ID[:])
	})
	return out, nil
}

// pair returns p as a CompletePair with fresh header maps and body readers.
// m.mu is held.
func (m *Memory) pair(p *memPair) model.CompletePair { return m.build(m.snap(p)) }

// memSnap is what a pair's readers need of it, taken under m.mu: a copy of
// its record (whose header maps are replaced, never changed in place) and
// its bodies' chunks (never changed once stored).
type memSnap struct {
	p         *memPair
	rec       bolt.Record
	req, resp [][]byte
}

// snap takes p's snapshot. m.mu is held.
func (m *Memory) snap(p *memPair) memSnap {
	return memSnap{p: p, rec: p.rec, req: p.bodies[bolt.KindRequest], resp: p.bodies[bolt.KindResponse]}
}

// build returns the pair of a snapshot with fresh header maps and body
// readers; it needs no lock.
func (m *Memory) build(sn memSnap) model.CompletePair {
	info := sn.rec.Info()
	cp := model.CompletePair{ID: sn.rec.ID, Request: info.Request, Response: info.Response, Key: sn.rec.Key, Meta: info.Meta}
	cp.Request.Header, cp.Response.Header = cloneHeaders(cp.Request.Header, cp.Response.Header)
	cp.Request.Body = m.body(sn, sn.req)
	cp.Response.Body = m.body(sn, sn.resp)
	return cp
}

// body returns a reader of chunks, one of sn's bodies. An empty body needs
// no reader of its own: it ends at once, wherever the pair has gone.
func (m *Memory) body(sn memSnap, chunks [][]byte) *model.Body {
	if len(chunks) == 0 {
		return model.NewBody(nil)
	}
	return model.NewChunkBody(&memReader{m: m, p: sn.p, nonce: sn.rec.Nonce, chunks: chunks}, nil)
}

// cloneHeaders returns copies of a and b, as http.Header.Clone would, with
// the values of both in one backing array. A nil header stays nil.
func cloneHeaders(a, b http.Header) (http.Header, http.Header) {
	nv := 0
	for _, vs := range a {
		nv += len(vs)
	}
	for _, vs := range b {
		nv += len(vs)
	}
	all := make([]string, nv)
	clone := func(h http.Header) http.Header {
		if h == nil {
			return nil
		}
		out := make(http.Header, len(h))
		for k, vs := range h {
			if vs == nil {
				out[k] = nil // as Clone keeps a nil value nil
				continue
			}
			n := copy(all, vs)
			out[k] = all[:n:n]
			all = all[n:]
		}
		return out
	}
	return clone(a), clone(b)
}

// GetPair returns the live, complete, unexpired pair id, with bodies
// streamed as in GetPairs, or model.ErrNotFound. It does not count as an
// access.
func (m *Memory) GetPair(ctx context.Context, id model.PairID) (model.CompletePair, error) {
	if err := m.lock(ctx); err != nil {
		return model.CompletePair{}, err
	}
	defer m.mu.Unlock()
	p := m.pairs[id]
	if p == nil || !m.live(p, bolt.UnixNano(m.pol.Now())) {
		return model.CompletePair{}, fmt.Errorf("hishel: get pair %s: %w", id, model.ErrNotFound)
	}
	return m.pair(p), nil
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
func (m *Memory) UpdatePair(ctx context.Context, id model.PairID, pair model.CompletePair) (model.CompletePair, error) {
	out, _, err := m.update(ctx, id, pair, nil)
	return out, err
}

// UpdatePairFunc is UpdatePair with the new value computed by fn from the
// stored pair, as one atomic read-modify-write: fn gets the pair as
// stored, and its result is stored only if no other UpdatePair changed the
// pair meanwhile; otherwise fn is called again with the new value (up to
// 64 times, then model.ErrConflict). fn receives the pair with nil bodies
// and header maps of its own. It runs in the caller's goroutine, holding
// nothing: it may call the storage, even UpdatePair on the same pair
// (which makes it run again). If fn leaves Meta.Expires as it was given,
// the stored expiry is kept (a read may have refreshed it meanwhile). If
// fn returns an error, nothing changes and UpdatePairFunc returns that
// error; a panic in fn is an error too. ctx is checked before each call
// of fn and before the write.
func (m *Memory) UpdatePairFunc(ctx context.Context, id model.PairID, fn func(model.CompletePair) (model.CompletePair, error)) (model.CompletePair, error) {
	read := func(ctx context.Context) (cur model.CompletePair, base memBase, err error) {
		if err := m.lock(ctx); err != nil {
			return cur, base, err
		}
		p := m.pairs[id]
		if p == nil || !p.rec.Has(bolt.FlagComplete) || p.rec.Has(bolt.FlagDeleted) {
			m.mu.Unlock()
			return cur, base, fmt.Errorf("hishel: update pair %s: %w", id, model.ErrNotFound)
		}
		sn := m.snap(p)
		m.mu.Unlock()
		info := sn.rec.Info()
		cur = model.CompletePair{ID: id, Request: info.Request, Response: info.Response, Key: sn.rec.Key, Meta: info.Meta}
		cur.Request.Header, cur.Response.Header = cloneHeaders(cur.Request.Header, cur.Response.Header)
		return cur, memBase{p: p, rev: sn.rec.Rev, expires: info.Meta.Expires}, nil
	}
	write := func(ctx context.Context, next model.CompletePair, base memBase) (model.CompletePair, bool, error) {
		return m.update(ctx, id, next, &base)
	}
	return backend.UpdatePairFunc(ctx, id, fn, read, write)
}

// memBase is what UpdatePairFunc's function was given: the pair, its
// revision and its expiry.
type memBase struct {
	p       *memPair
	rev     uint64
	expires time.Time
}

// update writes next over pair id. With base, it writes only if the pair is
// still base's, at base's revision (stale reports that it is not), and
// keeps the stored expiry if next's is base's.
func (m *Memory) update(ctx context.Context, id model.PairID, next model.CompletePair, base *memBase) (out model.CompletePair, stale bool, err error) {
	if err := m.lock(ctx); err != nil {
		return out, false, err
	}
	defer m.mu.Unlock()
	p := m.pairs[id]
	if p == nil || !p.rec.Has(bolt.FlagComplete) || p.rec.Has(bolt.FlagDeleted) || base != nil && base.p != p {
		return out, false, fmt.Errorf("hishel: update pair %s: %w", id, model.ErrNotFound)
	}
	if base != nil && p.rec.Rev != base.rev {
		return out, true, nil
	}
	if err := backend.CheckUpdate(id, next); err != nil {
		return out, false, err
	}
	r := &p.rec
	before := headBytes(r)
	if next.Key != r.Key {
		delete(m.keys[r.Key], id)
		if len(m.keys[r.Key]) == 0 {
			delete(m.keys, r.Key)
		}
		if m.keys[next.Key] == nil {
			m.keys[next.Key] = make(map[model.PairID]*memPair)
		}
		m.keys[next.Key][id] = p
		r.Key = next.Key
	}
	if exp := bolt.UnixNano(next.Meta.Expires); exp != r.Expires && (base == nil || !next.Meta.Expires.Equal(base.expires)) {
		r.Expires = exp
		if exp != 0 {
			heap.Push(&m.expiry, timeEntry{exp, id})
		}
	}
	r.Created, r.TTL, r.Refresh = bolt.UnixNano(next.Meta.Created), int64(next.Meta.TTL), next.Meta.Refresh
	r.Method, r.URL, r.ReqHeader, r.ReqOptions = next.Request.Method, next.Request.URL, next.Request.Header.Clone(), next.Request.Options
	r.Status, r.RespHeader = next.Response.Status, next.Response.Header.Clone()
	r.Rev++
	m.stats.Bytes += headBytes(r) - before
	return m.pair(p), false, nil
}

// variantOrder orders variants for eviction, first to go first: by last
// access, then completion, then ID.
func variantOrder(a, b *bolt.Record) int {
	return cmp.Or(cmp.Compare(a.LastAccess, b.LastAccess), cmp.Compare(a.Completed, b.Completed), bytes.Compare(a.ID[:], b.ID[:]))
}

// Remove soft-deletes the pair id: it is hidden at once and reclaimed by a
// sweep after DeletedRetention. Removing an unknown or already removed pair
// does nothing. Removing an incomplete pair aborts the bodies still being
// stored.
func (m *Memory) Remove(ctx context.Context, id model.PairID) error {
	if err := m.lock(ctx); err != nil {
		return err
	}
	defer m.mu.Unlock()
	if p := m.pairs[id]; p != nil && !p.rec.Has(bolt.FlagDeleted) {
		m.softDelete(p, bolt.UnixNano(m.pol.Now()))
	}
	return nil
}

func (m *Memory) unindex(p *memPair) {
	r := &p.rec
	switch r.State() {
	case model.StateComplete:
		delete(m.keys[r.Key], r.ID)
		if len(m.keys[r.Key]) == 0 {
			delete(m.keys, r.Key)
		}
		m.lru.Remove(p.lru)
		p.lru = nil
		m.stats.Pairs--
	case model.StateIncomplete:
		m.stats.Incomplete--
	case model.StateDeleted:
		m.stats.Deleted--
	}
}

func (m *Memory) softDelete(p *memPair, at int64) {
	m.unindex(p)
	p.rec.Flags |= bolt.FlagDeleted
	p.rec.Deleted = at
	heap.Push(&m.dels, timeEntry{at, p.rec.ID})
	m.stats.Deleted++
}

// purge removes p: its bodies being read end with model.ErrRemoved.
// m.mu is held.
func (m *Memory) purge(p *memPair) {
	m.evict(p)
	p.gone.Store(true)
}

// evict removes p to keep within a bound (MaxBytes, MaxPairs,
// MaxVariants): unlike purge, its bodies being read are read to their end
// (their readers hold the chunks, which no longer count in Stats.Bytes).
// m.mu is held.
func (m *Memory) evict(p *memPair) {
	m.unindex(p)
	delete(m.pairs, p.rec.ID)
	m.stats.Bytes -= headBytes(&p.rec)
	for _, b := range p.bodies {
		for _, c := range b {
			m.stats.Bytes -= int64(len(c))
		}
	}
}

// enforceBudget evicts soft-deleted pairs, then the least recently used
// complete pairs, until the stored bytes fit MaxBytes. m.mu is held.
func (m *Memory) enforceBudget(res *model.SweepResult) {
	// MaxPairs: the least recently used complete pairs beyond the cap go,
	// as Hishel's in-memory capacity does.
	for m.pol.MaxPairs > 0 && m.stats.Pairs > m.pol.MaxPairs && m.lru.Len() > 0 {
		m.evict(m.lru.Front().Value.(*memPair))
		m.evicted++
		if res != nil {
			res.Evicted++
		}
	}
	if m.pol.MaxBytes <= 0 {
		return
	}
	for m.stats.Bytes > m.pol.MaxBytes && m.dels.Len() > 0 {
		e := heap.Pop(&m.dels).(timeEntry)
		if p := m.pairs[e.id]; p != nil && p.rec.Has(bolt.FlagDeleted) && p.rec.Deleted == e.at {
			m.evict(p)
			if res != nil {
				res.Evicted++
			}
		}
	}
	for m.stats.Bytes > m.pol.MaxBytes && m.lru.Len() > 0 {
		m.evict(m.lru.Front().Value.(*memPair))
		m.evicted++
		if res != nil {
			res.Evicted++
		}
	}
}

// Cleanup runs a sweep now and reports what it did: expired pairs are
// soft-deleted, soft-deleted pairs past DeletedRetention and incomplete pairs
// older than IncompleteAge are removed, and pairs beyond MaxBytes are
// evicted. Its cost is proportional to what it removes.
func (m *Memory) Cleanup(ctx context.Context) (model.SweepResult, error) {
	var res model.SweepResult
	if err := m.lock(ctx); err != nil {
		return res, err
	}
	defer m.mu.Unlock()
	now := bolt.UnixNano(m.pol.Now())
	for m.expiry.Len() > 0 && m.expiry[0].at <= now {
		e := heap.Pop(&m.expiry).(timeEntry)
		if p := m.pairs[e.id]; p != nil && p.rec.State() == model.StateComplete && p.rec.Expires == e.at {
			m.softDelete(p, now)
			res.Expired++
		}
	}
	for limit := now - int64(m.pol.Retention); m.dels.Len() > 0 && m.dels[0].at <= limit; {
		e := heap.Pop(&m.dels).(timeEntry)
		if p := m.pairs[e.id]; p != nil && p.rec.Has(bolt.FlagDeleted) && p.rec.Deleted == e.at {
			m.purge(p)
			res.Purged++
		}
	}
	for limit := now - int64(m.pol.IncompleteAge); m.incs.Len() > 0 && m.incs[0].at <= limit; {
		e := heap.Pop(&m.incs).(timeEntry)
		if p := m.pairs[e.id]; p != nil && p.rec.State() == model.StateIncomplete && p.rec.Created == e.at {
			m.purge(p)
			res.Abandoned++
		}
	}
	m.enforceBudget(&res)
	return res, nil
}

// Clear removes every pair at once. Bodies being read fail with
// model.ErrRemoved; bodies being stored fail and are not stored.
func (m *Memory) Clear(ctx context.Context) error {
	if err := m.lock(ctx); err != nil {
		return err
	}
	defer m.mu.Unlock()
	for _, p := range m.pairs {
		p.gone.Store(true)
	}
	m.pairs = make(map[model.PairID]*memPair)
	m.keys = make(map[string]map[model.PairID]*memPair)
	m.lru.Init()
	m.expiry, m.dels, m.incs = nil, nil, nil
	m.stats = model.Stats{}
	return nil
}

// Pairs lists the stored pairs that f matches (the zero Filter: every
// pair, whatever its state: incomplete, complete, expired or not, and
// soft-deleted), in ID order, with heads and metadata only. Nothing is read
// until the listing is consumed; it then takes a snapshot of the matching
// pairs and hands them out without the lock, so the consumer may call the
// storage between pairs. A bad filter (model.ErrInvalid), a closed storage
// or ctx's error ends the listing, as its last item. A filter on Keys is
// served from the keys index.
func (m *Memory) Pairs(ctx context.Context, f model.Filter) iter.Seq2[model.PairInfo, error] {
	return func(yield func(model.PairInfo, error) bool) {
		hits, _, err := m.find(ctx, f)
		for _, h := range hits {
			if err := ctx.Err(); err != nil {
				yield(model.PairInfo{}, err)
				return
			}
			if !yield(h.info, nil) {
				return
			}
		}
		if err != nil {
			yield(model.PairInfo{}, err)
		}
	}
}

// memHit is a pair find found, with its PairInfo as it was then.
type memHit struct {
	p    *memPair
	info model.PairInfo
}

// find returns the pairs f matches, in ID order, and f's Matcher. f.Func
// is called without the lock.
func (m *Memory) find(ctx context.Context, f model.Filter) ([]memHit, *model.Matcher, error) {
	if ctx == nil {
		return nil, nil, fmt.Errorf("hishel: pairs: nil context: %w", model.ErrInvalid)
	}
	if err := m.lock(ctx); err != nil {
		return nil, nil, err
	}
	mt, err := f.Matcher(m.pol.Now())
	if err != nil {
		m.mu.Unlock()
		return nil, nil, err
	}
	var hits []memHit
	add := func(p *memPair) {
		info := p.rec.Info()
		if mt.MatchHeads(info) {
			info.Request.Header, info.Response.Header = info.Request.Header.Clone(), info.Response.Header.Clone()
			hits = append(hits, memHit{p, info})
		}
	}
	if len(f.Keys) > 0 { // complete pairs only, all in the keys index
		for _, k := range f.Keys {
			for _, p := range m.keys[k] {
				add(p)
			}
		}
	} else {
		hits = make([]memHit, 0, len(m.pairs))
		for _, p := range m.pairs {
			add(p)
		}
	}
	m.mu.Unlock()
	slices.SortFunc(hits, func(a, b memHit) int { return slices.Compare(a.info.ID[:], b.info.ID[:]) })
	hits = slices.CompactFunc(hits, func(a, b memHit) bool { return a.p == b.p }) // a key listed twice
	if f.Func != nil {
		hits = slices.DeleteFunc(hits, func(h memHit) bool { return !mt.MatchFunc(h.info) })
	}
	return hits, mt, nil
}

// Delete soft-deletes every pair f matches that is not deleted already,
// as Remove does, and returns how many. A filter on Keys is served from
// the keys index. A pair that changes while Delete runs is deleted only if
// it still matches (f.Func is not asked again); pairs stored while it runs
// may or may not be deleted.
func (m *Memory) Delete(ctx context.Context, f model.Filter) (int, error) {
	hits, mt, err := m.find(ctx, f)
	if err != nil {
		return 0, err
	}
	if err := m.lock(ctx); err != nil {
		return 0, err
	}
	defer m.mu.Unlock()
	now := bolt.UnixNano(m.pol.Now())
	n := 0
	for _, h := range hits {
		if p := m.pairs[h.info.ID]; p == h.p && !p.rec.Has(bolt.FlagDeleted) && mt.MatchHeads(p.rec.Info()) {
			m.softDelete(p, now)
			n++
		}
	}
	return n, nil
}

// Sync returns at once: a Memory has nothing to commit. It exists so that
// code written against any backend can call it.
func (m *Memory) Sync(ctx context.Context) error {
	if err := m.lock(ctx); err != nil {
		return err
	}
	m.mu.Unlock()
	return nil
}

// Stats returns the storage's counters.
func (m *Memory) Stats(ctx context.Context) (model.Stats, error) {
	if err := m.lock(ctx); err != nil {
		return model.Stats{}, err
	}
	defer m.mu.Unlock()
	st := m.stats
	st.Evicted = m.evicted
	return st, nil
}

// Close stops the sweep goroutine and drops every pair. Bodies still being
// read or stored fail with model.ErrClosed. Close is idempotent.
func (m *Memory) Close() error {
	m.closeOnce.Do(func() {
		close(m.stop)
		<-m.maintDone
		m.mu.Lock()
		m.closed = true
		m.shut.Store(true)
		for _, p := range m.pairs {
			p.gone.Store(true)
		}
		m.pairs, m.keys = nil, nil
		m.lru.Init()
		m.expiry, m.dels, m.incs = nil, nil, nil
		m.mu.Unlock()
	})
	return nil
}

// memSink keeps a body's chunks for its pair, which gets them all at the
// end of the body.
type memSink struct {
	m      *Memory
	p      *memPair
	kind   bolt.Kind
	chunks [][]byte
}

func (m *Memory) newSaver(ctx context.Context, p *memPair, kind bolt.Kind, src *model.Body) *backend.Stream {
	return backend.NewStream(ctx, p.rec.ID, src, &memSink{m: m, p: p, kind: kind}, m.pol.ChunkSize, 0)
}

func (k *memSink) Check() error { return nil } // store reports a closed storage

// store hands the body to the pair at its end, if the pair is still there
// and the stream's context has not ended: a source that ends once the
// context is cancelled (a ChanBody whose producer closes its channel) was
// cut short, not completed.
func (k *memSink) Store(ctx context.Context, chunks [][]byte, size int64, final bool) error {
	k.chunks = append(k.chunks, chunks...)
	if !final {
		return nil
	}
	m := k.m
	if err := m.lock(ctx); err != nil {
		return err
	}
	defer m.mu.Unlock()
	p := m.pairs[k.p.rec.ID]
	if p != k.p || p.rec.Has(bolt.FlagDeleted) {
		return fmt.Errorf("hishel: pair %s was removed while its body was stored: %w", k.p.rec.ID, model.ErrNotFound)
	}
	p.bodies[k.kind] = k.chunks
	for _, c := range k.chunks {
		m.stats.Bytes += int64(len(c))
	}
	if k.kind == bolt.KindRequest {
		p.rec.Flags |= bolt.FlagRequestDone
		p.rec.ReqSize = size
	} else {
		p.rec.Flags |= bolt.FlagResponseDone
		p.rec.RespSize = size
	}
	m.settle(p)
	return nil
}

// abort removes the pair at once.
func (k *memSink) Abort() {
	k.chunks = nil
	if k.m.lock(context.Background()) == nil {
		if p := k.m.pairs[k.p.rec.ID]; p == k.p {
			k.m.purge(p)
		}
		k.m.mu.Unlock()
	}
}

// memReader streams a stored body back. Before each chunk it checks that the
// pair is still stored, so a purged pair gives model.ErrRemoved instead of a
// body that ends early.
type memReader struct {
	m      *Memory
	p      *memPair
	nonce  uint64
	chunks [][]byte
}

// NextChunk implements model.ChunkSource. The caller owns the chunk, a copy
// of the stored one, as ChunkSource requires: a reader that changes it must
// not change the stored body.
func (r *memReader) NextChunk() ([]byte, error) {
	c, err := r.SharedChunk()
	if c != nil {
		c = bytes.Clone(c)
	}
	return c, err
}

// SharedChunk implements model.SharedSource: the stored chunk itself, which
// the caller must not modify (a Body copies out of it, or writes it to an
// io.Writer).
func (r *memReader) SharedChunk() ([]byte, error) {
	if len(r.chunks) == 0 {
		return nil, io.EOF
	}
	switch {
	case r.m.shut.Load():
		return nil, model.ErrClosed
	case r.p.gone.Load():
		return nil, fmt.Errorf("hishel: body of pair %s: %w", r.p.rec.ID, model.ErrRemoved)
	}
	c := r.chunks[0]
	r.chunks = r.chunks[1:]
	return c, nil
}

// Buffered implements model.BufferedSource: a stored body is always in
// memory. It checks once that the pair is still stored. Like NextChunk it
// hands over copies: the stored chunks are shared by every reader.
func (r *memReader) Buffered() ([][]byte, bool) {
	if len(r.chunks) == 0 {
		return nil, true
	}
	if r.m.shut.Load() || r.p.gone.Load() {
		return nil, false // NextChunk reports why
	}
	rest := make([][]byte, len(r.chunks))
	for i, c := range r.chunks {
		rest[i] = bytes.Clone(c)
	}
	r.chunks = nil
	return rest, true
}

// timeEntry is an index entry: a pair and a time (expiry, deletion or
// creation). Heaps of them are lazily cleaned: an entry is acted on only if
// the pair still has that time.
type timeEntry struct {
	at int64
	id model.PairID
}

// timeHeap is a min-heap of timeEntry by time (container/heap).
type timeHeap []timeEntry

func (h timeHeap) Len() int           { return len(h) }
func (h timeHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h timeHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *timeHeap) Push(x any)        { *h = append(*h, x.(timeEntry)) }
func (h *timeHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}
