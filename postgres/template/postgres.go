package template

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"iter"
	"math"
	"math/rand/v2"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hishel-go/hishel/backend"
	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/model"
)

// Defaults of PostgresOptions.
const (
	DefaultTable               = "hishel"
	DefaultAccessFlushInterval = time.Second
)

const (
	flushBytes = 1 << 20   // a streaming body is written every flushBytes
	readAhead  = 256 << 10 // a stored body is read this much per query
	sweepBatch = 256       // pairs handled per sweep statement, per rule
	listPage   = 256       // records read per query by Pairs
)

// PostgresOptions configure a PostgreSQL storage. A nil *PostgresOptions,
// and every zero field, means the default.
type PostgresOptions struct {
	// ConnString says where the database is, as pgx reads it: a URL
	// (postgres://user:password@host:5432/db?sslmode=verify-full) or
	// key=value pairs; empty means the PG* environment variables and
	// libpq's defaults. pgxpool's settings (pool_max_conns, ...) may be in
	// it.
	ConnString string
	// Table is the prefix of the store's tables (Table_entries,
	// Table_streams, Table_meta, Table_stats): several stores may share a
	// database under different prefixes. A lower-case SQL identifier of
	// at most 40 characters. Default "hishel".
	Table string
	// NoSync commits without waiting for the server's WAL flush
	// (synchronous_commit = off for the store's connections): faster
	// writes, and the database stays consistent, but a crash of the server
	// may lose the last pairs. For caches that can be rebuilt.
	NoSync bool
	// AccessFlushInterval is how long access times (for TTL refresh and
	// the eviction order) are gathered in memory before one statement
	// writes them, so that reads stay reads. Default 1s.
	AccessFlushInterval time.Duration

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

func (o *PostgresOptions) settings() backend.Settings {
	return backend.Settings{DefaultTTL: o.DefaultTTL, RefreshTTLOnAccess: o.RefreshTTLOnAccess,
		SweepInterval: o.SweepInterval, DeletedRetention: o.DeletedRetention, IncompleteAge: o.IncompleteAge,
		MaxBytes: o.MaxBytes, MaxPairs: o.MaxPairs, MaxVariants: o.MaxVariants, ChunkSize: o.ChunkSize, Now: o.Now}
}

// SetSettings sets the fields that backend.Settings names.
func (o *PostgresOptions) SetSettings(s backend.Settings) {
	o.DefaultTTL, o.RefreshTTLOnAccess, o.SweepInterval = s.DefaultTTL, s.RefreshTTLOnAccess, s.SweepInterval
	o.DeletedRetention, o.IncompleteAge, o.MaxBytes = s.DeletedRetention, s.IncompleteAge, s.MaxBytes
	o.MaxPairs, o.MaxVariants, o.ChunkSize, o.Now = s.MaxPairs, s.MaxVariants, s.ChunkSize, s.Now
}

// Postgres stores pairs in a PostgreSQL database, in tables in the spirit
// of Hishel's SQL storage (entries and streams; see schema.go), through
// pgx's connection pool.
//
// Any number of processes, on any number of machines, may share one
// store: every change is one transaction, a pair is visible to every
// process once both of its bodies are stored and never before (its last
// chunks, completion markers and its complete state commit together), and
// a process killed at any point leaves at worst an incomplete pair, which
// the server rolls back or a sweep removes. Bodies are stored in chunks
// with a CRC-32C each, and records with theirs: a mismatch is
// model.ErrCorrupt, and the pair is reclaimed by the next sweep.
//
// Access times (LRU order, TTL refresh) are gathered for
// AccessFlushInterval before they are written; another process sees a
// refresh once it is written. The budgets (MaxBytes, MaxPairs,
// MaxVariants) are enforced as each pair completes, against the counters
// that every process keeps in the same transactions as its changes.
//
// A Postgres is safe for concurrent use. It owns one goroutine, from
// OpenPostgres until Close, that writes gathered access times and runs the
// background sweep.
//
//hishel:backend
//hishel:scheme postgres
type Postgres struct {
	pool *pgxpool.Pool
	opts PostgresOptions
	pol  backend.Policy
	q    queries
	// chunks reads bodies back.
	chunks backend.ChunkTable

	// reads are the access times gathered and not yet written, or being
	// written, each with the time past which the refresh it makes may not
	// move its pair's expiry (for a pair with a MaxTTL).
	reads backend.AccessTimes
	// flushHook, if set (by tests), is called as applyAccess writes a
	// batch: before its statement (written false) and after it; an error
	// fails the transaction.
	flushHook func(written bool) error

	badMu sync.Mutex
	bad   map[model.PairID]struct{} // found corrupt: the next sweep purges them

	// evicted counts the live pairs this Postgres evicted, in committed
	// transactions, since it was opened (model.Stats.Evicted).
	evicted atomic.Int64

	closed    atomic.Bool
	closeOnce sync.Once
	stop      chan struct{}
	maintDone chan struct{}
}

// OpenPostgres connects to the database opts.ConnString names, lays out the
// store's tables if they are missing, and starts the maintenance goroutine.
// Tables of the prefix that are not a hishel store give model.ErrCorrupt;
// a store of another format, model.ErrFormatVersion; a bad option,
// model.ErrInvalid.
func OpenPostgres(ctx context.Context, opts *PostgresOptions) (*Postgres, error) {
	if ctx == nil {
		return nil, fmt.Errorf("hishel: open postgres: nil context: %w", model.ErrInvalid)
	}
	var o PostgresOptions
	if opts != nil {
		o = *opts
	}
	pol, err := backend.NewPolicy(o.settings())
	if err != nil {
		return nil, err
	}
	if o.Table == "" {
		o.Table = DefaultTable
	}
	if !validTable.MatchString(o.Table) {
		return nil, fmt.Errorf("hishel: open postgres: table prefix %q: want a lower-case SQL identifier of at most 40 characters: %w", o.Table, model.ErrInvalid)
	}
	if o.AccessFlushInterval <= 0 {
		o.AccessFlushInterval = DefaultAccessFlushInterval
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(o.ConnString)
	if err != nil {
		return nil, fmt.Errorf("hishel: open postgres: %v: %w", err, model.ErrInvalid)
	}
	if o.NoSync {
		cfg.ConnConfig.RuntimeParams["synchronous_commit"] = "off"
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("hishel: open postgres: %w", err)
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return initSchema(ctx, tx, o.Table) })
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("hishel: open postgres store %s: %w", o.Table, mapErr(err))
	}
	s := &Postgres{
		pool: pool, opts: o, pol: pol, q: newQueries(o.Table),
		bad:       make(map[model.PairID]struct{}),
		stop:      make(chan struct{}),
		maintDone: make(chan struct{}),
	}
	s.chunks = backend.ChunkTable{Chunks: s.readChunks, Removed: s.bodyRemoved, Closed: s.closed.Load, NoteBad: s.noteBad,
		ReadAhead: readAhead, ChunkSize: pol.ChunkSize}
	go backend.Maintain(s.stop, s.maintDone, o.AccessFlushInterval, func() { _ = s.flushAccess(context.Background()) },
		pol.SweepInterval, func() { _, _ = s.Cleanup(context.Background()) })
	return s, nil
}

