package template

import (
	"context"
	"errors"
	"fmt"
	"iter"
	mrand "math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"golang.org/x/sync/errgroup"

	"github.com/hishel-go/hishel/backend"
	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/model"
)

// Defaults of S3Options.
const (
	DefaultAccessFlushInterval = 10 * time.Second
	DefaultRegion              = "us-east-1"
	// DefaultParallel is how many requests one call makes at once.
	DefaultParallel = 8
)

const (
	flushBytes   = 1 << 20   // a streaming body is written in segments of about flushBytes
	readAhead    = 256 << 10 // a stored body is read this much per ranged GET
	maxUpdateTry = 64        // attempts of a conditional write before giving up
	// recountAge is how old the count the budgets start from may get
	// before a store counts again (see S3's doc comment).
	recountAge = 5 * time.Second
	// staleAge is how old an index entry that its pair's head does not
	// list must be before anyone but its writer deletes it; writeWindow
	// is how long a writer may take from its entries to its head, past
	// which it writes them again.
	staleAge    = 15 * time.Minute
	writeWindow = 5 * time.Minute
	// sweepPage is the page size of a sweep's listings: a sweep that
	// stops early reads little.
	sweepPage = 100
	// headCacheSize is how many heads a store remembers, with their
	// ETags, to skip reads of heads that listings show unchanged.
	headCacheSize = 1 << 14
)

