package template

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/hishel-go/hishel/model"
)

// Tier is a store that a [Tiered] puts a memory tier in front of: the
// operations of every store of package cache (cache.Store has exactly
// these methods), so a cache.Bolt, a cache.Memory, a store of any backend
// package or what cache.Open returns is a Tier.
type Tier interface {
	CreatePair(ctx context.Context, req model.Request, opts ...model.CreateOption) (model.IncompletePair, error)
	AddResponse(ctx context.Context, id model.PairID, resp model.Response, key string) (model.CompletePair, error)
	GetPairs(ctx context.Context, key string) ([]model.CompletePair, error)
	GetPair(ctx context.Context, id model.PairID) (model.CompletePair, error)
	UpdatePair(ctx context.Context, id model.PairID, pair model.CompletePair) (model.CompletePair, error)
	UpdatePairFunc(ctx context.Context, id model.PairID, fn func(model.CompletePair) (model.CompletePair, error)) (model.CompletePair, error)
	Remove(ctx context.Context, id model.PairID) error
	Cleanup(ctx context.Context) (model.SweepResult, error)
	Clear(ctx context.Context) error
	Pairs(ctx context.Context, f model.Filter) iter.Seq2[model.PairInfo, error]
	Delete(ctx context.Context, f model.Filter) (int, error)
	Sync(ctx context.Context) error
	Stats(ctx context.Context) (model.Stats, error)
	Close() error
}

// Defaults of TieredOptions.
const (
	// DefaultTierBytes bounds the memory tier when TieredOptions.MaxBytes
	// is zero.
	DefaultTierBytes = 64 << 20
	// DefaultTierBodySize is the largest pair (request and response body
	// bytes) copied into the memory tier when TieredOptions.MaxBodySize is
	// zero.
	DefaultTierBodySize = 1 << 20
	// DefaultCheckInterval is how long the memory tier answers for a key
	// before the lower tier is asked again, when
	// TieredOptions.CheckInterval is zero.
	DefaultCheckInterval = time.Second
	// DefaultTierKeys is how many keys a Tiered remembers the lower tier's
	// pairs of, when TieredOptions.MaxKeys is zero.
	DefaultTierKeys = 1 << 16
)

// TieredOptions configure a Tiered storage. A nil *TieredOptions, and
// every zero field, means the default.
type TieredOptions struct {
	// MaxBytes bounds the bytes the memory tier holds; beyond it the least
	// recently used copies go (they stay in the lower tier). Default
	// DefaultTierBytes; negative: no bound.
	MaxBytes int64
	// MaxPairs caps the pairs the memory tier holds, least recently used
	// going first. Zero: no cap.
	MaxPairs int
	// MaxBodySize is the largest pair, in request and response body bytes,
	// copied into the memory tier; larger pairs are always read from the
	// lower tier. Default DefaultTierBodySize; negative: no limit.
	MaxBodySize int64
	// CheckInterval is how long the memory tier answers for a key before
	// GetPairs asks the lower tier again (which also counts as an access
	// there: its TTL refresh and least-recently-used order). Default
	// DefaultCheckInterval; negative: the memory tier answers until the
	// key is written or a copy is evicted, for a lower tier that no other
	// process writes.
	CheckInterval time.Duration
	// MaxKeys bounds how many keys the Tiered remembers the lower tier's
	// pairs of (about 100 bytes and a PairMeta per pair each). Default
	// DefaultTierKeys.
	MaxKeys int
	// ChunkSize is the memory tier's chunk size. Default 64 KiB.
	ChunkSize int
	// Now is the clock. Default time.Now. Give the lower tier's clock.
	Now func() time.Time
}