// OpenPostgresURL opens the Postgres that a store URL names (see
// cache.Open): postgres://user:password@host:port/database. Its query
// parameters set PostgresOptions: the shared ttl, refresh, sweep,
// retention, incomplete-age, max-bytes, max-pairs, max-variants and
// chunk-size (see backend.Query.Settings), and
//
//	table=NAME              Table
//	nosync=BOOL             NoSync
//	access-flush=DURATION   AccessFlushInterval
//
// Every other parameter is pgx's (sslmode, application_name,
// pool_max_conns, ...), as in
// postgres://cache@db.internal/app?sslmode=verify-full&ttl=1h&table=http_cache.
// A bad URL fails with model.ErrInvalid.
func OpenPostgresURL(ctx context.Context, u *url.URL) (*Postgres, error) {
	if u.Opaque != "" || u.Host == "" {
		return nil, fmt.Errorf("hishel: store URL %s: want postgres://[user[:password]@]host[:port]/database: %w", backend.Redacted(u), model.ErrInvalid)
	}
	var o PostgresOptions
	q := backend.NewQuery(u)
	s := o.settings()
	q.Settings(&s)
	q.String("table", &o.Table)
	q.Bool("nosync", &o.NoSync)
	q.Duration("access-flush", &o.AccessFlushInterval)
	rest, err := q.Rest()
	if err != nil {
		return nil, err
	}
	o.SetSettings(s)
	conn := *u
	conn.RawQuery = rest.Encode()
	o.ConnString = conn.String()
	return OpenPostgres(ctx, &o)
}

// check reports why an operation may not run: a nil context
// (model.ErrInvalid), a closed storage, a done context.
func (s *Postgres) check(ctx context.Context) error {
	if ctx == nil {
		return fmt.Errorf("hishel: nil context: %w", model.ErrInvalid)
	}
	if s.closed.Load() {
		return model.ErrClosed
	}
	return ctx.Err()
}

func (s *Postgres) now() int64 { return bolt.UnixNano(s.pol.Now()) }

// txn is a transaction of inTx: pgx's, and the batches of access times
// it took (see applyAccess), which end with it.
type txn struct {
	pgx.Tx
	taken []*backend.AccessBatch
}

// inTx runs fn in a transaction and commits it, trying again (up to a few
// times) when the server chose it as a deadlock's victim or it failed to
// serialize. The access times an attempt took are gathered again when it
// fails, before the next attempt, which takes them anew. After Close its
// errors are model.ErrClosed.
func (s *Postgres) inTx(ctx context.Context, fn func(*txn) error) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	var err error
	for range 5 {
		err = s.attempt(ctx, fn)
		if !retryable(err) {
			break
		}
	}
	if err != nil && s.closed.Load() {
		return model.ErrClosed
	}
	return mapErr(err)
}

