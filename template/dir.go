package template

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"iter"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hishel-go/hishel/backend"
	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/model"
)

// DirOptions configure a Dir storage. A nil *DirOptions, and every zero
// field, means the default.
type DirOptions struct {
	// Path is the cache directory, created if missing. Default:
	// hishel/files under os.UserCacheDir().
	Path string
	// NoSync skips the fsyncs that make a completed pair durable (of its
	// files and of the directories they are renamed into): much faster, and
	// the directory stays consistent after a process crash, but a machine
	// crash may lose the last pairs. For caches that can be rebuilt.
	NoSync bool

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
	// AccessFlushInterval is how long access times are gathered in memory
	// before they are written. Default 1s.
	AccessFlushInterval time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

func (o *DirOptions) settings() backend.Settings {
	return backend.Settings{DefaultTTL: o.DefaultTTL, RefreshTTLOnAccess: o.RefreshTTLOnAccess,
		SweepInterval: o.SweepInterval, DeletedRetention: o.DeletedRetention, IncompleteAge: o.IncompleteAge,
		MaxBytes: o.MaxBytes, MaxPairs: o.MaxPairs, MaxVariants: o.MaxVariants, ChunkSize: o.ChunkSize, Now: o.Now}
}

// SetSettings sets the fields that backend.Settings names.
func (o *DirOptions) SetSettings(s backend.Settings) {
	o.DefaultTTL, o.RefreshTTLOnAccess, o.SweepInterval = s.DefaultTTL, s.RefreshTTLOnAccess, s.SweepInterval
	o.DeletedRetention, o.IncompleteAge, o.MaxBytes = s.DeletedRetention, s.IncompleteAge, s.MaxBytes
	o.MaxPairs, o.MaxVariants, o.ChunkSize, o.Now = s.MaxPairs, s.MaxVariants, s.ChunkSize, s.Now
}

// dirMarker is the content of the file that marks a directory as a Dir.
const dirMarker = "hishel-go dir cache, format 1\n"

// Dir stores pairs as files in one directory, which a person can read and
// several processes can share:
//
//	hishel-dir                    the format marker
//	pairs/<id>                    a pair's record (heads and metadata, with a CRC-32C)
//	bodies/<id>-<nonce>.req|.resp a stored body: CRC-32C-checked chunks, then a completion marker
//	keys/<sha256 of key>/<id>     the key index: empty files
//	index/{expiry,deleted,incomplete,access}/<time>-<id>
//	                              time-ordered index entries (empty files) for the sweep and LRU
//	stats, lock, tmp/             the counters, the lock file, files being written
//
// Every file is written under tmp/ and renamed into place, so a reader
// never sees a partial file: a body is written to tmp/ as it streams and
// renamed into bodies/ when it ends; a pair becomes visible when its record,
// renamed over the old one, says it is complete. Changes to records,
// indexes and counters are made under the lock file (flock), so that
// processes take turns; reads take no lock. Unless NoSync, a change that
// makes a pair visible or hides it is fsynced (files and directories)
// before it returns.
//
// OpenDir recounts the counters from the records, which costs a read of
// every record; a sweep lists the index directories (names only) and reads
// the records of the pairs it removes.
//
// A Dir owns one goroutine, from OpenDir until Close, that writes gathered
// access times and runs the background sweep.
//
//hishel:backend
//hishel:scheme file
type Dir struct {
	root string
	opts DirOptions
	pol  backend.Policy
	lock *dirLock

	// reads are the access times gathered and not yet written, or being
	// written (backend.AccessTimes).
	reads backend.AccessTimes
	// flushHook, if set (by tests), is called as applyAccess writes a
	// batch: before its records (written false) and after them; an error
	// fails the transaction.
	flushHook func(written bool) error

	badMu sync.Mutex
	bad   map[model.PairID]struct{}

	// evicted counts the live pairs this Dir evicted since it was opened
	// (model.Stats.Evicted; other processes keep their own).
	evicted atomic.Int64

	closed    atomic.Bool
	closeOnce sync.Once
	stop      chan struct{}
	maintDone chan struct{}
}

var dirIndexes = []string{"expiry", "deleted", "incomplete", "access"}

// OpenDir opens (creating if needed) the cache directory at opts.Path and
// starts its maintenance goroutine. A directory that holds other files but
// no hishel-dir marker gives model.ErrCorrupt; a marker of another format,
// model.ErrFormatVersion.
func OpenDir(ctx context.Context, opts *DirOptions) (*Dir, error) {
	if ctx == nil {
		return nil, fmt.Errorf("hishel: open dir: nil context: %w", model.ErrInvalid)
	}
	var o DirOptions
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
			return nil, fmt.Errorf("hishel: no default cache directory: %w", err)
		}
		o.Path = filepath.Join(dir, "hishel", "files")
	}
	if o.AccessFlushInterval <= 0 {
		o.AccessFlushInterval = DefaultAccessFlushInterval
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := initDir(o.Path); err != nil {
		return nil, fmt.Errorf("hishel: open %s: %w", o.Path, err)
	}
	lk, err := openDirLock(filepath.Join(o.Path, "lock"))
	if err != nil {
		return nil, fmt.Errorf("hishel: open %s: %w", o.Path, err)
	}
	d := &Dir{root: o.Path, opts: o, pol: pol, lock: lk,
		bad:  make(map[model.PairID]struct{}),
		stop: make(chan struct{}), maintDone: make(chan struct{})}
	if err := d.recount(ctx); err != nil {
		_ = lk.close()
		return nil, fmt.Errorf("hishel: open %s: %w", o.Path, err)
	}
	go backend.Maintain(d.stop, d.maintDone, o.AccessFlushInterval, func() { _ = d.flushAccess(context.Background()) },
		pol.SweepInterval, func() { _, _ = d.Cleanup(context.Background()) })
	return d, nil
}