// Tiered is a two-tier storage: a memory tier in front of a lower tier,
// any store (bbolt, SQLite, Redis...), which stays the source of truth.
// GetPairs answers hot keys from memory, without a call to the lower tier;
// everything else goes to the lower tier: writes, GetPair, Pairs, Stats,
// Cleanup (the memory tier is swept too). Remove, UpdatePair, Cleanup and
// Clear reach both tiers.
//
// A key's pairs are copied into the memory tier as GetPairs reads them from
// the lower tier: each body is stored in memory as the caller reads it from
// the lower tier, chunk by chunk, never read ahead or buffered whole; a
// pair whose bodies are not read to the end (closed early, or a HEAD
// answer) is not copied. Once the memory tier holds every pair the lower
// tier had under a key, GetPairs serves them from memory, in the lower
// tier's order and with its metadata as last read, for CheckInterval;
// then it asks the lower tier again. A write under the key (a completed
// AddResponse, UpdatePair) sends the next GetPairs to the lower tier at
// once; so do a removal and an expiry of one of its pairs.
//
// What the memory tier cannot see: changes another process makes to a
// shared lower tier, and pairs the lower tier evicts or sweeps on its own.
// For up to CheckInterval after such a change, GetPairs may still serve a
// pair the lower tier no longer has, or miss one it gained. Reads served
// from memory are not accesses of the lower tier: its TTL refresh and LRU
// order see a hot key once per CheckInterval.
//
// A Tiered is safe for concurrent use. It owns its memory tier and the
// lower tier given to OpenTiered: Close closes both. The memory tier owns
// one goroutine (its sweep), from OpenTiered until Close.
//
//hishel:backend
type Tiered struct {
	upper *Memory
	lower Tier
	opts  TieredOptions // defaults applied

	mu      sync.Mutex
	closed  bool
	keys    map[string]*tierKey
	epoch   uint64 // bumped by every removal: a lower read older than it may not mark a key hot
	pending map[model.PairID]*tierWatch
}

// tierKey is what a Tiered knows of the lower tier's pairs under a key.
type tierKey struct {
	ver   uint64 // bumped by every write under the key
	valid bool   // pairs is what the lower tier had at the last read
	until time.Time
	pairs []tierEntry // in the lower tier's order; replaced, never changed
}

// tierEntry is one pair the lower tier had under a key, as it had it.
type tierEntry struct {
	id   model.PairID
	meta model.PairMeta
}