// S3Options configure an S3 storage. A nil *S3Options, and every zero
// field, means the default.
type S3Options struct {
	// Bucket is the bucket the store lives in; it must exist. Required.
	Bucket string
	// Prefix is the prefix of the store's object names (as in "cache/");
	// several stores may share a bucket under different prefixes. A
	// prefix that does not end in "/" gets one.
	Prefix string
	// Client is the S3 client to use. If nil, one is made from Endpoint,
	// Region, PathStyle and the credentials: AccessKey and SecretKey if
	// set, else the SDK's default chain (environment, shared files, the
	// instance's role).
	Client *s3.Client
	// Endpoint is the URL of an S3-compatible server (http://host:port);
	// empty means AWS.
	Endpoint string
	// Region is the bucket's region. Default: the SDK's configuration,
	// else DefaultRegion.
	Region string
	// PathStyle addresses the bucket in the path (host/bucket/key) rather
	// than the host name; servers other than AWS usually need it. With an
	// Endpoint it is on unless VirtualHost is set.
	PathStyle   bool
	VirtualHost bool
	// AccessKey and SecretKey are static credentials.
	AccessKey, SecretKey string
	// AccessFlushInterval is how long access times (TTL refresh and the
	// eviction order) are gathered in memory before they are written: one
	// PUT of its head per pair read in the interval. Other processes see a
	// refresh that late; this one sees it at once. Default 10s: S3 bills
	// requests, and a hot pair costs a PUT per interval.
	AccessFlushInterval time.Duration
	// Parallel is how many requests one call makes at once (GetPairs of a
	// key with several variants, Pairs, Clear). Default DefaultParallel.
	Parallel int

	// DefaultTTL, RefreshTTLOnAccess, SweepInterval, DeletedRetention,
	// IncompleteAge, MaxBytes, MaxPairs, MaxVariants and ChunkSize mean
	// what backend.Settings says.
	DefaultTTL         time.Duration
	RefreshTTLOnAccess model.Refresh
	SweepInterval      time.Duration
	DeletedRetention   time.Duration
	IncompleteAge      time.Duration
	MaxBytes           int64
	MaxPairs           int
	MaxVariants        int
	ChunkSize          int
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

func (o *S3Options) settings() backend.Settings {
	return backend.Settings{DefaultTTL: o.DefaultTTL, RefreshTTLOnAccess: o.RefreshTTLOnAccess,
		SweepInterval: o.SweepInterval, DeletedRetention: o.DeletedRetention, IncompleteAge: o.IncompleteAge,
		MaxBytes: o.MaxBytes, MaxPairs: o.MaxPairs, MaxVariants: o.MaxVariants, ChunkSize: o.ChunkSize, Now: o.Now}
}

// SetSettings sets the fields that backend.Settings names.
func (o *S3Options) SetSettings(s backend.Settings) {
	o.DefaultTTL, o.RefreshTTLOnAccess, o.SweepInterval = s.DefaultTTL, s.RefreshTTLOnAccess, s.SweepInterval
	o.DeletedRetention, o.IncompleteAge, o.MaxBytes = s.DeletedRetention, s.IncompleteAge, s.MaxBytes
	o.MaxPairs, o.MaxVariants, o.ChunkSize, o.Now = s.MaxPairs, s.MaxVariants, s.ChunkSize, s.Now
}

// S3 stores pairs as objects in an S3 bucket (AWS, or any server that
// speaks S3 with conditional writes: If-None-Match: * and If-Match on
// PUT), through aws-sdk-go-v2. S3 has no transactions; the store is built
// on three rules instead:
//
//   - A pair's head object (p/<id>) is the truth about it: its record,
//     state, times, sizes, each body's completion marker (how many
//     segments and chunks), and the names of its index entries. Every
//     change of a pair is a conditional PUT of its head over the ETag of
//     the head it changed (If-Match; If-None-Match: * to create it, which
//     is how a duplicate ID is refused), done again from a fresh read when
//     another writer, in any process, won. Every head write carries a
//     random write ID, so that an ETag never repeats and a writer whose
//     request was retried by the SDK recognises its own write.
//   - Body bytes go to segment objects (b/<id>/<nonce>-<kind>-<n>, about a
//     megabyte of chunks each, every chunk with its CRC-32C) before the
//     head that counts them: a pair becomes visible, atomically, with the
//     one PUT of the head that marks it complete. A reader reads segments
//     by ranged GETs of 256 KiB, checks every chunk, and compares what it
//     read with the marker: never a short or altered body.
//   - Index entries (k/<key hash>/ for a key's pairs; t/i, t/a, t/x, t/d for
//     creation, last access, expiry and deletion, in time order) are
//     written before the head that lists them and deleted after the head
//     that no longer does. Entry names are never reused, so an entry its
//     head does not list is garbage (or a write in flight, for a while) and
//     is deleted by whoever meets it; readers check every entry against
//     its head. GetPairs lists k/<key hash>/ and reads the heads it names;
//     a sweep lists each time index from its oldest entry up to the time
//     it sweeps, so its cost follows what is due.
//
// Reading a pair writes nothing at once: its access is gathered for
// AccessFlushInterval and then written into its head alone. The last-access
// and expiry indexes hold lower bounds of those times, so an access moves
// no entry; a sweep or an eviction that meets an entry whose pair was read
// since moves it then.
//
// Stats lists the heads and the time indexes: a complete or deleted pair
// is counted from its entry's name (which holds its size), any other from
// its head. It is exact whatever processes died, and costs a LIST request
// per thousand pairs per index. MaxBytes and MaxPairs are enforced at each
// completion against that count, taken at most 5 s before and kept up to
// date with this store's own changes since: processes that share a store
// see each other's changes within those 5 s, and may briefly pass a budget
// together.
//
// An S3 is safe for concurrent use. It owns one goroutine, from OpenS3
// until Close, that writes access times and runs the background sweep.
//
//hishel:backend
//hishel:scheme s3
type S3 struct {
	c      *s3.Client
	bucket string
	n      names
	opts   S3Options
	pol    backend.Policy
	cache  headCache

	accessMu sync.Mutex
	access   map[model.PairID]int64 // pending last-access times, unix ns

	badMu sync.Mutex
	bad   map[model.PairID]struct{} // found corrupt: the next sweep purges them

	// evicted counts the live pairs this S3 evicted since it was opened
	// (model.Stats.Evicted).
	evicted atomic.Int64

	statsMu sync.Mutex
	base    model.Stats // the last count
	baseAt  time.Time   // when it was taken; zero: never
	delta   model.Stats // this store's changes since

	closed    atomic.Bool
	closeOnce sync.Once
	stop      chan struct{}
	maintDone chan struct{}
}

// OpenS3 opens the store under opts.Prefix in opts.Bucket, writing its
// format object if the prefix is empty, and starts the maintenance
// goroutine. Objects under the prefix that are not a hishel store give
// model.ErrCorrupt; a store of another format, model.ErrFormatVersion; a
// bad option, model.ErrInvalid.
func OpenS3(ctx context.Context, opts *S3Options) (*S3, error) {
	if ctx == nil {
		return nil, fmt.Errorf("hishel: open s3: nil context: %w", model.ErrInvalid)
	}
	var o S3Options
	if opts != nil {
		o = *opts
	}
	pol, err := backend.NewPolicy(o.settings())
	if err != nil {
		return nil, err
	}
	if o.Bucket == "" {
		return nil, fmt.Errorf("hishel: open s3: no bucket: %w", model.ErrInvalid)
	}
	if o.Prefix != "" && !strings.HasSuffix(o.Prefix, "/") {
		o.Prefix += "/"
	}
	if o.AccessFlushInterval <= 0 {
		o.AccessFlushInterval = DefaultAccessFlushInterval
	}
	if o.Parallel <= 0 {
		o.Parallel = DefaultParallel
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c := o.Client
	if c == nil {
		if c, err = newClient(ctx, &o); err != nil {
			return nil, err
		}
	}
	s := &S3{
		c: c, bucket: o.Bucket, n: names{o.Prefix}, opts: o, pol: pol,
		cache:     headCache{m: make(map[model.PairID]cachedHead)},
		access:    make(map[model.PairID]int64),
		bad:       make(map[model.PairID]struct{}),
		stop:      make(chan struct{}),
		maintDone: make(chan struct{}),
	}
	if err := s.initFormat(ctx); err != nil {
		return nil, fmt.Errorf("hishel: open s3 store s3://%s/%s: %w", o.Bucket, o.Prefix, err)
	}
	go backend.Maintain(s.stop, s.maintDone, o.AccessFlushInterval, s.tick,
		pol.SweepInterval, func() { _, _ = s.Cleanup(context.Background()) })
	return s, nil
}

func newClient(ctx context.Context, o *S3Options) (*s3.Client, error) {
	var loadOpts []func(*config.LoadOptions) error
	if o.AccessKey != "" || o.SecretKey != "" {
		loadOpts = append(loadOpts, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(o.AccessKey, o.SecretKey, "")))
	}
	if o.Region != "" {
		loadOpts = append(loadOpts, config.WithRegion(o.Region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return nil, fmt.Errorf("hishel: open s3: AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		cfg.Region = DefaultRegion
	}
	return s3.NewFromConfig(cfg, func(so *s3.Options) {
		if o.Endpoint != "" {
			so.BaseEndpoint = aws.String(o.Endpoint)
			so.UsePathStyle = !o.VirtualHost
		}
		if o.PathStyle {
			so.UsePathStyle = true
		}
		// Checksums only where S3 requires them: our objects carry their
		// own CRC-32C, and S3-compatible servers differ in the SDK's newer
		// trailing checksums.
		so.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		so.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	}), nil
}

// OpenS3URL opens the S3 store that a store URL names (see cache.Open):
// s3://bucket/prefix. Its query parameters set S3Options: the shared ttl,
// refresh, sweep, retention, incomplete-age, max-bytes, max-pairs,
// max-variants and chunk-size (see backend.Query.Settings), and
//
//	endpoint=URL            Endpoint (an S3-compatible server)
//	region=NAME             Region
//	path-style=BOOL         PathStyle (on by default with an endpoint)
//	virtual-host=BOOL       VirtualHost
//	access-flush=DURATION   AccessFlushInterval
//	parallel=N              Parallel
//
// as in s3://cache-bucket/hishel/?region=eu-west-1&ttl=1h or
// s3://bucket/prefix?endpoint=http://127.0.0.1:7070. Credentials come
// from the SDK's default chain (AWS_ACCESS_KEY_ID, shared files, roles),
// or from the URL's user information (s3://KEY:SECRET@bucket/prefix),
// which is best kept for tests. A bad URL fails with model.ErrInvalid.
func OpenS3URL(ctx context.Context, u *url.URL) (*S3, error) {
	o, err := urlOptions(u)
	if err != nil {
		return nil, err
	}
	return OpenS3(ctx, &o)
}

// urlOptions reads a store URL into options (see OpenS3URL).
func urlOptions(u *url.URL) (S3Options, error) {
	if u.Opaque != "" || u.Host == "" {
		return S3Options{}, fmt.Errorf("hishel: store URL %s: want s3://bucket/prefix: %w", backend.Redacted(u), model.ErrInvalid)
	}
	o := S3Options{Bucket: u.Host, Prefix: strings.TrimPrefix(u.Path, "/")}
	if u.User != nil {
		o.AccessKey = u.User.Username()
		o.SecretKey, _ = u.User.Password()
	}
	q := backend.NewQuery(u)
	s := o.settings()
	q.Settings(&s)
	q.String("endpoint", &o.Endpoint)
	q.String("region", &o.Region)
	q.Bool("path-style", &o.PathStyle)
	q.Bool("virtual-host", &o.VirtualHost)
	q.Duration("access-flush", &o.AccessFlushInterval)
	q.Int("parallel", &o.Parallel)
	if err := q.Done(); err != nil {
		return S3Options{}, err
	}
	if o.Endpoint != "" {
		if e, err := url.Parse(o.Endpoint); err != nil || (e.Scheme != "http" && e.Scheme != "https") || e.Host == "" {
			return S3Options{}, fmt.Errorf("hishel: store URL %s: endpoint %q: want http(s)://host[:port]: %w", backend.Redacted(u), o.Endpoint, model.ErrInvalid)
		}
	}
	o.SetSettings(s)
	return o, nil
}

// initFormat reads the format object, or writes it under an empty prefix.
func (s *S3) initFormat(ctx context.Context) error {
	for {
		b, _, err := s.get(ctx, s.n.format())
		if err == nil {
			return parseFormat(b)
		}
		if !errors.Is(err, errNoObject) {
			return err
		}
		foreign := false
		if err := s.list(ctx, s.n.p, 1, func(object) (bool, error) { foreign = true; return false, nil }); err != nil {
			return err
		}
		if foreign {
			return fmt.Errorf("objects under the prefix without %s: not a hishel store: %w", formatObject, model.ErrCorrupt)
		}
		_, err = s.putBytes(ctx, s.n.format(), formatContent(), "", true)
		if err == nil || !errors.Is(err, errPrecondition) {
			return err // written, or failed; else another process wrote it first
		}
	}
}

// check reports why an operation may not run: a nil context
// (model.ErrInvalid), a closed storage, a done context.
func (s *S3) check(ctx context.Context) error {
	if ctx == nil {
		return fmt.Errorf("hishel: nil context: %w", model.ErrInvalid)
	}
	if s.closed.Load() {
		return model.ErrClosed
	}
	return ctx.Err()
}

// opErr maps an operation's error: after Close, model.ErrClosed.
func (s *S3) opErr(err error) error {
	if err != nil && s.closed.Load() {
		return model.ErrClosed
	}
	return err
}

func (s *S3) now() int64 { return bolt.UnixNano(s.pol.Now()) }

func (s *S3) noteBad(id model.PairID) {
	s.badMu.Lock()
	s.bad[id] = struct{}{}
	s.badMu.Unlock()
}

// CreatePair stores a new incomplete pair for req and returns it. Its
// request body is stored as the caller reads the returned pair's
// Request.Body to the end (a nil body is stored at once as empty). ctx
// governs that body stream too: cancelling it aborts the pair.
//
// With model.WithID the pair gets the caller's ID; an ID already in use
// (by any process sharing the store) fails with model.ErrDuplicateID: the
// head is created with If-None-Match: *. A body that has already been read
// from fails with model.ErrBodyConsumed; a negative TTL other than
// model.NoExpiry, with model.ErrInvalid.
func (s *S3) CreatePair(ctx context.Context, req model.Request, opts ...model.CreateOption) (model.IncompletePair, error) {
	if err := s.check(ctx); err != nil {
		return model.IncompletePair{}, err
	}
	if err := backend.CheckRequest(req); err != nil {
		return model.IncompletePair{}, err
	}
	ttl, refresh, err := s.pol.TTLFor(req.Options)
	if err != nil {
		return model.IncompletePair{}, fmt.Errorf("hishel: create pair: %w", err)
	}
	id := model.ApplyCreateOptions(opts).ID
	if id.IsZero() {
		id = model.NewPairID()
	}
	now := s.now()
	rec := &bolt.Record{
		ID: id, Nonce: mrand.Uint64() >> 1, Created: now, LastAccess: now,
		TTL: int64(ttl), Refresh: refresh, Method: req.Method, URL: req.URL,
		ReqHeader: req.Header.Clone(), ReqOptions: req.Options,
	}
	if req.Body == nil {
		rec.Flags |= bolt.FlagRequestDone
	}
	h := &head{rec: rec, rev: 1, wid: newWID()}
	_, h.ents = plan(nil, rec, h.wid, true)
	if _, err := s.writeHead(ctx, id, h, h.ents, ""); err != nil {
		if errors.Is(err, errPrecondition) {
			return model.IncompletePair{}, fmt.Errorf("hishel: create pair %s: %w", id, model.ErrDuplicateID)
		}
		return model.IncompletePair{}, s.opErr(err)
	}
	s.countChange(rec, 1)
	out := model.IncompletePair{ID: id, Request: req, Meta: rec.Meta()}
	if req.Body != nil {
		out.Request.Body = model.NewBody(s.newSaver(ctx, rec, bolt.KindRequest, req.Body))
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
func (s *S3) AddResponse(ctx context.Context, id model.PairID, resp model.Response, key string) (model.CompletePair, error) {
	if err := s.check(ctx); err != nil {
		return model.CompletePair{}, err
	}
	if err := backend.CheckResponse(resp); err != nil {
		return model.CompletePair{}, err
	}
	_, next, _, err := s.change(ctx, id, false, func(h *head) error {
		if h == nil || h.rec.Has(bolt.FlagDeleted) {
			return fmt.Errorf("hishel: add response to pair %s: %w", id, model.ErrNotFound)
		}
		if h.rec.Has(bolt.FlagHasResponse) {
			return fmt.Errorf("hishel: add response to pair %s: pair already has a response: %w", id, model.ErrInvalid)
		}
		r := h.rec
		r.Flags |= bolt.FlagHasResponse
		r.Key, r.Status, r.RespHeader = key, resp.Status, resp.Header.Clone()
		if resp.Body == nil {
			r.Flags |= bolt.FlagResponseDone
		}
		backend.Settle(r, s.now())
		return nil
	})
	if err == nil && next.rec.Has(bolt.FlagComplete) {
		err = s.completed(ctx, next.rec)
	}
	if err != nil {
		return model.CompletePair{}, s.opErr(err)
	}
	info := next.rec.Info()
	out := model.CompletePair{ID: id, Request: info.Request, Response: resp, Key: key, Meta: info.Meta}
	out.Request.Header = info.Request.Header.Clone()
	if resp.Body != nil {
		out.Response.Body = model.NewBody(s.newSaver(ctx, next.rec, bolt.KindResponse, resp.Body))
	}
	return out, nil
}

// keyHeads reads the heads of the live complete pairs under key: the key
// index lists them, and every entry is checked against its head. Entries
// no head lists are dropped (see dropStale).
func (s *S3) keyHeads(ctx context.Context, key string) ([]*head, error) {
	prefix := s.n.keyIndex(key)
	type found struct {
		ents []entry
		objs []object
	}
	byID := make(map[model.PairID]*found)
	var ids []model.PairID
	err := s.list(ctx, prefix, 0, func(o object) (bool, error) {
		if e, ok := parseEntry(strings.TrimPrefix(o.key, s.n.p)); ok {
			f := byID[e.id]
			if f == nil {
				f = &found{}
				byID[e.id] = f
				ids = append(ids, e.id)
			}
			f.ents, f.objs = append(f.ents, e), append(f.objs, o)
		}
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	heads := make([]*head, len(ids))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.opts.Parallel)
	for i, id := range ids {
		g.Go(func() error {
			f := byID[id]
			h, _, err := s.readHead(gctx, id)
			switch {
			case errors.Is(err, errNoObject):
				h = nil
			case err != nil:
				return err
			}
			listed := false
			for j, e := range f.ents {
				if h != nil && h.lists(e) {
					listed = true
				} else {
					s.dropStale(gctx, f.objs[j], h, e)
				}
			}
			if listed && h.rec.State() == model.StateComplete && h.rec.Key == key {
				heads[i] = h
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return slices.DeleteFunc(heads, func(h *head) bool { return h == nil }), nil
}

// GetPairs returns every live, complete, unexpired pair stored under key,
// newest first. It lists the key's index and reads the heads it names:
// their bodies stream from the bucket as they are read, and each must be
// read to the end or closed. Reading a pair counts as an access: it
// restarts the pair's TTL if the pair refreshes on access, and moves it to
// the back of the eviction order (written within AccessFlushInterval).
func (s *S3) GetPairs(ctx context.Context, key string) ([]model.CompletePair, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	heads, err := s.keyHeads(ctx, key)
	if err != nil {
		return nil, s.opErr(err)
	}
	now := s.now()
	out := make([]model.CompletePair, 0, len(heads))
	s.accessMu.Lock()
	for _, h := range heads {
		rec := h.rec
		exp := expiry(rec, s.access[rec.ID])
		if exp != 0 && now >= exp {
			continue
		}
		if now > rec.LastAccess && now > s.access[rec.ID] {
			s.access[rec.ID] = now
		}
		rec.Expires = expiry(rec, max(now, s.access[rec.ID]))
		rec.LastAccess = max(rec.LastAccess, now)
		out = append(out, s.pair(h))
	}
	s.accessMu.Unlock()
	backend.SortNewest(out)
	return out, nil
}

// pair returns h's pair with its bodies read from the bucket as they are
// read.
func (s *S3) pair(h *head) model.CompletePair {
	rec := h.rec
	info := rec.Info()
	cp := model.CompletePair{ID: rec.ID, Request: info.Request, Response: info.Response, Key: rec.Key, Meta: info.Meta}
	cp.Request.Body = s.body(h, bolt.KindRequest)
	cp.Response.Body = s.body(h, bolt.KindResponse)
	return cp
}

// GetPair returns the live, complete, unexpired pair id, with bodies
// streamed as in GetPairs, or model.ErrNotFound. It does not count as an
// access.
func (s *S3) GetPair(ctx context.Context, id model.PairID) (model.CompletePair, error) {
	if err := s.check(ctx); err != nil {
		return model.CompletePair{}, err
	}
	h, _, err := s.readHead(ctx, id)
	if err != nil && !errors.Is(err, errNoObject) {
		return model.CompletePair{}, s.opErr(err)
	}
	if h == nil || h.rec.State() != model.StateComplete {
		return model.CompletePair{}, fmt.Errorf("hishel: get pair %s: %w", id, model.ErrNotFound)
	}
	exp := expiry(h.rec, s.pending(id))
	if exp != 0 && s.now() >= exp {
		return model.CompletePair{}, fmt.Errorf("hishel: get pair %s: %w", id, model.ErrNotFound)
	}
	h.rec.Expires = exp
	return s.pair(h), nil
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
func (s *S3) UpdatePair(ctx context.Context, id model.PairID, pair model.CompletePair) (model.CompletePair, error) {
	return s.UpdatePairFunc(ctx, id, func(model.CompletePair) (model.CompletePair, error) { return pair, nil })
}

// UpdatePairFunc is UpdatePair with the new value computed by fn from the
// stored pair (backend.UpdatePairFunc): fn receives the pair with nil
// bodies and runs holding nothing, so it may call the storage. Its result
// is written, with If-Match over the ETag of the head it is written over,
// only if no UpdatePair or Remove (in any process) changed the pair since
// fn saw it (backend.Changed: an access time written meanwhile is no
// change); otherwise fn is called again with the pair as it is now, up to
// backend.MaxUpdateAttempts times (then model.ErrConflict). If fn returns
// an error (or panics), nothing changes and UpdatePairFunc returns that
// error. ctx is checked before each read and before the write.
func (s *S3) UpdatePairFunc(ctx context.Context, id model.PairID, fn func(model.CompletePair) (model.CompletePair, error)) (model.CompletePair, error) {
	if err := s.check(ctx); err != nil {
		return model.CompletePair{}, err
	}
	read := func(ctx context.Context) (model.CompletePair, *bolt.Record, error) {
		h, _ := s.cache.get(id) // a remembered head that is stale fails the write, which reads afresh
		if h == nil {
			var err error
			if h, _, err = s.readHead(ctx, id); err != nil && !errors.Is(err, errNoObject) {
				return model.CompletePair{}, nil, s.opErr(err)
			}
		}
		if h == nil || h.rec.State() != model.StateComplete {
			return model.CompletePair{}, nil, fmt.Errorf("hishel: update pair %s: %w", id, model.ErrNotFound)
		}
		cur := s.pair(h.clone())
		cur.Request.Body, cur.Response.Body = nil, nil
		return cur, h.rec, nil
	}
	write := func(ctx context.Context, nv model.CompletePair, base *bolt.Record) (model.CompletePair, bool, error) {
		if err := backend.CheckUpdate(id, nv); err != nil {
			return model.CompletePair{}, false, err
		}
		_, next, _, err := s.change(ctx, id, false, func(h *head) error {
			if h == nil || backend.Changed(base, h.rec) {
				return errStale
			}
			h.rec = backend.Updated(h.rec, nv)
			return nil
		})
		switch {
		case errors.Is(err, errStale):
			return model.CompletePair{}, true, nil
		case err != nil:
			return model.CompletePair{}, false, s.opErr(err)
		}
		// A refresh gathered before the update is the update's to decide.
		s.accessMu.Lock()
		delete(s.access, id)
		s.accessMu.Unlock()
		return s.pair(next), false, nil
	}
	return backend.UpdatePairFunc(ctx, id, fn, read, write)
}

// errStale ends UpdatePairFunc's write without writing: the pair changed
// since its function saw it.
var errStale = errors.New("the pair changed")

// Remove soft-deletes the pair id: it is hidden at once (from every
// process) and reclaimed by a sweep after DeletedRetention. Removing an
// unknown or already removed pair does nothing. Removing an incomplete pair
// aborts the bodies still being stored.
func (s *S3) Remove(ctx context.Context, id model.PairID) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	now := s.now()
	_, _, _, err := s.change(ctx, id, false, func(h *head) error {
		if h == nil || h.rec.Has(bolt.FlagDeleted) {
			return errStop
		}
		h.rec.Flags |= bolt.FlagDeleted
		h.rec.Deleted = now
		return nil
	})
	switch {
	case errors.Is(err, model.ErrCorrupt):
		_, err = s.purge(ctx, id, nil, "")
	case errors.Is(err, errStop):
		err = nil
	}
	return s.opErr(err)
}

// Clear removes every pair at once (for every process sharing the store):
// it deletes every object under the prefix but the format object. Bodies
// being read fail with model.ErrRemoved; bodies being stored fail and are
// not stored.
func (s *S3) Clear(ctx context.Context) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	s.accessMu.Lock()
	clear(s.access)
	s.accessMu.Unlock()
	s.cache.reset()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.opts.Parallel)
	err := s.list(ctx, s.n.p, 0, func(o object) (bool, error) {
		if o.key != s.n.format() {
			g.Go(func() error { return s.del(gctx, o.key) })
		}
		return true, nil
	})
	if werr := g.Wait(); err == nil {
		err = werr
	}
	s.statsMu.Lock()
	s.baseAt = time.Time{}
	s.statsMu.Unlock()
	return s.opErr(err)
}

// Pairs returns the stored pairs f matches, in ID order, whatever their
// state unless f says (see model.Filter), heads and metadata only; the
// loop body may call the storage. Every filter lists and reads every head
// (S3 has no query; the key and time indexes are not used for filters yet).
func (s *S3) Pairs(ctx context.Context, f model.Filter) iter.Seq2[model.PairInfo, error] {
	return backend.Finder{All: s.listAll}.Pairs(ctx, f, s.pol.Now)
}

// Delete soft-deletes the pairs f matches, as Remove does, and returns how
// many: it lists them with Pairs and removes each (backend.Delete). Pairs
// stored while it runs may or may not be deleted.
func (s *S3) Delete(ctx context.Context, f model.Filter) (int, error) {
	return backend.Delete(ctx, f, s.Pairs, s.Remove)
}

// listAll calls fn for every stored pair, in ID order, whatever its state:
// incomplete, complete (expired or not) and soft-deleted. The PairInfo has
// heads and metadata only. It lists the heads and reads those it does not
// remember as listed (by ETag), in pages of 256, calling fn between pages,
// so fn may call the storage. An error from fn stops the iteration and is
// returned.
func (s *S3) listAll(ctx context.Context, fn func(model.PairInfo) error) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	prefix := s.n.heads()
	type listed struct {
		id   model.PairID
		etag string
	}
	var page []listed
	flush := func() error {
		heads := make([]*head, len(page))
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(s.opts.Parallel)
		for i, l := range page {
			g.Go(func() error {
				h, err := s.headAt(gctx, l.id, l.etag)
				if errors.Is(err, errNoObject) {
					return nil
				}
				heads[i] = h
				return err
			})
		}
		if err := g.Wait(); err != nil {
			return fmt.Errorf("hishel: pairs: %w", err)
		}
		page = page[:0]
		for _, h := range heads {
			if h == nil {
				continue
			}
			if err := fn(h.rec.Info()); err != nil {
				return err
			}
		}
		return nil
	}
	err := s.list(ctx, prefix, 0, func(o object) (bool, error) {
		if id, ok := parseID(strings.TrimPrefix(o.key, prefix)); ok {
			page = append(page, listed{id, o.etag})
		}
		if len(page) == 256 {
			return true, flush()
		}
		return true, ctx.Err()
	})
	if err == nil && len(page) > 0 {
		err = flush()
	}
	return s.opErr(err)
}

// Sync writes the gathered access times.
func (s *S3) Sync(ctx context.Context) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	return s.opErr(s.flushAccess(ctx))
}

// Stats counts the pairs of the store, whatever process stored them (see
// S3's doc comment: it lists the heads and the time indexes), and reports
// the evictions this S3 made (Evicted: other processes count their own).
func (s *S3) Stats(ctx context.Context) (model.Stats, error) {
	if err := s.check(ctx); err != nil {
		return model.Stats{}, err
	}
	st, err := s.count(ctx)
	if err != nil {
		return model.Stats{}, s.opErr(err)
	}
	st.Evicted = s.evicted.Load()
	return st, nil
}

// Close writes gathered access times and stops the maintenance goroutine.
// Bodies still being read or stored fail with model.ErrClosed. Close is
// idempotent.
func (s *S3) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.maintDone
		s.closed.Store(true)
	})
	return nil
}
