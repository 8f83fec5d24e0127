package template

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"iter"
	"math"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hishel-go/hishel/backend"
	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/model"
)

// Defaults of SQLiteOptions.
const (
	// DefaultFileName is the database file created under
	// hishel/sqlite in the user cache directory when SQLiteOptions.Path
	// is empty: Hishel's name, in a directory of its own so that it never
	// meets the bbolt file of the same name one level up.
	DefaultFileName            = "hishel_cache.db"
	DefaultBusyTimeout         = 5 * time.Second
	DefaultAccessFlushInterval = time.Second
	// DefaultMaxReaders bounds the connections that read at once.
	DefaultMaxReaders = 8
)

const (
	flushBytes = 1 << 20   // a streaming body is written every flushBytes
	readAhead  = 256 << 10 // a stored body is read this much per query
	sweepBatch = 256       // pairs handled per sweep transaction, per rule
	listPage   = 256       // records decoded per query by Pairs
)

// SQLiteOptions configure a SQLite storage. A nil *SQLiteOptions, and every
// zero field, means the default.
type SQLiteOptions struct {
	// Path is the database file. Default: hishel/sqlite/hishel_cache.db
	// under os.UserCacheDir(), created if missing.
	Path string
	// BusyTimeout is how long a write waits for another connection or
	// process that holds the database's write lock, before it fails with
	// model.ErrLocked. Default 5s.
	BusyTimeout time.Duration
	// NoSync commits without waiting for the disk (synchronous=NORMAL
	// instead of FULL, in WAL mode): much faster writes, and the file stays
	// consistent, but a machine crash (not a process crash) may lose the
	// last pairs. For caches that can be rebuilt.
	NoSync bool
	// MaxReaders bounds the connections this storage reads with at once.
	// Default DefaultMaxReaders.
	MaxReaders int

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
	// AccessFlushInterval is how long access times (for TTL refresh and
	// the eviction order) are gathered in memory before they are written
	// in one transaction, so that reads stay reads. Default 1s.
	AccessFlushInterval time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

func (o *SQLiteOptions) settings() backend.Settings {
	return backend.Settings{DefaultTTL: o.DefaultTTL, RefreshTTLOnAccess: o.RefreshTTLOnAccess,
		SweepInterval: o.SweepInterval, DeletedRetention: o.DeletedRetention, IncompleteAge: o.IncompleteAge,
		MaxBytes: o.MaxBytes, MaxPairs: o.MaxPairs, MaxVariants: o.MaxVariants, ChunkSize: o.ChunkSize, Now: o.Now}
}

// SetSettings sets the fields that backend.Settings names.
func (o *SQLiteOptions) SetSettings(s backend.Settings) {
	o.DefaultTTL, o.RefreshTTLOnAccess, o.SweepInterval = s.DefaultTTL, s.RefreshTTLOnAccess, s.SweepInterval
	o.DeletedRetention, o.IncompleteAge, o.MaxBytes = s.DeletedRetention, s.IncompleteAge, s.MaxBytes
	o.MaxPairs, o.MaxVariants, o.ChunkSize, o.Now = s.MaxPairs, s.MaxVariants, s.ChunkSize, s.Now
}

// SQLite stores pairs in a SQLite database file, in Hishel's schema
// (entries and streams; see schema.go), through a pure-Go driver: no C
// compiler is needed.
//
// Unlike Bolt, several processes may share one file: the database is in
// WAL mode, readers never wait for writers, and a write waits up to
// BusyTimeout for another process's write to finish. Within the process a
// SQLite is safe for concurrent use; its writes go through one connection
// (so that they queue in the process rather than spin on the file lock),
// its reads through up to MaxReaders.
//
// Every change is one transaction, durable when it returns (unless
// NoSync): a pair is visible to every process once both of its bodies are
// stored, and never before; a process killed at any point leaves at worst
// an incomplete pair, which a sweep removes. Bodies are stored in chunks
// with a CRC-32C each, and records with theirs: a mismatch is
// model.ErrCorrupt, and the pair is reclaimed by the next sweep.
//
// Access times (LRU order, TTL refresh) are gathered for
// AccessFlushInterval before they are written; another process sees a
// refresh once it is written.
//
// A SQLite owns one goroutine, from OpenSQLite until Close, that writes
// gathered access times and runs the background sweep.
//
//hishel:backend
//hishel:scheme sqlite
type SQLite struct {
	w, r   *db // w: one connection, BEGIN IMMEDIATE; r: reads
	opts   SQLiteOptions
	pol    backend.Policy
	chunks backend.ChunkTable // reads bodies back

	// reads are the access times gathered and not yet written, or being
	// written.
	reads backend.AccessTimes
	// flushHook, if set (by tests), is called as applyAccess writes a
	// batch: before its statements (written false) and after them; an
	// error fails the transaction.
	flushHook func(written bool) error

	badMu sync.Mutex
	bad   map[model.PairID]struct{} // found corrupt: the next sweep purges them

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
	stop      chan struct{}
	maintDone chan struct{}
}

// OpenSQLite opens (creating if needed) the database at opts.Path and
// starts its maintenance goroutine. A file that is not a SQLite database,
// or one without hishel's tables, gives model.ErrCorrupt; one written by a
// newer format, model.ErrFormatVersion; a database whose write lock another
// process holds for longer than BusyTimeout, model.ErrLocked.
func OpenSQLite(ctx context.Context, opts *SQLiteOptions) (*SQLite, error) {
	if ctx == nil {
		return nil, fmt.Errorf("hishel: open sqlite: nil context: %w", model.ErrInvalid)
	}
	var o SQLiteOptions
	if opts != nil {
		o = *opts
	}
	pol, err := backend.NewPolicy(o.settings())
	if err != nil {
		return nil, err
	}
	if o.Path == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			return nil, fmt.Errorf("hishel: no default database path: %w", err)
		}
		dir = filepath.Join(dir, "hishel", "sqlite")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("hishel: create cache directory: %w", err)
		}
		o.Path = filepath.Join(dir, DefaultFileName)
	}
	if o.BusyTimeout <= 0 {
		o.BusyTimeout = DefaultBusyTimeout
	}
	if o.AccessFlushInterval <= 0 {
		o.AccessFlushInterval = DefaultAccessFlushInterval
	}
	if o.MaxReaders <= 0 {
		o.MaxReaders = DefaultMaxReaders
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if fi, err := os.Stat(o.Path); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("hishel: open %s: a directory, not a database file: %w", o.Path, model.ErrInvalid)
	}
	sw, err := sql.Open(driverName, dsn(o.Path, o.BusyTimeout, o.NoSync, true))
	if err != nil {
		return nil, fmt.Errorf("hishel: open %s: %w", o.Path, err)
	}
	sw.SetMaxOpenConns(1)
	sw.SetMaxIdleConns(1)
	sw.SetConnMaxLifetime(0)
	sw.SetConnMaxIdleTime(0)
	w, err := newWriteDB(ctx, sw)
	if err != nil {
		_ = sw.Close()
		return nil, fmt.Errorf("hishel: open %s: %w", o.Path, mapErr(err))
	}
	w.switchSync, w.full = !o.NoSync, !o.NoSync
	if err := initSchema(ctx, w); err != nil {
		_ = w.close()
		return nil, fmt.Errorf("hishel: open %s: %w", o.Path, mapErr(err))
	}
	sr, err := sql.Open(driverName, dsn(o.Path, o.BusyTimeout, o.NoSync, false))
	if err != nil {
		_ = w.close()
		return nil, fmt.Errorf("hishel: open %s: %w", o.Path, err)
	}
	sr.SetMaxOpenConns(o.MaxReaders)
	sr.SetMaxIdleConns(o.MaxReaders)
	r := newDB(sr)
	s := &SQLite{
		w: w, r: r, opts: o, pol: pol,
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

// OpenSQLiteURL opens the SQLite that a store URL names (see cache.Open):
// sqlite:///absolute/path/cache.db, sqlite:relative/path.db, or sqlite:
// alone for the default file. Its query parameters set SQLiteOptions: the
// shared ttl, refresh, sweep, retention, incomplete-age, max-bytes,
// max-pairs, max-variants and chunk-size (see backend.Query.Settings), and
//
//	nosync=BOOL             NoSync
//	busy-timeout=DURATION   BusyTimeout
//	max-readers=N           MaxReaders
//	access-flush=DURATION   AccessFlushInterval
//
// as in sqlite:///var/cache/hishel.db?ttl=1h&busy-timeout=10s. A bad URL
// fails with model.ErrInvalid.
func OpenSQLiteURL(ctx context.Context, u *url.URL) (*SQLite, error) {
	var o SQLiteOptions
	path, err := backend.FilePath(u)
	if err != nil {
		return nil, err
	}
	o.Path = path
	q := backend.NewQuery(u)
	s := o.settings()
	q.Settings(&s)
	q.Bool("nosync", &o.NoSync)
	q.Duration("busy-timeout", &o.BusyTimeout)
	q.Int("max-readers", &o.MaxReaders)
	q.Duration("access-flush", &o.AccessFlushInterval)
	if err := q.Done(); err != nil {
		return nil, err
	}
	o.SetSettings(s)
	return OpenSQLite(ctx, &o)
}

// check reports why an operation may not run: a nil context
// (model.ErrInvalid), a closed storage, a done context.
func (s *SQLite) check(ctx context.Context) error {
	if ctx == nil {
		return fmt.Errorf("hishel: nil context: %w", model.ErrInvalid)
	}
	if s.closed.Load() {
		return model.ErrClosed
	}
	return ctx.Err()
}

func (s *SQLite) now() int64 { return bolt.UnixNano(s.pol.Now()) }

// update runs fn in a write transaction (BEGIN IMMEDIATE, on the one write
// connection) and commits it: durably, or lazily for changes nobody can
// see yet (see db.inTx).
func (s *SQLite) update(ctx context.Context, durable bool, fn func(*wtx) error) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	err := s.w.inTx(ctx, durable, fn)
	if err != nil && s.closed.Load() {
		return model.ErrClosed
	}
	return mapErr(err)
}