// OpenDirURL opens the Dir that a store URL names (see cache.Open):
// file:///absolute/path/dir, file:relative/dir, or file: alone for the
// default directory. Its query parameters set DirOptions: the shared ttl,
// refresh, sweep, retention, incomplete-age, max-bytes, max-pairs,
// max-variants and chunk-size (see backend.Query.Settings), and
//
//	nosync=BOOL             NoSync
//	access-flush=DURATION   AccessFlushInterval
//
// A bad URL fails with model.ErrInvalid.
func OpenDirURL(ctx context.Context, u *url.URL) (*Dir, error) {
	var o DirOptions
	path, err := backend.FilePath(u)
	if err != nil {
		return nil, err
	}
	o.Path = path
	q := backend.NewQuery(u)
	s := o.settings()
	q.Settings(&s)
	q.Bool("nosync", &o.NoSync)
	q.Duration("access-flush", &o.AccessFlushInterval)
	if err := q.Done(); err != nil {
		return nil, err
	}
	o.SetSettings(s)
	return OpenDir(ctx, &o)
}

// initDir lays out a new directory or checks an existing one.
func initDir(root string) error {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return err
	}
	marker := filepath.Join(root, "hishel-dir")
	b, err := os.ReadFile(marker)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		entries, err := os.ReadDir(root)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if e.Name() != "lock" && e.Name() != "tmp" {
				return fmt.Errorf("a directory with other files and no hishel-dir marker: %w", model.ErrCorrupt)
			}
		}
	case err != nil:
		return err
	case string(b) != dirMarker:
		if strings.HasPrefix(string(b), "hishel-go dir cache") {
			return fmt.Errorf("hishel-dir says %q: %w", strings.TrimSpace(string(b)), model.ErrFormatVersion)
		}
		return fmt.Errorf("hishel-dir is not a hishel marker: %w", model.ErrCorrupt)
	}
	dirs := []string{"pairs", "bodies", "keys", "tmp"}
	for _, ix := range dirIndexes {
		dirs = append(dirs, filepath.Join("index", ix))
	}
	for _, sub := range dirs {
		if err := os.MkdirAll(filepath.Join(root, sub), 0o700); err != nil {
			return err
		}
	}
	if errors.Is(err, fs.ErrNotExist) {
		return writeAtomic(root, marker, []byte(dirMarker), true)
	}
	return nil
}

func (d *Dir) path(parts ...string) string {
	return filepath.Join(append([]string{d.root}, parts...)...)
}

func idName(id model.PairID) string { return hex.EncodeToString(id[:]) }

func parseIDName(s string) (model.PairID, bool) {
	var id model.PairID
	if len(s) != 2*len(id) {
		return id, false
	}
	_, err := hex.Decode(id[:], []byte(s))
	return id, err == nil
}

func keyDir(key string) string {
	h := bolt.KeyHash(key)
	return hex.EncodeToString(h[:])
}

// indexName names an index entry: the time, in 16 hex digits that sort as
// the times do (times are after 1970), then the pair.
func indexName(at int64, id model.PairID) string {
	return fmt.Sprintf("%016x-%s", uint64(at), idName(id))
}

func parseIndexName(s string) (int64, model.PairID, bool) {
	t, idn, ok := strings.Cut(s, "-")
	if !ok || len(t) != 16 {
		return 0, model.PairID{}, false
	}
	at, err := strconv.ParseUint(t, 16, 64)
	if err != nil {
		return 0, model.PairID{}, false
	}
	id, ok := parseIDName(idn)
	return int64(at), id, ok
}

func (d *Dir) bodyPath(id model.PairID, nonce uint64, kind bolt.Kind) string {
	ext := ".req"
	if kind == bolt.KindResponse {
		ext = ".resp"
	}
	return d.path("bodies", fmt.Sprintf("%s-%016x%s", idName(id), nonce, ext))
}

// writeAtomic writes data to path through a temporary file in root's tmp/
// (or beside path, for the marker) and a rename; with sync, the file and
// its directory are fsynced.
func writeAtomic(root, path string, data []byte, sync bool) error {
	tmpDir := filepath.Join(root, "tmp")
	if _, err := os.Stat(tmpDir); err != nil {
		tmpDir = filepath.Dir(path)
	}
	f, err := os.CreateTemp(tmpDir, "w-*")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil && sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return err
	}
	if sync {
		return syncDir(filepath.Dir(path))
	}
	return nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Record files: "HPR1", the CRC-32C of the rest, then the record.
var recordMagic = []byte("HPR1")

func encodeRecordFile(rec *bolt.Record) []byte {
	data := bolt.EncodeRecord(rec)
	b := make([]byte, 0, 8+len(data))
	b = append(b, recordMagic...)
	b = binary.BigEndian.AppendUint32(b, backend.Checksum(data))
	return append(b, data...)
}