// attempt is one of inTx's tries: it runs fn in a transaction, and ends
// the access batches fn took with the transaction's outcome.
func (s *Postgres) attempt(ctx context.Context, fn func(*txn) error) (err error) {
	t := &txn{}
	committed := false
	defer func() {
		outcome := err
		if !committed && outcome == nil {
			outcome = errNoCommit // fn panicked
		}
		for _, b := range t.taken {
			s.reads.End(b, outcome)
		}
	}()
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		t.Tx = tx
		return fn(t)
	})
	committed = err == nil
	return err
}

// errNoCommit is the outcome of a transaction that ended without a commit
// or an error (its fn panicked).
var errNoCommit = errors.New("hishel: transaction ended without a commit")

func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40P01" || pe.Code == "40001")
}

// mapErr maps a driver error to the store's: a foreign-key violation means
// the pair a chunk was written for is gone; a malformed parameter, one the
// server does not know, is model.ErrInvalid.
func mapErr(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "23503":
			return fmt.Errorf("hishel: pair removed meanwhile: %w: %w", model.ErrNotFound, err)
		case "42704":
			return fmt.Errorf("hishel: %w: %w", model.ErrInvalid, err)
		}
	}
	return err
}

// readErr maps a read's error: after Close, model.ErrClosed.
func (s *Postgres) readErr(err error) error {
	if s.closed.Load() {
		return model.ErrClosed
	}
	return mapErr(err)
}

// size is what a pair counts against MaxBytes and in Stats.Bytes: its
// heads and stored bodies (backend.Size).
func size(rec *bolt.Record) int64 { return backend.Size(rec) }

func stateOf(rec *bolt.Record) int {
	switch rec.State() {
	case model.StateComplete:
		return stateComplete
	case model.StateDeleted:
		return stateDeleted
	}
	return stateIncomplete
}

func keyHash(key string) []byte {
	h := sha256.Sum256([]byte(key))
	return h[:]
}

func nullable(n int64) *int64 {
	if n == 0 {
		return nil
	}
	return &n
}

func shard(id model.PairID) int { return int(id[15]) % statShards }

// delta is a change of the counters: pairs, incomplete, deleted, bytes.
type delta [4]int64

func (d *delta) add(rec *bolt.Record, sign int64) {
	switch stateOf(rec) {
	case stateComplete:
		d[0] += sign
	case stateIncomplete:
		d[1] += sign
	case stateDeleted:
		d[2] += sign
	}
	d[3] += sign * size(rec)
}

// addStats adds d to the counters' shard of pair id.
func (s *Postgres) addStats(ctx context.Context, tx pgx.Tx, id model.PairID, d delta) error {
	if d == (delta{}) {
		return nil
	}
	_, err := tx.Exec(ctx, s.q.addStats, d[0], d[1], d[2], d[3], shard(id))
	return err
}

// row is an entries row as queries read it (queries.cols).
type row struct {
	id                                      []byte
	data                                    []byte
	crc                                     int32
	flags                                   int16
	nonce, rev, reqSize, respSize           int64
	completed, expires, accessed, deletedAt *int64
}

func (r *row) dest() []any {
	return []any{&r.id, &r.data, &r.crc, &r.flags, &r.nonce, &r.rev, &r.reqSize, &r.respSize,
		&r.completed, &r.expires, &r.accessed, &r.deletedAt}
}

func deref(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}

// decode decodes a row: its record, checked against its CRC-32C, with the
// columns that hold the pair's life laid over it. A mismatch or a record
// that does not decode is model.ErrCorrupt, and the pair is noted for the
// sweep.
func (s *Postgres) decode(r *row) (*bolt.Record, error) {
	if len(r.id) != len(model.PairID{}) {
		return nil, fmt.Errorf("hishel: entry id of %d bytes: %w", len(r.id), model.ErrCorrupt)
	}
	id := model.PairID(r.id)
	if uint32(r.crc) != backend.Checksum(r.data) {
		s.noteBad(id)
		return nil, fmt.Errorf("hishel: record of pair %s: checksum mismatch: %w", id, model.ErrCorrupt)
	}
	rec, err := bolt.DecodeRecord(r.data)
	if err != nil {
		s.noteBad(id)
		return nil, fmt.Errorf("hishel: record of pair %s: %w", id, err)
	}
	if rec.ID != id || r.flags < 0 || r.flags > math.MaxUint8 {
		s.noteBad(id)
		return nil, fmt.Errorf("hishel: record of pair %s does not match its row: %w", id, model.ErrCorrupt)
	}
	rec.Nonce, rec.Flags = uint64(r.nonce), uint8(r.flags)
	rec.ReqSize, rec.RespSize = r.reqSize, r.respSize
	rec.Completed, rec.Expires, rec.LastAccess, rec.Deleted = deref(r.completed), deref(r.expires), deref(r.accessed), deref(r.deletedAt)
	return rec, nil
}

func (s *Postgres) noteBad(id model.PairID) {
	s.badMu.Lock()
	s.bad[id] = struct{}{}
	s.badMu.Unlock()
}