// OpenTiered returns a Tiered storage with a new memory tier in front of
// lower, which it takes over: closing the Tiered closes lower. A nil
// lower fails with model.ErrInvalid.
func OpenTiered(ctx context.Context, lower Tier, opts *TieredOptions) (*Tiered, error) {
	if ctx == nil {
		return nil, fmt.Errorf("hishel: open tiered: nil context: %w", model.ErrInvalid)
	}
	if lower == nil {
		return nil, fmt.Errorf("hishel: open tiered: nil lower tier: %w", model.ErrInvalid)
	}
	var o TieredOptions
	if opts != nil {
		o = *opts
	}
	switch {
	case o.MaxBytes == 0:
		o.MaxBytes = DefaultTierBytes
	case o.MaxBytes < 0:
		o.MaxBytes = 0 // Memory's "no budget"
	}
	if o.MaxBodySize == 0 {
		o.MaxBodySize = DefaultTierBodySize
	}
	if o.CheckInterval == 0 {
		o.CheckInterval = DefaultCheckInterval
	}
	if o.MaxKeys == 0 {
		o.MaxKeys = DefaultTierKeys
	}
	if o.MaxPairs < 0 || o.MaxKeys < 0 {
		return nil, fmt.Errorf("hishel: open tiered: negative MaxPairs or MaxKeys: %w", model.ErrInvalid)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	// The lower tier caps the variants of a key (MaxVariants); the memory
	// tier copies what it keeps, all of them, so it caps none itself.
	upper, err := OpenMemory(ctx, &MemoryOptions{MaxBytes: o.MaxBytes, MaxPairs: o.MaxPairs, MaxVariants: -1,
		ChunkSize: o.ChunkSize, RefreshTTLOnAccess: model.NoRefresh, Now: o.Now})
	if err != nil {
		return nil, fmt.Errorf("hishel: open tiered: memory tier: %w", err)
	}
	return &Tiered{upper: upper, lower: lower, opts: o,
		keys: map[string]*tierKey{}, pending: map[model.PairID]*tierWatch{}}, nil
}

// checkCtx fails a nil or ended context.
func checkCtx(ctx context.Context) error {
	if ctx == nil {
		return fmt.Errorf("hishel: nil context: %w", model.ErrInvalid)
	}
	return ctx.Err()
}

// CreatePair stores a new incomplete pair for req in the lower tier and
// returns it. Its request body is stored as the caller reads the returned
// pair's Request.Body to the end, as in the lower tier's CreatePair.
func (t *Tiered) CreatePair(ctx context.Context, req model.Request, opts ...model.CreateOption) (model.IncompletePair, error) {
	inc, err := t.lower.CreatePair(ctx, req, opts...)
	if err != nil || inc.Request.Body == nil {
		return inc, err
	}
	// The pair becomes visible when both bodies are stored: the end of the
	// request body invalidates its key too, once AddResponse has named it.
	w := &tierWatch{t: t, id: inc.ID, src: inc.Request.Body}
	t.mu.Lock()
	t.pending[inc.ID] = w
	t.mu.Unlock()
	inc.Request.Body = model.NewChunkBody(w, w)
	return inc, nil
}

// AddResponse attaches resp to the incomplete pair id under key, in the
// lower tier, as the lower tier's AddResponse does. When the pair is
// complete, the next GetPairs of key asks the lower tier.
func (t *Tiered) AddResponse(ctx context.Context, id model.PairID, resp model.Response, key string) (model.CompletePair, error) {
	cp, err := t.lower.AddResponse(ctx, id, resp, key)
	if err != nil {
		return cp, err
	}
	t.mu.Lock()
	if w := t.pending[id]; w != nil {
		w.key, w.keyed = key, true
	}
	t.invalidate(key) // the pair is visible now if both bodies were nil
	t.mu.Unlock()
	if cp.Response.Body != nil {
		w := &tierWatch{t: t, id: id, key: key, keyed: true, src: cp.Response.Body}
		cp.Response.Body = model.NewChunkBody(w, w)
	}
	return cp, nil
}

// invalidate makes the next GetPairs of key ask the lower tier, and a
// lower read under way not mark it hot. t.mu is held.
func (t *Tiered) invalidate(key string) {
	if st := t.keys[key]; st != nil {
		st.ver++
		st.valid = false
	}
}

// removed makes every key's next GetPairs compare the memory tier with
// the lower tier's pairs as read after now. t.mu is held.
func (t *Tiered) removed() { t.epoch++ }

// GetPairs returns every live, complete, unexpired pair stored under key,
// newest first, as the lower tier does: from the memory tier when it holds
// them all and the lower tier was read less than CheckInterval ago,
// otherwise from the lower tier, copying into the memory tier the pairs it
// lacks as their bodies are read. Bodies must be read to the end or
// closed.
func (t *Tiered) GetPairs(ctx context.Context, key string) ([]model.CompletePair, error) {
	if err := checkCtx(ctx); err != nil {
		return nil, err
	}
	now := t.opts.Now()
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, model.ErrClosed
	}
	st := t.keys[key]
	if st == nil {
		st = &tierKey{}
		t.remember(key, st)
	}
	ver, epoch := st.ver, t.epoch
	hot := st.valid && (t.opts.CheckInterval < 0 || now.Before(st.until)) && !expired(st.pairs, now)
	want := st.pairs
	t.mu.Unlock()

	var ups []model.CompletePair
	upRead := false
	if hot {
		ps, err := t.upper.GetPairs(ctx, key)
		if err == nil {
			if out, ok := matched(ps, want); ok {
				return out, nil
			}
			ups, upRead = ps, true
		}
	}
	lows, err := t.lower.GetPairs(ctx, key)
	if err != nil {
		closePairs(ups)
		return nil, err
	}
	if !upRead {
		ups, _ = t.upper.GetPairs(ctx, key)
	}
	copies := make(map[model.PairID]model.CompletePair, len(ups))
	for _, p := range ups {
		copies[p.ID] = p
	}
	entries := make([]tierEntry, len(lows))
	for i := range lows {
		lp := &lows[i]
		entries[i] = tierEntry{id: lp.ID, meta: lp.Meta}
		if up, ok := copies[lp.ID]; ok {
			delete(copies, lp.ID)
			t.refreshCopy(ctx, *lp, up)
			_ = lp.Close() // nothing of it read yet
			lp.Request.Body, lp.Response.Body = up.Request.Body, up.Response.Body
			continue
		}
		t.fill(ctx, lp, now)
	}
	for id, p := range copies { // gone from the lower tier
		_ = p.Close()
		_ = t.upper.Remove(ctx, id)
	}
	t.mu.Lock()
	if t.keys[key] == st && st.ver == ver && t.epoch == epoch && !t.closed {
		st.valid, st.pairs, st.until = true, entries, now.Add(t.opts.CheckInterval)
	}
	t.mu.Unlock()
	return lows, nil
}

