// Package template holds hishel-go's DynamoDB backend, written once as
// ordinary, tested Go; ../gen renders it into package dynamodb (blocking
// calls) and package dynamodbasync (futures and channels).
//
// # Layout
//
// One table (its name is the URL's host), keys pk and sk (strings):
//
//	pk "p#<id>", sk "h"                      the pair's head: its record
//	                                         (a bolt.Record, CRC-32C checked)
//	                                         and the attributes conditions use
//	pk "p#<id>", sk "c#<nonce>#<q|p>#<seq>"  a body chunk (data, CRC-32C),
//	                                         under the pair's partition
//	pk "k#<sha256(key)>", sk "<id>"          the cache key's index entry
//
// and two sparse global secondary indexes over the heads: "state-time"
// (s, t: the time the state's sweep looks at) and "state-access" (s, a).
//
// # No transactions
//
// dynalite has no TransactWriteItems, and nothing here needs one: every
// change others may see is one conditional write of the pair's head.
//
//   - A body's chunks are written (BatchWriteItem) after an update that
//     matches only the incomplete head of that incarnation; at its end the
//     body is marked done, and the pair turns complete (s = 1) in an update
//     whose condition is that both bodies are done and the pair is still
//     incomplete: the last body to end completes it, exactly once. The key's
//     index entry is written at AddResponse, before; GetPairs reads the
//     entries (a strongly consistent Query of the key's partition) and then
//     the heads (consistent BatchGetItem), and serves only complete ones.
//   - An aborted, abandoned or purged pair becomes a tombstone (s = 3) and
//     its chunks (a Query of its partition) are deleted at once; a sweep an
//     IncompleteAge later deletes them again and then the tombstone.
//   - UpdatePairFunc writes with the condition that the head's version is
//     the one fn saw (optimistic concurrency), and retries otherwise.
//
// # Expiry
//
// The sweep finds expired, deleted, abandoned and evictable pairs by Query
// of the sparse indexes (eventually consistent, which is harmless: every
// change it makes is conditional on the head). DynamoDB's own TTL
// (UpdateTimeToLive, which dynalite lacks) is not used: it deletes items one
// by one within days, without the soft-delete period and without the
// pair's chunks; see DynamoDBOptions.
package template

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/hishel-go/hishel/backend"
	"github.com/hishel-go/hishel/model"
)