// readRecord reads pair id's record; nil if there is none. A record that
// does not check or decode is model.ErrCorrupt, and noted for the sweep.
func (d *Dir) readRecord(id model.PairID) (*bolt.Record, []byte, error) {
	b, err := os.ReadFile(d.path("pairs", idName(id)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	if len(b) < 8 || !bytes.Equal(b[:4], recordMagic) || binary.BigEndian.Uint32(b[4:8]) != backend.Checksum(b[8:]) {
		d.noteBad(id)
		return nil, nil, fmt.Errorf("hishel: record of pair %s: checksum mismatch: %w", id, model.ErrCorrupt)
	}
	rec, err := bolt.DecodeRecord(b[8:])
	if err == nil && rec.ID != id {
		err = fmt.Errorf("holds pair %s: %w", rec.ID, model.ErrCorrupt)
	}
	if err != nil {
		d.noteBad(id)
		return nil, nil, fmt.Errorf("hishel: record of pair %s: %w", id, err)
	}
	return rec, b, nil
}

func (d *Dir) noteBad(id model.PairID) {
	d.badMu.Lock()
	d.bad[id] = struct{}{}
	d.badMu.Unlock()
}

func (d *Dir) check(ctx context.Context) error {
	if ctx == nil {
		return fmt.Errorf("hishel: nil context: %w", model.ErrInvalid)
	}
	if d.closed.Load() {
		return model.ErrClosed
	}
	return ctx.Err()
}

func (d *Dir) now() int64 { return bolt.UnixNano(d.pol.Now()) }

// dtx is one change of the directory, made under the lock: it keeps the
// counters' change, the directories to fsync at its end, and the access
// batches it took (see applyAccess), which end with it.
type dtx struct {
	d     *Dir
	stats [4]int64 // pairs, incomplete, deleted, bytes
	dirs  map[string]bool
	taken []*backend.AccessBatch
}

// update runs fn under the lock (waiting for it as long as ctx allows),
// then writes the counters' change and, when durable and not NoSync,
// fsyncs the directories fn touched.
//
// The change is done once update returns: the access batches fn took end
// then, before the lock is released, with update's error (nil: written).
// A change that fails part way is not undone (each file it renamed into
// place stays), so a batch that ends with an error is gathered again and
// the next write skips the reads already stored.
func (d *Dir) update(ctx context.Context, durable bool, fn func(t *dtx) error) (err error) {
	if err := d.check(ctx); err != nil {
		return err
	}
	if err := d.lock.lock(ctx); err != nil {
		return err
	}
	defer d.lock.unlock()
	if d.closed.Load() {
		return model.ErrClosed
	}
	t := &dtx{d: d, dirs: map[string]bool{}}
	done := false
	defer func() {
		outcome := err
		if !done && outcome == nil {
			outcome = errNoCommit // fn panicked
		}
		for _, b := range t.taken {
			d.reads.End(b, outcome)
		}
	}()
	err = fn(t)
	if t.stats != ([4]int64{}) {
		if serr := d.addStats(t.stats); err == nil {
			err = serr
		}
	}
	if err == nil && durable && !d.opts.NoSync {
		for dir := range t.dirs {
			if serr := syncDir(dir); err == nil {
				err = serr
			}
		}
	}
	done = true
	return err
}

// errNoCommit is the outcome of a change that ended without finishing or
// an error (its fn panicked).
var errNoCommit = errors.New("hishel: change ended without finishing")

func (t *dtx) touch(path string) { t.dirs[filepath.Dir(path)] = true }

func (t *dtx) create(path string) error {
	t.touch(path)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) { // a key directory
			if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
				return err
			}
			t.touch(filepath.Dir(path))
			f, err = os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o600)
		}
		if err != nil {
			return err
		}
	}
	return f.Close()
}

