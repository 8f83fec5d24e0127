// Package template holds hishel-go's MongoDB backend, written once as
// ordinary, tested Go; ../gen renders it into package mongodb (blocking
// calls) and package mongodbasync (futures and channels).
//
// # Layout
//
// A store keeps three or four collections, named after Options.Collection
// (default "hishel") in Options.Database (default: the URL's, else
// "hishel"):
//
//	hishel_pairs    one document per pair: its heads (a bolt.Record, CRC-32C
//	                checked) and the fields queries and conditional updates
//	                use: state, key hash, times, sizes, chunk counts, version
//	hishel_chunks   body chunks: _id "<pair>.<nonce>.<q|p><seq>", data, CRC
//	hishel.files    with GridFS: one GridFS file per body (written last: the
//	hishel.chunks   body's completion marker), chunks {files_id, n, data, crc}
//
// # No multi-document transactions
//
// Every change that others may see is one conditional update of the pair's
// document, which MongoDB applies atomically; nothing needs a transaction:
//
//   - A body's chunks are inserted before the pair document says the body is
//     done; the pair turns complete (state 1, with its key hash, which makes
//     it visible to GetPairs) in an update that matches only an incomplete
//     pair of the same incarnation (nonce) whose both bodies are done: the
//     last body to end completes it, exactly once.
//   - Before each batch of chunks, the writer raises the pair's chunk count
//     in an update that matches only the incomplete pair: once the pair is
//     removed, abandoned or aborted, no further chunk is written, and the
//     counts name every chunk that may exist, so that they can be deleted.
//   - An aborted, abandoned or purged pair becomes a tombstone (state 3,
//     invisible and uncounted) whose chunks are deleted at once; the
//     tombstone stays until a sweep an IncompleteAge later deletes its
//     chunks again (a write already under way may have landed) and then it.
//   - UpdatePairFunc reads the pair, calls fn without holding anything, and
//     writes the result with an update that matches only the version it
//     read (optimistic concurrency); on a mismatch it reads again.
//   - Access times and TTL refreshes are $max updates, which commute.
package template

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/hishel-go/hishel/backend"
	"github.com/hishel-go/hishel/model"
)

// MongoOptions configure a Mongo storage. A nil *MongoOptions, and every
// zero field, means the default.
type MongoOptions struct {
	// URI is the MongoDB connection string (mongodb:// or mongodb+srv://),
	// used when Client is nil. Default mongodb://127.0.0.1:27017/.
	URI string
	// Client is a connected client to use instead of URI; the storage
	// does not disconnect it.
	Client *mongo.Client
	// Database is the database. Default: the URI's path, else "hishel".
	Database string
	// Collection prefixes the collections' names. Default "hishel".
	Collection string
	// GridFS stores bodies as GridFS files in the bucket named
	// Collection (Collection.files, Collection.chunks), readable by any
	// GridFS tool, instead of in Collection_chunks. Either store reads
	// pairs written either way.
	GridFS bool

	// DefaultTTL, RefreshTTLOnAccess, SweepInterval, DeletedRetention,
	// IncompleteAge, MaxBytes, MaxPairs, MaxVariants, ChunkSize and Now
	// mean what backend.Settings says. Chunks are ChunkSize, at least
	// MinMongoChunk and at most MaxMongoChunk.
	DefaultTTL         time.Duration
	RefreshTTLOnAccess model.Refresh
	SweepInterval      time.Duration
	DeletedRetention   time.Duration
	IncompleteAge      time.Duration
	MaxBytes           int64
	MaxPairs           int
	MaxVariants        int
	ChunkSize          int
	Now                func() time.Time
}

// Bounds of a Mongo storage's chunk size. Each chunk is a document (a
// GridFS chunk, with GridFS), and a document costs more than its bytes (an
// _id index entry, a lookup per read: FerretDB v1 takes milliseconds for
// one), so chunks are at least MinMongoChunk, GridFS's default chunk size:
// a smaller ChunkSize sets only how small bodies start. A chunk and its
// document's other fields fit MongoDB's 16 MiB document limit.
const (
	MinMongoChunk = 255 << 10
	MaxMongoChunk = 15 << 20
)