// remember adds st as key's state, forgetting another key's when the
// Tiered remembers MaxKeys already. t.mu is held.
func (t *Tiered) remember(key string, st *tierKey) {
	if len(t.keys) >= t.opts.MaxKeys {
		for k := range t.keys { // an arbitrary one: map order
			delete(t.keys, k)
			break
		}
	}
	t.keys[key] = st
}

// expired reports whether any of the entries has expired at now.
func expired(entries []tierEntry, now time.Time) bool {
	for _, e := range entries {
		if !e.meta.Expires.IsZero() && !now.Before(e.meta.Expires) {
			return true
		}
	}
	return false
}

// matched returns the memory tier's pairs ps in the order of want, with
// want's metadata, when ps are exactly the pairs of want; otherwise it
// returns false and leaves ps open.
func matched(ps []model.CompletePair, want []tierEntry) ([]model.CompletePair, bool) {
	if len(ps) != len(want) {
		return nil, false
	}
	out := make([]model.CompletePair, len(want))
	for i, e := range want {
		j := slices.IndexFunc(ps, func(p model.CompletePair) bool { return p.ID == e.id })
		if j < 0 {
			return nil, false
		}
		out[i] = ps[j]
		out[i].Meta = e.meta
	}
	return out, true
}

// refreshCopy brings the memory tier's copy up in line with the lower
// tier's pair lp: its heads, key and expiry (changed by another process,
// or by a refresh on access there).
func (t *Tiered) refreshCopy(ctx context.Context, lp, up model.CompletePair) {
	if lp.Meta.Expires.Equal(up.Meta.Expires) && lp.Response.Status == up.Response.Status &&
		sameHeader(lp.Request.Header, up.Request.Header) && sameHeader(lp.Response.Header, up.Response.Header) {
		return
	}
	heads := lp
	heads.Request.Body, heads.Response.Body = nil, nil
	heads.Meta.Refresh = false
	heads.Meta.TTL = 0
	if !lp.Meta.Expires.IsZero() {
		heads.Meta.TTL = max(lp.Meta.Expires.Sub(t.opts.Now()), 1)
	}
	cp, err := t.upper.UpdatePair(ctx, lp.ID, heads)
	if err != nil {
		_ = t.upper.Remove(ctx, lp.ID)
		return
	}
	_ = cp.Close()
}

// sameHeader reports whether a and b hold the same fields and values.
func sameHeader(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, av := range a {
		if !slices.Equal(av, b[k]) {
			return false
		}
	}
	return true
}

func closePairs(ps []model.CompletePair) {
	for _, p := range ps {
		_ = p.Close()
	}
}

// fill makes lp's bodies copy themselves into the memory tier as they are
// read, when lp fits MaxBodySize and is still alive. A pair the memory
// tier already has under way (another GetPairs is filling it) is left as
// it is.
func (t *Tiered) fill(ctx context.Context, lp *model.CompletePair, now time.Time) {
	if t.opts.MaxBodySize > 0 && lp.Meta.RequestSize+lp.Meta.ResponseSize > t.opts.MaxBodySize {
		return
	}
	ttl := model.NoExpiry
	if !lp.Meta.Expires.IsZero() {
		if ttl = lp.Meta.Expires.Sub(now); ttl <= 0 {
			return
		}
	}
	req := model.Request{Method: lp.Request.Method, URL: lp.Request.URL, Header: lp.Request.Header,
		Options: model.RequestOptions{TTL: ttl, Refresh: model.NoRefresh}}
	var reqFeed *tierFeed
	if lp.Meta.RequestSize > 0 {
		reqFeed = &tierFeed{}
		req.Body = model.NewChunkBody(reqFeed, nil)
	}
	inc, err := t.upper.CreatePair(ctx, req, model.WithID(lp.ID))
	if err != nil {
		return
	}
	respFeed := &tierFeed{}
	cp, err := t.upper.AddResponse(ctx, lp.ID, model.Response{Status: lp.Response.Status, Header: lp.Response.Header,
		Body: model.NewChunkBody(respFeed, nil)}, lp.Key)
	if err != nil {
		_ = inc.Request.Body.Close()
		_ = t.upper.Remove(ctx, lp.ID)
		return
	}
	if reqFeed != nil {
		f := &tierFill{src: lp.Request.Body, dst: inc.Request.Body, feed: reqFeed}
		lp.Request.Body = model.NewChunkBody(f, f)
	}
	f := &tierFill{src: lp.Response.Body, dst: cp.Response.Body, feed: respFeed}
	lp.Response.Body = model.NewChunkBody(f, f)
}