// decode decodes a record read with its CRC-32C; a mismatch or a record
// that does not decode is model.ErrCorrupt, and id is noted for the sweep.
func (s *SQLite) decode(id model.PairID, data []byte, crc int64) (*bolt.Record, error) {
	if uint32(crc) != backend.Checksum(data) || crc < 0 || crc > math.MaxUint32 {
		s.noteBad(id)
		return nil, fmt.Errorf("hishel: record of pair %s: checksum mismatch: %w", id, model.ErrCorrupt)
	}
	rec, err := bolt.DecodeRecord(data)
	if err != nil {
		s.noteBad(id)
		return nil, fmt.Errorf("hishel: record of pair %s: %w", id, err)
	}
	if rec.ID != id {
		s.noteBad(id)
		return nil, fmt.Errorf("hishel: record of pair %s holds pair %s: %w", id, rec.ID, model.ErrCorrupt)
	}
	return rec, nil
}

func (s *SQLite) noteBad(id model.PairID) {
	s.badMu.Lock()
	s.bad[id] = struct{}{}
	s.badMu.Unlock()
}

// load reads pair id's record with q; nil if there is none.
func (s *SQLite) load(ctx context.Context, q querier, id model.PairID) (*bolt.Record, []byte, error) {
	var data []byte
	var crc int64
	err := q.queryRow(ctx, `SELECT data, data_crc FROM entries WHERE id = ?`, id[:]).Scan(&data, &crc)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	rec, err := s.decode(id, data, crc)
	return rec, data, err
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

func nullable(n int64) any {
	if n == 0 {
		return nil
	}
	return n
}

func seconds(ns int64) float64 { return float64(ns) / 1e9 }

// save writes rec (inserting it when old is nil) and adjusts the counters
// by the change from old.
func (s *SQLite) save(ctx context.Context, tx *wtx, old, rec *bolt.Record) error {
	data := bolt.EncodeRecord(rec)
	crc := int64(backend.Checksum(data))
	st := stateOf(rec)
	var key, deleted, completed, expires, accessed any
	if st == stateComplete || st == stateDeleted {
		key, completed = []byte(rec.Key), rec.Completed
	}
	if st == stateComplete {
		expires, accessed = nullable(rec.Expires), rec.LastAccess
	}
	if st == stateDeleted {
		deleted = seconds(rec.Deleted)
	}
	var err error
	if old == nil {
		_, err = tx.exec(ctx, `INSERT INTO entries (id, cache_key, data, created_at, deleted_at, data_crc, state,
			nonce, size, completed_at, expires_at, accessed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			rec.ID[:], key, data, seconds(rec.Created), deleted, crc, st, int64(rec.Nonce), size(rec), completed, expires, accessed)
	} else {
		_, err = tx.exec(ctx, `UPDATE entries SET cache_key = ?, data = ?, created_at = ?, deleted_at = ?, data_crc = ?,
			state = ?, size = ?, completed_at = ?, expires_at = ?, accessed_at = ? WHERE id = ?`,
			key, data, seconds(rec.Created), deleted, crc, st, size(rec), completed, expires, accessed, rec.ID[:])
	}
	if err != nil {
		return err
	}
	var d [4]int64 // pairs, incomplete, deleted, bytes
	count := func(r *bolt.Record, sign int64) {
		switch stateOf(r) {
		case stateComplete:
			d[0] += sign
		case stateIncomplete:
			d[1] += sign
		case stateDeleted:
			d[2] += sign
		}
		d[3] += sign * size(r)
	}
	if old != nil {
		count(old, -1)
	}
	count(rec, 1)
	return addStats(ctx, tx, d)
}

func addStats(ctx context.Context, tx *wtx, d [4]int64) error {
	if d == ([4]int64{}) {
		return nil
	}
	_, err := tx.exec(ctx, `UPDATE hishel_stats SET pairs = pairs + ?, incomplete = incomplete + ?,
		deleted = deleted + ?, bytes = bytes + ? WHERE id = 0`, d[0], d[1], d[2], d[3])
	return err
}

// purge removes rec and its chunks, and its counts.
func (s *SQLite) purge(ctx context.Context, tx *wtx, rec *bolt.Record) error {
	if _, err := tx.exec(ctx, `DELETE FROM streams WHERE entry_id = ?`, rec.ID[:]); err != nil {
		return err
	}
	if _, err := tx.exec(ctx, `DELETE FROM entries WHERE id = ?`, rec.ID[:]); err != nil {
		return err
	}
	var d [4]int64
	switch stateOf(rec) {
	case stateComplete:
		d[0] = -1
	case stateIncomplete:
		d[1] = -1
	case stateDeleted:
		d[2] = -1
	}
	d[3] = -size(rec)
	return addStats(ctx, tx, d)
}

// purgeID removes pair id whatever its record holds (one that does not
// decode included).
func (s *SQLite) purgeID(ctx context.Context, tx *wtx, id model.PairID) error {
	rec, _, err := s.load(ctx, tx, id)
	if err == nil && rec != nil {
		return s.purge(ctx, tx, rec)
	}
	var st int
	var sz int64
	switch err := tx.queryRow(ctx, `SELECT state, size FROM entries WHERE id = ?`, id[:]).Scan(&st, &sz); {
	case errors.Is(err, sql.ErrNoRows):
		return nil
	case err != nil:
		return err
	}
	if _, err := tx.exec(ctx, `DELETE FROM streams WHERE entry_id = ?`, id[:]); err != nil {
		return err
	}
	if _, err := tx.exec(ctx, `DELETE FROM entries WHERE id = ?`, id[:]); err != nil {
		return err
	}
	var d [4]int64
	if st >= stateIncomplete && st <= stateDeleted {
		d[[]int{1, 0, 2}[st-1]] = -1
	}
	d[3] = -sz
	return addStats(ctx, tx, d)
}

// CreatePair stores a new incomplete pair for req and returns it. Its
// request body is stored as the caller reads the returned pair's
// Request.Body to the end (a nil body is stored at once as empty). ctx
// governs that body stream too: cancelling it aborts the pair.
//
// With model.WithID the pair gets the caller's ID; an ID already in use
// (in any process sharing the file) fails with model.ErrDuplicateID. A body
// that has already been read from fails with model.ErrBodyConsumed; a
// negative TTL other than model.NoExpiry, with model.ErrInvalid.
func (s *SQLite) CreatePair(ctx context.Context, req model.Request, opts ...model.CreateOption) (model.IncompletePair, error) {
	if err := s.check(ctx); err != nil {
		return model.IncompletePair{}, err
	}
	rec, err := s.pol.NewRecord(req, opts, rand.Uint64()>>1)
	if err != nil {
		return model.IncompletePair{}, err
	}
	id := rec.ID
	err = s.update(ctx, false, func(tx *wtx) error {
		var one int
		switch err := tx.queryRow(ctx, `SELECT 1 FROM entries WHERE id = ?`, id[:]).Scan(&one); {
		case err == nil:
			return fmt.Errorf("hishel: create pair %s: %w", id, model.ErrDuplicateID)
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		return s.save(ctx, tx, nil, rec)
	})
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
// a copy, so the caller may change either afterwards.
//
// An unknown or removed id fails with model.ErrNotFound; a pair that already
// has a response, or a status outside 100-999, with model.ErrInvalid.
func (s *SQLite) AddResponse(ctx context.Context, id model.PairID, resp model.Response, key string) (model.CompletePair, error) {
	if err := s.check(ctx); err != nil {
		return model.CompletePair{}, err
	}
	if err := backend.CheckResponse(resp); err != nil {
		return model.CompletePair{}, err
	}
	var rec *bolt.Record
	// Durable if it may complete the pair (no response body to wait for).
	err := s.update(ctx, resp.Body == nil, func(tx *wtx) error {
		old, _, err := s.load(ctx, tx, id)
		if err != nil {
			return err
		}
		r, err := backend.Respond(id, old, resp, key)
		if err != nil {
			return err
		}
		s.settle(r)
		rec = r
		return s.store(ctx, tx, old, r)
	})
	if err != nil {
		return model.CompletePair{}, err
	}
	out := backend.Responded(rec, resp)
	if resp.Body != nil {
		out.Response.Body = model.NewBody(s.newSaver(ctx, rec, bolt.KindResponse, resp.Body))
	}
	return out, nil
}

// settle completes rec if both of its bodies are stored (backend.Settle).
func (s *SQLite) settle(rec *bolt.Record) { backend.Settle(rec, s.now()) }

// store saves rec, which was old, and when that completes the pair,
// enforces the budgets in the same transaction (see afterComplete).
func (s *SQLite) store(ctx context.Context, tx *wtx, old, rec *bolt.Record) error {
	if err := s.save(ctx, tx, old, rec); err != nil {
		return err
	}
	if old.State() != model.StateComplete && rec.State() == model.StateComplete {
		return s.afterComplete(ctx, tx, rec)
	}
	return nil
}

// afterComplete enforces MaxVariants under rec's key, then MaxBytes and
// MaxPairs, once rec, just completed, is saved.
func (s *SQLite) afterComplete(ctx context.Context, tx *wtx, rec *bolt.Record) error {
	if s.pol.MaxVariants > 0 {
		if err := s.applyAccess(ctx, tx); err != nil {
			return err
		}
		ids, err := queryIDs(ctx, tx, `SELECT id FROM entries WHERE cache_key = ? AND state = 2
			ORDER BY accessed_at DESC, id DESC LIMIT -1 OFFSET ?`, []byte(rec.Key), s.pol.MaxVariants)
		if err != nil {
			return err
		}
		for _, id := range ids {
			if err := s.purgeID(ctx, tx, id); err != nil {
				return err
			}
			tx.evicted++
		}
	}
	return s.enforceBudget(ctx, tx, nil)
}

// overBudget reports whether the stored bytes or pairs exceed the budgets.
func (s *SQLite) overBudget(ctx context.Context, tx *wtx) (bytes, pairs bool, err error) {
	if s.pol.MaxBytes <= 0 && s.pol.MaxPairs <= 0 {
		return false, false, nil
	}
	st, err := readStats(ctx, tx)
	if err != nil {
		return false, false, err
	}
	return s.pol.MaxBytes > 0 && st.Bytes > s.pol.MaxBytes, s.pol.MaxPairs > 0 && st.Pairs > s.pol.MaxPairs, nil
}

// enforceBudget evicts pairs until the stored bytes fit MaxBytes and the
// complete pairs MaxPairs: soft-deleted pairs first (oldest deletion
// first; for MaxBytes only), then complete pairs, least recently used
// first. Incomplete pairs are never evicted.
func (s *SQLite) enforceBudget(ctx context.Context, tx *wtx, res *model.SweepResult) error {
	overBytes, overPairs, err := s.overBudget(ctx, tx)
	if err != nil || !overBytes && !overPairs {
		return err
	}
	if err := s.applyAccess(ctx, tx); err != nil {
		return err
	}
	for _, q := range []struct {
		query string
		pairs bool // the rule serves MaxPairs too
	}{
		{`SELECT id FROM entries WHERE state = 3 ORDER BY deleted_at, id LIMIT 64`, false},
		{`SELECT id FROM entries WHERE state = 2 ORDER BY accessed_at, id LIMIT 64`, true},
	} {
		for overBytes || q.pairs && overPairs {
			ids, err := queryIDs(ctx, tx, q.query)
			if err != nil {
				return err
			}
			if len(ids) == 0 {
				break
			}
			for _, id := range ids {
				if err := s.purgeID(ctx, tx, id); err != nil {
					return err
				}
				if q.pairs { // a live pair, not a soft-deleted one reclaimed early
					tx.evicted++
				}
				if res != nil {
					res.Evicted++
				}
				if overBytes, overPairs, err = s.overBudget(ctx, tx); err != nil {
					return err
				}
				if !overBytes && !(q.pairs && overPairs) {
					break
				}
			}
		}
	}
	return nil
}

func readStats(ctx context.Context, q querier) (model.Stats, error) {
	var st model.Stats
	err := q.queryRow(ctx, `SELECT pairs, incomplete, deleted, bytes FROM hishel_stats WHERE id = 0`).
		Scan(&st.Pairs, &st.Incomplete, &st.Deleted, &st.Bytes)
	if errors.Is(err, sql.ErrNoRows) {
		return st, fmt.Errorf("hishel: the stats row is missing: %w", model.ErrCorrupt)
	}
	return st, err
}

// queryIDs returns the pair IDs a query selects (its one column).
func queryIDs(ctx context.Context, q querier, query string, args ...any) ([]model.PairID, error) {
	rows, err := q.query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []model.PairID
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			return nil, err
		}
		if len(b) == len(model.PairID{}) {
			ids = append(ids, model.PairID(b))
		}
	}
	return ids, rows.Err()
}

// expiry returns when rec expires given an access not yet written
// (backend.Expiry).
func (s *SQLite) expiry(rec *bolt.Record, pending int64) int64 { return backend.Expiry(rec, pending) }

// GetPairs returns every live, complete, unexpired pair stored under key,
// newest first. Only heads are read: each body is read from the database
// when it is read, and must be read to the end or closed. Reading a pair
// counts as an access: it restarts the pair's TTL if the pair refreshes on
// access, and moves it to the back of the eviction order. The pairs'
// header maps are the caller's own to change. A record whose checksum
// does not match fails with model.ErrCorrupt.
func (s *SQLite) GetPairs(ctx context.Context, key string) ([]model.CompletePair, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	rd := s.reads.BeginRead()
	recs, err := s.keyRecords(ctx, key)
	if err != nil {
		s.reads.EndRead(rd)
		return nil, err
	}
	recs = s.reads.Read(rd, recs, s.now(), s.expiry)
	out := make([]model.CompletePair, 0, len(recs))
	for _, rec := range recs {
		out = append(out, s.pair(rec))
	}
	backend.SortNewest(out)
	return out, nil
}

// keyRecords reads the records of the complete pairs stored under key.
func (s *SQLite) keyRecords(ctx context.Context, key string) ([]*bolt.Record, error) {
	rows, err := s.r.query(ctx, `SELECT id, data, data_crc FROM entries WHERE cache_key = ? AND state = 2`, []byte(key))
	if err != nil {
		return nil, s.readErr(err)
	}
	defer rows.Close()
	var recs []*bolt.Record
	for rows.Next() {
		var idb, data []byte
		var crc int64
		if err := rows.Scan(&idb, &data, &crc); err != nil {
			return nil, s.readErr(err)
		}
		if len(idb) != len(model.PairID{}) {
			continue
		}
		rec, err := s.decode(model.PairID(idb), data, crc)
		if err != nil {
			return nil, err
		}
		recs = append(recs, rec)
	}
	if err := rows.Err(); err != nil {
		return nil, s.readErr(err)
	}
	return recs, nil
}

// pair returns rec as a CompletePair with its bodies read from the
// database as they are read.
func (s *SQLite) pair(rec *bolt.Record) model.CompletePair {
	cp := backend.Heads(rec)
	cp.Request.Body = s.chunks.Body(rec, bolt.KindRequest, rec.ReqSize)
	cp.Response.Body = s.chunks.Body(rec, bolt.KindResponse, rec.RespSize)
	return cp
}

// readErr maps a read's error: after Close, model.ErrClosed.
func (s *SQLite) readErr(err error) error {
	if s.closed.Load() {
		return model.ErrClosed
	}
	return mapErr(err)
}

// GetPair returns the live, complete, unexpired pair id, with bodies
// streamed as in GetPairs, or model.ErrNotFound. It does not count as an
// access.
func (s *SQLite) GetPair(ctx context.Context, id model.PairID) (model.CompletePair, error) {
	if err := s.check(ctx); err != nil {
		return model.CompletePair{}, err
	}
	rd := s.reads.BeginRead()
	defer s.reads.EndRead(rd)
	rec, _, err := s.load(ctx, s.r, id)
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
func (s *SQLite) UpdatePair(ctx context.Context, id model.PairID, pair model.CompletePair) (model.CompletePair, error) {
	return s.UpdatePairFunc(ctx, id, func(model.CompletePair) (model.CompletePair, error) { return pair, nil })
}

// errChanged says that a pair changed between UpdatePairFunc's read and
// its write.
var errChanged = errors.New("pair changed meanwhile")

// UpdatePairFunc is UpdatePair with the new value computed by fn from the
// stored pair, atomically: the write happens only if the pair is still as
// fn saw it (in any process); otherwise fn is called again with the pair
// as it is now. fn receives the pair with nil bodies and runs with nothing
// locked, so it may call the storage. If fn returns an error (or panics),
// nothing changes and UpdatePairFunc returns that error.
func (s *SQLite) UpdatePairFunc(ctx context.Context, id model.PairID, fn func(model.CompletePair) (model.CompletePair, error)) (model.CompletePair, error) {
	if err := s.check(ctx); err != nil {
		return model.CompletePair{}, err
	}
	read := func(ctx context.Context) (model.CompletePair, *bolt.Record, error) {
		old, _, err := s.load(ctx, s.r, id)
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
		err := s.update(ctx, true, func(tx *wtx) error {
			now, _, err := s.load(ctx, tx, id)
			switch {
			case err != nil:
				return err
			case now == nil || now.State() != model.StateComplete:
				return fmt.Errorf("hishel: update pair %s: %w", id, model.ErrNotFound)
			case backend.Changed(base, now):
				return errChanged
			}
			rec = backend.Updated(now, next)
			return s.save(ctx, tx, now, rec)
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
func (s *SQLite) Remove(ctx context.Context, id model.PairID) error {
	return s.update(ctx, true, func(tx *wtx) error {
		old, _, err := s.load(ctx, tx, id)
		if err != nil || old == nil || old.Has(bolt.FlagDeleted) {
			if errors.Is(err, model.ErrCorrupt) {
				return s.purgeID(ctx, tx, id)
			}
			return err
		}
		return s.softDelete(ctx, tx, old, s.now())
	})
}

func (s *SQLite) softDelete(ctx context.Context, tx *wtx, old *bolt.Record, at int64) error {
	rec := *old
	rec.Flags |= bolt.FlagDeleted
	rec.Deleted = at
	return s.save(ctx, tx, old, &rec)
}

// applyAccess writes the gathered access times: each live complete pair
// moves in the eviction order and, if it refreshes on access, gets a new
// expiry.
//
// The times taken stay visible to reads until tx ends, and go back to be
// gathered again if it rolls back (backend.AccessTimes). No other
// transaction of this SQLite can be writing times meanwhile (they take
// turns on the one write connection), so a transaction that ranks pairs
// by access time after applyAccess counts every read gathered so far.
func (s *SQLite) applyAccess(ctx context.Context, tx *wtx) error {
	b := s.reads.Take(false)
	if b == nil {
		return nil
	}
	tx.onEnd(func(err error) { s.reads.End(b, err) })
	if s.flushHook != nil {
		if err := s.flushHook(false); err != nil {
			return err
		}
	}
	for _, r := range b.Reads {
		id, at := r.ID, r.At
		old, _, err := s.load(ctx, tx, id)
		if err != nil || old == nil || old.State() != model.StateComplete || at <= old.LastAccess {
			continue // gone, or a corrupt record (the sweep reclaims it)
		}
		rec := *old
		rec.LastAccess = at
		if exp := s.expiry(old, at); exp != 0 {
			rec.Expires = exp
		}
		if err := s.save(ctx, tx, old, &rec); err != nil {
			return err
		}
	}
	if s.flushHook != nil {
		return s.flushHook(true)
	}
	return nil
}

// flushAccess writes the gathered access times in a transaction of their
// own.
func (s *SQLite) flushAccess(ctx context.Context) error {
	if s.reads.Pending() == 0 {
		return nil
	}
	return s.update(ctx, false, func(tx *wtx) error { return s.applyAccess(ctx, tx) })
}

// Cleanup runs a sweep now and reports what it did: expired pairs are
// soft-deleted, soft-deleted pairs past DeletedRetention and incomplete pairs
// older than IncompleteAge are removed (and pairs found corrupt), and pairs
// beyond MaxBytes or MaxPairs are evicted. It works in transactions of up to
// 256 pairs per rule, through indexes by time, so its cost follows what it
// removes, and readers (in every process) are never held up.
func (s *SQLite) Cleanup(ctx context.Context) (model.SweepResult, error) {
	var total model.SweepResult
	for {
		var res model.SweepResult
		more := false
		err := s.update(ctx, true, func(tx *wtx) error {
			res, more = model.SweepResult{}, false
			var err error
			more, err = s.sweepStep(ctx, tx, &res)
			return err
		})
		if err != nil {
			return total, err
		}
		total.Expired += res.Expired
		total.Purged += res.Purged
		total.Abandoned += res.Abandoned
		total.Evicted += res.Evicted
		if !more {
			return total, nil
		}
	}
}

// sweepStep does up to sweepBatch pairs of each rule; it reports whether
// any rule may have more to do.
func (s *SQLite) sweepStep(ctx context.Context, tx *wtx, res *model.SweepResult) (more bool, err error) {
	if err := s.applyAccess(ctx, tx); err != nil {
		return false, err
	}
	now := s.now()
	s.badMu.Lock()
	bad := s.bad
	s.bad = make(map[model.PairID]struct{})
	s.badMu.Unlock()
	for id := range bad {
		if err := s.purgeID(ctx, tx, id); err != nil {
			return false, err
		}
		res.Purged++
	}
	// due returns the records a rule selects, with more set when the batch
	// is full; rows are in time order, and a row past limit (the REAL
	// columns are compared with a second of slack) ends the batch.
	due := func(query string, arg any, when func(*bolt.Record) int64, limit int64) ([]*bolt.Record, error) {
		ids, err := queryIDs(ctx, tx, query, arg, sweepBatch)
		if err != nil {
			return nil, err
		}
		var recs []*bolt.Record
		for _, id := range ids {
			rec, _, err := s.load(ctx, tx, id)
			if errors.Is(err, model.ErrCorrupt) {
				if err := s.purgeID(ctx, tx, id); err != nil {
					return nil, err
				}
				res.Purged++
				continue
			}
			if err != nil {
				return nil, err
			}
			if rec == nil {
				continue
			}
			if when(rec) > limit {
				return recs, nil
			}
			recs = append(recs, rec)
		}
		if len(ids) == sweepBatch {
			more = true
		}
		return recs, nil
	}
	expired, err := due(`SELECT id FROM entries WHERE state = 2 AND expires_at IS NOT NULL AND expires_at <= ?
		ORDER BY expires_at LIMIT ?`, now, func(r *bolt.Record) int64 { return r.Expires }, now)
	if err != nil {
		return false, err
	}
	for _, rec := range expired {
		if err := s.softDelete(ctx, tx, rec, now); err != nil {
			return false, err
		}
		res.Expired++
	}
	limit := now - int64(s.pol.Retention)
	deleted, err := due(`SELECT id FROM entries WHERE state = 3 AND deleted_at <= ? ORDER BY deleted_at LIMIT ?`,
		seconds(limit)+1, func(r *bolt.Record) int64 { return r.Deleted }, limit)
	if err != nil {
		return false, err
	}
	for _, rec := range deleted {
		if err := s.purge(ctx, tx, rec); err != nil {
			return false, err
		}
		res.Purged++
	}
	limit = now - int64(s.pol.IncompleteAge)
	abandoned, err := due(`SELECT id FROM entries WHERE state = 1 AND created_at <= ? ORDER BY created_at LIMIT ?`,
		seconds(limit)+1, func(r *bolt.Record) int64 { return r.Created }, limit)
	if err != nil {
		return false, err
	}
	for _, rec := range abandoned {
		if err := s.purge(ctx, tx, rec); err != nil {
			return false, err
		}
		res.Abandoned++
	}
	return more, s.enforceBudget(ctx, tx, res)
}

// Clear removes every pair at once (in every process sharing the file).
// Bodies being read fail with model.ErrRemoved; bodies being stored fail and
// are not stored.
func (s *SQLite) Clear(ctx context.Context) error {
	s.reads.Clear()
	return s.update(ctx, true, func(tx *wtx) error {
		for _, q := range []string{`DELETE FROM streams`, `DELETE FROM entries`,
			`UPDATE hishel_stats SET pairs = 0, incomplete = 0, deleted = 0, bytes = 0 WHERE id = 0`} {
			if _, err := tx.exec(ctx, q); err != nil {
				return err
			}
		}
		return nil
	})
}

// Pairs lists the stored pairs that f matches (the zero Filter: every
// pair, whatever its state: incomplete, complete, expired or not, and
// soft-deleted), in ID order, with heads and metadata only. Nothing is read
// until the listing is consumed; it then reads in pages and hands them out
// outside any transaction, so the consumer may call the storage between
// pairs. A bad filter (model.ErrInvalid), a record that does not decode
// (model.ErrCorrupt), a closed storage or ctx's error ends the listing, as
// its last item. A filter on Keys is served by the cache_key index and one
// with Expired by the expiry index; others read every record.
func (s *SQLite) Pairs(ctx context.Context, f model.Filter) iter.Seq2[model.PairInfo, error] {
	return backend.Finder{
		All: backend.Paged(listPage, func(ctx context.Context, after []byte, limit int) ([]model.PairInfo, error) {
			return s.listQuery(ctx, `SELECT id, data, data_crc FROM entries WHERE id > ? ORDER BY id LIMIT ?`, append([]byte{}, after...), limit)
		}),
		Key: func(ctx context.Context, key string) ([]model.PairInfo, error) {
			return s.listQuery(ctx, `SELECT id, data, data_crc FROM entries WHERE cache_key = ? AND state = 2`, []byte(key))
		},
		Expired: func(ctx context.Context, now int64) ([]model.PairInfo, error) {
			return s.listQuery(ctx, `SELECT id, data, data_crc FROM entries
				WHERE state = 2 AND expires_at IS NOT NULL AND expires_at <= ?`, now)
		},
	}.Pairs(ctx, f, s.pol.Now)
}

// Delete soft-deletes every pair f matches that is not deleted already,
// as Remove does, and returns how many: it finds them as Pairs does and
// removes each in a transaction of its own (backend.Delete). Pairs stored
// while it runs may or may not be deleted.
func (s *SQLite) Delete(ctx context.Context, f model.Filter) (int, error) {
	return backend.Delete(ctx, f, s.Pairs, s.Remove)
}

// listQuery returns the PairInfos of the entries q selects (id, data,
// data_crc), with the expiry that reads not yet written give them.
func (s *SQLite) listQuery(ctx context.Context, q string, args ...any) ([]model.PairInfo, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	var infos []model.PairInfo
	rd := s.reads.BeginRead()
	defer s.reads.EndRead(rd)
	err := func() error {
		rows, err := s.r.query(ctx, q, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var idb, data []byte
			var crc int64
			if err := rows.Scan(&idb, &data, &crc); err != nil {
				return err
			}
			if len(idb) != len(model.PairID{}) {
				continue
			}
			rec, err := s.decode(model.PairID(idb), data, crc)
			if err != nil {
				return fmt.Errorf("hishel: pairs: %w", err)
			}
			infos = append(infos, backend.Info(rec, s.reads.Time(rd, rec.ID)))
		}
		return rows.Err()
	}()
	if err != nil {
		return nil, s.readErr(err)
	}
	return infos, nil
}

// Sync writes the gathered access times. Every other change is committed
// when its call returns.
func (s *SQLite) Sync(ctx context.Context) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	return s.flushAccess(ctx)
}

// Stats returns the storage's counters, which every process sharing the
// file keeps up to date in the transactions that change them, and the
// evictions this SQLite committed (Evicted: other processes count their
// own).
func (s *SQLite) Stats(ctx context.Context) (model.Stats, error) {
	if err := s.check(ctx); err != nil {
		return model.Stats{}, err
	}
	st, err := readStats(ctx, s.r)
	if err != nil {
		return model.Stats{}, s.readErr(err)
	}
	st.Evicted = s.w.evicted.Load()
	return st, nil
}

// Close writes gathered access times, stops the maintenance goroutine and
// closes the database. Bodies still being read or stored fail with
// model.ErrClosed. Close is idempotent.
func (s *SQLite) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.maintDone
		s.closed.Store(true)
		s.closeErr = errors.Join(s.r.close(), s.w.close())
	})
	return s.closeErr
}
