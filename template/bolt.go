package template

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/hishel-go/hishel/backend"
	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/model"
)

// Defaults of the options of Bolt and Memory.
const (
	DefaultSweepInterval       = backend.DefaultSweepInterval
	DefaultDeletedRetention    = backend.DefaultDeletedRetention
	DefaultIncompleteAge       = backend.DefaultIncompleteAge
	DefaultOpenTimeout         = time.Second
	DefaultChunkSize           = backend.DefaultChunkSize
	DefaultMaxVariants         = backend.DefaultMaxVariants
	DefaultAccessFlushInterval = time.Second
	// DefaultFileName is the database file created under the user cache
	// directory when BoltOptions.Path is empty.
	DefaultFileName = "hishel_cache.db"
	// DefaultInitialMmapSize is BoltOptions.InitialMmapSize's default where
	// it applies (see there).
	DefaultInitialMmapSize = 256 << 20
	// DefaultFileBodyMin is BoltOptions.FileBodyMin's default.
	DefaultFileBodyMin = 256 << 10
	// DefaultHeadCacheBytes is BoltOptions.HeadCacheBytes's default.
	DefaultHeadCacheBytes = 8 << 20
)

const (
	flushBytes     = 1 << 20   // a streaming body is handed to the writer every flushBytes
	maxTxBytes     = 4 << 20   // the writer commits once a transaction has written this much
	readAhead      = 256 << 10 // a stored body is read this much per read transaction
	prefetchBytes  = 64 << 10  // GetPairs reads this much of each body in its own transaction
	sweepBatch     = 256       // pairs handled per sweep transaction, per rule
	staleMin       = 4096      // stale log entries a sweep lets wait (see cleanStale)
	staleShare     = 8         // ... and the share of the pairs they may reach
	staleMax       = 1 << 18   // stale log entries handled per batch
	staleChunk     = 4096      // stale log entries handled per transaction
	listPage       = 256       // records decoded per read transaction by Pairs
	accessBatch    = 4096      // access times written per op by the background flush
	accessLogValue = 4096      // access log entries per value (see logAccess)
)

// BoltOptions configure a Bolt storage. A nil *BoltOptions, and every zero
// field, means the default.
type BoltOptions struct {
	// Path is the database file. Default: hishel/hishel_cache.db under
	// os.UserCacheDir(), created if missing.
	Path string
	// FileMode is used when the file is created. Default 0600.
	FileMode fs.FileMode
	// OpenTimeout bounds the wait for bbolt's exclusive file lock, which a
	// database open in another process holds; then OpenBolt fails with
	// model.ErrLocked. Default 1s; the context's deadline also bounds it.
	OpenTimeout time.Duration
	// NoSync skips fsync on commit: much faster writes, but a machine crash
	// may lose recent pairs or corrupt the file. For caches that can be
	// rebuilt.
	//
	// With NoSync the end of a body does not wait for a commit either, nor,
	// for a pair this Bolt created, for the writer, unless the writer is
	// already 256 changes behind: then it waits for room, as CreatePair and
	// AddResponse do, so that work queued for the writer stays bounded.
	// Completed pairs are committed together, within maxTxAge (100 ms) or sooner, so a process
	// crash may also lose the pairs of the last moment, and a failed commit
	// goes unreported. Reads see them at once all the same: GetPairs for a
	// key, or GetPair for an ID, that has a completed pair not yet
	// committed commits first. Sync commits everything.
	NoSync bool

	// DefaultTTL is how long a pair lives after it is stored (or last read,
	// see RefreshTTLOnAccess) unless its request says otherwise. Zero or
	// model.NoExpiry: pairs never expire. Any other negative value is
	// model.ErrInvalid.
	DefaultTTL time.Duration
	// RefreshTTLOnAccess says whether reading a pair restarts its TTL.
	// model.RefreshDefault and model.RefreshOnAccess: yes (the default);
	// model.NoRefresh: no. A request's own Options.Refresh overrides it.
	RefreshTTLOnAccess model.Refresh

	// SweepInterval is how often the background sweep runs. Default 10
	// minutes; negative: never in the background (Cleanup still works).
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
	// MaxPairs caps the live complete pairs: beyond it the least recently
	// used pairs are evicted, as for MaxBytes. Zero: no cap.
	MaxPairs int
	// MaxVariants is the most complete pairs kept under one cache key
	// (Vary variants): storing one more evicts the least recently used
	// others beyond it. Default DefaultMaxVariants; negative: no cap.
	MaxVariants int

	// ChunkSize is the size of stored body chunks. Default 64 KiB.
	ChunkSize int
	// FileBodyMin is the size from which a body is kept in a file of its
	// own beside the database, in the directory Path plus ".bodies",
	// instead of in the database's pages: the body is written to its file
	// as it arrives, by the goroutine storing it rather than the single
	// writer, once; the pair's record, each chunk's length and checksum
	// and the body's completion marker stay in the database, and the
	// marker is committed only after the file is written (and synced,
	// unless NoSync). Removing the pair removes the file after the removal
	// is committed; a sweep removes files that no pair refers to (left by
	// a crash) once they are a minute old. Bodies are read, checked and
	// counted (MaxBytes, Stats) alike wherever they are kept. A body
	// smaller than FileBodyMin when it ends, having fitted in the first
	// hand-over to the writer (1 MiB), stays in the database. Default
	// DefaultFileBodyMin; negative: every body in the database.
	FileBodyMin int64
	// AccessFlushInterval is how long access times (for TTL refresh and LRU
	// order) are gathered in memory before they are written, so that reads
	// stay reads. Default 1s.
	AccessFlushInterval time.Duration
	// InitialMmapSize is the address space bbolt maps for the file at
	// open. While the file fits in it, a commit that grows the file does
	// not remap it: remapping waits for every read transaction to end,
	// holds new ones back meanwhile, and copies what the writer's open
	// transaction points into. Only address space: the file grows as data
	// is written. Default DefaultInitialMmapSize on 64-bit platforms other
	// than Windows (where bbolt would grow the file to it at once), none
	// elsewhere; negative: none (bbolt maps the file as it grows, from 32
	// KiB up).
	InitialMmapSize int
	// VerifyEveryRead checks every body chunk against its checksum each
	// time it is read. By default a chunk of 4 KiB or more is checked the
	// first time this Bolt reads it, and again only if its bytes have moved
	// in the file since (a write through bbolt never changes bytes in
	// place; a body file, see FileBodyMin, is written once), so that hits
	// on the same bodies do not pay for the checksum again and again: a
	// file damaged behind this Bolt's back while it has it open is caught
	// at the next open, or at once with VerifyEveryRead. Records are checked on every read either way (one
	// whose decoded heads are kept, see HeadCacheBytes, is compared byte
	// for byte with the bytes that were checked).
	VerifyEveryRead bool
	// HeadCacheBytes is the memory kept for the decoded heads of pairs
	// GetPairs read recently, so that reading one again, while its stored
	// record is unchanged, does not decode it again. Default
	// DefaultHeadCacheBytes; negative: none.
	HeadCacheBytes int
	// Rebuild makes OpenBolt move a damaged database file aside and start
	// with an empty one, where it would fail with model.ErrCorrupt (or
	// with model.ErrFormatVersion for a file of an older format, which this
	// build cannot read). The file is renamed to Path plus
	// ".damaged-YYYYMMDDTHHMMSSZ" and the move is logged. For caches,
	// which can be rebuilt; off by default.
	Rebuild bool
	// Logger gets a record when Rebuild moves a file aside. Default
	// slog.Default().
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

func (o *BoltOptions) settings() backend.Settings {
	return backend.Settings{DefaultTTL: o.DefaultTTL, RefreshTTLOnAccess: o.RefreshTTLOnAccess,
		SweepInterval: o.SweepInterval, DeletedRetention: o.DeletedRetention, IncompleteAge: o.IncompleteAge,
		MaxBytes: o.MaxBytes, MaxPairs: o.MaxPairs, MaxVariants: o.MaxVariants, ChunkSize: o.ChunkSize, Now: o.Now}
}

func (o *BoltOptions) setSettings(s backend.Settings) {
	o.DefaultTTL, o.RefreshTTLOnAccess, o.SweepInterval = s.DefaultTTL, s.RefreshTTLOnAccess, s.SweepInterval
	o.DeletedRetention, o.IncompleteAge, o.MaxBytes, o.MaxPairs, o.ChunkSize = s.DeletedRetention, s.IncompleteAge, s.MaxBytes, s.MaxPairs, s.ChunkSize
	o.MaxVariants = s.MaxVariants
}

func (o *BoltOptions) resolved() (BoltOptions, error) {
	var r BoltOptions
	if o != nil {
		r = *o
	}
	if r.Path == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			return r, fmt.Errorf("hishel: no default database path: %w", err)
		}
		dir = filepath.Join(dir, "hishel")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return r, fmt.Errorf("hishel: create cache directory: %w", err)
		}
		r.Path = filepath.Join(dir, DefaultFileName)
	}
	if r.FileMode == 0 {
		r.FileMode = 0o600
	}
	if r.OpenTimeout <= 0 {
		r.OpenTimeout = DefaultOpenTimeout
	}
	if r.AccessFlushInterval <= 0 {
		r.AccessFlushInterval = DefaultAccessFlushInterval
	}
	if r.Logger == nil {
		r.Logger = slog.Default()
	}
	if r.FileBodyMin == 0 {
		r.FileBodyMin = DefaultFileBodyMin
	}
	if r.HeadCacheBytes == 0 {
		r.HeadCacheBytes = DefaultHeadCacheBytes
	}
	switch {
	case r.InitialMmapSize < 0:
		r.InitialMmapSize = 0
	case r.InitialMmapSize == 0:
		r.InitialMmapSize = defaultMmapSize(runtime.GOOS, strconv.IntSize)
	}
	return r, nil
}