// DynamoDBOptions configure a DynamoDB storage. A nil *DynamoDBOptions, and
// every zero field, means the default.
type DynamoDBOptions struct {
	// Table is the table's name (required).
	Table string
	// Client is the client to use; default: one made from the AWS
	// configuration of the environment (config.LoadDefaultConfig), with
	// Endpoint, Region and the static credentials below if they are set.
	Client *dynamodb.Client
	// Endpoint is the service's URL, for a local server such as dynalite
	// (http://127.0.0.1:4567). Default: AWS's endpoint for the region.
	Endpoint string
	// Region is the AWS region. Default: the environment's.
	Region string
	// AccessKey and SecretKey are static credentials. Default: the
	// environment's.
	AccessKey, SecretKey string
	// NoCreate leaves a missing table missing (OpenDynamoDB fails) instead
	// of creating it with its indexes, on demand billing.
	NoCreate bool

	// DefaultTTL, RefreshTTLOnAccess, SweepInterval, DeletedRetention,
	// IncompleteAge, MaxBytes, MaxPairs, MaxVariants, ChunkSize and Now
	// mean what backend.Settings says. Chunks are ChunkSize, at least
	// MinDynamoDBChunk and at most MaxDynamoDBChunk.
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

// Bounds of a DynamoDB storage's chunk size: an item is at most 400 KB, and
// each costs a write unit per KB and more than its bytes, so chunks are
// at least 64 KiB (a smaller ChunkSize sets only how small bodies start).
const (
	MinDynamoDBChunk = 64 << 10
	MaxDynamoDBChunk = 384 << 10
)

// maxHead is the largest encoded record a head item takes.
const maxHead = 350 << 10

func (o *DynamoDBOptions) settings() backend.Settings {
	return backend.Settings{DefaultTTL: o.DefaultTTL, RefreshTTLOnAccess: o.RefreshTTLOnAccess,
		SweepInterval: o.SweepInterval, DeletedRetention: o.DeletedRetention, IncompleteAge: o.IncompleteAge,
		MaxBytes: o.MaxBytes, MaxPairs: o.MaxPairs, MaxVariants: o.MaxVariants, ChunkSize: o.ChunkSize, Now: o.Now}
}

// SetSettings sets the fields that backend.Settings names.
func (o *DynamoDBOptions) SetSettings(s backend.Settings) {
	o.DefaultTTL, o.RefreshTTLOnAccess, o.SweepInterval = s.DefaultTTL, s.RefreshTTLOnAccess, s.SweepInterval
	o.DeletedRetention, o.IncompleteAge, o.MaxBytes = s.DeletedRetention, s.IncompleteAge, s.MaxBytes
	o.MaxPairs, o.MaxVariants, o.ChunkSize, o.Now = s.MaxPairs, s.MaxVariants, s.ChunkSize, s.Now
}

// DynamoDB stores pairs in a DynamoDB table (or dynalite), so that
// processes on many machines share one cache. See the package
// documentation for the layout and how it stays consistent without
// transactions.
//
// Every write is acknowledged before its call returns; reads of heads,
// keys and chunks are strongly consistent. A process killed at any point
// leaves at worst an incomplete pair, which a sweep removes with its
// chunks. Chunks and records carry CRC-32C checksums: a mismatch or a
// missing chunk is model.ErrCorrupt, and the pair is reclaimed by the next
// sweep of this process.
//
// Stats and Pairs scan the table (its chunks too), and with MaxBytes set
// every pair's completion does: they suit inspection and small tables.
//
// A DynamoDB is safe for concurrent use. It owns one goroutine, from
// OpenDynamoDB until Close, that runs the background sweep.
//
//hishel:backend
//hishel:scheme dynamodb
type DynamoDB struct {
	pol   backend.Policy
	db    *dynamodb.Client
	table *string

	closed atomic.Bool
	badMu  sync.Mutex
	bad    map[model.PairID]struct{}
	// evicted counts the live pairs this DynamoDB evicted since it was
	// opened (model.Stats.Evicted).
	evicted atomic.Int64

	stop      chan struct{}
	maintDone chan struct{}
	closeOnce sync.Once
}

// Index names.
const (
	idxTime   = "state-time"
	idxAccess = "state-access"
)

// OpenDynamoDB opens the table (creating it and its indexes if it is
// missing, unless NoCreate) and starts the background sweep.
func OpenDynamoDB(ctx context.Context, opts *DynamoDBOptions) (*DynamoDB, error) {
	if ctx == nil {
		return nil, fmt.Errorf("hishel: open dynamodb: nil context: %w", model.ErrInvalid)
	}
	var o DynamoDBOptions
	if opts != nil {
		o = *opts
	}
	if o.Table == "" {
		return nil, fmt.Errorf("hishel: open dynamodb: no table: %w", model.ErrInvalid)
	}
	pol, err := backend.NewPolicy(o.settings())
	if err != nil {
		return nil, err
	}
	if pol.ChunkSize > MaxDynamoDBChunk {
		return nil, fmt.Errorf("hishel: ChunkSize %d over %d: %w", pol.ChunkSize, MaxDynamoDBChunk, model.ErrInvalid)
	}
	pol.ChunkSize = max(pol.ChunkSize, MinDynamoDBChunk)
	d := &DynamoDB{pol: pol, db: o.Client, table: aws.String(o.Table), bad: make(map[model.PairID]struct{}),
		stop: make(chan struct{}), maintDone: make(chan struct{})}
	if d.db == nil {
		var lopts []func(*config.LoadOptions) error
		if o.Region != "" {
			lopts = append(lopts, config.WithRegion(o.Region))
		}
		if o.AccessKey != "" {
			lopts = append(lopts, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(o.AccessKey, o.SecretKey, "")))
		}
		cfg, err := config.LoadDefaultConfig(ctx, lopts...)
		if err != nil {
			return nil, fmt.Errorf("hishel: dynamodb configuration: %w", err)
		}
		d.db = dynamodb.NewFromConfig(cfg, func(c *dynamodb.Options) {
			if o.Endpoint != "" {
				c.BaseEndpoint = aws.String(o.Endpoint)
			}
		})
	}
	if err := d.ensureTable(ctx, !o.NoCreate); err != nil {
		return nil, err
	}
	go backend.Maintain(d.stop, d.maintDone, 0, nil, pol.SweepInterval, func() {
		// Not cut short by Close, which waits: a request dropped half-way
		// is a server's trouble (dynalite dies of it).
		ctx, cancel := context.WithTimeout(context.Background(), sweepTimeout)
		defer cancel()
		_, _ = d.Cleanup(ctx)
	})
	return d, nil
}