// tierFill is a lower-tier body being read that stores what the reader
// gets into the memory tier, in the reader's goroutine and at its pace:
// each chunk read is handed to the memory tier's body stream (dst) through
// feed, and dst is advanced by one chunk. When the memory tier fails, the
// copy is dropped and the reader goes on reading the lower tier.
type tierFill struct {
	src  *model.Body // the lower tier's body
	mu   sync.Mutex  // guards dst, which Close may drop from another goroutine
	dst  *model.Body // the memory tier's stream, fed by feed; nil once done or dropped
	feed *tierFeed
}

func (f *tierFill) NextChunk() ([]byte, error) {
	c, err := f.src.NextChunk()
	f.pass(c, err)
	return c, err
}

func (f *tierFill) Read(p []byte) (int, error) {
	n, err := f.src.Read(p)
	f.pass(p[:n], err)
	return n, err
}

// pass hands what the reader got from the lower tier to the memory tier.
// The memory tier's stream copies each chunk into its own (FillChunk), so
// the reader keeps p.
func (f *tierFill) pass(p []byte, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.dst == nil {
		return
	}
	if len(p) > 0 {
		f.feed.chunk = p
		_, derr := f.dst.NextChunk()
		f.feed.chunk = nil
		if derr != nil {
			f.drop()
			return
		}
	}
	switch {
	case err == io.EOF:
		f.feed.eof = true
		if _, derr := f.dst.NextChunk(); derr != io.EOF {
			f.drop()
			return
		}
		f.dst = nil // stored
	case err != nil:
		f.drop()
	}
}

// drop aborts the copy. f.mu is held.
func (f *tierFill) drop() {
	_ = f.dst.Close()
	f.dst = nil
}

// Close closes the lower tier's body and, before its end, drops the copy.
func (f *tierFill) Close() error {
	err := f.src.Close()
	f.mu.Lock()
	if f.dst != nil {
		f.drop()
	}
	f.mu.Unlock()
	return err
}

// tierFeed is the source of a memory-tier body being filled: it hands over
// the one chunk tierFill.pass put in it, or the end.
type tierFeed struct {
	chunk []byte
	eof   bool
}

var errFeedEmpty = errors.New("hishel: tiered: memory tier read ahead of the lower tier")

func (s *tierFeed) NextChunk() ([]byte, error) {
	switch {
	case s.chunk != nil:
		c := s.chunk
		s.chunk = nil
		return c, nil
	case s.eof:
		return nil, io.EOF
	}
	return nil, errFeedEmpty
}

// tierWatch is a body being stored in the lower tier that, at its end,
// sends the next GetPairs of its pair's key to the lower tier (the pair
// became visible there).
type tierWatch struct {
	t     *Tiered
	id    model.PairID
	src   *model.Body
	key   string // guarded by t.mu
	keyed bool   // key is known; guarded by t.mu
}

func (w *tierWatch) NextChunk() ([]byte, error) {
	c, err := w.src.NextChunk()
	if err != nil {
		w.end(err)
	}
	return c, err
}

func (w *tierWatch) Read(p []byte) (int, error) {
	n, err := w.src.Read(p)
	if err != nil {
		w.end(err)
	}
	return n, err
}

func (w *tierWatch) end(err error) {
	t := w.t
	t.mu.Lock()
	if t.pending[w.id] == w {
		delete(t.pending, w.id)
	}
	if err == io.EOF && w.keyed {
		t.invalidate(w.key)
	}
	t.mu.Unlock()
}

func (w *tierWatch) Close() error {
	err := w.src.Close()
	w.end(model.ErrAborted)
	return err
}

// GetPair returns the live, complete, unexpired pair id from the lower
// tier, as the lower tier's GetPair does.
func (t *Tiered) GetPair(ctx context.Context, id model.PairID) (model.CompletePair, error) {
	return t.lower.GetPair(ctx, id)
}

// UpdatePair replaces the pair id in the lower tier, as the lower tier's
// UpdatePair does, and the memory tier's copy with it.
func (t *Tiered) UpdatePair(ctx context.Context, id model.PairID, pair model.CompletePair) (model.CompletePair, error) {
	cp, err := t.lower.UpdatePair(ctx, id, pair)
	if err != nil {
		return cp, err
	}
	t.updated(ctx, cp)
	return cp, nil
}