func (o *MongoOptions) settings() backend.Settings {
	return backend.Settings{DefaultTTL: o.DefaultTTL, RefreshTTLOnAccess: o.RefreshTTLOnAccess,
		SweepInterval: o.SweepInterval, DeletedRetention: o.DeletedRetention, IncompleteAge: o.IncompleteAge,
		MaxBytes: o.MaxBytes, MaxPairs: o.MaxPairs, MaxVariants: o.MaxVariants, ChunkSize: o.ChunkSize, Now: o.Now}
}

// SetSettings sets the fields that backend.Settings names.
func (o *MongoOptions) SetSettings(s backend.Settings) {
	o.DefaultTTL, o.RefreshTTLOnAccess, o.SweepInterval = s.DefaultTTL, s.RefreshTTLOnAccess, s.SweepInterval
	o.DeletedRetention, o.IncompleteAge, o.MaxBytes = s.DeletedRetention, s.IncompleteAge, s.MaxBytes
	o.MaxPairs, o.MaxVariants, o.ChunkSize, o.Now = s.MaxPairs, s.MaxVariants, s.ChunkSize, s.Now
}

// Mongo stores pairs in MongoDB (or a server of its wire protocol, such as
// FerretDB), so that processes on many machines share one cache. See the
// package documentation for the layout and how it stays consistent without
// multi-document transactions.
//
// Every change is acknowledged by the server before the call returns (the
// client's write concern; majority on a replica set by default). A process
// killed at any point leaves at worst an incomplete pair, which a sweep
// removes with its chunks. Chunks and records carry CRC-32C checksums: a
// mismatch or a missing chunk is model.ErrCorrupt, and the pair is
// reclaimed by the next sweep of this process.
//
// Expiry does not use TTL indexes: a sweep soft-deletes expired pairs and
// purges them after DeletedRetention, with their chunks, through indexed
// range queries (MongoDB's TTL monitor would delete pair documents without
// their chunks and without the soft-delete period; FerretDB has none).
//
// A Mongo is safe for concurrent use. It owns one goroutine, from
// OpenMongo until Close, that runs the background sweep.
//
//hishel:backend
//hishel:scheme mongodb
type Mongo struct {
	pol    backend.Policy
	client *mongo.Client
	own    bool // the store connected client and disconnects it
	gridfs bool
	pairs  *mongo.Collection
	chunks *mongo.Collection // this layout's chunk collection
	lay    [2]layout         // by body layout: documents, GridFS

	closed atomic.Bool
	badMu  sync.Mutex
	bad    map[model.PairID]struct{} // pairs reads found corrupt
	// evicted counts the live pairs this Mongo evicted since it was
	// opened (model.Stats.Evicted).
	evicted atomic.Int64

	stop      chan struct{}
	maintDone chan struct{}
	closeOnce sync.Once
}