// defaultMmapSize is InitialMmapSize's default on goos with intBits-bit ints.
func defaultMmapSize(goos string, intBits int) int {
	if goos == "windows" || intBits < 64 {
		return 0
	}
	return DefaultInitialMmapSize
}

// Bolt stores pairs in a bbolt database file.
//
// bbolt holds an exclusive lock on the file: one process at a time may open
// it, and OpenBolt in a second process waits up to OpenTimeout and then fails
// with model.ErrLocked. A second OpenBolt of a file this process already
// holds fails at once with model.ErrLocked and says so; share one open
// store instead (cache.WrapBolt, cacheasync.WrapBolt). Within the process a
// Bolt is safe for concurrent use by any number of goroutines. Writes go
// through one writer goroutine that commits many callers' changes together;
// reads never wait for writes.
//
// A Bolt owns two goroutines, from OpenBolt until Close: the writer, and a
// maintenance goroutine that writes gathered access times and runs the
// background sweep.
//
//hishel:backend
//hishel:scheme bolt
type Bolt struct {
	held   *heldFile  // this process's claim on the file
	bodies *bodyFiles // bodies kept in files (FileBodyMin)
	db     *bbolt.DB
	file   *os.File // bbolt's open file (see checkFile)
	opts   BoltOptions
	pol    backend.Policy
	w      *writer
	rd     *readers
	// heads keeps the records GetPairs decoded (nil: HeadCacheBytes < 0).
	heads *headCache

	// Access times (unix ns) of reads, gathered and written in batches:
	// access holds those not yet taken by a write transaction, flushing
	// those taken by the transaction under way, and applied those of
	// transactions committed that a read still in flight may not see (see
	// afterAccessCommit). A read counts all three. Guarded by accessMu.
	accessMu sync.Mutex
	access   map[model.PairID]int64
	flushing map[model.PairID]int64
	applied  []appliedAccess

	// suspects are pairs a read found damaged (a record or chunk failing
	// its checksum, a chunk missing): the next sweep checks them again and
	// removes those that are. Guarded by suspectMu.
	suspectMu sync.Mutex
	suspects  map[model.PairID]struct{}

	// verified are the chunks read and found sound (see VerifyEveryRead).
	verified verifiedChunks

	// reading pins the pairs whose bodies are being read: eviction passes
	// over them (see readPin).
	reading readPins

	// unsynced counts, per key hash, the pairs completed in a transaction
	// not yet committed, or whose end was posted to the writer (NoSync
	// only: otherwise a pair's end waits for its commit). GetPairs commits
	// first when its key is here. Guarded by pendMu.
	unsynced map[[bolt.HashLen]byte]int

	// nonce is the last pair nonce handed out; the writer persists the
	// highest one committed (bolt.MetaNonce), and OpenBolt starts from it.
	nonce atomic.Uint64

	// pend holds the pairs created by this Bolt whose records may not be
	// committed yet, so that CreatePair and AddResponse can check their
	// IDs without waiting for the writer. An entry ends with the
	// transaction that completes, deletes or removes its pair.
	pendMu sync.Mutex
	pend   map[model.PairID]*pendEntry

	closed    atomic.Bool
	closing   atomic.Bool // Close has begun: gathered access times go to the access log
	closeOnce sync.Once
	closeErr  error
	stop      chan struct{}
	maintDone chan struct{}
}

// appliedAccess is a batch of access times written by the commit that
// moved readers to generation gen.
type appliedAccess struct {
	times map[model.PairID]int64
	gen   uint64
}

// pendEntry is what CreatePair knows of a new pair.
type pendEntry struct {
	rec         *bolt.Record // as created; not changed afterwards
	hasResponse bool
	keyHash     [bolt.HashLen]byte // the hash of the key AddResponse gave (hasResponse)
	applied     bool               // the writer has applied its create op
}

// OpenBolt opens (creating if needed) the database at opts.Path and starts
// its writer and maintenance goroutines. A file held by another process gives
// model.ErrLocked; a damaged file, or one that is not a hishel database,
// model.ErrCorrupt (unless opts.Rebuild); one written by another format,
// model.ErrFormatVersion. A damaged file never crashes the process: see
// package bolt's CheckFile, and the checksums of records and chunks.
func OpenBolt(ctx context.Context, opts *BoltOptions) (*Bolt, error) {
	o, err := opts.resolved()
	if err != nil {
		return nil, err
	}
	pol, err := backend.NewPolicy(o.settings())
	if err != nil {
		return nil, err
	}
	if err := model.CheckContext(ctx); err != nil {
		return nil, err
	}
	hf, err := holdFile(o.Path)
	if err != nil {
		return nil, err
	}
	timeout := o.OpenTimeout
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
		timeout = max(time.Until(dl), time.Millisecond)
	}
	bo := &bbolt.Options{
		Timeout:    timeout,
		NoSync:     o.NoSync,
		NoGrowSync: o.NoSync, // a file that may lose commits may lose its growth too
		// The free list is written by Close only (see boltopen.go).
		FreelistType:    bbolt.FreelistMapType,
		NoFreelistSync:  true,
		InitialMmapSize: o.InitialMmapSize,
	}
	bodies := &bodyFiles{dir: o.Path + ".bodies", min: o.FileBodyMin, writing: make(map[string]struct{})}
	if o.FileBodyMin > 0 {
		if err := os.Mkdir(bodies.dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			hf.release()
			return nil, fmt.Errorf("hishel: create the bodies directory: %w", err)
		}
	}
	access := make(map[model.PairID]int64)
	db, file, nonce, release, err := openDB(o.Path, o.FileMode, timeout, bo, access)
	if err != nil && o.Rebuild && rebuildable(err) {
		aside := o.Path + ".damaged-" + time.Now().UTC().Format("20060102T150405Z")
		rerr := os.Rename(o.Path, aside) // while the file is still locked, if it is open
		if release != nil {
			release()
		}
		if rerr != nil {
			hf.release()
			return nil, fmt.Errorf("%w; moving it aside failed: %w", err, rerr)
		}
		o.Logger.LogAttrs(ctx, slog.LevelWarn, "hishel: damaged cache file moved aside; starting with an empty one",
			slog.String("path", o.Path), slog.String("moved_to", aside), slog.Any("err", err))
		clear(access)
		db, file, nonce, release, err = openDB(o.Path, o.FileMode, timeout, bo, access)
	}
	if err != nil {
		if release != nil {
			release()
		}
		hf.release()
		return nil, err
	}
	hf.opened()
	s := &Bolt{
		held:      hf,
		bodies:    bodies,
		db:        db,
		file:      file,
		opts:      o,
		pol:       pol,
		w:         newWriter(db, maxTxBytes),
		rd:        &readers{db: db},
		heads:     newHeadCache(o.HeadCacheBytes),
		access:    access,
		pend:      make(map[model.PairID]*pendEntry),
		unsynced:  make(map[[bolt.HashLen]byte]int),
		suspects:  make(map[model.PairID]struct{}),
		stop:      make(chan struct{}),
		maintDone: make(chan struct{}),
	}
	s.nonce.Store(nonce)
	s.w.nonce = nonce
	s.w.afterCommit = s.afterCommit
	s.w.bodies = bodies
	bodies.orphans.Store(true) // a crash may have left some
	s.w.reads = s.rd
	s.w.open = s.openPairs
	s.w.rollbackCheck = func() error { return checkFile(s.file) }
	go backend.Maintain(s.stop, s.maintDone, o.AccessFlushInterval, func() { s.flushAccess(context.Background()) },
		pol.SweepInterval, func() { _, _ = s.Cleanup(context.Background()) })
	return s, nil
}

// OpenBoltURL opens the Bolt that a store URL names (see cache.Open):
// bolt:///absolute/path/cache.db, bolt:relative/path.db, or bolt: alone for
// the default file. Its query parameters set BoltOptions: the shared
// ttl, refresh, sweep, retention, incomplete-age, max-bytes, max-pairs,
// max-variants and chunk-size (see package backend's Query.Settings), and
//
//	nosync=BOOL             NoSync
//	open-timeout=DURATION   OpenTimeout
//	access-flush=DURATION   AccessFlushInterval
//	mmap-size=N             InitialMmapSize (KiB, MiB, GiB suffixes allowed)
//	file-body-min=N         FileBodyMin (KiB, MiB, GiB suffixes allowed; -1: none)
//	rebuild=BOOL            Rebuild
//	verify-every-read=BOOL  VerifyEveryRead
//	head-cache=N            HeadCacheBytes (KiB, MiB, GiB suffixes allowed)
//
// as in bolt:///var/cache/hishel.db?ttl=1h&max-bytes=512MiB. A bad URL
// fails with model.ErrInvalid.
func OpenBoltURL(ctx context.Context, u *url.URL) (*Bolt, error) {
	var o BoltOptions
	path, err := backend.FilePath(u)
	if err != nil {
		return nil, err
	}
	o.Path = path
	q := backend.NewQuery(u)
	s := o.settings()
	q.Settings(&s)
	q.Bool("nosync", &o.NoSync)
	q.Duration("open-timeout", &o.OpenTimeout)
	q.Duration("access-flush", &o.AccessFlushInterval)
	q.Int("mmap-size", &o.InitialMmapSize)
	q.Bool("verify-every-read", &o.VerifyEveryRead)
	q.Int64("file-body-min", &o.FileBodyMin)
	q.Bool("rebuild", &o.Rebuild)
	q.Int("head-cache", &o.HeadCacheBytes)
	if err := q.Done(); err != nil {
		return nil, err
	}
	o.setSettings(s)
	return OpenBolt(ctx, &o)
}