// load reads pair id's row with q (FOR NO KEY UPDATE when lock is set, in
// a transaction): its record and revision; nil if there is none.
func (s *Postgres) load(ctx context.Context, q pgx.Tx, id model.PairID, lock bool) (*bolt.Record, int64, error) {
	sql := s.q.load
	if lock {
		sql = s.q.loadLocked
	}
	var r row
	var err error
	if q != nil {
		err = q.QueryRow(ctx, sql, id[:]).Scan(r.dest()...)
	} else {
		err = s.pool.QueryRow(ctx, sql, id[:]).Scan(r.dest()...)
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	rec, err := s.decode(&r)
	return rec, r.rev, err
}

// save writes rec (inserting it when old is nil; then an ID in use
// reports model.ErrDuplicateID) and adjusts the counters by the change
// from old. bumpRev says whether the pair's heads changed.
func (s *Postgres) save(ctx context.Context, tx pgx.Tx, old, rec *bolt.Record, bumpRev bool) error {
	data := bolt.EncodeRecord(rec)
	crc := int32(backend.Checksum(data))
	st := stateOf(rec)
	var key, hash []byte
	if rec.Has(bolt.FlagHasResponse) {
		key, hash = []byte(rec.Key), keyHash(rec.Key)
	}
	var accessed int64 = rec.LastAccess
	if old == nil {
		tag, err := tx.Exec(ctx, s.q.insert, rec.ID[:], key, hash, data, crc, st, int16(rec.Flags), int64(rec.Nonce),
			size(rec), rec.ReqSize, rec.RespSize, rec.TTL, rec.Refresh, rec.Created,
			nullable(rec.Completed), nullable(rec.Expires), accessed, nullable(rec.Deleted))
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("hishel: create pair %s: %w", rec.ID, model.ErrDuplicateID)
		}
	} else {
		rev := int64(0)
		if bumpRev {
			rev = 1
		}
		if _, err := tx.Exec(ctx, s.q.update, rec.ID[:], key, hash, data, crc, st, int16(rec.Flags),
			size(rec), rec.ReqSize, rec.RespSize, rec.TTL, rec.Refresh, rec.Created,
			nullable(rec.Completed), nullable(rec.Expires), accessed, nullable(rec.Deleted), rev); err != nil {
			return err
		}
	}
	var d delta
	if old != nil {
		d.add(old, -1)
	}
	d.add(rec, 1)
	return s.addStats(ctx, tx, rec.ID, d)
}

// purgeIDs removes the given pairs with their chunks (the cascade) and
// takes them off the counters; it returns how many it removed.
func (s *Postgres) purgeIDs(ctx context.Context, tx pgx.Tx, ids [][]byte) (int, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	rows, err := tx.Query(ctx, s.q.purge, ids)
	if err != nil {
		return 0, err
	}
	return s.countGone(ctx, tx, rows)
}