// OpenDynamoDBURL opens the DynamoDB that a store URL names (see
// cache.Open): dynamodb://TABLE with the shared query parameters (ttl,
// refresh, sweep, retention, incomplete-age, max-bytes, max-pairs,
// max-variants, chunk-size) and endpoint=URL, region=NAME and
// create=BOOL, as in
// dynamodb://http-cache?region=eu-west-1&ttl=1h or, for dynalite,
// dynamodb://cache?endpoint=http://127.0.0.1:4567&region=us-east-1.
// Static credentials may be given as the URL's user and password
// (dynamodb://KEY:SECRET@table); otherwise the AWS environment's are
// used. A bad URL fails with model.ErrInvalid.
func OpenDynamoDBURL(ctx context.Context, u *url.URL) (*DynamoDB, error) {
	o := DynamoDBOptions{Table: u.Host}
	if u.Host == "" || (u.Path != "" && u.Path != "/") || u.Opaque != "" {
		return nil, fmt.Errorf("hishel: store URL %s: write dynamodb://TABLE[?endpoint=URL&region=NAME]: %w", backend.Redacted(u), model.ErrInvalid)
	}
	if u.User != nil {
		o.AccessKey = u.User.Username()
		o.SecretKey, _ = u.User.Password()
	}
	q := backend.NewQuery(u)
	s := o.settings()
	q.Settings(&s)
	create := true
	q.String("endpoint", &o.Endpoint)
	q.String("region", &o.Region)
	q.Bool("create", &create)
	if err := q.Done(); err != nil {
		return nil, err
	}
	if o.Endpoint != "" {
		if e, err := url.Parse(o.Endpoint); err != nil || (e.Scheme != "http" && e.Scheme != "https") || e.Host == "" {
			return nil, fmt.Errorf("hishel: store URL %s: endpoint %q: want http://host:port or https://host: %w", backend.Redacted(u), o.Endpoint, model.ErrInvalid)
		}
	}
	o.NoCreate = !create
	o.SetSettings(s)
	return OpenDynamoDB(ctx, &o)
}