func (t *dtx) remove(path string) error {
	t.touch(path)
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

func dirSize(r *bolt.Record) int64 { return backend.Size(r) }

func (t *dtx) count(r *bolt.Record, sign int64) {
	switch r.State() {
	case model.StateComplete:
		t.stats[0] += sign
	case model.StateIncomplete:
		t.stats[1] += sign
	case model.StateDeleted:
		t.stats[2] += sign
	}
	t.stats[3] += sign * dirSize(r)
}

// indexEntries returns the index entries (index directory, name) a record
// has.
func indexEntries(r *bolt.Record) [][2]string {
	var out [][2]string
	switch r.State() {
	case model.StateIncomplete:
		out = append(out, [2]string{"incomplete", indexName(r.Created, r.ID)})
	case model.StateComplete:
		out = append(out, [2]string{"access", indexName(r.LastAccess, r.ID)})
		if r.Expires != 0 {
			out = append(out, [2]string{"expiry", indexName(r.Expires, r.ID)})
		}
	case model.StateDeleted:
		out = append(out, [2]string{"deleted", indexName(r.Deleted, r.ID)})
	}
	return out
}

// put writes rec, which was old (nil: a new pair), with its index entries
// and key entry, and counts the change. The record is written last: it is
// what readers go by.
func (t *dtx) put(old, rec *bolt.Record) error {
	d := t.d
	var oldIx, newIx [][2]string
	if old != nil {
		oldIx = indexEntries(old)
	}
	newIx = indexEntries(rec)
	for _, e := range newIx {
		if !slices.Contains(oldIx, e) {
			if err := t.create(d.path("index", e[0], e[1])); err != nil {
				return err
			}
		}
	}
	oldKey := old != nil && old.State() == model.StateComplete
	newKey := rec.State() == model.StateComplete
	if newKey && (!oldKey || old.Key != rec.Key) {
		if err := t.create(d.path("keys", keyDir(rec.Key), idName(rec.ID))); err != nil {
			return err
		}
	}
	p := d.path("pairs", idName(rec.ID))
	t.touch(p)
	if err := writeAtomic(d.root, p, encodeRecordFile(rec), false); err != nil {
		return err
	}
	for _, e := range oldIx {
		if !slices.Contains(newIx, e) {
			if err := t.remove(d.path("index", e[0], e[1])); err != nil {
				return err
			}
		}
	}
	if oldKey && (!newKey || old.Key != rec.Key) {
		if err := t.remove(d.path("keys", keyDir(old.Key), idName(rec.ID))); err != nil {
			return err
		}
	}
	if old != nil {
		t.count(old, -1)
	}
	t.count(rec, 1)
	if old != nil && old.State() != model.StateComplete && rec.State() == model.StateComplete {
		return t.afterComplete(rec)
	}
	return nil
}

// purge removes rec's files and counts.
func (t *dtx) purge(rec *bolt.Record) error {
	d := t.d
	if err := t.remove(d.path("pairs", idName(rec.ID))); err != nil {
		return err
	}
	for _, kind := range []bolt.Kind{bolt.KindRequest, bolt.KindResponse} {
		if err := t.remove(d.bodyPath(rec.ID, rec.Nonce, kind)); err != nil {
			return err
		}
	}
	for _, e := range indexEntries(rec) {
		if err := t.remove(d.path("index", e[0], e[1])); err != nil {
			return err
		}
	}
	if rec.State() == model.StateComplete {
		if err := t.remove(d.path("keys", keyDir(rec.Key), idName(rec.ID))); err != nil {
			return err
		}
	}
	t.count(rec, -1)
	return nil
}

// purgeID purges pair id, whatever its record holds: a record that does
// not decode is removed with the bodies its name prefixes.
func (t *dtx) purgeID(id model.PairID) error {
	d := t.d
	rec, _, err := d.readRecord(id)
	if err == nil {
		if rec == nil {
			return nil
		}
		return t.purge(rec)
	}
	if err := t.remove(d.path("pairs", idName(id))); err != nil {
		return err
	}
	bodies, _ := filepath.Glob(d.path("bodies", idName(id)+"-*"))
	for _, b := range bodies {
		if err := t.remove(b); err != nil {
			return err
		}
	}
	return d.recountLocked() // its counts are unknown
}

// afterComplete enforces MaxVariants under rec's key, then MaxBytes and
// MaxPairs, once rec has completed.
func (t *dtx) afterComplete(rec *bolt.Record) error {
	d := t.d
	if d.pol.MaxVariants > 0 {
		entries, err := os.ReadDir(d.path("keys", keyDir(rec.Key)))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if len(entries) > d.pol.MaxVariants {
			if err := d.applyAccess(t); err != nil {
				return err
			}
			var live []*bolt.Record
			for _, e := range entries {
				id, ok := parseIDName(e.Name())
				if !ok {
					continue
				}
				r, _, err := d.readRecord(id)
				if err == nil && r != nil && r.State() == model.StateComplete && r.Key == rec.Key {
					live = append(live, r)
				}
			}
			slices.SortFunc(live, func(a, b *bolt.Record) int {
				if a.LastAccess != b.LastAccess {
					return int(b.LastAccess - a.LastAccess)
				}
				return bytes.Compare(b.ID[:], a.ID[:])
			})
			for _, r := range live[min(len(live), d.pol.MaxVariants):] {
				if err := t.purge(r); err != nil {
					return err
				}
				d.evicted.Add(1)
			}
		}
	}
	return d.enforceBudget(t, nil)
}

// stats reads the counters file.
func (d *Dir) stats() (model.Stats, error) {
	b, err := os.ReadFile(d.path("stats"))
	if errors.Is(err, fs.ErrNotExist) {
		return model.Stats{}, nil
	}
	if err != nil {
		return model.Stats{}, err
	}
	if len(b) != 36 || binary.BigEndian.Uint32(b[32:]) != backend.Checksum(b[:32]) {
		return model.Stats{}, fmt.Errorf("hishel: stats file: %w", model.ErrCorrupt)
	}
	return model.Stats{
		Pairs: int(binary.BigEndian.Uint64(b[0:])), Incomplete: int(binary.BigEndian.Uint64(b[8:])),
		Deleted: int(binary.BigEndian.Uint64(b[16:])), Bytes: int64(binary.BigEndian.Uint64(b[24:])),
	}, nil
}

func (d *Dir) writeStats(st model.Stats) error {
	b := make([]byte, 0, 36)
	for _, v := range []int64{int64(st.Pairs), int64(st.Incomplete), int64(st.Deleted), st.Bytes} {
		b = binary.BigEndian.AppendUint64(b, uint64(v))
	}
	b = binary.BigEndian.AppendUint32(b, backend.Checksum(b))
	return writeAtomic(d.root, d.path("stats"), b, false)
}

func (d *Dir) addStats(delta [4]int64) error {
	st, err := d.stats()
	if err != nil {
		return d.recountLocked()
	}
	st.Pairs += int(delta[0])
	st.Incomplete += int(delta[1])
	st.Deleted += int(delta[2])
	st.Bytes += delta[3]
	return d.writeStats(st)
}

// recount rewrites the counters from the records, under the lock.
func (d *Dir) recount(ctx context.Context) error {
	if err := d.lock.lock(ctx); err != nil {
		return err
	}
	defer d.lock.unlock()
	return d.recountLocked()
}

func (d *Dir) recountLocked() error {
	entries, err := os.ReadDir(d.path("pairs"))
	if err != nil {
		return err
	}
	var st model.Stats
	for _, e := range entries {
		id, ok := parseIDName(e.Name())
		if !ok {
			continue
		}
		rec, _, err := d.readRecord(id)
		if err != nil || rec == nil {
			continue // a corrupt record counts for nothing; the sweep removes it
		}
		switch rec.State() {
		case model.StateComplete:
			st.Pairs++
		case model.StateIncomplete:
			st.Incomplete++
		case model.StateDeleted:
			st.Deleted++
		}
		st.Bytes += dirSize(rec)
	}
	return d.writeStats(st)
}

// CreatePair stores a new incomplete pair for req and returns it. Its
// request body is stored as the caller reads the returned pair's
// Request.Body to the end (a nil body is stored at once as empty). ctx
// governs that body stream too: cancelling it aborts the pair.
//
// With model.WithID the pair gets the caller's ID; an ID already in use
// (by any process sharing the directory) fails with model.ErrDuplicateID.
// A body that has already been read from fails with model.ErrBodyConsumed;
// a negative TTL other than model.NoExpiry, with model.ErrInvalid.
func (d *Dir) CreatePair(ctx context.Context, req model.Request, opts ...model.CreateOption) (model.IncompletePair, error) {
	if err := d.check(ctx); err != nil {
		return model.IncompletePair{}, err
	}
	rec, err := d.pol.NewRecord(req, opts, rand.Uint64())
	if err != nil {
		return model.IncompletePair{}, err
	}
	id := rec.ID
	err = d.update(ctx, false, func(t *dtx) error {
		if _, err := os.Lstat(d.path("pairs", idName(id))); err == nil {
			return fmt.Errorf("hishel: create pair %s: %w", id, model.ErrDuplicateID)
		}
		return t.put(nil, rec)
	})
	if err != nil {
		return model.IncompletePair{}, err
	}
	out := model.IncompletePair{ID: id, Request: req, Meta: rec.Meta()}
	if req.Body != nil {
		out.Request.Body = model.NewBody(d.newSaver(ctx, rec, bolt.KindRequest, req.Body))
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
func (d *Dir) AddResponse(ctx context.Context, id model.PairID, resp model.Response, key string) (model.CompletePair, error) {
	if err := d.check(ctx); err != nil {
		return model.CompletePair{}, err
	}
	if err := backend.CheckResponse(resp); err != nil {
		return model.CompletePair{}, err
	}
	var rec *bolt.Record
	err := d.update(ctx, resp.Body == nil, func(t *dtx) error {
		old, _, err := d.readRecord(id)
		if err != nil {
			return err
		}
		r, err := backend.Respond(id, old, resp, key)
		if err != nil {
			return err
		}
		d.settle(r)
		rec = r
		return t.put(old, r)
	})
	if err != nil {
		return model.CompletePair{}, err
	}
	out := backend.Responded(rec, resp)
	if resp.Body != nil {
		out.Response.Body = model.NewBody(d.newSaver(ctx, rec, bolt.KindResponse, resp.Body))
	}
	return out, nil
}

// settle completes rec if both of its bodies are stored (backend.Settle).
func (d *Dir) settle(rec *bolt.Record) { backend.Settle(rec, d.now()) }

// expiry returns when rec expires given an access not yet written
// (backend.Expiry).
func (d *Dir) expiry(rec *bolt.Record, pending int64) int64 { return backend.Expiry(rec, pending) }

// GetPairs returns every live, complete, unexpired pair stored under key,
// newest first. Only heads are read: each body is read from its file as it
// is read, and must be read to the end or closed. Reading a pair counts as
// an access (TTL refresh, eviction order). The pairs' header maps are the
// caller's own to change.
func (d *Dir) GetPairs(ctx context.Context, key string) ([]model.CompletePair, error) {
	if err := d.check(ctx); err != nil {
		return nil, err
	}
	var buf [2]*bolt.Record // a key's pairs, mostly one: no allocation
	rd := d.reads.BeginRead()
	recs, err := d.keyRecords(key, buf[:0])
	if err != nil {
		d.reads.EndRead(rd)
		return nil, err
	}
	recs = d.reads.Read(rd, recs, d.now(), d.expiry)
	out := make([]model.CompletePair, 0, len(recs))
	for _, rec := range recs {
		out = append(out, d.pair(rec))
	}
	backend.SortNewest(out)
	return out, nil
}

// keyRecords appends to recs the records of the complete pairs the key
// index lists under key.
func (d *Dir) keyRecords(key string, recs []*bolt.Record) ([]*bolt.Record, error) {
	entries, err := os.ReadDir(d.path("keys", keyDir(key)))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	for _, e := range entries {
		id, ok := parseIDName(e.Name())
		if !ok {
			continue
		}
		rec, _, err := d.readRecord(id)
		if err != nil {
			return nil, err
		}
		if rec == nil || rec.State() != model.StateComplete || rec.Key != key {
			continue
		}
		recs = append(recs, rec)
	}
	return recs, nil
}

func (d *Dir) pair(rec *bolt.Record) model.CompletePair {
	cp := backend.Heads(rec)
	cp.Request.Body = d.body(rec, bolt.KindRequest, rec.ReqSize)
	cp.Response.Body = d.body(rec, bolt.KindResponse, rec.RespSize)
	return cp
}

// GetPair returns the live, complete, unexpired pair id, with bodies
// streamed as in GetPairs, or model.ErrNotFound. It does not count as an
// access.
func (d *Dir) GetPair(ctx context.Context, id model.PairID) (model.CompletePair, error) {
	if err := d.check(ctx); err != nil {
		return model.CompletePair{}, err
	}
	rd := d.reads.BeginRead()
	defer d.reads.EndRead(rd)
	rec, _, err := d.readRecord(id)
	if err != nil {
		return model.CompletePair{}, err
	}
	if rec == nil || rec.State() != model.StateComplete {
		return model.CompletePair{}, fmt.Errorf("hishel: get pair %s: %w", id, model.ErrNotFound)
	}
	exp := d.expiry(rec, d.reads.Time(rd, id))
	if exp != 0 && d.now() >= exp {
		return model.CompletePair{}, fmt.Errorf("hishel: get pair %s: %w", id, model.ErrNotFound)
	}
	rec.Expires = exp
	return d.pair(rec), nil
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
func (d *Dir) UpdatePair(ctx context.Context, id model.PairID, pair model.CompletePair) (model.CompletePair, error) {
	return d.UpdatePairFunc(ctx, id, func(model.CompletePair) (model.CompletePair, error) { return pair, nil })
}

// UpdatePairFunc is UpdatePair with the new value computed by fn from the
// stored pair, atomically: the write happens only if the pair is still as
// fn saw it (in any process); otherwise fn is called again with the pair
// as it is now. fn receives the pair with nil bodies and runs with nothing
// locked, so it may call the storage. If fn returns an error (or panics),
// nothing changes and UpdatePairFunc returns that error.
func (d *Dir) UpdatePairFunc(ctx context.Context, id model.PairID, fn func(model.CompletePair) (model.CompletePair, error)) (model.CompletePair, error) {
	if err := d.check(ctx); err != nil {
		return model.CompletePair{}, err
	}
	read := func(context.Context) (model.CompletePair, *bolt.Record, error) {
		old, _, err := d.readRecord(id)
		if err != nil {
			return model.CompletePair{}, nil, err
		}
		cur, err := backend.Current(id, old)
		return cur, old, err
	}
	write := func(ctx context.Context, next model.CompletePair, base *bolt.Record) (model.CompletePair, bool, error) {
		if err := backend.CheckUpdate(id, next); err != nil {
			return model.CompletePair{}, false, err
		}
		var rec *bolt.Record
		stale := false
		err := d.update(ctx, true, func(t *dtx) error {
			now, _, err := d.readRecord(id)
			if err != nil {
				return err
			}
			if now == nil || now.State() != model.StateComplete {
				return fmt.Errorf("hishel: update pair %s: %w", id, model.ErrNotFound)
			}
			if backend.Changed(base, now) {
				stale = true
				return nil
			}
			rec = backend.Updated(now, next)
			return t.put(now, rec)
		})
		if err != nil || stale {
			return model.CompletePair{}, stale, err
		}
		// A refresh gathered before the update is the update's to decide.
		d.reads.Forget(id)
		return d.pair(rec), false, nil
	}
	return backend.UpdatePairFunc(ctx, id, fn, read, write)
}

// Remove soft-deletes the pair id: it is hidden at once (from every
// process) and reclaimed by a sweep after DeletedRetention. Removing an
// unknown or already removed pair does nothing. Removing an incomplete pair
// aborts the bodies still being stored.
func (d *Dir) Remove(ctx context.Context, id model.PairID) error {
	return d.update(ctx, true, func(t *dtx) error {
		old, _, err := d.readRecord(id)
		if errors.Is(err, model.ErrCorrupt) {
			return t.purgeID(id)
		}
		if err != nil || old == nil || old.Has(bolt.FlagDeleted) {
			return err
		}
		return t.softDelete(old, d.now())
	})
}

func (t *dtx) softDelete(old *bolt.Record, at int64) error {
	rec := *old
	rec.Flags |= bolt.FlagDeleted
	rec.Deleted = at
	return t.put(old, &rec)
}

// applyAccess writes the gathered access times: each live complete pair
// moves in the eviction order and, if it refreshes on access, gets a new
// expiry.
//
// The times taken stay visible to reads until t ends, and are gathered
// again if it fails (backend.AccessTimes). No other change of this Dir
// can be writing times meanwhile (they take turns under the lock, and
// each ends its batches before releasing it), so a change that ranks
// pairs by access time after applyAccess counts every read gathered so
// far.
func (d *Dir) applyAccess(t *dtx) error {
	b := d.reads.Take(false)
	if b == nil {
		return nil
	}
	t.taken = append(t.taken, b)
	if d.flushHook != nil {
		if err := d.flushHook(false); err != nil {
			return err
		}
	}
	for _, r := range b.Reads {
		id, at := r.ID, r.At
		old, _, err := d.readRecord(id)
		if err != nil || old == nil || old.State() != model.StateComplete || at <= old.LastAccess {
			continue
		}
		rec := *old
		rec.LastAccess = at
		if exp := d.expiry(old, at); exp != 0 {
			rec.Expires = exp
		}
		if err := t.put(old, &rec); err != nil {
			return err
		}
	}
	if d.flushHook != nil {
		return d.flushHook(true)
	}
	return nil
}

// flushAccess writes the gathered access times in a change of their own.
func (d *Dir) flushAccess(ctx context.Context) error {
	if d.reads.Pending() == 0 {
		return nil
	}
	return d.update(ctx, false, func(t *dtx) error { return d.applyAccess(t) })
}

// due lists index ix's entries up to time upTo, oldest first.
func (d *Dir) due(ix string, upTo int64) ([]model.PairID, []string, error) {
	entries, err := os.ReadDir(d.path("index", ix))
	if err != nil {
		return nil, nil, err
	}
	var ids []model.PairID
	var names []string
	for _, e := range entries { // sorted by name, so by time
		at, id, ok := parseIndexName(e.Name())
		if !ok {
			names = append(names, e.Name()) // not ours: removed
			ids = append(ids, model.PairID{})
			continue
		}
		if at > upTo {
			break
		}
		ids = append(ids, id)
		names = append(names, e.Name())
	}
	return ids, names, nil
}

// Cleanup runs a sweep now and reports what it did: expired pairs are
// soft-deleted, soft-deleted pairs past DeletedRetention and incomplete pairs
// older than IncompleteAge are removed (and pairs found corrupt, and files
// left in tmp/ by a crash that old), and pairs beyond MaxBytes or MaxPairs
// are evicted. It lists the index directories, by time, and reads only the
// records of the pairs it removes.
func (d *Dir) Cleanup(ctx context.Context) (model.SweepResult, error) {
	var res model.SweepResult
	err := d.update(ctx, true, func(t *dtx) error {
		if err := d.applyAccess(t); err != nil {
			return err
		}
		now := d.now()
		d.badMu.Lock()
		bad := d.bad
		d.bad = make(map[model.PairID]struct{})
		d.badMu.Unlock()
		for id := range bad {
			if err := t.purgeID(id); err != nil {
				return err
			}
			res.Purged++
		}
		rules := []struct {
			ix   string
			upTo int64
			when func(*bolt.Record) (int64, bool)
			do   func(*bolt.Record) error
		}{
			{"expiry", now, func(r *bolt.Record) (int64, bool) { return r.Expires, r.State() == model.StateComplete },
				func(r *bolt.Record) error { res.Expired++; return t.softDelete(r, now) }},
			{"deleted", now - int64(d.pol.Retention), func(r *bolt.Record) (int64, bool) { return r.Deleted, r.State() == model.StateDeleted },
				func(r *bolt.Record) error { res.Purged++; return t.purge(r) }},
			{"incomplete", now - int64(d.pol.IncompleteAge), func(r *bolt.Record) (int64, bool) { return r.Created, r.State() == model.StateIncomplete },
				func(r *bolt.Record) error { res.Abandoned++; return t.purge(r) }},
		}
		for _, rule := range rules {
			ids, names, err := d.due(rule.ix, rule.upTo)
			if err != nil {
				return err
			}
			for i, id := range ids {
				if err := ctx.Err(); err != nil {
					return err
				}
				at, _, _ := parseIndexName(names[i])
				rec, _, err := d.readRecord(id)
				if errors.Is(err, model.ErrCorrupt) {
					if err := t.purgeID(id); err != nil {
						return err
					}
					res.Purged++
					continue
				}
				if err != nil {
					return err
				}
				stale := rec == nil || id.IsZero()
				if !stale {
					w, ok := rule.when(rec)
					stale = !ok || w != at
				}
				if stale {
					// A stale entry: its pair moved on.
					if err := t.remove(d.path("index", rule.ix, names[i])); err != nil {
						return err
					}
					continue
				}
				if err := rule.do(rec); err != nil {
					return err
				}
			}
		}
		d.cleanTmp(now)
		return d.enforceBudget(t, &res)
	})
	return res, err
}

// cleanTmp removes files a crash left in tmp/, once older than
// IncompleteAge (by their modification time, on the wall clock: a body
// still streaming there is written to all the while).
func (d *Dir) cleanTmp(int64) {
	entries, err := os.ReadDir(d.path("tmp"))
	if err != nil {
		return
	}
	limit := time.Now().Add(-d.pol.IncompleteAge)
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && fi.ModTime().Before(limit) {
			_ = os.Remove(d.path("tmp", e.Name()))
		}
	}
}

// enforceBudget evicts pairs until the stored bytes fit MaxBytes and the
// complete pairs MaxPairs: soft-deleted pairs first (for MaxBytes), then
// complete pairs, least recently used first.
func (d *Dir) enforceBudget(t *dtx, res *model.SweepResult) error {
	if d.pol.MaxBytes <= 0 && d.pol.MaxPairs <= 0 {
		return nil
	}
	over := func(pairs bool) (bool, error) {
		st, err := d.stats()
		if err != nil {
			return false, err
		}
		// The counters on disk lag t's change until update writes it.
		st.Pairs += int(t.stats[0])
		st.Bytes += t.stats[3]
		return d.pol.MaxBytes > 0 && st.Bytes > d.pol.MaxBytes || pairs && d.pol.MaxPairs > 0 && st.Pairs > d.pol.MaxPairs, nil
	}
	o, err := over(true)
	if err != nil || !o {
		return err
	}
	if err := d.applyAccess(t); err != nil {
		return err
	}
	for _, ix := range []string{"deleted", "access"} {
		ids, names, err := d.due(ix, 1<<62)
		if err != nil {
			return err
		}
		for i, id := range ids {
			if o, err := over(ix == "access"); err != nil || !o {
				if err != nil {
					return err
				}
				break
			}
			rec, _, err := d.readRecord(id)
			at, _, _ := parseIndexName(names[i])
			want := model.StateDeleted
			if ix == "access" {
				want = model.StateComplete
			}
			if err != nil || rec == nil || rec.State() != want || (ix == "access" && rec.LastAccess != at) || (ix == "deleted" && rec.Deleted != at) {
				if errors.Is(err, model.ErrCorrupt) {
					if err := t.purgeID(id); err != nil {
						return err
					}
				} else if err := t.remove(d.path("index", ix, names[i])); err != nil {
					return err
				}
				continue
			}
			if err := t.purge(rec); err != nil {
				return err
			}
			if ix == "access" { // a live pair, not a soft-deleted one reclaimed early
				d.evicted.Add(1)
			}
			if res != nil {
				res.Evicted++
			}
		}
	}
	return nil
}

// Clear removes every pair at once (for every process sharing the
// directory). Bodies being read fail with model.ErrRemoved; bodies being
// stored fail and are not stored.
func (d *Dir) Clear(ctx context.Context) error {
	d.reads.Clear()
	var trash string
	err := d.update(ctx, true, func(t *dtx) error {
		var err error
		trash, err = os.MkdirTemp(d.path("tmp"), "clear-*")
		if err != nil {
			return err
		}
		for _, sub := range []string{"pairs", "bodies", "keys", "index"} {
			if err := os.Rename(d.path(sub), filepath.Join(trash, sub)); err != nil {
				return err
			}
		}
		if err := initDir(d.root); err != nil {
			return err
		}
		t.dirs[d.root] = true
		return d.writeStats(model.Stats{})
	})
	if trash != "" {
		_ = os.RemoveAll(trash)
	}
	return err
}

// Pairs lists the stored pairs that f matches (the zero Filter: every
// pair, whatever its state: incomplete, complete, expired or not, and
// soft-deleted), in ID order, with heads and metadata only. Nothing is read
// until the listing is consumed; it then reads one record at a time, with
// nothing locked, so the consumer may call the storage between pairs. A bad
// filter (model.ErrInvalid), a record that does not decode
// (model.ErrCorrupt), a closed storage or ctx's error ends the listing, as
// its last item. A filter on Keys reads the key index (keys/), others every
// record (backend.Finder).
func (d *Dir) Pairs(ctx context.Context, f model.Filter) iter.Seq2[model.PairInfo, error] {
	return backend.Finder{All: d.listAll, Key: d.listKey}.Pairs(ctx, f, d.pol.Now)
}

// Delete soft-deletes every pair f matches that is not deleted already,
// as Remove does, and returns how many: it finds them as Pairs does and
// removes each under the lock (backend.Delete). Pairs stored while it runs
// may or may not be deleted.
func (d *Dir) Delete(ctx context.Context, f model.Filter) (int, error) {
	return backend.Delete(ctx, f, d.Pairs, d.Remove)
}

// listAll calls fn for every stored pair, in ID order.
func (d *Dir) listAll(ctx context.Context, fn func(model.PairInfo) error) error {
	if err := d.check(ctx); err != nil {
		return err
	}
	entries, err := os.ReadDir(d.path("pairs"))
	if err != nil {
		return err
	}
	ids := make([]model.PairID, 0, len(entries))
	for _, e := range entries { // sorted by name: by ID
		if id, ok := parseIDName(e.Name()); ok {
			ids = append(ids, id)
		}
	}
	return d.list(ctx, ids, fn)
}

// listKey returns the pairs the key index lists under key.
func (d *Dir) listKey(ctx context.Context, key string) ([]model.PairInfo, error) {
	if err := d.check(ctx); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(d.path("keys", keyDir(key)))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	var ids []model.PairID
	for _, e := range entries {
		if id, ok := parseIDName(e.Name()); ok {
			ids = append(ids, id)
		}
	}
	var infos []model.PairInfo
	err = d.list(ctx, ids, func(info model.PairInfo) error {
		infos = append(infos, info)
		return nil
	})
	return infos, err
}

// list calls fn for the pairs ids that are still stored, in order.
func (d *Dir) list(ctx context.Context, ids []model.PairID, fn func(model.PairInfo) error) error {
	for _, id := range ids {
		if err := d.check(ctx); err != nil {
			return err
		}
		rd := d.reads.BeginRead()
		rec, _, err := d.readRecord(id)
		if err != nil {
			d.reads.EndRead(rd)
			return fmt.Errorf("hishel: pairs: %w", err)
		}
		if rec == nil {
			d.reads.EndRead(rd)
			continue // removed meanwhile
		}
		pending := d.reads.Time(rd, id)
		d.reads.EndRead(rd)
		if err := fn(backend.Info(rec, pending)); err != nil {
			return err
		}
	}
	return nil
}

// Sync writes the gathered access times. Every other change is written
// when its call returns.
func (d *Dir) Sync(ctx context.Context) error {
	if err := d.check(ctx); err != nil {
		return err
	}
	return d.flushAccess(ctx)
}

// Stats returns the storage's counters, which every process sharing the
// directory keeps up to date under the lock, and the evictions this Dir
// made (Evicted: other processes count their own).
func (d *Dir) Stats(ctx context.Context) (model.Stats, error) {
	if err := d.check(ctx); err != nil {
		return model.Stats{}, err
	}
	st, err := d.stats()
	if err != nil {
		return model.Stats{}, err
	}
	st.Evicted = d.evicted.Load()
	return st, nil
}

// Close writes gathered access times, stops the maintenance goroutine and
// releases the lock file. Bodies still being read or stored fail with
// model.ErrClosed. Close is idempotent.
func (d *Dir) Close() error {
	var err error
	d.closeOnce.Do(func() {
		close(d.stop)
		<-d.maintDone
		d.closed.Store(true)
		err = d.lock.close()
	})
	return err
}