// UpdatePairFunc is UpdatePair with the new value computed by fn from the
// stored pair, atomically in the lower tier, as the lower tier's
// UpdatePairFunc does; the memory tier's copy follows.
func (t *Tiered) UpdatePairFunc(ctx context.Context, id model.PairID, fn func(model.CompletePair) (model.CompletePair, error)) (model.CompletePair, error) {
	cp, err := t.lower.UpdatePairFunc(ctx, id, fn)
	if err != nil {
		return cp, err
	}
	t.updated(ctx, cp)
	return cp, nil
}

// updated drops the memory tier's copy of cp, updated in the lower tier,
// and sends the next GetPairs of its key to the lower tier, which copies
// it again as it is read. (An update in place would race with a fill of
// the old heads under way.)
func (t *Tiered) updated(ctx context.Context, cp model.CompletePair) {
	_ = t.upper.Remove(ctx, cp.ID)
	t.mu.Lock()
	t.removed()
	t.invalidate(cp.Key)
	t.mu.Unlock()
}

// Remove soft-deletes the pair id in the lower tier, as the lower tier's
// Remove does, and drops the memory tier's copy.
func (t *Tiered) Remove(ctx context.Context, id model.PairID) error {
	if err := checkCtx(ctx); err != nil {
		return t.lower.Remove(ctx, id) // the lower tier's error for it
	}
	err := t.lower.Remove(ctx, id)
	_ = t.upper.Remove(context.WithoutCancel(ctx), id)
	t.mu.Lock()
	t.removed()
	t.mu.Unlock()
	return err
}

// Cleanup sweeps both tiers now and reports what the lower tier's sweep
// did (the memory tier's evictions are not removals from the storage).
func (t *Tiered) Cleanup(ctx context.Context) (model.SweepResult, error) {
	res, err := t.lower.Cleanup(ctx)
	if err != nil {
		return res, err
	}
	if _, err := t.upper.Cleanup(ctx); err != nil && !errors.Is(err, model.ErrClosed) {
		return res, err
	}
	t.forget()
	return res, nil
}

// forget drops what the Tiered knows of every key: the lower tier may
// have removed any pair.
func (t *Tiered) forget() {
	t.mu.Lock()
	t.keys = map[string]*tierKey{}
	t.removed()
	t.mu.Unlock()
}

// Clear removes every pair of both tiers.
func (t *Tiered) Clear(ctx context.Context) error {
	if err := checkCtx(ctx); err != nil {
		return t.lower.Clear(ctx)
	}
	if err := t.lower.Clear(ctx); err != nil {
		return err
	}
	t.forget()
	return t.upper.Clear(context.WithoutCancel(ctx))
}

// Pairs returns the pairs f matches in the lower tier, the source of
// truth, as the lower tier's Pairs does.
func (t *Tiered) Pairs(ctx context.Context, f model.Filter) iter.Seq2[model.PairInfo, error] {
	return t.lower.Pairs(ctx, f)
}

// Delete soft-deletes the pairs f matches in the lower tier, as its
// Delete does, and returns how many; the memory tier's copies that f
// matches go too, and the Tiered forgets what it knew of every key, so
// that the next GetPairs of any key asks the lower tier.
func (t *Tiered) Delete(ctx context.Context, f model.Filter) (int, error) {
	n, err := t.lower.Delete(ctx, f)
	if checkCtx(ctx) != nil {
		return n, err
	}
	_, _ = t.upper.Delete(context.WithoutCancel(ctx), f)
	t.forget()
	return n, err
}

// Sync commits what the lower tier has not committed yet, as its Sync
// does.
func (t *Tiered) Sync(ctx context.Context) error {
	return t.lower.Sync(ctx)
}

// Stats returns the lower tier's counters: what the storage holds, and
// the pairs the lower tier evicted (Evicted; the memory tier's evictions
// are not removals from the storage and do not count).
func (t *Tiered) Stats(ctx context.Context) (model.Stats, error) {
	return t.lower.Stats(ctx)
}

// Close closes the memory tier and the lower tier, and returns the lower
// tier's error. Close is idempotent as far as the lower tier's Close is.
func (t *Tiered) Close() error {
	t.mu.Lock()
	t.closed = true
	t.keys = map[string]*tierKey{}
	t.mu.Unlock()
	_ = t.upper.Close()
	return t.lower.Close()
}