// OpenMongo connects to the server (unless opts.Client is set), makes the
// indexes the store's queries use if they are missing, and starts the
// background sweep.
func OpenMongo(ctx context.Context, opts *MongoOptions) (*Mongo, error) {
	if ctx == nil {
		return nil, fmt.Errorf("hishel: open mongodb: nil context: %w", model.ErrInvalid)
	}
	var o MongoOptions
	if opts != nil {
		o = *opts
	}
	pol, err := backend.NewPolicy(o.settings())
	if err != nil {
		return nil, err
	}
	if pol.ChunkSize > MaxMongoChunk {
		return nil, fmt.Errorf("hishel: ChunkSize %d over %d: %w", pol.ChunkSize, MaxMongoChunk, model.ErrInvalid)
	}
	pol.ChunkSize = max(pol.ChunkSize, MinMongoChunk)
	if o.Collection == "" {
		o.Collection = "hishel"
	}
	if strings.ContainsAny(o.Collection, "$\x00") {
		return nil, fmt.Errorf("hishel: mongodb collection %q: %w", o.Collection, model.ErrInvalid)
	}
	m := &Mongo{pol: pol, client: o.Client, gridfs: o.GridFS, bad: make(map[model.PairID]struct{}),
		stop: make(chan struct{}), maintDone: make(chan struct{})}
	if m.client == nil {
		if o.URI == "" {
			o.URI = "mongodb://127.0.0.1:27017/"
		}
		copts := options.Client().ApplyURI(o.URI)
		if err := copts.Validate(); err != nil {
			return nil, fmt.Errorf("hishel: mongodb URI: %v: %w", err, model.ErrInvalid)
		}
		if o.Database == "" {
			o.Database = uriDatabase(o.URI)
		}
		m.client, err = mongo.Connect(copts)
		if err != nil {
			return nil, fmt.Errorf("hishel: connect to mongodb: %w", err)
		}
		m.own = true
	}
	if o.Database == "" {
		o.Database = "hishel"
	}
	if err := m.client.Ping(ctx, nil); err != nil {
		m.disconnect()
		return nil, fmt.Errorf("hishel: mongodb does not answer: %w", err)
	}
	db := m.client.Database(o.Database)
	m.pairs = db.Collection(o.Collection + "_pairs")
	m.lay[layoutDocs] = layout{chunks: db.Collection(o.Collection + "_chunks")}
	m.lay[layoutGridFS] = layout{gridfs: true, chunks: db.Collection(o.Collection + ".chunks"), files: db.Collection(o.Collection + ".files")}
	m.chunks = m.lay[m.layout()].chunks
	if err := m.makeIndexes(ctx); err != nil {
		m.disconnect()
		return nil, err
	}
	go backend.Maintain(m.stop, m.maintDone, 0, nil, pol.SweepInterval, func() {
		// Not cut short by Close, which waits: a request dropped half-way
		// is a server's trouble (dynalite dies of it).
		ctx, cancel := context.WithTimeout(context.Background(), sweepTimeout)
		defer cancel()
		_, _ = m.Cleanup(ctx)
	})
	return m, nil
}

// OpenMongoURL opens the Mongo that a store URL names (see cache.Open): a
// MongoDB connection string, mongodb://[user:password@]host[:port][,...]/[database][?options],
// whose hishel parameters set MongoOptions (the shared ones, ttl, refresh,
// sweep, retention, incomplete-age, max-bytes, max-pairs, max-variants and
// chunk-size, and collection=NAME and gridfs=BOOL) and whose other
// parameters go to the driver (replicaSet, authSource, tls, w, ...), as in
// mongodb://db1:27017/cache?replicaSet=rs0&gridfs=true&ttl=1h.
// A bad URL fails with model.ErrInvalid.
func OpenMongoURL(ctx context.Context, u *url.URL) (*Mongo, error) {
	var o MongoOptions
	q := backend.NewQuery(u)
	s := o.settings()
	q.Settings(&s)
	q.String("collection", &o.Collection)
	q.Bool("gridfs", &o.GridFS)
	rest, err := q.Rest()
	if err != nil {
		return nil, err
	}
	o.SetSettings(s)
	driver := *u
	driver.RawQuery = rest.Encode()
	o.URI = driver.String()
	return OpenMongo(ctx, &o)
}

// uriDatabase returns the database a connection string names, or "".
func uriDatabase(uri string) string {
	u, err := url.Parse(uri)
	if err != nil {
		return ""
	}
	return strings.TrimPrefix(u.Path, "/")
}

func (m *Mongo) layout() int {
	if m.gridfs {
		return layoutGridFS
	}
	return layoutDocs
}

func (m *Mongo) disconnect() {
	if m.own {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = m.client.Disconnect(ctx)
	}
}