// countGone reads the (id, state, size) rows of a statement that removed
// pairs and takes them off the counters, shard by shard.
func (s *Postgres) countGone(ctx context.Context, tx pgx.Tx, rows pgx.Rows) (int, error) {
	byShard := map[int]*delta{}
	n := 0
	var ids []model.PairID
	for rows.Next() {
		var idb []byte
		var st int16
		var sz int64
		if err := rows.Scan(&idb, &st, &sz); err != nil {
			rows.Close()
			return 0, err
		}
		var id model.PairID
		copy(id[:], idb)
		ids = append(ids, id)
		d := byShard[shard(id)]
		if d == nil {
			d = &delta{}
			byShard[shard(id)] = d
		}
		if st >= stateIncomplete && st <= stateDeleted {
			d[[]int{1, 0, 2}[st-1]]--
		}
		d[3] -= sz
		n++
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	seen := map[int]bool{}
	for _, id := range ids {
		if seen[shard(id)] {
			continue
		}
		seen[shard(id)] = true
		if err := s.addStats(ctx, tx, id, *byShard[shard(id)]); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// CreatePair stores a new incomplete pair for req and returns it. Its
// request body is stored as the caller reads the returned pair's
// Request.Body to the end (a nil body is stored at once as empty). ctx
// governs that body stream too: cancelling it aborts the pair.
//
// With model.WithID the pair gets the caller's ID; an ID already in use
// (by any process sharing the store) fails with model.ErrDuplicateID. A
// body that has already been read from fails with model.ErrBodyConsumed;
// a negative TTL other than model.NoExpiry, with model.ErrInvalid.
func (s *Postgres) CreatePair(ctx context.Context, req model.Request, opts ...model.CreateOption) (model.IncompletePair, error) {
	if err := s.check(ctx); err != nil {
		return model.IncompletePair{}, err
	}
	rec, err := s.pol.NewRecord(req, opts, rand.Uint64()>>1)
	if err != nil {
		return model.IncompletePair{}, err
	}
	id := rec.ID
	if err := s.inTx(ctx, func(tx *txn) error { return s.save(ctx, tx, nil, rec, true) }); err != nil {
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
// a copy, so the caller may change either afterwards.
//
// An unknown or removed id fails with model.ErrNotFound; a pair that already
// has a response, or a status outside 100-999, with model.ErrInvalid.
func (s *Postgres) AddResponse(ctx context.Context, id model.PairID, resp model.Response, key string) (model.CompletePair, error) {
	if err := s.check(ctx); err != nil {
		return model.CompletePair{}, err
	}
	if err := backend.CheckResponse(resp); err != nil {
		return model.CompletePair{}, err
	}
	var rec *bolt.Record
	completed, variants := false, 0
	err := s.inTx(ctx, func(tx *txn) error {
		old, _, err := s.load(ctx, tx, id, true)
		if err != nil {
			return err
		}
		r, err := backend.Respond(id, old, resp, key)
		if err != nil {
			return err
		}
		s.settle(r)
		rec, completed = r, r.Has(bolt.FlagComplete)
		variants, err = s.store(ctx, tx, old, r)
		return err
	})
	if err == nil {
		s.evicted.Add(int64(variants))
	}
	if err == nil && completed {
		err = s.enforceBudget(ctx, nil)
	}
	if err != nil {
		return model.CompletePair{}, err
	}
	out := backend.Responded(rec, resp)
	if resp.Body != nil {
		out.Response.Body = model.NewBody(s.newSaver(ctx, rec, bolt.KindResponse, resp.Body))
	}
	return out, nil
}

// settle completes rec if both of its bodies are stored (backend.Settle):
// it gets its completion time and expiry. The caller stores rec (see
// store).
func (s *Postgres) settle(rec *bolt.Record) { backend.Settle(rec, s.now()) }

// store saves rec, which was old, and when that completes the pair, evicts
// the variants beyond MaxVariants under its key in the same transaction,
// and returns how many it evicted: the caller adds them to s.evicted once
// the transaction has committed. The caller enforces MaxBytes and
// MaxPairs once it has committed.
func (s *Postgres) store(ctx context.Context, tx *txn, old, rec *bolt.Record) (int, error) {
	if err := s.save(ctx, tx, old, rec, true); err != nil {
		return 0, err
	}
	if old.State() == model.StateComplete || rec.State() != model.StateComplete || s.pol.MaxVariants <= 0 {
		return 0, nil
	}
	if err := s.applyAccess(ctx, tx, true); err != nil {
		return 0, err
	}
	rows, err := tx.Query(ctx, s.q.variants, keyHash(rec.Key), []byte(rec.Key), s.pol.MaxVariants)
	if err != nil {
		return 0, err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return 0, err
	}
	return s.purgeIDs(ctx, tx, ids)
}

// readStats sums the counters' shards.
func (s *Postgres) readStats(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) (model.Stats, error) {
	var st model.Stats
	var pairs, incomplete, deleted int64
	if err := q.QueryRow(ctx, s.q.stats).Scan(&pairs, &incomplete, &deleted, &st.Bytes); err != nil {
		return st, err
	}
	st.Pairs, st.Incomplete, st.Deleted = int(pairs), int(incomplete), int(deleted)
	return st, nil
}

// enforceBudget evicts pairs until the stored bytes fit MaxBytes and the
// complete pairs MaxPairs: soft-deleted pairs first (oldest deletion
// first; for MaxBytes only), then complete pairs, least recently used
// first. Incomplete pairs are never evicted. Each batch is a transaction
// of its own, whose candidates are taken FOR UPDATE SKIP LOCKED: a pair
// another process is changing is left for the next round. res, if not
// nil, counts the evictions.
func (s *Postgres) enforceBudget(ctx context.Context, res *model.SweepResult) error {
	if s.pol.MaxBytes <= 0 && s.pol.MaxPairs <= 0 {
		return nil
	}
	for {
		evicted, liveEvicted := 0, 0 // every pair removed; the live ones
		err := s.inTx(ctx, func(tx *txn) error {
			evicted, liveEvicted = 0, 0
			st, err := s.readStats(ctx, tx)
			if err != nil {
				return err
			}
			overBytes := s.pol.MaxBytes > 0 && st.Bytes > s.pol.MaxBytes
			overPairs := s.pol.MaxPairs > 0 && st.Pairs > s.pol.MaxPairs
			if !overBytes && !overPairs {
				return nil
			}
			// Rank by every read gathered, those other transactions
			// are writing included.
			if err := s.applyAccess(ctx, tx, true); err != nil {
				return err
			}
			var dead, live [][]byte // soft-deleted pairs; complete ones
			excess, extra := st.Bytes-s.pol.MaxBytes, st.Pairs-s.pol.MaxPairs
			pick := func(sql string, pairs bool) error {
				rows, err := tx.Query(ctx, sql, 64)
				if err != nil {
					return err
				}
				defer rows.Close()
				for rows.Next() && (overBytes && excess > 0 || pairs && overPairs && extra > 0) {
					var id []byte
					var sz int64
					if err := rows.Scan(&id, &sz); err != nil {
						return err
					}
					excess -= sz
					if pairs {
						live = append(live, id)
						extra--
					} else {
						dead = append(dead, id)
					}
				}
				return rows.Err()
			}
			if overBytes {
				if err := pick(s.q.evictDeleted, false); err != nil {
					return err
				}
			}
			if excess > 0 && overBytes || extra > 0 && overPairs {
				if err := pick(s.q.evictLRU, true); err != nil {
					return err
				}
			}
			reclaimed, err := s.purgeIDs(ctx, tx, dead)
			if err != nil {
				return err
			}
			liveEvicted, err = s.purgeIDs(ctx, tx, live)
			evicted = reclaimed + liveEvicted
			return err
		})
		if err != nil {
			return err
		}
		s.evicted.Add(int64(liveEvicted))
		if res != nil {
			res.Evicted += evicted
		}
		if evicted == 0 {
			return nil
		}
	}
}

// expiry returns rec's expiry once an access at pending (if later than
// its last) has refreshed it.
func (s *Postgres) expiry(rec *bolt.Record, pending int64) int64 {
	exp := rec.Expires
	if pending > rec.LastAccess && rec.Refresh && rec.TTL > 0 && exp != 0 {
		exp = max(exp, pending+rec.TTL)
	}
	return backend.CapExpiry(rec.Completed, rec.ReqOptions, exp)
}

// GetPairs returns every live, complete, unexpired pair stored under key,
// newest first. It reads their heads only: their bodies stream from the
// database as they are read, and each must be read to the end or closed.
// Reading a pair counts as an access: it restarts the pair's TTL if the
// pair refreshes on access, and moves it to the back of the eviction
// order (written within AccessFlushInterval).
func (s *Postgres) GetPairs(ctx context.Context, key string) ([]model.CompletePair, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	rd := s.reads.BeginRead()
	rows, err := s.pool.Query(ctx, s.q.byKey, keyHash(key), []byte(key))
	if err != nil {
		s.reads.EndRead(rd)
		return nil, s.readErr(err)
	}
	var recs []*bolt.Record
	var r row
	_, err = pgx.ForEachRow(rows, r.dest(), func() error {
		rec, err := s.decode(&r)
		if err != nil {
			return err
		}
		recs = append(recs, rec)
		return nil
	})
	if err != nil {
		s.reads.EndRead(rd)
		return nil, s.readErr(err)
	}
	recs = s.reads.Read(rd, recs, s.now(), s.expiry)
	out := make([]model.CompletePair, 0, len(recs))
	for _, rec := range recs {
		out = append(out, s.pair(rec))
	}
	backend.SortNewest(out)
	return out, nil
}

// pair returns rec as a CompletePair with its bodies read from the
// database as they are read.
func (s *Postgres) pair(rec *bolt.Record) model.CompletePair {
	cp := backend.Heads(rec)
	cp.Request.Body = s.chunks.Body(rec, bolt.KindRequest, rec.ReqSize)
	cp.Response.Body = s.chunks.Body(rec, bolt.KindResponse, rec.RespSize)
	return cp
}

// GetPair returns the live, complete, unexpired pair id, with bodies
// streamed as in GetPairs, or model.ErrNotFound. It does not count as an
// access.
func (s *Postgres) GetPair(ctx context.Context, id model.PairID) (model.CompletePair, error) {
	if err := s.check(ctx); err != nil {
		return model.CompletePair{}, err
	}
	rd := s.reads.BeginRead()
	defer s.reads.EndRead(rd)
	rec, _, err := s.load(ctx, nil, id, false)
	if err != nil {
		return model.CompletePair{}, s.readErr(err)
	}
	if rec == nil || rec.State() != model.StateComplete {
		return model.CompletePair{}, fmt.Errorf("hishel: get pair %s: %w", id, model.ErrNotFound)
	}
	exp := s.expiry(rec, s.reads.Time(rd, id))
	if exp != 0 && s.now() >= exp {
		return model.CompletePair{}, fmt.Errorf("hishel: get pair %s: %w", id, model.ErrNotFound)
	}
	rec.Expires = exp
	return s.pair(rec), nil
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
func (s *Postgres) UpdatePair(ctx context.Context, id model.PairID, pair model.CompletePair) (model.CompletePair, error) {
	return s.UpdatePairFunc(ctx, id, func(model.CompletePair) (model.CompletePair, error) { return pair, nil })
}

// errChanged says that a pair changed between UpdatePairFunc's read and
// its write.
var errChanged = errors.New("pair changed meanwhile")

// UpdatePairFunc is UpdatePair with the new value computed by fn from the
// stored pair, atomically: the write happens only if the pair's revision
// is still the one fn saw (whatever process changed it); otherwise fn is
// called again with the pair as it is now, up to 64 times. fn receives the
// pair with nil bodies and runs holding no lock and no transaction, so it
// may call the storage. If fn returns an error (or panics), nothing
// changes and UpdatePairFunc returns that error.
func (s *Postgres) UpdatePairFunc(ctx context.Context, id model.PairID, fn func(model.CompletePair) (model.CompletePair, error)) (model.CompletePair, error) {
	if err := s.check(ctx); err != nil {
		return model.CompletePair{}, err
	}
	read := func(ctx context.Context) (model.CompletePair, *bolt.Record, error) {
		old, _, err := s.load(ctx, nil, id, false)
		if err != nil {
			return model.CompletePair{}, nil, s.readErr(err)
		}
		cur, err := backend.Current(id, old)
		return cur, old, err
	}
	write := func(ctx context.Context, next model.CompletePair, base *bolt.Record) (model.CompletePair, bool, error) {
		if err := backend.CheckUpdate(id, next); err != nil {
			return model.CompletePair{}, false, err
		}
		var rec *bolt.Record
		err := s.inTx(ctx, func(tx *txn) error {
			now, _, err := s.load(ctx, tx, id, true)
			switch {
			case err != nil:
				return err
			case now == nil || now.State() != model.StateComplete:
				return fmt.Errorf("hishel: update pair %s: %w", id, model.ErrNotFound)
			case backend.Changed(base, now):
				return errChanged
			}
			rec = backend.Updated(now, next)
			return s.save(ctx, tx, now, rec, true)
		})
		if errors.Is(err, errChanged) {
			return model.CompletePair{}, true, nil
		}
		if err != nil {
			return model.CompletePair{}, false, err
		}
		// A refresh gathered before the update is the update's to decide.
		s.reads.Forget(id)
		return s.pair(rec), false, nil
	}
	return backend.UpdatePairFunc(ctx, id, fn, read, write)
}

// Remove soft-deletes the pair id: it is hidden at once (from every
// process) and reclaimed by a sweep after DeletedRetention. Removing an
// unknown or already removed pair does nothing. Removing an incomplete pair
// aborts the bodies still being stored.
func (s *Postgres) Remove(ctx context.Context, id model.PairID) error {
	return s.inTx(ctx, func(tx *txn) error {
		old, _, err := s.load(ctx, tx, id, true)
		if errors.Is(err, model.ErrCorrupt) {
			_, err = s.purgeIDs(ctx, tx, [][]byte{id[:]})
			return err
		}
		if err != nil || old == nil || old.Has(bolt.FlagDeleted) {
			return err
		}
		rec := *old
		rec.Flags |= bolt.FlagDeleted
		rec.Deleted = s.now()
		return s.save(ctx, tx, old, &rec, true)
	})
}

// applyAccess writes the gathered access times in tx, with one statement:
// each live complete pair moves in the eviction order and, if it refreshes
// on access, gets a new expiry.
//
// The times taken stay visible to reads until tx ends, and go back to be
// gathered again if it rolls back (backend.AccessTimes); an attempt that
// inTx tries again takes them again. With rank, for a transaction that
// ranks pairs by access time, tx also writes the times other transactions
// of this Postgres are writing: the statement only moves times forward,
// so writing them twice changes nothing, and the ranking counts them
// whether those transactions commit or not.
func (s *Postgres) applyAccess(ctx context.Context, tx *txn, rank bool) error {
	b := s.reads.Take(rank)
	if b == nil {
		return nil
	}
	tx.taken = append(tx.taken, b)
	if s.flushHook != nil {
		if err := s.flushHook(false); err != nil {
			return err
		}
	}
	ids := make([][]byte, len(b.Reads))
	ats := make([]int64, len(b.Reads))
	lims := make([]int64, len(b.Reads))
	for i, r := range b.Reads {
		ids[i], ats[i], lims[i] = r.ID[:], r.At, r.Limit
	}
	if _, err := tx.Exec(ctx, s.q.access, ids, ats, lims); err != nil {
		return err
	}
	if s.flushHook != nil {
		return s.flushHook(true)
	}
	return nil
}

// flushAccess writes the gathered access times in a transaction of their
// own.
func (s *Postgres) flushAccess(ctx context.Context) error {
	if s.reads.Pending() == 0 {
		return nil
	}
	return s.inTx(ctx, func(tx *txn) error { return s.applyAccess(ctx, tx, false) })
}

// Cleanup runs a sweep now and reports what it did: expired pairs are
// soft-deleted, soft-deleted pairs past DeletedRetention and incomplete pairs
// older than IncompleteAge are removed (and pairs found corrupt), and pairs
// beyond MaxBytes or MaxPairs are evicted. Each rule works in statements
// of up to 256 pairs that select them through an index by time, so its
// cost follows what it removes; rows another process holds are skipped
// (SKIP LOCKED), so sweeps in several processes never wait for each other
// or for readers.
func (s *Postgres) Cleanup(ctx context.Context) (model.SweepResult, error) {
	var res model.SweepResult
	if err := s.check(ctx); err != nil {
		return res, err
	}
	if err := s.flushAccess(ctx); err != nil {
		return res, err
	}
	s.badMu.Lock()
	bad := s.bad
	s.bad = make(map[model.PairID]struct{})
	s.badMu.Unlock()
	if len(bad) > 0 {
		ids := make([][]byte, 0, len(bad))
		for id := range bad {
			ids = append(ids, id[:])
		}
		err := s.inTx(ctx, func(tx *txn) error {
			n, err := s.purgeIDs(ctx, tx, ids)
			res.Purged += n
			return err
		})
		if err != nil {
			return res, err
		}
	}
	now := s.now()
	rules := []struct {
		sql   string
		limit int64
		count *int
	}{
		{s.q.expire, now, &res.Expired},
		{s.q.purgeDeleted, now - int64(s.pol.Retention), &res.Purged},
		{s.q.abandon, now - int64(s.pol.IncompleteAge), &res.Abandoned},
	}
	for _, r := range rules {
		for {
			var n int
			err := s.inTx(ctx, func(tx *txn) error {
				args := []any{r.limit, sweepBatch}
				if r.sql == s.q.expire {
					args = append(args, now)
				}
				rows, err := tx.Query(ctx, r.sql, args...)
				if err != nil {
					return err
				}
				if r.sql == s.q.expire {
					n, err = s.countExpired(ctx, tx, rows)
				} else {
					n, err = s.countGone(ctx, tx, rows)
				}
				return err
			})
			if err != nil {
				return res, err
			}
			*r.count += n
			if n < sweepBatch {
				break
			}
		}
	}
	return res, s.enforceBudget(ctx, &res)
}

// countExpired reads the (id, size) rows of the statement that
// soft-deleted expired pairs, and moves them from the pairs to the deleted
// counters.
func (s *Postgres) countExpired(ctx context.Context, tx pgx.Tx, rows pgx.Rows) (int, error) {
	byShard := map[int]*delta{}
	var first []model.PairID
	n := 0
	for rows.Next() {
		var idb []byte
		var sz int64
		if err := rows.Scan(&idb, &sz); err != nil {
			rows.Close()
			return 0, err
		}
		var id model.PairID
		copy(id[:], idb)
		d := byShard[shard(id)]
		if d == nil {
			d = &delta{}
			byShard[shard(id)] = d
			first = append(first, id)
		}
		d[0]--
		d[2]++
		n++
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	for _, id := range first {
		if err := s.addStats(ctx, tx, id, *byShard[shard(id)]); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// Clear removes every pair at once (for every process sharing the store).
// Bodies being read fail with model.ErrRemoved; bodies being stored fail
// and are not stored.
func (s *Postgres) Clear(ctx context.Context) error {
	s.reads.Clear()
	return s.inTx(ctx, func(tx *txn) error {
		for _, q := range []string{s.q.truncate, s.q.zeroStats} {
			if _, err := tx.Exec(ctx, q); err != nil {
				return err
			}
		}
		return nil
	})
}

// Pairs lists the stored pairs that f matches (the zero Filter: every
// pair, whatever its state: incomplete, complete, expired or not, and
// soft-deleted), in ID order, with heads and metadata only. Nothing is read
// until the listing is consumed; it then reads in pages of 256 and hands
// them out outside any transaction, so the consumer may call the storage
// between pairs. A bad filter (model.ErrInvalid), a record that does not
// decode (model.ErrCorrupt), a closed storage or ctx's error ends the
// listing, as its last item. A filter on Keys is served by the key index
// and one with Expired by the expiry index; others read every record.
func (s *Postgres) Pairs(ctx context.Context, f model.Filter) iter.Seq2[model.PairInfo, error] {
	return backend.Finder{
		All: backend.Paged(listPage, func(ctx context.Context, after []byte, limit int) ([]model.PairInfo, error) {
			return s.listQuery(ctx, s.q.page, append([]byte{}, after...), limit)
		}),
		Key: func(ctx context.Context, key string) ([]model.PairInfo, error) {
			return s.listQuery(ctx, s.q.byKey, keyHash(key), []byte(key))
		},
		Expired: func(ctx context.Context, now int64) ([]model.PairInfo, error) {
			return s.listQuery(ctx, s.q.expired, now)
		},
	}.Pairs(ctx, f, s.pol.Now)
}

// Delete soft-deletes every pair f matches that is not deleted already,
// as Remove does, and returns how many: it finds them as Pairs does and
// removes each in a transaction of its own (backend.Delete). Pairs stored
// while it runs may or may not be deleted.
func (s *Postgres) Delete(ctx context.Context, f model.Filter) (int, error) {
	return backend.Delete(ctx, f, s.Pairs, s.Remove)
}

// listQuery returns the PairInfos of the rows q selects (cols), with the
// expiry that reads not yet written give them.
func (s *Postgres) listQuery(ctx context.Context, q string, args ...any) ([]model.PairInfo, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	rd := s.reads.BeginRead()
	defer s.reads.EndRead(rd)
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, s.readErr(err)
	}
	var infos []model.PairInfo
	var r row
	_, err = pgx.ForEachRow(rows, r.dest(), func() error {
		rec, err := s.decode(&r)
		if err != nil {
			return fmt.Errorf("hishel: pairs: %w", err)
		}
		infos = append(infos, backend.Info(rec, s.reads.Time(rd, rec.ID)))
		return nil
	})
	if err != nil {
		return nil, s.readErr(err)
	}
	return infos, nil
}

// Sync writes the gathered access times. Every other change is committed
// when its call returns.
func (s *Postgres) Sync(ctx context.Context) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	return s.flushAccess(ctx)
}

// Stats returns the storage's counters, which every process sharing the
// store keeps up to date in the transactions that change them, and the
// evictions this Postgres committed (Evicted: other processes count
// their own).
func (s *Postgres) Stats(ctx context.Context) (model.Stats, error) {
	if err := s.check(ctx); err != nil {
		return model.Stats{}, err
	}
	st, err := s.readStats(ctx, s.pool)
	if err != nil {
		return model.Stats{}, s.readErr(err)
	}
	st.Evicted = s.evicted.Load()
	return st, nil
}

// Close writes gathered access times, stops the maintenance goroutine and
// closes the connection pool. Bodies still being read or stored fail with
// model.ErrClosed. Close is idempotent.
func (s *Postgres) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.maintDone
		s.closed.Store(true)
		s.pool.Close()
	})
	return nil
}