// ensureTable checks that the table exists, and creates it if it does not
// and create is set.
func (d *DynamoDB) ensureTable(ctx context.Context, create bool) error {
	_, err := d.db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: d.table})
	var nf *types.ResourceNotFoundException
	switch {
	case err == nil:
		return nil
	case !errors.As(err, &nf):
		return fmt.Errorf("hishel: dynamodb table %s: %w", *d.table, err)
	case !create:
		return fmt.Errorf("hishel: dynamodb table %s does not exist: %w", *d.table, model.ErrNotFound)
	}
	attr := func(name string, t types.ScalarAttributeType) types.AttributeDefinition {
		return types.AttributeDefinition{AttributeName: aws.String(name), AttributeType: t}
	}
	key := func(hash, rng string) []types.KeySchemaElement {
		return []types.KeySchemaElement{{AttributeName: aws.String(hash), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String(rng), KeyType: types.KeyTypeRange}}
	}
	proj := &types.Projection{ProjectionType: types.ProjectionTypeInclude,
		NonKeyAttributes: []string{aNonce, aSize, aReqN, aRespN, aAccess, aTime}}
	_, err = d.db.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            d.table,
		BillingMode:          types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{attr(aPK, types.ScalarAttributeTypeS), attr(aSK, types.ScalarAttributeTypeS), attr(aState, types.ScalarAttributeTypeN), attr(aTime, types.ScalarAttributeTypeN), attr(aAccess, types.ScalarAttributeTypeN)},
		KeySchema:            key(aPK, aSK),
		GlobalSecondaryIndexes: []types.GlobalSecondaryIndex{
			{IndexName: aws.String(idxTime), KeySchema: key(aState, aTime), Projection: proj},
			{IndexName: aws.String(idxAccess), KeySchema: key(aState, aAccess), Projection: proj},
		},
	})
	var inUse *types.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) { // another process made it first
		return fmt.Errorf("hishel: create dynamodb table %s: %w", *d.table, err)
	}
	w := dynamodb.NewTableExistsWaiter(d.db, func(o *dynamodb.TableExistsWaiterOptions) {
		o.MinDelay = 100 * time.Millisecond
		o.MaxDelay = time.Second
	})
	if err := w.Wait(ctx, &dynamodb.DescribeTableInput{TableName: d.table}, 2*time.Minute); err != nil {
		return fmt.Errorf("hishel: create dynamodb table %s: %w", *d.table, err)
	}
	return nil
}

func (d *DynamoDB) check(ctx context.Context) error {
	if ctx == nil {
		return fmt.Errorf("hishel: nil context: %w", model.ErrInvalid)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if d.closed.Load() {
		return model.ErrClosed
	}
	return nil
}

func (d *DynamoDB) wrap(ctx context.Context, what string, err error) error {
	if err == nil {
		return nil
	}
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("hishel: dynamodb: %s: %w: %w", what, cerr, err)
	}
	if d.closed.Load() && !errors.Is(err, model.ErrClosed) {
		return fmt.Errorf("hishel: dynamodb: %s: %w: %w", what, model.ErrClosed, err)
	}
	return fmt.Errorf("hishel: dynamodb: %s: %w", what, err)
}

// failedCondition reports whether err is a conditional write's failed
// condition.
func failedCondition(err error) bool {
	var cf *types.ConditionalCheckFailedException
	return errors.As(err, &cf)
}

func (d *DynamoDB) now() int64 { return d.pol.Now().UnixNano() }

func (d *DynamoDB) noteBad(id model.PairID) {
	d.badMu.Lock()
	d.bad[id] = struct{}{}
	d.badMu.Unlock()
}

func pairPK(id model.PairID) string { return "p#" + hex.EncodeToString(id[:]) }

func keyPK(key string) string {
	h := sha256.Sum256([]byte(key))
	return "k#" + hex.EncodeToString(h[:])
}

func parsePairPK(pk string) (model.PairID, bool) {
	var id model.PairID
	s, ok := strings.CutPrefix(pk, "p#")
	b, err := hex.DecodeString(s)
	if !ok || err != nil || len(b) != len(id) {
		return id, false
	}
	copy(id[:], b)
	return id, true
}

// sweepTimeout bounds a background sweep.
const sweepTimeout = 5 * time.Minute

// Close stops the sweep goroutine. Bodies still being read or stored fail
// with model.ErrClosed. Close is idempotent.
func (d *DynamoDB) Close() error {
	d.closeOnce.Do(func() {
		close(d.stop)
		<-d.maintDone
		d.closed.Store(true)
	})
	return nil
}