// makeIndexes creates the indexes the queries use, those that are missing
// (FerretDB v1 drops the connection when asked to create one that exists).
func (m *Mongo) makeIndexes(ctx context.Context) error {
	idx := func(keys ...string) mongo.IndexModel {
		var d bson.D
		for _, k := range keys {
			d = append(d, bson.E{Key: k, Value: 1})
		}
		return mongo.IndexModel{Keys: d}
	}
	name := func(m mongo.IndexModel) string {
		var parts []string
		for _, e := range m.Keys.(bson.D) {
			parts = append(parts, e.Key+"_1")
		}
		return strings.Join(parts, "_") // the server's default name
	}
	chunkIdx := idx("files_id", "n")
	chunkIdx.Options = options.Index().SetUnique(true)
	g := m.lay[layoutGridFS]
	for _, c := range []struct {
		coll *mongo.Collection
		idx  []mongo.IndexModel
	}{
		{m.pairs, []mongo.IndexModel{idx(fKey, fState), idx(fState, fExpires), idx(fState, fDeleted), idx(fState, fCreated), idx(fState, fAccess)}},
		{g.files, []mongo.IndexModel{idx("filename", "uploadDate")}},
		{g.chunks, []mongo.IndexModel{chunkIdx}},
	} {
		specs, err := c.coll.Indexes().ListSpecifications(ctx)
		if err != nil {
			return fmt.Errorf("hishel: mongodb indexes: %w", err)
		}
		var missing []mongo.IndexModel
		for _, want := range c.idx {
			if !slices.ContainsFunc(specs, func(s mongo.IndexSpecification) bool { return s.Name == name(want) }) {
				missing = append(missing, want)
			}
		}
		if len(missing) == 0 {
			continue
		}
		if _, err := c.coll.Indexes().CreateMany(ctx, missing); err != nil {
			return fmt.Errorf("hishel: mongodb indexes: %w", err)
		}
	}
	return nil
}

// check reports whether a call may go on: its context is usable and not
// done, and the store is open.
func (m *Mongo) check(ctx context.Context) error {
	if ctx == nil {
		return fmt.Errorf("hishel: nil context: %w", model.ErrInvalid)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if m.closed.Load() {
		return model.ErrClosed
	}
	return nil
}

// wrap wraps a driver error, keeping the context's error visible.
func (m *Mongo) wrap(ctx context.Context, what string, err error) error {
	if err == nil {
		return nil
	}
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("hishel: mongodb: %s: %w: %w", what, cerr, err)
	}
	if m.closed.Load() && !errors.Is(err, model.ErrClosed) {
		return fmt.Errorf("hishel: mongodb: %s: %w: %w", what, model.ErrClosed, err)
	}
	return fmt.Errorf("hishel: mongodb: %s: %w", what, err)
}

func (m *Mongo) now() int64 { return m.pol.Now().UnixNano() }

func (m *Mongo) noteBad(id model.PairID) {
	m.badMu.Lock()
	m.bad[id] = struct{}{}
	m.badMu.Unlock()
}

// idString is a pair's document _id: its ID in hex (string _ids are the
// ones FerretDB looks up without a scan).
func idString(id model.PairID) string { return hex.EncodeToString(id[:]) }

func parseID(s string) (model.PairID, bool) {
	var id model.PairID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(id) {
		return id, false
	}
	copy(id[:], b)
	return id, true
}

// keyHash is what pair documents hold of a cache key: its SHA-256 in hex
// (keys are any bytes of any length; the record holds the key itself).
func keyHash(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])
}

// sweepTimeout bounds a background sweep.
const sweepTimeout = 5 * time.Minute

// Close stops the sweep goroutine and, if the store connected the client,
// disconnects it. Bodies still being read or stored fail with
// model.ErrClosed. Close is idempotent.
func (m *Mongo) Close() error {
	m.closeOnce.Do(func() {
		close(m.stop)
		<-m.maintDone
		m.closed.Store(true)
		m.disconnect()
	})
	return nil
}