func (s *Bolt) now() time.Time { return s.pol.Now() }

func (s *Bolt) check(ctx context.Context) error {
	if ctx == nil {
		return model.CheckContext(ctx)
	}
	if s.closed.Load() {
		return model.ErrClosed
	}
	return ctx.Err()
}

// view runs fn in a read transaction that sees the last commit (see
// readers). A failure after Close is model.ErrClosed. A panic or memory
// fault while fn reads (a damaged file) is an error wrapping
// model.ErrCorrupt, and the transaction is not kept.
func (s *Bolt) view(fn func(*readTx) error) error {
	if s.closed.Load() {
		return model.ErrClosed
	}
	var t *readTx
	err := guard("begin read", func() (err error) { t, err = s.rd.get(); return err })
	if err != nil {
		if errors.Is(err, berrors.ErrDatabaseNotOpen) {
			return model.ErrClosed
		}
		if errors.Is(err, model.ErrCorrupt) {
			return err
		}
		return fmt.Errorf("hishel: begin read: %w", err)
	}
	panicked := true
	err = guard("read", func() error {
		err := fn(t)
		panicked = false
		return err
	})
	if panicked {
		s.rd.discard(t)
	} else {
		s.rd.put(t)
	}
	return err
}

// suspect notes that a read found pair id damaged (see Bolt.suspects).
func (s *Bolt) suspect(id model.PairID) {
	s.suspectMu.Lock()
	s.suspects[id] = struct{}{}
	s.suspectMu.Unlock()
}

// corrupt marks pair id a suspect if err says it is damaged, and returns err.
func (s *Bolt) corrupt(id model.PairID, err error) error {
	if errors.Is(err, model.ErrCorrupt) {
		s.suspect(id)
	}
	return err
}

