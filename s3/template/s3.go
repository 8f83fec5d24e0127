package template

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
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
	DefaultAccessFlushInterval = time.Second
	DefaultRegion              = "us-east-1"
	// DefaultParallel is how many requests one call makes at once.
	DefaultParallel = 8
)

const (
	flushBytes    = 1 << 20   // a streaming body is written in segments of about flushBytes
	readAhead     = 256 << 10 // a stored body is read this much per ranged GET
	maxUpdateTry  = 64        // attempts of a conditional write before giving up
	othersMaxAge  = 5 * time.Second
	counterBudget = 10 * time.Second // a counters write's own deadline
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
	// eviction order) and this process's counters are gathered in memory
	// before they are written. Default 1s.
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
//     state, times, sizes, and each body's completion marker (how many
//     segments and chunks). Every change of a pair is a conditional PUT of
//     its head over the ETag it read (If-Match; If-None-Match: * to create
//     it, which is how a duplicate ID is refused), retried on a fresh read
//     when another writer, in any process, won; heads carry a revision, so
//     that an ETag never repeats.
//   - Body bytes go to segment objects (b/<id>/<nonce>/<kind>/<n>, about a
//     megabyte of chunks each, every chunk with its CRC-32C) before the
//     head that counts them: a pair becomes visible, atomically, with the
//     one PUT of the head that marks it complete. A reader reads segments
//     by ranged GETs of 256 KiB, checks every chunk, and compares what it
//     read with the marker: never a short or altered body.
//   - Index objects (k/<key hash>/<id> for a key's pairs, t/<index>/<time>/<id>
//     for expiry, deletion, creation and last access) are written before
//     the head change they index and deleted after the change that ends
//     them, so an index may hold stale entries but never misses one. Readers
//     check every entry against its head: GetPairs lists k/<key hash>/ and
//     reads the heads it names; a sweep lists each time index from its
//     oldest entry up to the time it sweeps, so its cost follows what is
//     due, and drops stale entries as it meets them.
//
// Counters (Stats, MaxBytes, MaxPairs) are kept by each store instance for
// the changes it makes, in memory and, every AccessFlushInterval, in an
// object of its own (s/<instance>), which no other process writes; Stats
// sums them. A store enforces its budgets with its own counts and the
// others' as last read (at most 5 s old). A process killed between a
// change and its next counters write leaves the counters off by what it
// did in that interval; the pairs themselves are never affected.
//
// Access times are gathered for AccessFlushInterval before they are
// written; another process sees a refresh once it is written.
//
// An S3 is safe for concurrent use. It owns one goroutine, from OpenS3
// until Close, that writes access times and counters and runs the
// background sweep.
//
//hishel:backend
//hishel:scheme s3
type S3 struct {
	c        *s3.Client
	bucket   string
	n        names
	opts     S3Options
	pol      backend.Policy
	instance string

	accessMu sync.Mutex
	access   map[model.PairID]int64 // pending last-access times, unix ns

	badMu sync.Mutex
	bad   map[model.PairID]struct{} // found corrupt: the next sweep purges them

	statsMu      sync.Mutex
	own          model.Stats
	epoch        uint64
	dirty        bool
	others       model.Stats
	othersRead   time.Time
	counterWrite sync.Mutex // one counters write at a time

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
	var inst [8]byte
	_, _ = rand.Read(inst[:])
	s := &S3{
		c: c, bucket: o.Bucket, n: names{o.Prefix}, opts: o, pol: pol, instance: hex.EncodeToString(inst[:]),
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
	if u.Opaque != "" || u.Host == "" {
		return nil, fmt.Errorf("hishel: store URL %s: want s3://bucket/prefix: %w", backend.Redacted(u), model.ErrInvalid)
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
		return nil, err
	}
	if o.Endpoint != "" {
		if e, err := url.Parse(o.Endpoint); err != nil || (e.Scheme != "http" && e.Scheme != "https") || e.Host == "" {
			return nil, fmt.Errorf("hishel: store URL %s: endpoint %q: want http(s)://host[:port]: %w", backend.Redacted(u), o.Endpoint, model.ErrInvalid)
		}
	}
	o.SetSettings(s)
	return OpenS3(ctx, &o)
}

// initFormat reads the format object, or writes it under an empty prefix.
func (s *S3) initFormat(ctx context.Context) error {
	for {
		b, _, err := s.get(ctx, s.n.format())
		if err == nil {
			epoch, err := parseFormat(b)
			s.epoch = epoch
			return err
		}
		if !errors.Is(err, errNoObject) {
			return err
		}
		foreign := false
		if err := s.list(ctx, s.n.p, func(string) (bool, error) { foreign = true; return false, nil }); err != nil {
			return err
		}
		if foreign {
			return fmt.Errorf("objects under the prefix without %s: not a hishel store: %w", formatObject, model.ErrCorrupt)
		}
		_, err = s.putBytes(ctx, s.n.format(), formatContent(0), "", true)
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

// size is what a pair counts against MaxBytes and in Stats.Bytes: its
// stored bodies.
func size(rec *bolt.Record) int64 { return rec.ReqSize + rec.RespSize }

// count adds rec's contribution to the counters, times sign.
func (s *S3) count(rec *bolt.Record, sign int) {
	if rec == nil {
		return
	}
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	switch rec.State() {
	case model.StateComplete:
		s.own.Pairs += sign
	case model.StateIncomplete:
		s.own.Incomplete += sign
	case model.StateDeleted:
		s.own.Deleted += sign
	}
	s.own.Bytes += int64(sign) * size(rec)
	s.dirty = true
}

// readHead reads pair id's head and its ETag; errNoObject if there is
// none. A damaged head is model.ErrCorrupt, and the pair is noted for the
// sweep.
func (s *S3) readHead(ctx context.Context, id model.PairID) (*head, string, error) {
	b, etag, err := s.get(ctx, s.n.head(id))
	if err != nil {
		return nil, "", err
	}
	h, err := decodeHead(b)
	if err == nil && h.rec.ID != id {
		err = fmt.Errorf("head holds pair %s: %w", h.rec.ID, model.ErrCorrupt)
	}
	if err != nil {
		s.noteBad(id)
		return nil, "", fmt.Errorf("hishel: pair %s: %w", id, err)
	}
	return h, etag, nil
}

// errStop ends change without writing, with no error.
var errStop = errors.New("nothing to change")

// change is a pair's read-modify-write: it reads the head, lets fn change
// a copy (fn returns errStop to write nothing, or another error to fail),
// writes the index entries the new head needs (before it, see S3's doc),
// and writes the head over the ETag it read; when another writer changed
// the head meanwhile, it starts again from a fresh read. It returns the
// head as it was and as written (nil, nil when the pair does not exist and
// fn accepts that: fn gets a nil head then). After the write it deletes the
// index entries that the old head needed and the new one does not, and
// counts the change.
func (s *S3) change(ctx context.Context, id model.PairID, fn func(h *head) error) (old, next *head, err error) {
	for range maxUpdateTry {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		cur, etag, err := s.readHead(ctx, id)
		if errors.Is(err, errNoObject) {
			if err := fn(nil); err != nil {
				return nil, nil, err
			}
			return nil, nil, nil
		}
		if err != nil {
			return nil, nil, err
		}
		next := cur.clone()
		if err := fn(next); err != nil {
			return cur, nil, err
		}
		next.rev = cur.rev + 1
		added := s.indexDiff(next.rec, cur.rec)
		if err := s.putEntries(ctx, added); err != nil {
			return cur, nil, err
		}
		_, err = s.putBytes(ctx, s.n.head(id), next.encode(), etag, false)
		if errors.Is(err, errPrecondition) || errors.Is(err, errNoObject) {
			// Lost to another writer (or removed): the entries written for
			// this attempt may be stale now; readers check them.
			continue
		}
		if err != nil {
			return cur, nil, err
		}
		s.delEntries(ctx, s.indexDiff(cur.rec, next.rec))
		s.count(cur.rec, -1)
		s.count(next.rec, 1)
		return cur, next, nil
	}
	return nil, nil, fmt.Errorf("hishel: pair %s changed each of %d times it was written", id, maxUpdateTry)
}

// indexEntries are the index objects a pair's record needs.
func (s *S3) indexEntries(r *bolt.Record) []string {
	var out []string
	switch r.State() {
	case model.StateIncomplete:
		out = append(out, s.n.timeEntry(idxIncomplete, r.Created, r.ID))
	case model.StateComplete:
		out = append(out, s.n.keyEntry(r.Key, r.ID), s.n.timeEntry(idxAccess, r.LastAccess, r.ID))
		if r.Expires != 0 {
			out = append(out, s.n.timeEntry(idxExpiry, r.Expires, r.ID))
		}
	case model.StateDeleted:
		out = append(out, s.n.timeEntry(idxDeleted, r.Deleted, r.ID))
	}
	return out
}

// indexDiff returns the entries a needs that b does not (b may be nil).
func (s *S3) indexDiff(a, b *bolt.Record) []string {
	need := s.indexEntries(a)
	if b == nil {
		return need
	}
	have := s.indexEntries(b)
	var out []string
	for _, e := range need {
		if !slices.Contains(have, e) {
			out = append(out, e)
		}
	}
	return out
}

// putEntries writes empty index objects, in parallel.
func (s *S3) putEntries(ctx context.Context, keys []string) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.opts.Parallel)
	for _, k := range keys {
		g.Go(func() error { _, err := s.putBytes(gctx, k, nil, "", false); return err })
	}
	return g.Wait()
}

// delEntries deletes objects, in parallel; what fails to go stays as a
// stale entry, which readers skip and sweeps remove.
func (s *S3) delEntries(ctx context.Context, keys []string) {
	g, gctx := errgroup.WithContext(context.WithoutCancel(ctx))
	g.SetLimit(s.opts.Parallel)
	for _, k := range keys {
		g.Go(func() error { return s.del(gctx, k) })
	}
	_ = g.Wait()
}

// purge removes pair id for good: its index entries, its segments, then
// its head, and takes it off the counters. The head goes last: until it
// does, a sweep finds the pair and finishes the purge. With h (read with
// ETag etag) the head is deleted only if it is still that one (If-Match),
// and only then counted off: of two processes purging one pair, one
// counts it. It reports whether it deleted the head.
func (s *S3) purge(ctx context.Context, id model.PairID, h *head, etag string) (bool, error) {
	ctx = context.WithoutCancel(ctx)
	if h != nil {
		s.delEntries(ctx, s.indexEntries(h.rec))
	}
	var segs []string
	if err := s.list(ctx, s.n.bodies(id), func(k string) (bool, error) { segs = append(segs, k); return true, nil }); err != nil {
		return false, err
	}
	s.delEntries(ctx, segs)
	in := &s3.DeleteObjectInput{Bucket: &s.bucket, Key: aws.String(s.n.head(id))}
	if etag != "" {
		in.IfMatch = &etag
	}
	_, err := s.c.DeleteObject(ctx, in)
	if err = classify(err); errors.Is(err, errPrecondition) || errors.Is(err, errNoObject) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if h != nil {
		s.count(h.rec, -1)
	}
	s.accessMu.Lock()
	delete(s.access, id)
	s.accessMu.Unlock()
	return true, nil
}

// purgeIf purges pair id if its head (read afresh) satisfies ok. It first
// turns the head into a tombstone (soft-deleted at time 1, due for any
// sweep) with a conditional write over the ETag it read, so that a pair
// changed meanwhile is left alone (ok is asked again) and a process killed
// half-way leaves a pair the next sweep purges; then it purges. It reports
// whether it purged.
func (s *S3) purgeIf(ctx context.Context, id model.PairID, ok func(h *head) bool) (bool, error) {
	for range maxUpdateTry {
		h, etag, err := s.readHead(ctx, id)
		if errors.Is(err, errNoObject) {
			return false, nil
		}
		if errors.Is(err, model.ErrCorrupt) || errors.Is(err, model.ErrFormatVersion) {
			return s.purge(ctx, id, nil, "")
		}
		if err != nil || !ok(h) {
			return false, err
		}
		tomb := h.clone()
		tomb.rev++
		tomb.rec.Flags |= bolt.FlagDeleted
		tomb.rec.Deleted = tombstoneTime
		if err := s.putEntries(ctx, s.indexDiff(tomb.rec, h.rec)); err != nil {
			return false, err
		}
		etag, err = s.putBytes(ctx, s.n.head(id), tomb.encode(), etag, false)
		if errors.Is(err, errPrecondition) || errors.Is(err, errNoObject) {
			continue
		}
		if err != nil {
			return false, err
		}
		s.delEntries(ctx, s.indexDiff(h.rec, tomb.rec))
		s.count(h.rec, -1)
		s.count(tomb.rec, 1)
		return s.purge(ctx, id, tomb, etag)
	}
	return false, fmt.Errorf("hishel: pair %s changed each of %d times it was purged", id, maxUpdateTry)
}

// tombstoneTime is the deletion time of a pair being purged: due for
// every sweep.
const tombstoneTime = 1

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
	if req.Method == "" {
		return model.IncompletePair{}, fmt.Errorf("hishel: create pair: empty method: %w", model.ErrInvalid)
	}
	if req.Body.Consumed() {
		return model.IncompletePair{}, fmt.Errorf("hishel: create pair: request body: %w", model.ErrBodyConsumed)
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
	h := &head{rec: rec, rev: 1}
	entries := s.indexEntries(rec)
	if err := s.putEntries(ctx, entries); err != nil {
		return model.IncompletePair{}, s.opErr(err)
	}
	if _, err := s.putBytes(ctx, s.n.head(id), h.encode(), "", true); err != nil {
		if errors.Is(err, errPrecondition) {
			// The ID is taken; the entry written is stale unless it is the
			// other pair's own (same ID, same creation time): leave it then.
			return model.IncompletePair{}, fmt.Errorf("hishel: create pair %s: %w", id, model.ErrDuplicateID)
		}
		s.delEntries(ctx, entries)
		return model.IncompletePair{}, s.opErr(err)
	}
	s.count(rec, 1)
	out := model.IncompletePair{ID: id, Request: req, Meta: rec.Meta()}
	if req.Body != nil {
		out.Request.Body = model.NewBody(s.newSaver(ctx, rec, bolt.KindRequest, req.Body))
	}
	return out, nil
}

// settle completes rec if both of its bodies are stored: it gets its
// completion time and expiry.
func (s *S3) settle(rec *bolt.Record) {
	if rec.Has(bolt.FlagComplete) || !rec.Has(bolt.FlagRequestDone|bolt.FlagResponseDone|bolt.FlagHasResponse) {
		return
	}
	now := s.now()
	rec.Flags |= bolt.FlagComplete
	rec.Completed, rec.LastAccess = now, now
	if rec.TTL > 0 {
		rec.Expires = now + rec.TTL
	}
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
	if resp.Status < 100 || resp.Status > 999 {
		return model.CompletePair{}, fmt.Errorf("hishel: add response: status %d: %w", resp.Status, model.ErrInvalid)
	}
	if resp.Body.Consumed() {
		return model.CompletePair{}, fmt.Errorf("hishel: add response: response body: %w", model.ErrBodyConsumed)
	}
	_, next, err := s.change(ctx, id, func(h *head) error {
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
		s.settle(r)
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

// completed enforces the budgets once rec has completed: the variants
// beyond MaxVariants under its key, then MaxBytes and MaxPairs.
func (s *S3) completed(ctx context.Context, rec *bolt.Record) error {
	if s.pol.MaxVariants > 0 && s.keyEntries(ctx, rec.Key) > s.pol.MaxVariants {
		if err := s.flushAccess(ctx); err != nil {
			return err
		}
		heads, err := s.keyHeads(ctx, rec.Key)
		if err != nil {
			return err
		}
		if len(heads) > s.pol.MaxVariants {
			slices.SortFunc(heads, func(a, b *head) int { return evictOrder(b.rec, a.rec) }) // most recent first
			for _, h := range heads[s.pol.MaxVariants:] {
				if h.rec.ID == rec.ID {
					continue
				}
				at := h.rec.LastAccess
				if _, err := s.purgeIf(ctx, h.rec.ID, func(now *head) bool {
					return now.rec.State() == model.StateComplete && now.rec.LastAccess == at
				}); err != nil {
					return err
				}
			}
		}
	}
	return s.enforceBudget(ctx, nil)
}

// keyEntries counts the entries of key's index (stale ones included: at
// least as many as its live pairs), with one listing; on an error, more
// than any cap, so that the caller looks closer.
func (s *S3) keyEntries(ctx context.Context, key string) int {
	n := 0
	if err := s.list(ctx, s.n.keyIndex(key), func(string) (bool, error) { n++; return true, nil }); err != nil {
		return int(^uint(0) >> 1)
	}
	return n
}

// evictOrder orders pairs for eviction, first to go first: by last
// access, then completion, then ID.
func evictOrder(a, b *bolt.Record) int {
	switch {
	case a.LastAccess != b.LastAccess:
		return cmpInt(a.LastAccess, b.LastAccess)
	case a.Completed != b.Completed:
		return cmpInt(a.Completed, b.Completed)
	}
	return bytes.Compare(a.ID[:], b.ID[:])
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// keyHeads reads the heads of the live complete pairs under key: the key
// index lists them, and every entry is checked against its head. Entries
// whose pair is gone, removed or moved are deleted.
func (s *S3) keyHeads(ctx context.Context, key string) ([]*head, error) {
	prefix := s.n.keyIndex(key)
	var ids []model.PairID
	err := s.list(ctx, prefix, func(k string) (bool, error) {
		if id, ok := parseID(strings.TrimPrefix(k, prefix)); ok {
			ids = append(ids, id)
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
			h, _, err := s.readHead(gctx, id)
			switch {
			case errors.Is(err, errNoObject):
				return s.del(gctx, s.n.keyEntry(key, id))
			case err != nil:
				return err
			case h.rec.State() == model.StateIncomplete:
				return nil // completing: its key entry came first
			case h.rec.State() == model.StateDeleted || h.rec.Key != key:
				return s.del(gctx, s.n.keyEntry(key, id))
			}
			heads[i] = h
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return slices.DeleteFunc(heads, func(h *head) bool { return h == nil }), nil
}

// othersStats returns the counters of the other store instances, as last
// read, reading them again if that was more than 5 s ago (or fresh is
// set).
func (s *S3) othersStats(ctx context.Context, fresh bool) (model.Stats, error) {
	s.statsMu.Lock()
	if !fresh && time.Since(s.othersRead) < othersMaxAge {
		defer s.statsMu.Unlock()
		return s.others, nil
	}
	s.statsMu.Unlock()
	b, _, err := s.get(ctx, s.n.format())
	if err != nil {
		return model.Stats{}, err
	}
	epoch, err := parseFormat(b)
	if err != nil {
		return model.Stats{}, err
	}
	s.adoptEpoch(epoch)
	var names []string
	mine := s.n.counters() + s.instance
	if err := s.list(ctx, s.n.counters(), func(k string) (bool, error) {
		if k != mine {
			names = append(names, k)
		}
		return true, nil
	}); err != nil {
		return model.Stats{}, err
	}
	var mu sync.Mutex
	var sum model.Stats
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.opts.Parallel)
	for _, k := range names {
		g.Go(func() error {
			b, _, err := s.get(gctx, k)
			if errors.Is(err, errNoObject) {
				return nil
			}
			if err != nil {
				return err
			}
			c, err := decodeCounters(b)
			if err != nil || c.epoch != epoch {
				return nil // damaged, or counting for an epoch before a Clear
			}
			mu.Lock()
			sum.Pairs += c.st.Pairs
			sum.Incomplete += c.st.Incomplete
			sum.Deleted += c.st.Deleted
			sum.Bytes += c.st.Bytes
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return model.Stats{}, err
	}
	s.statsMu.Lock()
	s.others, s.othersRead = sum, time.Now()
	s.statsMu.Unlock()
	return sum, nil
}

// adoptEpoch starts this instance's counters again when the store was
// cleared (by any process) since they began.
func (s *S3) adoptEpoch(epoch uint64) {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	if epoch != s.epoch {
		s.epoch, s.own, s.dirty = epoch, model.Stats{}, true
	}
}

// totals returns every instance's counters added up.
func (s *S3) totals(ctx context.Context, fresh bool) (model.Stats, error) {
	others, err := s.othersStats(ctx, fresh)
	if err != nil {
		return model.Stats{}, err
	}
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	return model.Stats{Pairs: s.own.Pairs + others.Pairs, Incomplete: s.own.Incomplete + others.Incomplete,
		Deleted: s.own.Deleted + others.Deleted, Bytes: s.own.Bytes + others.Bytes}, nil
}

// enforceBudget evicts pairs until the stored bytes fit MaxBytes and the
// complete pairs MaxPairs: soft-deleted pairs first (oldest deletion
// first; for MaxBytes only), then complete pairs, least recently used
// first (by the access index, each entry checked against its head).
// Incomplete pairs are never evicted. res, if not nil, counts the
// evictions.
func (s *S3) enforceBudget(ctx context.Context, res *model.SweepResult) error {
	if s.pol.MaxBytes <= 0 && s.pol.MaxPairs <= 0 {
		return nil
	}
	st, err := s.totals(ctx, false)
	if err != nil {
		return err
	}
	overBytes := func() bool { return s.pol.MaxBytes > 0 && st.Bytes > s.pol.MaxBytes }
	overPairs := func() bool { return s.pol.MaxPairs > 0 && st.Pairs > s.pol.MaxPairs }
	if !overBytes() && !overPairs() {
		return nil
	}
	if err := s.flushAccess(ctx); err != nil {
		return err
	}
	evict := func(idx string, pairs bool) error {
		prefix := s.n.timeIndex(idx)
		return s.list(ctx, prefix, func(k string) (bool, error) {
			if !overBytes() && !(pairs && overPairs()) {
				return false, nil
			}
			t, id, ok := parseTimeEntry(strings.TrimPrefix(k, prefix))
			if !ok {
				return true, s.del(ctx, k)
			}
			var gone *head
			purged, err := s.purgeIf(ctx, id, func(h *head) bool {
				gone = h
				if idx == idxDeleted {
					return h.rec.State() == model.StateDeleted && h.rec.Deleted == t
				}
				return h.rec.State() == model.StateComplete && h.rec.LastAccess == t
			})
			if err != nil {
				return false, err
			}
			if !purged {
				return true, s.del(ctx, k) // a stale entry
			}
			if gone != nil {
				if gone.rec.State() == model.StateComplete {
					st.Pairs--
				}
				st.Bytes -= size(gone.rec)
			}
			if res != nil {
				res.Evicted++
			}
			return true, nil
		})
	}
	if overBytes() {
		if err := evict(idxDeleted, false); err != nil {
			return err
		}
	}
	if overBytes() || overPairs() {
		return evict(idxAccess, true)
	}
	return nil
}

// expiry returns rec's expiry once an access at pending (if later than
// its last) has refreshed it.
func expiry(rec *bolt.Record, pending int64) int64 {
	exp := rec.Expires
	if pending > rec.LastAccess && rec.Refresh && rec.TTL > 0 && exp != 0 {
		exp = max(exp, pending+rec.TTL)
	}
	return exp
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
		s.access[rec.ID] = now
		rec.LastAccess, rec.Expires = now, exp
		if rec.Refresh && rec.TTL > 0 && exp != 0 {
			rec.Expires = max(exp, now+rec.TTL)
		}
		out = append(out, s.pair(h))
	}
	s.accessMu.Unlock()
	slices.SortStableFunc(out, func(a, b model.CompletePair) int {
		if c := b.Meta.Completed.Compare(a.Meta.Completed); c != 0 {
			return c
		}
		return slices.Compare(a.ID[:], b.ID[:])
	})
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
	s.accessMu.Lock()
	exp := expiry(h.rec, s.access[id])
	s.accessMu.Unlock()
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
// stored pair, atomically: the head is written with If-Match over the ETag
// of the head fn saw, so the write happens only if no writer (in any
// process) changed the pair meanwhile; otherwise fn is called again with
// the pair as it is now, up to 64 times. fn receives the pair with nil
// bodies and runs holding nothing, so it may call the storage. If fn
// returns an error (or panics), nothing changes and UpdatePairFunc returns
// that error.
func (s *S3) UpdatePairFunc(ctx context.Context, id model.PairID, fn func(model.CompletePair) (model.CompletePair, error)) (model.CompletePair, error) {
	if err := s.check(ctx); err != nil {
		return model.CompletePair{}, err
	}
	_, next, err := s.change(ctx, id, func(h *head) error {
		if h == nil || h.rec.State() != model.StateComplete {
			return fmt.Errorf("hishel: update pair %s: %w", id, model.ErrNotFound)
		}
		cur := s.pair(h.clone())
		cur.Request.Body, cur.Response.Body = nil, nil
		cur.Request.Header, cur.Response.Header = cur.Request.Header.Clone(), cur.Response.Header.Clone()
		nv, err := backend.CallUpdate(fn, cur)
		if err != nil {
			return err
		}
		if nv.ID != id {
			return fmt.Errorf("hishel: update pair %s: new id %s: %w", id, nv.ID, model.ErrIDChanged)
		}
		if nv.Request.Method == "" || nv.Response.Status < 100 || nv.Response.Status > 999 || nv.Meta.TTL < 0 {
			return fmt.Errorf("hishel: update pair %s: empty method, bad status or negative TTL: %w", id, model.ErrInvalid)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rec := h.rec
		rec.Key = nv.Key
		rec.Expires = bolt.UnixNano(nv.Meta.Expires)
		rec.Created, rec.TTL, rec.Refresh = bolt.UnixNano(nv.Meta.Created), int64(nv.Meta.TTL), nv.Meta.Refresh
		rec.Method, rec.URL, rec.ReqHeader, rec.ReqOptions = nv.Request.Method, nv.Request.URL, nv.Request.Header.Clone(), nv.Request.Options
		rec.Status, rec.RespHeader = nv.Response.Status, nv.Response.Header.Clone()
		return nil
	})
	if err != nil {
		return model.CompletePair{}, s.opErr(err)
	}
	// A refresh gathered before the update is the update's to decide.
	s.accessMu.Lock()
	delete(s.access, id)
	s.accessMu.Unlock()
	return s.pair(next), nil
}

// Remove soft-deletes the pair id: it is hidden at once (from every
// process) and reclaimed by a sweep after DeletedRetention. Removing an
// unknown or already removed pair does nothing. Removing an incomplete pair
// aborts the bodies still being stored.
func (s *S3) Remove(ctx context.Context, id model.PairID) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	now := s.now()
	_, _, err := s.change(ctx, id, func(h *head) error {
		if h == nil || h.rec.Has(bolt.FlagDeleted) {
			return errStop
		}
		h.rec.Flags |= bolt.FlagDeleted
		h.rec.Deleted = now
		return nil
	})
	if errors.Is(err, model.ErrCorrupt) {
		_, err = s.purge(ctx, id, nil, "")
		return s.opErr(err)
	}
	if errors.Is(err, errStop) {
		return nil
	}
	return s.opErr(err)
}

// flushAccess writes the gathered access times: each live complete pair
// moves in the eviction order and, if it refreshes on access, gets a new
// expiry (a conditional write of its head each, with its index entries).
func (s *S3) flushAccess(ctx context.Context) error {
	s.accessMu.Lock()
	pending := s.access
	if len(pending) == 0 {
		s.accessMu.Unlock()
		return nil
	}
	s.access = make(map[model.PairID]int64, len(pending))
	s.accessMu.Unlock()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.opts.Parallel)
	for id, at := range pending {
		g.Go(func() error {
			_, _, err := s.change(gctx, id, func(h *head) error {
				if h == nil || h.rec.State() != model.StateComplete || at <= h.rec.LastAccess {
					return errStop
				}
				h.rec.Expires = expiry(h.rec, at)
				h.rec.LastAccess = at
				return nil
			})
			if errors.Is(err, errStop) || errors.Is(err, model.ErrCorrupt) {
				return nil
			}
			return err
		})
	}
	err := g.Wait()
	if err != nil {
		// Keep them for the next flush, unless newer ones came meanwhile.
		s.accessMu.Lock()
		for id, at := range pending {
			if s.access[id] < at {
				s.access[id] = at
			}
		}
		s.accessMu.Unlock()
	}
	return err
}

// writeCounters writes this instance's counters object if they changed.
func (s *S3) writeCounters(ctx context.Context) error {
	s.counterWrite.Lock()
	defer s.counterWrite.Unlock()
	s.statsMu.Lock()
	if !s.dirty {
		s.statsMu.Unlock()
		return nil
	}
	c := counters{epoch: s.epoch, st: s.own}
	s.dirty = false
	s.statsMu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, counterBudget)
	defer cancel()
	if _, err := s.putBytes(ctx, s.n.counters()+s.instance, c.encode(), "", false); err != nil {
		s.statsMu.Lock()
		s.dirty = true
		s.statsMu.Unlock()
		return err
	}
	return nil
}

// tick is the maintenance goroutine's periodic work.
func (s *S3) tick() {
	ctx := context.Background()
	_ = s.flushAccess(ctx)
	_ = s.writeCounters(ctx)
}

// sweepIndex lists time index idx from its oldest entry up to limit and
// calls act for each entry's pair with the entry's time; the entry is
// deleted once act returns without error (it served its purpose, or it
// was stale).
func (s *S3) sweepIndex(ctx context.Context, idx string, limit int64, act func(id model.PairID, t int64) error) error {
	prefix := s.n.timeIndex(idx)
	return s.list(ctx, prefix, func(k string) (bool, error) {
		t, id, ok := parseTimeEntry(strings.TrimPrefix(k, prefix))
		if ok && t > limit {
			return false, nil
		}
		if ok {
			if err := act(id, t); err != nil {
				return false, err
			}
		}
		return true, s.del(ctx, k)
	})
}

// Cleanup runs a sweep now and reports what it did: expired pairs are
// soft-deleted, soft-deleted pairs past DeletedRetention and incomplete pairs
// older than IncompleteAge are removed (and pairs found corrupt), and pairs
// beyond MaxBytes or MaxPairs are evicted. Each rule lists its time index
// from the oldest entry up to the time it sweeps, so its cost follows what
// is due (removed pairs and stale entries), not the size of the store.
func (s *S3) Cleanup(ctx context.Context) (model.SweepResult, error) {
	var res model.SweepResult
	if err := s.check(ctx); err != nil {
		return res, err
	}
	if err := s.flushAccess(ctx); err != nil {
		return res, s.opErr(err)
	}
	s.badMu.Lock()
	bad := s.bad
	s.bad = make(map[model.PairID]struct{})
	s.badMu.Unlock()
	for id := range bad {
		purged, err := s.purge(ctx, id, nil, "")
		if err != nil {
			return res, s.opErr(err)
		}
		if purged {
			res.Purged++
		}
	}
	now := s.now()
	err := s.sweepIndex(ctx, idxExpiry, now, func(id model.PairID, t int64) error {
		_, next, err := s.change(ctx, id, func(h *head) error {
			if h == nil || h.rec.State() != model.StateComplete || h.rec.Expires != t {
				return errStop
			}
			h.rec.Flags |= bolt.FlagDeleted
			h.rec.Deleted = now
			return nil
		})
		if next != nil {
			res.Expired++
		}
		if errors.Is(err, errStop) || errors.Is(err, model.ErrCorrupt) {
			return nil
		}
		return err
	})
	if err == nil {
		err = s.sweepIndex(ctx, idxDeleted, now-int64(s.pol.Retention), func(id model.PairID, t int64) error {
			purged, err := s.purgeIf(ctx, id, func(h *head) bool { return h.rec.State() == model.StateDeleted && h.rec.Deleted == t })
			if purged {
				res.Purged++
			}
			return err
		})
	}
	if err == nil {
		err = s.sweepIndex(ctx, idxIncomplete, now-int64(s.pol.IncompleteAge), func(id model.PairID, t int64) error {
			purged, err := s.purgeIf(ctx, id, func(h *head) bool { return h.rec.State() == model.StateIncomplete && h.rec.Created == t })
			if purged {
				res.Abandoned++
			}
			return err
		})
	}
	if err == nil {
		err = s.enforceBudget(ctx, &res)
	}
	return res, s.opErr(err)
}

// Clear removes every pair at once (for every process sharing the store):
// it starts a new counters epoch (a conditional write of the format
// object), then deletes every object under the prefix but that one. Bodies
// being read fail with model.ErrRemoved; bodies being stored fail and are
// not stored.
func (s *S3) Clear(ctx context.Context) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	s.accessMu.Lock()
	clear(s.access)
	s.accessMu.Unlock()
	var epoch uint64
	for {
		b, etag, err := s.get(ctx, s.n.format())
		if err != nil {
			return s.opErr(err)
		}
		if epoch, err = parseFormat(b); err != nil {
			return err
		}
		epoch++
		_, err = s.putBytes(ctx, s.n.format(), formatContent(epoch), etag, false)
		if err == nil {
			break
		}
		if !errors.Is(err, errPrecondition) {
			return s.opErr(err)
		}
	}
	s.adoptEpoch(epoch)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.opts.Parallel)
	err := s.list(ctx, s.n.p, func(k string) (bool, error) {
		if k != s.n.format() {
			g.Go(func() error { return s.del(gctx, k) })
		}
		return true, nil
	})
	if werr := g.Wait(); err == nil {
		err = werr
	}
	s.statsMu.Lock()
	s.own, s.dirty = model.Stats{}, true
	s.statsMu.Unlock()
	return s.opErr(err)
}

// Pairs calls fn for every stored pair, in ID order, whatever its state:
// incomplete, complete (expired or not) and soft-deleted. The PairInfo has
// heads and metadata only. It lists the heads and reads them in pages,
// calling fn between pages, so fn may call the storage. An error from fn
// stops the iteration and is returned.
func (s *S3) Pairs(ctx context.Context, fn func(model.PairInfo) error) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	prefix := s.n.heads()
	var page []model.PairID
	flush := func() error {
		heads := make([]*head, len(page))
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(s.opts.Parallel)
		for i, id := range page {
			g.Go(func() error {
				h, _, err := s.readHead(gctx, id)
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
	err := s.list(ctx, prefix, func(k string) (bool, error) {
		if id, ok := parseID(strings.TrimPrefix(k, prefix)); ok {
			page = append(page, id)
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

// Sync writes the gathered access times and this process's counters.
func (s *S3) Sync(ctx context.Context) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if err := s.flushAccess(ctx); err != nil {
		return s.opErr(err)
	}
	return s.opErr(s.writeCounters(ctx))
}

// Stats returns the counters of every store instance that shares the
// store, added up: this one's as they are, the others' as they last wrote
// them (within their AccessFlushInterval).
func (s *S3) Stats(ctx context.Context) (model.Stats, error) {
	if err := s.check(ctx); err != nil {
		return model.Stats{}, err
	}
	st, err := s.totals(ctx, true)
	return st, s.opErr(err)
}

// Close writes gathered access times and this process's counters, and
// stops the maintenance goroutine. Bodies still being read or stored fail
// with model.ErrClosed. Close is idempotent.
func (s *S3) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.maintDone
		s.closed.Store(true)
	})
	return nil
}