// CreatePair stores a new incomplete pair for req and returns it. Its
// metadata goes to the storage's writer without waiting for a commit (it
// waits only for room when the writer is already 256 changes behind, and
// fails with ctx's error if ctx ends first): nothing can see an incomplete
// pair, and it is committed with the pair's next durable change or within
// milliseconds (Sync forces it). Its request body is stored as the caller
// reads the returned pair's Request.Body to the end (a nil body is stored
// at once as empty). ctx governs that body stream too: cancelling it
// aborts the pair.
//
// With model.WithID the pair gets the caller's ID; an ID already in use
// fails with model.ErrDuplicateID. A body that has already been read from
// fails with model.ErrBodyConsumed.
func (s *Bolt) CreatePair(ctx context.Context, req model.Request, opts ...model.CreateOption) (model.IncompletePair, error) {
	if err := s.check(ctx); err != nil {
		return model.IncompletePair{}, err
	}
	if req.Method == "" {
		return model.IncompletePair{}, fmt.Errorf("hishel: create pair: empty method: %w", model.ErrInvalid)
	}
	if req.Body.Consumed() {
		return model.IncompletePair{}, fmt.Errorf("hishel: create pair: request body: %w", model.ErrBodyConsumed)
	}
	if err := backend.CheckRequestOptions(req.Options); err != nil {
		return model.IncompletePair{}, err
	}
	co := model.ApplyCreateOptions(opts)
	id, chosen := co.ID, !co.ID.IsZero()
	if !chosen {
		id = model.NewPairID()
	}
	now := s.now()
	ttl, refresh, err := s.pol.TTLFor(req.Options)
	if err != nil {
		return model.IncompletePair{}, fmt.Errorf("hishel: create pair: %w", err)
	}
	rec := &bolt.Record{
		ID:         id,
		Nonce:      s.nonce.Add(1),
		Created:    bolt.UnixNano(now),
		LastAccess: bolt.UnixNano(now),
		TTL:        int64(ttl),
		Refresh:    refresh,
		Method:     req.Method,
		URL:        req.URL,
		ReqHeader:  req.Header.Clone(), // written later by the writer: the caller may change its map
		ReqOptions: req.Options,
	}
	if req.Body == nil {
		rec.Flags |= bolt.FlagRequestDone
	}
	// Reserve the ID, then hand the record to the writer without waiting:
	// nothing can see an incomplete pair, and the writer applies it before
	// any later op of the pair.
	// The reservation comes first, so the file is read without holding
	// pendMu: only a reserved ID is ever written.
	s.pendMu.Lock()
	_, dup := s.pend[id]
	if !dup {
		s.pend[id] = &pendEntry{rec: rec}
	}
	s.pendMu.Unlock()
	if dup {
		return model.IncompletePair{}, fmt.Errorf("hishel: create pair %s: %w", id, model.ErrDuplicateID)
	}
	if chosen { // a new ID is unique (its millisecond and 74 random bits)
		err := s.view(func(t *readTx) error {
			dup = t.pair(id) != nil
			return nil
		})
		if err == nil && dup {
			err = fmt.Errorf("hishel: create pair %s: %w", id, model.ErrDuplicateID)
		}
		if err != nil {
			s.unpend(id)
			return model.IncompletePair{}, err
		}
	}
	stored := *rec
	err = s.w.postFunc(ctx, func(t *wtx) error {
		if r, err := t.record(id); err != nil || r != nil {
			return fmt.Errorf("hishel: create pair %s: %w", id, model.ErrDuplicateID)
		}
		r := stored
		t.created = append(t.created, id)
		s.pendMu.Lock()
		if pe := s.pend[id]; pe != nil {
			pe.applied = true
		}
		s.pendMu.Unlock()
		t.nonce = max(t.nonce, r.Nonce)
		t.putRecord(&r) // a nil body is stored as empty: no chunks, no marker (see package bolt)
		t.addIncomplete(r.Created, id)
		t.addStats(0, 1, 0, headBytes(&r))
		return nil
	}, func() { s.unpend(id) })
	if err != nil {
		return model.IncompletePair{}, err
	}
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
// a copy, so the caller may change either afterwards. Like CreatePair, it
// may wait for room in the writer's queue; if ctx ends first it fails with
// ctx's error and the pair is left without a response.
//
// An unknown or removed id fails with model.ErrNotFound; a pair that already
// has a response, or a status outside 100-999, with model.ErrInvalid.
func (s *Bolt) AddResponse(ctx context.Context, id model.PairID, resp model.Response, key string) (model.CompletePair, error) {
	if err := s.check(ctx); err != nil {
		return model.CompletePair{}, err
	}
	if resp.Status < 100 || resp.Status > 999 {
		return model.CompletePair{}, fmt.Errorf("hishel: add response: status %d: %w", resp.Status, model.ErrInvalid)
	}
	if resp.Body.Consumed() {
		return model.CompletePair{}, fmt.Errorf("hishel: add response: response body: %w", model.ErrBodyConsumed)
	}
	var rec *bolt.Record
	callerHeader := resp.Header
	resp.Header = resp.Header.Clone() // written later by the writer: the caller may change its map
	// applyTo returns the op; a waiting caller gets the stored record in
	// *dst (nil for a posted op, which nobody waits for).
	applyTo := func(dst **bolt.Record) func(t *wtx) error {
		return func(t *wtx) error {
			r, err := t.record(id)
			if err != nil {
				return err
			}
			if r == nil || r.Has(bolt.FlagDeleted) {
				return fmt.Errorf("hishel: add response to pair %s: %w", id, model.ErrNotFound)
			}
			if r.Has(bolt.FlagHasResponse) {
				return fmt.Errorf("hishel: add response to pair %s: pair already has a response: %w", id, model.ErrInvalid)
			}
			before := headBytes(r)
			r.Flags |= bolt.FlagHasResponse
			r.Key = key
			r.Status = resp.Status
			r.RespHeader = resp.Header
			t.addStats(0, 0, 0, headBytes(r)-before)
			if resp.Body == nil { // stored as empty: no chunks, no marker
				r.Flags |= bolt.FlagResponseDone
			}
			s.settle(t, r, bolt.UnixNano(s.now()))
			if dst != nil {
				*dst = r
			}
			return nil
		}
	}
	var err error
	s.pendMu.Lock()
	pe := s.pend[id]
	if pe != nil && pe.hasResponse {
		s.pendMu.Unlock()
		return model.CompletePair{}, fmt.Errorf("hishel: add response to pair %s: pair already has a response: %w", id, model.ErrInvalid)
	}
	if pe != nil && resp.Body != nil {
		// A pair this Bolt created and nothing removed: hand the response
		// head to the writer without waiting. Its body's end is durable.
		pe.hasResponse = true
		pe.keyHash = bolt.KeyHash(key)
		s.pendMu.Unlock()
		r := *pe.rec
		r.Flags |= bolt.FlagHasResponse
		r.Key, r.Status, r.RespHeader = key, resp.Status, resp.Header
		rec = &r
		if err = s.w.post(ctx, applyTo(nil)); err != nil { // not queued
			s.pendMu.Lock()
			pe.hasResponse = false
			s.pendMu.Unlock()
		}
	} else {
		if pe != nil {
			pe.hasResponse = true
			pe.keyHash = bolt.KeyHash(key)
		}
		s.pendMu.Unlock()
		err = s.w.do(ctx, resp.Body == nil && s.durableEnds(), applyTo(&rec))
		if err != nil && pe != nil {
			s.pendMu.Lock()
			pe.hasResponse = false
			s.pendMu.Unlock()
		}
	}
	if err != nil {
		return model.CompletePair{}, err
	}
	info := rec.Info()
	out := model.CompletePair{ID: id, Request: info.Request, Response: resp, Key: key, Meta: info.Meta}
	// The writer may not have encoded the record yet: the caller gets maps
	// of its own.
	out.Request.Header = rec.ReqHeader.Clone()
	out.Response.Header = callerHeader
	if resp.Body != nil {
		out.Response.Body = model.NewBody(s.newSaver(ctx, rec, bolt.KindResponse, resp.Body))
	}
	return out, nil
}

// settle stores rec and, if both of its bodies are now stored, completes the
// pair as of now (unix ns: when its last body ended): it becomes visible
// under its key, gets its expiry, and the size budget is enforced.
func (s *Bolt) settle(t *wtx, rec *bolt.Record, now int64) {
	if rec.Has(bolt.FlagComplete) || !rec.Has(bolt.FlagRequestDone|bolt.FlagResponseDone|bolt.FlagHasResponse) {
		t.putRecord(rec)
		return
	}
	rec.Flags |= bolt.FlagComplete
	rec.Completed = now
	rec.LastAccess = now
	if rec.TTL > 0 {
		rec.Expires = now + rec.TTL
	}
	if rec.Expires = capExpiry(rec, rec.Expires); rec.Expires != 0 {
		t.put(t.expiry, bolt.TimeKey(rec.Expires, rec.ID), nil)
	}
	t.putRecord(rec)
	t.delIncomplete(rec.Created, rec.ID)
	h := bolt.KeyHash(rec.Key)
	t.addKey(h, rec.ID)
	s.capVariants(t, h, rec)
	t.put(t.acc, bolt.TimeKey(rec.LastAccess, rec.ID), nil)
	t.addStats(1, -1, 0, 0)
	t.settled = append(t.settled, rec.ID)
	if s.opts.NoSync {
		t.completedKeys = append(t.completedKeys, h)
		s.pendMu.Lock()
		s.unsynced[h]++
		s.pendMu.Unlock()
	}
	s.enforceBudget(t, nil)
}

// afterCommit ends the pending entries of the pairs a transaction settled
// (completed, deleted or removed): once it is committed, a View sees them.
// After a rollback their records are gone, so the entries end too.
func (s *Bolt) afterCommit(t *wtx, err error) {
	if t.accessed || len(s.applied) > 0 {
		s.afterAccessCommit(t, err)
	}
	if len(t.evicting) > 0 {
		s.reading.settle(t.evicting, err == nil, s.now().UnixNano())
	}
	if len(t.settled) == 0 && len(t.completedKeys) == 0 && len(t.cleared) == 0 && (err == nil || len(t.created) == 0) {
		return
	}
	s.pendMu.Lock()
	for _, h := range t.completedKeys {
		s.unsyncLocked(h)
	}
	if err == nil {
		for _, id := range t.cleared {
			delete(s.pend, id)
		}
	}
	for _, id := range t.settled {
		delete(s.pend, id)
	}
	if err != nil {
		for _, id := range t.created {
			delete(s.pend, id)
		}
	}
	s.pendMu.Unlock()
}

// durableEnds reports whether the end of a pair (its last body stored)
// waits for a commit: always, unless NoSync.
func (s *Bolt) durableEnds() bool { return !s.opts.NoSync }

// syncFor commits first if a pair that a read could see may be completed
// but not yet committed (under NoSync a pair's end does not wait for its
// commit, and reads must see it): a pair under key hash h when h is not
// nil, else the pair id when id is not zero, else any pair.
func (s *Bolt) syncFor(ctx context.Context, h *[bolt.HashLen]byte, id model.PairID) error {
	if s.durableEnds() {
		return nil
	}
	s.pendMu.Lock()
	var need bool
	switch {
	case h != nil:
		need = s.unsynced[*h] > 0
	case !id.IsZero():
		_, need = s.pend[id]
	default:
		need = len(s.unsynced) > 0
	}
	s.pendMu.Unlock()
	if !need {
		return nil
	}
	return s.Sync(ctx)
}

// ending reports whether the end of pair id's body may be posted to the
// writer (see BoltOptions.NoSync): the pair is one this Bolt created, it
// has its response, and nothing has settled it yet. If so, it counts the
// pair's key hash h as unsynced; the caller must end that count with unsync
// or with the commit of a transaction listing h in completedKeys.
func (s *Bolt) ending(id model.PairID) (h [bolt.HashLen]byte, ok bool) {
	s.pendMu.Lock()
	defer s.pendMu.Unlock()
	pe := s.pend[id]
	if pe == nil || !pe.hasResponse {
		return h, false
	}
	s.unsynced[pe.keyHash]++
	return pe.keyHash, true
}

// unsync ends one count of key hash h in unsynced.
func (s *Bolt) unsync(h [bolt.HashLen]byte) {
	s.pendMu.Lock()
	s.unsyncLocked(h)
	s.pendMu.Unlock()
}

func (s *Bolt) unsyncLocked(h [bolt.HashLen]byte) {
	if s.unsynced[h]--; s.unsynced[h] <= 0 {
		delete(s.unsynced, h)
	}
}

// openPairs reports how many pairs this Bolt created that are not yet
// complete (or removed) in a committed transaction.
func (s *Bolt) openPairs() int {
	s.pendMu.Lock()
	defer s.pendMu.Unlock()
	return len(s.pend)
}

func (s *Bolt) unpend(id model.PairID) {
	s.pendMu.Lock()
	delete(s.pend, id)
	s.pendMu.Unlock()
}

// GetPairs returns every live, complete, unexpired pair stored under key,
// newest first. Their bodies stream from storage as they are read; each must
// be read to the end or closed. Reading a pair counts as an access: it
// restarts the pair's TTL if the pair refreshes on access, and moves it to
// the back of the eviction order (access times are written in batches).
// The pairs' header maps are the caller's own to change.
//
// GetPairs decodes the heads of the pairs under key and reads none of
// their bodies, so that a key with many variants costs their heads, not
// their bodies; but when there is one pair, which the caller is about to
// read, it reads up to 64 KiB of its bodies in the same read transaction.
// A pair whose record fails its checksum makes GetPairs fail with
// model.ErrCorrupt; the next sweep removes it.
func (s *Bolt) GetPairs(ctx context.Context, key string) ([]model.CompletePair, error) {
	return s.getPairs(ctx, key, false)
}

// getPairs is GetPairs; with lend, the pairs' header maps are those of the
// head cache where it holds them (see lendPairs), not copies.
func (s *Bolt) getPairs(ctx context.Context, key string, lend bool) ([]model.CompletePair, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	h := bolt.KeyHash(key)
	if err := s.syncFor(ctx, &h, model.PairID{}); err != nil {
		return nil, err
	}
	now := s.now()
	var out []model.CompletePair
	err := s.view(func(t *readTx) error {
		var one [1]*bolt.Record // the common case: one pair per key
		recs := one[:0]
		var oneShared [1]bool
		shared := oneShared[:0] // shared[i]: recs[i] is the head cache's
		c := t.keysC
		for k, _ := c.Seek(h[:]); k != nil && bytes.HasPrefix(k, h[:]); k, _ = c.Next() {
			id := model.PairID(k[bolt.HashLen:])
			v := t.pair(id)
			if v == nil {
				continue
			}
			rec := s.heads.get(id, v)
			kept := rec != nil
			if rec == nil {
				// Entries of pairs gone wait for a sweep (see bolt's
				// doc): skip them without decoding their headers.
				head, err := bolt.DecodeRecordHead(v)
				if err != nil {
					return s.corrupt(id, fmt.Errorf("hishel: get pairs: pair %s: %w", id, err))
				}
				if head.State() != model.StateComplete || !head.KeyIs(key) {
					continue
				}
				if rec, err = decodeRecord(id, v); err != nil {
					return s.corrupt(id, fmt.Errorf("hishel: get pairs: %w", err))
				}
				kept = s.heads.put(id, v, rec)
			} else if rec.Key != key {
				continue
			}
			if s.live(rec, now) {
				recs = append(recs, rec)
				shared = append(shared, kept)
			}
		}
		for i, rec := range recs {
			p, err := s.pairFromRecord(rec, t, len(recs) == 1)
			if errors.Is(err, errEvicting) { // as if the eviction had committed first
				_ = p.Close()
				continue
			}
			if err != nil {
				return err
			}
			if shared[i] && !lend { // the pair's heads are its own
				p.Request.Header, p.Response.Header = p.Request.Header.Clone(), p.Response.Header.Clone()
			}
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		for _, p := range out {
			_ = p.Close()
		}
		return nil, err
	}
	slices.SortStableFunc(out, func(a, b model.CompletePair) int { return b.Meta.Completed.Compare(a.Meta.Completed) })
	if len(out) > 0 {
		at := bolt.UnixNano(now)
		s.accessMu.Lock()
		for i := range out {
			s.access[out[i].ID] = at
			if m := &out[i].Meta; m.Refresh && m.TTL > 0 && !m.Expires.IsZero() {
				exp := backend.CapExpiry(bolt.UnixNano(m.Completed), out[i].Request.Options, at+int64(m.TTL))
				if t := bolt.Time(exp); t.After(m.Expires) {
					m.Expires = t
				}
			}
			out[i].Meta.LastAccess = now
		}
		s.accessMu.Unlock()
	}
	return out, nil
}

// decodeRecord decodes the record v stored under pair id.
func decodeRecord(id model.PairID, v []byte) (*bolt.Record, error) {
	rec, err := bolt.DecodeRecord(v)
	if err != nil {
		return nil, fmt.Errorf("pair %s: %w", id, err)
	}
	if rec.ID != id {
		return nil, fmt.Errorf("pair %s: record of pair %s: %w", id, rec.ID, model.ErrCorrupt)
	}
	return rec, nil
}

// GetPair returns the live, complete, unexpired pair id, with bodies
// streamed as in GetPairs, or model.ErrNotFound. It does not count as an
// access.
func (s *Bolt) GetPair(ctx context.Context, id model.PairID) (model.CompletePair, error) {
	if err := s.check(ctx); err != nil {
		return model.CompletePair{}, err
	}
	if err := s.syncFor(ctx, nil, id); err != nil {
		return model.CompletePair{}, err
	}
	now := s.now()
	var out model.CompletePair
	err := s.view(func(t *readTx) error {
		v := t.pair(id)
		if v == nil {
			return fmt.Errorf("hishel: get pair %s: %w", id, model.ErrNotFound)
		}
		rec, err := decodeRecord(id, v)
		if err != nil {
			return s.corrupt(id, fmt.Errorf("hishel: get pair: %w", err))
		}
		if !s.live(rec, now) {
			return fmt.Errorf("hishel: get pair %s: %w", id, model.ErrNotFound)
		}
		out, err = s.pairFromRecord(rec, t, true)
		if errors.Is(err, errEvicting) { // as if the eviction had committed first
			_ = out.Close()
			out = model.CompletePair{}
			return fmt.Errorf("hishel: get pair %s: %w", id, model.ErrNotFound)
		}
		return err
	})
	return out, err
}

// live reports whether rec is complete, not deleted and not expired at now,
// counting access times not yet written.
func (s *Bolt) live(rec *bolt.Record, now time.Time) bool {
	if !rec.Has(bolt.FlagComplete) || rec.Has(bolt.FlagDeleted) {
		return false
	}
	exp := s.expires(rec)
	return exp == 0 || bolt.UnixNano(now) < exp
}

// expires returns rec's expiry, counting the access times a read may not
// see in rec yet: gathered, being written, or written by a commit the
// read's transaction began before.
func (s *Bolt) expires(rec *bolt.Record) int64 {
	exp := rec.Expires
	if exp != 0 && rec.Refresh && rec.TTL > 0 {
		if at := s.accessTime(rec.ID); at != 0 {
			if e := capExpiry(rec, at+rec.TTL); e > exp {
				exp = e
			}
		}
	}
	return exp
}

// accessTime returns pair id's latest access time not yet seen by every
// read (0: none).
func (s *Bolt) accessTime(id model.PairID) int64 {
	s.accessMu.Lock()
	defer s.accessMu.Unlock()
	at := s.access[id]
	if f, ok := s.flushing[id]; ok && f > at {
		at = f
	}
	for _, b := range s.applied {
		if a, ok := b.times[id]; ok && a > at {
			at = a
		}
	}
	return at
}

// pairFromRecord builds the pair rec holds; rec must have been read in t.
// With prefetch, up to prefetchBytes of its bodies are read ahead in t.
func (s *Bolt) pairFromRecord(rec *bolt.Record, t *readTx, prefetch bool) (model.CompletePair, error) {
	info := rec.Info()
	p := model.CompletePair{ID: rec.ID, Request: info.Request, Response: info.Response, Key: rec.Key, Meta: info.Meta}
	var reqAhead, respAhead int
	if prefetch {
		reqAhead, respAhead = prefetchBytes/4, prefetchBytes
	}
	var err error
	if p.Request.Body, err = s.storedBody(rec, bolt.KindRequest, t, reqAhead); err != nil {
		return p, fmt.Errorf("hishel: pair %s request body: %w", rec.ID, err)
	}
	if p.Response.Body, err = s.storedBody(rec, bolt.KindResponse, t, respAhead); err != nil {
		return p, fmt.Errorf("hishel: pair %s response body: %w", rec.ID, err)
	}
	return p, nil
}

// storedBody returns a reader of one of rec's bodies, with up to prefetch
// bytes read ahead in t, where rec was read (none if 0: then t may be nil,
// and storedBody does not fail).
// A body that ended empty needs no reader of its own (most requests' bodies).
func (s *Bolt) storedBody(rec *bolt.Record, kind bolt.Kind, t *readTx, prefetch int) (*model.Body, error) {
	done, size := rec.Has(bolt.FlagRequestDone), rec.ReqSize
	if kind == bolt.KindResponse {
		done, size = rec.Has(bolt.FlagResponseDone), rec.RespSize
	}
	if done && size == 0 {
		return model.NewBody(nil), nil
	}
	b := &storedBody{s: s, id: rec.ID, nonce: rec.Nonce, kind: kind}
	if prefetch > 0 {
		if err := b.load(t, false, prefetch, false); err != nil {
			return nil, err
		}
	}
	if !b.ended {
		if b.pin = s.reading.pin(rec.ID, s.now().UnixNano()); b.pin == nil {
			b.Close()
			return nil, errEvicting
		}
	}
	return model.NewChunkBody(b, b), nil
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
func (s *Bolt) UpdatePair(ctx context.Context, id model.PairID, pair model.CompletePair) (model.CompletePair, error) {
	if err := s.check(ctx); err != nil {
		return model.CompletePair{}, err
	}
	rec, _, err := s.update(ctx, id, pair, nil)
	if err != nil {
		return model.CompletePair{}, err
	}
	return s.updated(rec), nil
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
// of fn and governs the write.
func (s *Bolt) UpdatePairFunc(ctx context.Context, id model.PairID, fn func(model.CompletePair) (model.CompletePair, error)) (model.CompletePair, error) {
	read := func(ctx context.Context) (cur model.CompletePair, base updateBase, err error) {
		if err := s.check(ctx); err != nil {
			return cur, base, err
		}
		if err := s.syncFor(ctx, nil, id); err != nil {
			return cur, base, err
		}
		err = s.view(func(t *readTx) error {
			v := t.pair(id)
			if v == nil {
				return fmt.Errorf("hishel: update pair %s: %w", id, model.ErrNotFound)
			}
			rec, err := decodeRecord(id, v)
			if err != nil {
				return s.corrupt(id, fmt.Errorf("hishel: update pair: %w", err))
			}
			if !rec.Has(bolt.FlagComplete) || rec.Has(bolt.FlagDeleted) {
				return fmt.Errorf("hishel: update pair %s: %w", id, model.ErrNotFound)
			}
			info := rec.Info() // decoded: the header maps are fn's own
			cur = model.CompletePair{ID: id, Request: info.Request, Response: info.Response, Key: rec.Key, Meta: info.Meta}
			base = updateBase{rev: rec.Rev, expires: info.Meta.Expires}
			return nil
		})
		return cur, base, err
	}
	write := func(ctx context.Context, next model.CompletePair, base updateBase) (model.CompletePair, bool, error) {
		if err := s.check(ctx); err != nil {
			return model.CompletePair{}, false, err
		}
		rec, stale, err := s.update(ctx, id, next, &base)
		if err != nil || stale {
			return model.CompletePair{}, stale, err
		}
		return s.updated(rec), false, nil
	}
	return backend.UpdatePairFunc(ctx, id, fn, read, write)
}

// updateBase is what UpdatePairFunc's function was given: the pair's
// revision, and its expiry.
type updateBase struct {
	rev     uint64
	expires time.Time
}

// update writes next over pair id, durably. With base, it writes only if
// the pair is still at base's revision (stale reports that it is not),
// and keeps the stored expiry if next's is base's.
func (s *Bolt) update(ctx context.Context, id model.PairID, next model.CompletePair, base *updateBase) (rec *bolt.Record, stale bool, err error) {
	err = s.w.do(ctx, true, func(t *wtx) error {
		r, err := t.record(id)
		if err != nil {
			return err
		}
		if r == nil || !r.Has(bolt.FlagComplete) || r.Has(bolt.FlagDeleted) {
			return fmt.Errorf("hishel: update pair %s: %w", id, model.ErrNotFound)
		}
		if base != nil && r.Rev != base.rev {
			stale = true
			return nil
		}
		if err := backend.CheckUpdate(id, next); err != nil {
			return err
		}
		before := headBytes(r)
		if next.Key != r.Key {
			t.delKey(bolt.KeyHash(r.Key), id)
			t.addKey(bolt.KeyHash(next.Key), id)
			r.Key = next.Key
		}
		if exp := bolt.UnixNano(next.Meta.Expires); exp != r.Expires && (base == nil || !next.Meta.Expires.Equal(base.expires)) {
			if r.Expires != 0 {
				t.del(t.expiry, bolt.TimeKey(r.Expires, id))
			}
			if exp != 0 {
				t.put(t.expiry, bolt.TimeKey(exp, id), nil)
			}
			r.Expires = exp
		}
		r.Created = bolt.UnixNano(next.Meta.Created)
		r.TTL = int64(next.Meta.TTL)
		r.Refresh = next.Meta.Refresh
		r.Method, r.URL, r.ReqHeader, r.ReqOptions = next.Request.Method, next.Request.URL, next.Request.Header.Clone(), next.Request.Options
		r.Status, r.RespHeader = next.Response.Status, next.Response.Header.Clone()
		r.Rev++
		t.addStats(0, 0, 0, headBytes(r)-before)
		t.putRecord(r)
		rec = r
		return nil
	})
	return rec, stale, err
}

// updated returns the pair UpdatePair stored as rec, with lazy bodies.
func (s *Bolt) updated(rec *bolt.Record) model.CompletePair {
	info := rec.Info()
	// The record was encoded by the commit update waited for: its header
	// maps are the caller's now.
	p := model.CompletePair{ID: rec.ID, Request: info.Request, Response: info.Response, Key: rec.Key, Meta: info.Meta}
	p.Request.Body, _ = s.storedBody(rec, bolt.KindRequest, nil, 0)
	p.Response.Body, _ = s.storedBody(rec, bolt.KindResponse, nil, 0)
	return p
}

// Remove soft-deletes the pair id: it is hidden at once and its data is
// reclaimed by a sweep after DeletedRetention. Removing an unknown or
// already removed pair does nothing. Removing an incomplete pair aborts the
// bodies still being stored.
func (s *Bolt) Remove(ctx context.Context, id model.PairID) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	return s.w.do(ctx, true, func(t *wtx) error {
		rec, err := t.record(id)
		if err != nil || rec == nil || rec.Has(bolt.FlagDeleted) {
			return err
		}
		softDelete(t, rec, bolt.UnixNano(s.now()))
		return nil
	})
}

// softDelete hides rec and puts it in the deleted index.
func softDelete(t *wtx, rec *bolt.Record, at int64) {
	t.settled = append(t.settled, rec.ID)
	unindex(t, rec)
	rec.Flags |= bolt.FlagDeleted
	rec.Deleted = at
	t.put(t.deleted, bolt.TimeKey(at, rec.ID), nil)
	t.putRecord(rec)
	t.addStats(0, 0, 1, 0)
}

// unindex removes rec from the indexes of its current state and from its
// state's counter.
func unindex(t *wtx, rec *bolt.Record) {
	switch rec.State() {
	case model.StateComplete:
		t.retireKey(bolt.KeyHash(rec.Key), rec.ID)
		t.retireAccess(rec.LastAccess, rec.ID)
		if rec.Expires != 0 {
			t.del(t.expiry, bolt.TimeKey(rec.Expires, rec.ID))
		}
		t.addStats(-1, 0, 0, 0)
	case model.StateIncomplete:
		t.delIncomplete(rec.Created, rec.ID)
		t.addStats(0, -1, 0, 0)
	case model.StateDeleted:
		t.del(t.deleted, bolt.TimeKey(rec.Deleted, rec.ID))
		t.addStats(0, 0, -1, 0)
	}
}

// purge removes rec and all its chunks.
func purge(t *wtx, rec *bolt.Record) {
	t.settled = append(t.settled, rec.ID)
	unindex(t, rec)
	t.delRecord(rec.ID)
	t.addStats(0, 0, 0, -headBytes(rec))
	purgeChunks(t, rec.Nonce)
}

func purgeChunks(t *wtx, nonce uint64) {
	prefix := bolt.ChunkPrefix(nonce)
	c := t.chunks.Cursor()
	var freed int64
	var p progress
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Seek(prefix) {
		if p.stuck(t, k) {
			return
		}
		if _, kind, seq, _ := bolt.ParseChunkKey(k); kind&bolt.KindFile != 0 {
			// The file goes once the transaction is committed.
			if seq != bolt.MarkerSeq {
				n, _ := bolt.DecodeFileChunk(v, backend.MaxChunkSize)
				freed += int64(n)
			}
			if name := bolt.BodyFileName(nonce, kind); t.bodies != nil && (len(t.unlink) == 0 || t.unlink[len(t.unlink)-1] != name) {
				t.unlink = append(t.unlink, name)
			}
		} else if seq != bolt.MarkerSeq {
			freed += int64(len(v))
		}
		if err := c.Delete(); err != nil {
			t.fatal = writeErr("delete chunk", err)
			return
		}
	}
	t.addStats(0, 0, 0, -freed)
}

// progress guards a loop that deletes the first of some keys and reads
// the first again: on a damaged page a delete may miss its key, and the
// loop would find it for ever.
type progress struct{ last []byte }

// stuck reports whether k is the key the loop met last, and then poisons t
// with an error wrapping model.ErrCorrupt.
func (p *progress) stuck(t *wtx, k []byte) bool {
	if p.last != nil && bytes.Equal(p.last, k) {
		if t.fatal == nil {
			t.fatal = fmt.Errorf("hishel: key %x still there after its delete: %w", k, model.ErrCorrupt)
		}
		return true
	}
	p.last = append(p.last[:0], k...)
	return false
}

// purgeID removes whatever is stored under id, used to reclaim an aborted
// body at once. A record with another nonce (a new pair reusing the ID) is
// left alone.
func purgeID(t *wtx, id model.PairID, nonce uint64) error {
	rec, err := t.record(id)
	if err != nil {
		return err
	}
	if rec == nil || rec.Nonce != nonce {
		return nil
	}
	purge(t, rec)
	return nil
}

// enforceBudget evicts pairs until the stored bytes fit MaxBytes and the
// complete pairs MaxPairs: soft-deleted pairs first (oldest deletion
// first; for MaxBytes only, as they are not counted as pairs), then
// complete pairs, least recently used first. Incomplete pairs are never
// evicted, nor pairs whose bodies are being read (see readPin): the
// budget may be exceeded while they are.
func (s *Bolt) enforceBudget(t *wtx, res *model.SweepResult) {
	overBytes := func() bool { return s.pol.MaxBytes > 0 && t.stats.Bytes > s.pol.MaxBytes }
	overPairs := func() bool { return s.pol.MaxPairs > 0 && t.stats.Pairs > s.pol.MaxPairs }
	if !overBytes() && !overPairs() {
		return
	}
	s.applyAccess(t) // so that recent reads count in the LRU order
	now := s.now().UnixNano()
	for _, idx := range []*bbolt.Bucket{t.deleted, t.acc} {
		var p progress
		var after []byte // the entries up to here are pinned
		for (overBytes() || idx == t.acc && overPairs()) && t.fatal == nil {
			var k []byte
			if after == nil {
				k, _ = idx.Cursor().First()
			} else {
				k, _ = idx.Cursor().Seek(after)
			}
			if k == nil || p.stuck(t, k) {
				break
			}
			at, id, err := bolt.ParseTimeKey(k)
			if err != nil {
				t.del(idx, k)
				continue
			}
			rec, err := t.record(id)
			if err != nil || rec == nil || idx == t.acc && (rec.State() != model.StateComplete || rec.LastAccess != at) {
				t.del(idx, k) // a stale index entry (see retireAccess)
				continue
			}
			if !s.evictPair(t, rec, now) {
				after = append(append(after[:0], k...), 0) // the next key after k
				continue
			}
			t.del(idx, k) // at the index's start, unless pinned pairs precede it: no random leaf to rewrite (see retireAccess)
			// A live pair counts; a soft-deleted one reclaimed early does not.
			if idx == t.acc {
				t.evicted++
			}
			if res != nil {
				res.Evicted++
			}
		}
	}
}

// evictPair purges rec to keep within a bound (MaxBytes, MaxPairs,
// MaxVariants), unless a body of it is being read (see readPin), and
// reports whether it did.
func (s *Bolt) evictPair(t *wtx, rec *bolt.Record, now int64) bool {
	if !s.reading.evict(rec.ID, now) {
		return false
	}
	t.evicting = append(t.evicting, rec.ID)
	purge(t, rec)
	return true
}

// Cleanup runs a sweep now and reports what it did: expired pairs are
// soft-deleted, soft-deleted pairs past DeletedRetention and incomplete pairs
// older than IncompleteAge are removed, pairs beyond MaxBytes or MaxPairs
// are evicted, and pairs that reads found damaged (ErrCorrupt) are removed.
// It works in small transactions, so readers and writers are never held up
// for long, and its cost is proportional to what it removes. The
// keys and access index entries of pairs gone are deleted in batches, once
// there are as many as an eighth of the pairs (and at least 4096).
func (s *Bolt) Cleanup(ctx context.Context) (model.SweepResult, error) {
	var total model.SweepResult
	for {
		if err := s.check(ctx); err != nil {
			return total, err
		}
		var res model.SweepResult
		more := false
		err := s.w.do(ctx, true, func(t *wtx) error {
			res, more = model.SweepResult{}, false
			s.applyAccess(t)
			more = s.sweepStep(t, &res)
			return nil
		})
		if err != nil {
			return total, err
		}
		total.Expired += res.Expired
		total.Purged += res.Purged
		total.Abandoned += res.Abandoned
		total.Evicted += res.Evicted
		if !more {
			break
		}
	}
	if err := s.reclaimSuspects(ctx, &total); err != nil {
		return total, err
	}
	if _, err := s.removeOrphans(ctx); err != nil {
		return total, err
	}
	s.reading.prune(s.now().UnixNano())
	return total, s.cleanStale(ctx, staleMin)
}

// staleBatch is a batch of stale log entries: sorted index entries and
// the last sequence number it covers.
type staleBatch struct {
	keys []keysKey
	acc  [][bolt.TimeKeyLen]byte
	upTo uint64
}

// cleanStale deletes the index entries logged in the stale bucket (see
// retireKey) once the log holds at least atLeast of them and an eighth as many
// as there are pairs; atLeast is staleMin but for tests. Each batch reads up
// to staleMax entries in a read transaction (a sweep that finds the log short
// costs no commit, and the writer goes on while the batch reads; only a
// commit that grows the file waits for the read to end), sorts them
// and deletes them in key order, staleChunk per transaction, so that a batch
// rewrites each leaf of an index about once: the cost per entry falls as the
// batch grows with the database, where deleting entries as their pairs go
// would rewrite a random leaf each. Every entry is checked against its
// pair's record first: an entry whose pair is complete and live under it
// again is kept. The log is trimmed last, up to the last entry read, so a
// batch cut short (a crash, a closed Bolt) is done again, harmlessly.
//
// The log only grows at its end, and the writer's sequence numbers only
// grow while it runs (a rolled-back transaction's were never seen): every
// entry committed after the read has a larger number than every entry the
// read saw, so it lies beyond what the batch trims.
func (s *Bolt) cleanStale(ctx context.Context, atLeast uint64) error {
	for {
		if err := s.check(ctx); err != nil {
			return err
		}
		select {
		case <-s.stop: // closing: the rest waits for a sweep after a reopen
			return model.ErrClosed
		default:
		}
		var b staleBatch
		var bad [][]byte // malformed entries: nothing to delete but them
		badEnds := false // malformed keys at an end of the log hide its length
		err := s.view(func(t *readTx) error {
			st, err := bolt.DecodeStats(t.meta.Get(bolt.MetaStats))
			if err != nil {
				return fmt.Errorf("hishel: read stats: %w", err)
			}
			log := t.tx.Bucket(bolt.BucketStale)
			if log == nil {
				return fmt.Errorf("hishel: bucket %q missing: %w", bolt.BucketStale, model.ErrCorrupt)
			}
			c := log.Cursor()
			first, _ := c.First()
			last, _ := c.Last()
			if first == nil {
				return nil
			}
			if len(first) != 8 || len(last) != 8 {
				badEnds = true
				return nil
			}
			n := binary.BigEndian.Uint64(last) - binary.BigEndian.Uint64(first) + 1
			if n < atLeast || n < uint64(st.Pairs/staleShare) {
				return nil
			}
			read := 0 // malformed entries count too: a corrupt log is read in batches all the same
			for k, v := c.First(); k != nil && read < staleMax; k, v = c.Next() {
				read++
				seq, idx, e, err := bolt.ParseStale(k, v)
				switch {
				case err != nil:
					bad = append(bad, bytes.Clone(k))
					continue
				case idx == bolt.IndexKeys:
					b.keys = append(b.keys, keysKey(e))
				default:
					b.acc = append(b.acc, [bolt.TimeKeyLen]byte(e))
				}
				b.upTo = seq
			}
			return nil
		})
		if err != nil {
			return err
		}
		if badEnds || len(bad) > 0 {
			err := s.w.do(ctx, true, func(t *wtx) error {
				c := t.stale.Cursor()
				for _, end := range []func() ([]byte, []byte){c.First, c.Last} {
					var p progress
					for k, _ := end(); k != nil && len(k) != 8 && t.fatal == nil && !p.stuck(t, k); k, _ = end() {
						t.dropStale(bytes.Clone(k))
					}
				}
				for _, k := range bad {
					t.dropStale(k)
				}
				return nil
			})
			if err != nil {
				return err
			}
			if badEnds {
				continue // the log's length can be read now
			}
		}
		if len(b.keys)+len(b.acc) == 0 {
			return nil
		}
		slices.SortFunc(b.keys, func(x, y keysKey) int { return bytes.Compare(x[:], y[:]) })
		slices.SortFunc(b.acc, func(x, y [bolt.TimeKeyLen]byte) int { return bytes.Compare(x[:], y[:]) })
		for len(b.keys) > 0 {
			part := b.keys[:min(len(b.keys), staleChunk)]
			b.keys = b.keys[len(part):]
			if err := s.w.do(ctx, true, func(t *wtx) error { t.dropStaleKeys(part); return nil }); err != nil {
				return err
			}
		}
		for len(b.acc) > 0 {
			part := b.acc[:min(len(b.acc), staleChunk)]
			b.acc = b.acc[len(part):]
			if err := s.w.do(ctx, true, func(t *wtx) error { t.dropStaleAccess(part); return nil }); err != nil {
				return err
			}
		}
		for more := true; more; {
			if err := s.w.do(ctx, true, func(t *wtx) error { more = t.trimStale(b.upTo, staleChunk); return nil }); err != nil {
				return err
			}
		}
	}
}

// dropStaleKeys deletes the keys index entries ks, in order, but those
// whose pair is complete and live under them again (a pair given the ID of
// one that went, under the same key).
func (t *wtx) dropStaleKeys(ks []keysKey) {
	for _, k := range ks {
		if _, ok := t.newKeys[k]; ok {
			continue // added again in this transaction
		}
		if h, ok := t.liveHead(model.PairID(k[bolt.HashLen:])); ok && bolt.KeyHash(h.Key()) == [bolt.HashLen]byte(k[:bolt.HashLen]) {
			continue
		}
		t.del(t.keys, k[:])
	}
}

// dropStaleAccess deletes the access index entries ks, in order, but those
// that are their pair's current one.
func (t *wtx) dropStaleAccess(ks [][bolt.TimeKeyLen]byte) {
	for _, k := range ks {
		at, id, _ := bolt.ParseTimeKey(k[:])
		if h, ok := t.liveHead(id); ok && h.LastAccess == at {
			continue
		}
		t.del(t.acc, k[:])
	}
}

// liveHead returns the head of pair id's record if the pair is complete
// and not deleted. A record this transaction wrote is read in full; a
// stored one only up to its key.
func (t *wtx) liveHead(id model.PairID) (bolt.RecordHead, bool) {
	if r, ok := t.recs[id]; ok {
		if r.gone || r.rec.State() != model.StateComplete {
			return bolt.RecordHead{}, false
		}
		return r.rec.Head(), true
	}
	v := t.pairs.Get(id[:])
	if v == nil {
		return bolt.RecordHead{}, false
	}
	h, err := bolt.DecodeRecordHead(v)
	if err != nil || h.State() != model.StateComplete {
		return bolt.RecordHead{}, false // a record that does not decode serves nothing
	}
	return h, true
}

// trimStale deletes up to n stale log entries from its start, up to
// sequence number upTo; it reports whether more are due.
func (t *wtx) trimStale(upTo uint64, n int) (more bool) {
	c := t.stale.Cursor()
	var p progress
	for k, _ := c.First(); k != nil && t.fatal == nil && !p.stuck(t, k); k, _ = c.First() {
		if len(k) == 8 && binary.BigEndian.Uint64(k) > upTo {
			return false
		}
		if n == 0 {
			return true
		}
		n--
		t.dropStale(bytes.Clone(k))
	}
	return false
}

// dropStale deletes stale log key k; a bucket under it (a corrupt file)
// goes whole, where a delete would fail every sweep from then on.
func (t *wtx) dropStale(k []byte) {
	if t.fatal != nil {
		return
	}
	if t.stale.Bucket(k) != nil {
		if err := t.stale.DeleteBucket(k); err != nil {
			t.fatal = fmt.Errorf("hishel: delete stale entry: %w", err)
		}
		return
	}
	t.del(t.stale, k)
}

// sweepStep does up to sweepBatch items of each rule; it reports whether
// any rule may have more to do. An index entry whose pair's record is
// gone, or fails its checksum (the pair is then a suspect, see
// reclaimSuspects), is deleted: an entry the sweep cannot act on would
// otherwise be due for ever.
func (s *Bolt) sweepStep(t *wtx, res *model.SweepResult) (more bool) {
	now := bolt.UnixNano(s.now())
	type entry struct {
		k  []byte
		id model.PairID
	}
	due := func(idx *bbolt.Bucket, upTo int64) []entry {
		var es []entry
		bound := bolt.TimeBound(upTo)
		c := idx.Cursor()
		for k, _ := c.First(); k != nil && bytes.Compare(k[:min(len(k), 8)], bound) <= 0; k, _ = c.Next() {
			if len(es) == sweepBatch {
				more = true
				break
			}
			_, id, err := bolt.ParseTimeKey(k)
			if err != nil {
				es = append(es, entry{k: bytes.Clone(k)}) // malformed: deleted below
				continue
			}
			es = append(es, entry{bytes.Clone(k), id})
		}
		return es
	}
	// record returns the record of e's pair, or nil after deleting e.
	record := func(idx *bbolt.Bucket, e entry) *bolt.Record {
		if e.id.IsZero() {
			t.del(idx, e.k)
			return nil
		}
		rec, err := t.record(e.id)
		if err != nil || rec == nil {
			if err != nil {
				s.suspect(e.id)
			}
			t.del(idx, e.k)
			return nil
		}
		return rec
	}
	for _, e := range due(t.expiry, now) {
		rec := record(t.expiry, e)
		if rec == nil {
			continue
		}
		if rec.Has(bolt.FlagComplete) && !rec.Has(bolt.FlagDeleted) && rec.Expires != 0 && rec.Expires <= now {
			softDelete(t, rec, now)
			res.Expired++
		}
	}
	for _, e := range due(t.deleted, now-int64(s.pol.Retention)) {
		if rec := record(t.deleted, e); rec != nil && rec.Has(bolt.FlagDeleted) {
			purge(t, rec)
			res.Purged++
		}
	}
	t.flushIncomplete()
	for _, e := range due(t.incomplete, now-int64(s.pol.IncompleteAge)) {
		if rec := record(t.incomplete, e); rec != nil && rec.State() == model.StateIncomplete {
			purge(t, rec)
			res.Abandoned++
		}
	}
	s.enforceBudget(t, res)
	return more
}

// applyAccess writes the gathered access times: each live complete pair
// moves in the LRU index and, if it refreshes on access, gets a new expiry.
//
// The times taken stay visible to reads (Bolt.flushing) until the
// transaction commits, and then (Bolt.applied) until every read in flight
// began after the commit: a read must never see a pair it read a moment
// ago, and refreshed, as expired. See afterAccessCommit.
func (s *Bolt) applyAccess(t *wtx) { s.applyAccessN(t, 0) }

// applyAccessN is applyAccess for at most limit of the gathered times (0:
// all), and reports whether more are left. Records are read and index
// entries deleted and put in key order: gathered in a map, random hits
// would otherwise touch pages in random order, and put new access index
// entries into the tree's last node (all reads are recent) in random
// order, which bbolt does by moving half the node each time until the
// commit splits it.
func (s *Bolt) applyAccessN(t *wtx, limit int) (more bool) {
	s.accessMu.Lock()
	pending := s.access
	if len(pending) == 0 {
		s.accessMu.Unlock()
		return false
	}
	if limit > 0 && len(pending) > limit {
		taken := make(map[model.PairID]int64, limit)
		for id, at := range pending {
			if len(taken) == limit {
				break
			}
			taken[id] = at
			delete(pending, id)
		}
		pending, more = taken, true
	} else {
		s.access = make(map[model.PairID]int64, min(len(pending), accessBatch))
	}
	if s.flushing == nil {
		s.flushing = pending
	} else { // a second batch in one transaction
		for id, at := range pending {
			s.flushing[id] = max(s.flushing[id], at)
		}
	}
	s.accessMu.Unlock()
	t.accessed = true
	ids := make([]model.PairID, 0, len(pending))
	for id := range pending {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b model.PairID) int { return bytes.Compare(a[:], b[:]) })
	var dels, puts, expDels, expPuts [][bolt.TimeKeyLen]byte
	for _, id := range ids {
		at := pending[id]
		rec, err := t.record(id)
		if err != nil || rec == nil || rec.State() != model.StateComplete || at <= rec.LastAccess {
			continue
		}
		dels = append(dels, timeKey(rec.LastAccess, id))
		rec.LastAccess = at
		puts = append(puts, timeKey(at, id))
		if rec.Refresh && rec.TTL > 0 && rec.Expires != 0 {
			if exp := capExpiry(rec, at+rec.TTL); exp > rec.Expires {
				expDels = append(expDels, timeKey(rec.Expires, id))
				rec.Expires = exp
				expPuts = append(expPuts, timeKey(exp, id))
			}
		}
		t.putRecord(rec)
	}
	for _, c := range []struct {
		b    *bbolt.Bucket
		keys [][bolt.TimeKeyLen]byte
		del  bool
	}{{t.acc, dels, true}, {t.expiry, expDels, true}, {t.acc, puts, false}, {t.expiry, expPuts, false}} {
		slices.SortFunc(c.keys, func(a, b [bolt.TimeKeyLen]byte) int { return bytes.Compare(a[:], b[:]) })
		for i := range c.keys {
			if c.del {
				t.del(c.b, c.keys[i][:])
			} else {
				t.put(c.b, c.keys[i][:], nil)
			}
		}
	}
	return more
}

// timeKey is bolt.TimeKey in an array.
func timeKey(at int64, id model.PairID) (k [bolt.TimeKeyLen]byte) {
	copy(k[:], bolt.TimeKey(at, id))
	return k
}

// afterAccessCommit runs after a transaction that took access times (see
// applyAccess) committed or rolled back. Committed, the times move to
// applied, with the readers' generation after the commit; rolled back,
// they are gathered again. Batches every read in flight began after are
// dropped: those reads, and every later one, find the times in records.
func (s *Bolt) afterAccessCommit(t *wtx, err error) {
	s.accessMu.Lock()
	defer s.accessMu.Unlock()
	if t.accessed && s.flushing != nil {
		if err == nil {
			_, gen := s.rd.seenBy(0)
			s.applied = append(s.applied, appliedAccess{times: s.flushing, gen: gen})
		} else {
			for id, at := range s.flushing {
				s.access[id] = max(s.access[id], at)
			}
		}
		s.flushing = nil
	}
	for len(s.applied) > 0 {
		if ok, _ := s.rd.seenBy(s.applied[0].gen); !ok {
			break
		}
		s.applied[0] = appliedAccess{}
		s.applied = s.applied[1:]
	}
}

// Clear removes every pair at once. Bodies being read fail with
// model.ErrRemoved; bodies being stored fail and are not stored.
func (s *Bolt) Clear(ctx context.Context) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	err := s.w.do(ctx, true, s.clear)
	s.bodies.orphans.Store(true) // the files of the cleared pairs
	return err
}

// clear is Clear's op.
func (s *Bolt) clear(t *wtx) error {
	s.accessMu.Lock()
	clear(s.access)
	clear(s.flushing)
	s.accessMu.Unlock()
	for _, name := range bolt.Buckets {
		if bytes.Equal(name, bolt.BucketMeta) {
			continue
		}
		if err := t.tx.DeleteBucket(name); err != nil {
			t.fatal = fmt.Errorf("hishel: clear: %w", err)
			return t.fatal
		}
		if _, err := t.tx.CreateBucket(name); err != nil {
			t.fatal = fmt.Errorf("hishel: clear: %w", err)
			return t.fatal
		}
	}
	t.dropRecords()
	t.newIncomplete = nil
	t.pairs, t.keys, t.chunks = t.tx.Bucket(bolt.BucketPairs), t.tx.Bucket(bolt.BucketKeys), t.tx.Bucket(bolt.BucketChunks)
	t.expiry, t.deleted = t.tx.Bucket(bolt.BucketExpiry), t.tx.Bucket(bolt.BucketDeleted)
	t.incomplete, t.acc = t.tx.Bucket(bolt.BucketIncomplete), t.tx.Bucket(bolt.BucketAccess)
	t.stale = t.tx.Bucket(bolt.BucketStale)
	t.fill()
	t.stats = model.Stats{}
	t.statsDirty = true
	// Every pair created so far is gone; pairs whose create op is still
	// to come (later in this transaction or after it) are not.
	s.pendMu.Lock()
	for id, pe := range s.pend {
		if pe.applied {
			t.cleared = append(t.cleared, id)
		}
	}
	s.pendMu.Unlock()
	return nil
}

// Sync commits everything handed to the storage so far. Changes that
// nothing can observe yet (a new incomplete pair, chunks of a body still
// streaming, access times) are committed a few milliseconds after they are
// made, together with the next change that must be durable; Sync forces that
// commit now. Operations that make a pair visible or hide it (the end of a
// body, UpdatePair, Remove, Clear, Cleanup) are durable when they return and
// need no Sync.
func (s *Bolt) Sync(ctx context.Context) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	return s.w.do(ctx, true, func(*wtx) error { return nil })
}

// Stats returns the storage's counters as of the last commit (see Sync;
// pairs completed under NoSync are committed first).
func (s *Bolt) Stats(ctx context.Context) (model.Stats, error) {
	if err := s.check(ctx); err != nil {
		return model.Stats{}, err
	}
	if err := s.syncFor(ctx, nil, model.PairID{}); err != nil {
		return model.Stats{}, err
	}
	var st model.Stats
	err := s.view(func(t *readTx) error {
		var err error
		st, err = bolt.DecodeStats(t.meta.Get(bolt.MetaStats))
		return err
	})
	st.Evicted = s.w.evicted.Load()
	return st, err
}

// Close stops the background goroutines (a flush of access times under
// way stops after its current batch), writes the access times gathered and
// not yet written as the access log (a few sequential pages, read back by
// the next OpenBolt, instead of a page per pair read), waits for pending
// writes to commit, writes the free list to the file (so
// that the next open need not rebuild it; in the access log's commit if
// there is one, else in a commit of its own) and closes the file. Bodies
// still being read or stored fail with model.ErrClosed. Close is
// idempotent. If the file was found damaged as a write failed, Close
// closes the file under bbolt, which cannot close with the failed
// transaction open, and reports the damage.
func (s *Bolt) Close() error {
	s.closeOnce.Do(func() {
		s.closing.Store(true)
		close(s.stop)
		<-s.maintDone
		s.closed.Store(true)
		s.w.close()
		s.rd.close()
		s.heads.clear()
		if s.w.broken != nil {
			// The memory map stays: bbolt alone could unmap it.
			s.closeErr = errors.Join(s.w.broken, unlockFile(s.file), s.file.Close())
		} else if s.w.freelistKept { // by the commit of the access log
			s.closeErr = s.db.Close()
		} else {
			s.closeErr = errors.Join(syncFreelist(s.db), s.db.Close())
		}
		s.held.release()
	})
	return s.closeErr
}

// flushAccess writes the gathered access times, accessBatch pairs per
// op, so that other writes go on between batches and Close need not wait
// for them all. Once the store is closing it writes what is left as the
// access log instead (see logAccess).
func (s *Bolt) flushAccess(ctx context.Context) {
	for {
		s.accessMu.Lock()
		n := len(s.access)
		s.accessMu.Unlock()
		if n == 0 {
			return
		}
		if s.closing.Load() {
			_ = s.w.do(ctx, false, func(t *wtx) error {
				s.logAccess(t)
				// The commit that writes the log writes the free list
				// too, so that Close need not commit again for it.
				s.db.NoFreelistSync = false
				return nil
			})
			return
		}
		more := false
		err := s.w.do(ctx, false, func(t *wtx) error {
			more = s.applyAccessN(t, accessBatch)
			return nil
		})
		if err != nil || !more {
			return
		}
	}
}

// logAccess writes the gathered access times into the meta bucket as the
// access log (bolt.MetaAccessLog), in values of up to accessLogValue
// entries: a few sequential pages, where writing them into their records
// rewrites a page per pair read. The next OpenBolt reads them back as
// gathered times (see takeAccessLog).
func (s *Bolt) logAccess(t *wtx) {
	s.accessMu.Lock()
	pending := s.access
	s.access = make(map[model.PairID]int64)
	s.accessMu.Unlock()
	if len(pending) == 0 {
		return
	}
	var seq uint64 // after the values already there, if any
	c := t.meta.Cursor()
	for k, _ := c.Seek(bolt.MetaAccessLog); k != nil && bytes.HasPrefix(k, bolt.MetaAccessLog); k, _ = c.Next() {
		if len(k) == len(bolt.MetaAccessLog)+8 {
			seq = max(seq, binary.BigEndian.Uint64(k[len(bolt.MetaAccessLog):])+1)
		}
	}
	b := make([]byte, 0, min(len(pending), accessLogValue)*bolt.AccessEntryLen+bolt.CRCLen)
	n := 0
	for id, at := range pending {
		b = bolt.AppendAccess(b, id, at)
		if n++; n%accessLogValue == 0 || n == len(pending) {
			t.put(t.meta, bolt.AccessLogKey(seq), bolt.SealAccessLog(b))
			seq++
			b = make([]byte, 0, min(len(pending)-n, accessLogValue)*bolt.AccessEntryLen+bolt.CRCLen)
		}
	}
}
