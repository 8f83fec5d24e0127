// Package template is hishel-go's Redis backend, written once and rendered
// by gen into package redis (blocking calls) and package redisasync
// (futures). See the Redis type for what it stores where, and package
// github.com/hishel-go/hishel/template for the pair rules every backend
// follows.
package template

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/hishel-go/hishel/backend"
	"github.com/hishel-go/hishel/model"
)

// Defaults of the Redis options of its own.
const (
	// DefaultPrefix starts every key the backend writes.
	DefaultPrefix = "hishel:"
	// DefaultTimeout bounds every command sent to Redis.
	DefaultTimeout = time.Second
	// DefaultRetryAfter is how long calls fail at once after Redis was
	// found unavailable, before one is let through to try it again.
	DefaultRetryAfter = time.Second
	// DefaultExpiryGrace is how long after the sweep would reclaim a pair
	// Redis reclaims its keys by itself.
	DefaultExpiryGrace = time.Hour
)

// RedisOptions configure a Redis storage. A nil *RedisOptions, and every
// zero field, means the default.
type RedisOptions struct {
	// Addr is the server's host:port. Default localhost:6379. Ignored
	// when Client is set.
	Addr string
	// Username and Password authenticate (Redis 6 ACL user, or the
	// requirepass password alone). Ignored when Client is set.
	Username, Password string
	// DB is the logical database. Ignored when Client is set.
	DB int
	// Client, if not nil, is the connection to use instead of one made
	// from Addr (for TLS, Sentinel or options of your own). The storage
	// does not close it. Redis Cluster is not supported: a pair's keys
	// live in several hash slots.
	Client *goredis.Client
	// Prefix starts every key the storage writes: processes that share a
	// cache use the same prefix, and caches that must not see each other
	// use different ones. Default DefaultPrefix.
	Prefix string
	// Timeout bounds every command: a server that does not answer in time
	// is unavailable. Default DefaultTimeout.
	Timeout time.Duration
	// RetryAfter is how long the storage fails calls at once with
	// model.ErrUnavailable after a command found Redis unreachable or too
	// slow; then one call goes through to try it again. Default
	// DefaultRetryAfter.
	RetryAfter time.Duration
	// ExpiryGrace is added to the Redis TTL of every key the storage
	// writes beyond the time its own sweep would reclaim the pair, so that
	// Redis reclaims what no sweep did (every process gone, a crash) and
	// the sweep does the rest. Default DefaultExpiryGrace.
	ExpiryGrace time.Duration
	// ReplaceVariants keeps one complete pair per variant of a key: when a
	// pair completes, of the pairs of its key that are its variant (the
	// same request header values for the fields its response's Vary names;
	// every pair of a key without Vary is; with Vary: * none is) only the
	// newest, by completion, stays. Off by default (the storage keeps every pair it is
	// given). A fleet of proxies on one Redis turns it on (hishel proxy
	// does, for redis:// stores): their Transports collapse concurrent
	// misses within a process, not across processes, and each would
	// otherwise keep its copy.
	ReplaceVariants bool

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

func (o *RedisOptions) settings() backend.Settings {
	return backend.Settings{DefaultTTL: o.DefaultTTL, RefreshTTLOnAccess: o.RefreshTTLOnAccess,
		SweepInterval: o.SweepInterval, DeletedRetention: o.DeletedRetention, IncompleteAge: o.IncompleteAge,
		MaxBytes: o.MaxBytes, MaxPairs: o.MaxPairs, MaxVariants: o.MaxVariants, ChunkSize: o.ChunkSize, Now: o.Now}
}

// SetSettings sets the fields that backend.Settings names.
func (o *RedisOptions) SetSettings(s backend.Settings) {
	o.DefaultTTL, o.RefreshTTLOnAccess, o.SweepInterval = s.DefaultTTL, s.RefreshTTLOnAccess, s.SweepInterval
	o.DeletedRetention, o.IncompleteAge, o.MaxBytes = s.DeletedRetention, s.IncompleteAge, s.MaxBytes
	o.MaxPairs, o.MaxVariants, o.ChunkSize, o.Now = s.MaxPairs, s.MaxVariants, s.ChunkSize, s.Now
}

// Redis stores pairs in a Redis server (7.0 or later), where every
// process and machine that opens the same server and prefix shares them:
// a fleet of proxies or services on one cache.
//
// # Keys
//
// Under the prefix P, a pair with ID H (32 hex digits) is the hash P r:H
// (its record: heads and metadata with a CRC-32C, access times with
// theirs, a revision, its state), and each body chunk of at most
// ChunkSize bytes is a string P c:H:NONCE:KIND:SEQ (the bytes, then the
// CRC-32C of the chunk's place and bytes). A body is never one value: a
// 1 GiB body is stored and read back a chunk batch at a time. The set P
// k:SHA256 holds the IDs of the complete pairs under a cache key; the
// sorted sets P i, P x, P d and P a order the incomplete, expiring,
// soft-deleted and complete pairs by time for the sweep and for LRU
// eviction; P b and P n count stored bytes.
//
// # Rules
//
// A pair becomes visible only when both of its bodies are stored: the
// last body's end and the pair's completion are one Lua script. Every
// change of a pair is such a script, applied only if the pair's revision
// is still the one the change was computed from (compare-and-set), so
// UpdatePairFunc is atomic across processes and its function runs holding
// nothing; it may call the storage. An aborted body is deleted at once.
//
// # Expiry
//
// Redis itself reclaims what the sweep would: every key carries a Redis
// TTL, set in the same command or script that writes it (a crash never
// leaves a key without one), to the time the sweep would reclaim the pair
// (incomplete: its IncompleteAge; expiring: its expiry plus
// DeletedRetention; soft-deleted: DeletedRetention) plus ExpiryGrace.
// Only complete pairs that never expire are kept without a TTL. The sweep
// soft-deletes expired pairs, removes what is due, and evicts beyond the
// budgets; entries of pairs that Redis reclaimed first are dropped as it
// meets them.
//
// # Budgets
//
// MaxBytes is the storage's own accounting (every byte of a pair: its key,
// method, URL, header fields and bodies, counted in P n), not Redis's
// maxmemory: beyond it the soft-deleted pairs, then the
// least recently used ones, are removed. If Redis's own maxmemory policy
// evicts keys too (use volatile-lru or volatile-ttl: they evict only keys
// with a TTL, never the indexes), a pair that lost its record is gone,
// and one that lost a chunk fails to read with model.ErrCorrupt (never a
// short body) and is removed by the next sweep.
//
// # Failure
//
// Every command is bounded by Timeout. When Redis is down or too slow, a
// call fails with an error wrapping model.ErrUnavailable, and the calls
// after it fail at once for RetryAfter; then one call tries Redis again,
// and the storage works as before once it answers. hishel.Transport
// answers from the origin meanwhile.
//
// A Redis is safe for concurrent use. It owns one goroutine, from
// OpenRedis until Close, that runs the background sweep.
//
//hishel:backend
//hishel:scheme redis
type Redis struct {
	pol        backend.Policy
	c          *goredis.Client
	ownClient  bool
	addr       string // for messages
	k          keys
	timeout    time.Duration
	retryAfter time.Duration
	grace      time.Duration
	replace    bool

	closed atomic.Bool
	br     breaker

	// local holds the latest view of pairs this process created and has
	// not completed yet, so that AddResponse and a body's end need not
	// read what this process wrote.
	mu    sync.Mutex
	local map[model.PairID]*view
	// evictMu keeps this process's evictions from racing each other (and
	// so from evicting more than the budgets ask); processes may still.
	evictMu sync.Mutex
	// evicted counts the live pairs this Redis evicted since it was
	// opened (model.Stats.Evicted); the pairs ReplaceVariants replaces
	// are not evictions.
	evicted atomic.Int64

	stop      chan struct{}
	maintDone chan struct{}
	closeOnce sync.Once
}

// OpenRedis connects to Redis (opts.Client, or opts.Addr), checks that it
// answers, and starts the sweep goroutine. A server that does not answer
// within Timeout fails with model.ErrUnavailable; bad options with
// model.ErrInvalid.
func OpenRedis(ctx context.Context, opts *RedisOptions) (*Redis, error) {
	if ctx == nil {
		return nil, fmt.Errorf("hishel: open redis: nil context: %w", model.ErrInvalid)
	}
	var o RedisOptions
	if opts != nil {
		o = *opts
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	pol, err := backend.NewPolicy(o.settings())
	if err != nil {
		return nil, err
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.Timeout < 0 || o.RetryAfter < 0 || o.ExpiryGrace < 0 {
		return nil, fmt.Errorf("hishel: open redis: negative Timeout, RetryAfter or ExpiryGrace: %w", model.ErrInvalid)
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.RetryAfter == 0 {
		o.RetryAfter = DefaultRetryAfter
	}
	if o.ExpiryGrace == 0 {
		o.ExpiryGrace = DefaultExpiryGrace
	}
	s := &Redis{
		pol: pol, c: o.Client, k: keys{p: o.Prefix}, timeout: o.Timeout, retryAfter: o.RetryAfter, grace: o.ExpiryGrace,
		replace: o.ReplaceVariants, local: map[model.PairID]*view{}, stop: make(chan struct{}), maintDone: make(chan struct{}),
	}
	if s.c == nil {
		addr := o.Addr
		if addr == "" {
			addr = "localhost:6379"
		}
		s.c = goredis.NewClient(&goredis.Options{
			Addr: addr, Username: o.Username, Password: o.Password, DB: o.DB,
			DialTimeout: o.Timeout, ReadTimeout: o.Timeout, WriteTimeout: o.Timeout,
			ContextTimeoutEnabled: true,
			// A failed command is not sent again: the scripts are not all
			// idempotent, and the breaker waits for the server instead.
			MaxRetries:    -1,
			DialerRetries: 1,
			PoolSize:      64,
			PoolTimeout:   o.Timeout,
			// Redis 7.0 knows no CLIENT MAINT_NOTIFICATIONS.
			MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
			DisableIdentity:          true,
		})
		s.ownClient = true
	}
	s.addr = s.c.Options().Addr
	err = s.call(ctx, func(ctx context.Context) error {
		if err := s.c.Ping(ctx).Err(); err != nil {
			return err
		}
		// Load the scripts, so that pipelines of EVALSHA find them.
		for _, sc := range []*goredis.Script{applyScript, getScript} {
			if err := sc.Load(ctx, s.c).Err(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		if s.ownClient {
			s.c.Close()
		}
		return nil, fmt.Errorf("hishel: open redis: %w", err)
	}
	go backend.Maintain(s.stop, s.maintDone, 0, nil, pol.SweepInterval, func() {
		ctx, cancel := context.WithTimeout(context.Background(), max(pol.SweepInterval, time.Minute))
		defer cancel()
		_, _ = s.Cleanup(ctx)
	})
	return s, nil
}

// OpenRedisURL opens the Redis that a store URL names (see cache.Open):
//
//	redis://[[user]:password@]host[:port][/db][?prefix=P&timeout=1s&...]
//
// db is the logical database (default 0), the port defaults to 6379. The
// parameters are the shared ones (ttl, refresh, sweep, retention,
// incomplete-age, max-bytes, max-pairs, max-variants, chunk-size) and
// prefix, timeout, retry-after, grace and replace-variants (RedisOptions'
// Prefix, Timeout, RetryAfter, ExpiryGrace and ReplaceVariants). A bad URL fails with model.ErrInvalid.
func OpenRedisURL(ctx context.Context, u *url.URL) (*Redis, error) {
	o, err := parseURL(u)
	if err != nil {
		return nil, err
	}
	return OpenRedis(ctx, o)
}

func parseURL(u *url.URL) (*RedisOptions, error) {
	bad := func(why string) error {
		return fmt.Errorf("hishel: store URL %s: %s; write redis://[user:password@]host:port/db?prefix=...: %w", backend.Redacted(u), why, model.ErrInvalid)
	}
	if u.Opaque != "" || u.Host == "" {
		return nil, bad("no host")
	}
	o := &RedisOptions{Addr: u.Host}
	if u.Port() == "" {
		o.Addr = net.JoinHostPort(u.Hostname(), "6379")
	}
	if u.User != nil {
		o.Username = u.User.Username()
		o.Password, _ = u.User.Password()
	}
	if p := strings.Trim(u.Path, "/"); p != "" {
		db, err := strconv.Atoi(p)
		if err != nil || db < 0 {
			return nil, bad(fmt.Sprintf("database %q is not a number", p))
		}
		o.DB = db
	}
	q := backend.NewQuery(u)
	s := o.settings()
	q.Settings(&s)
	q.String("prefix", &o.Prefix)
	q.Duration("timeout", &o.Timeout)
	q.Duration("retry-after", &o.RetryAfter)
	q.Duration("grace", &o.ExpiryGrace)
	q.Bool("replace-variants", &o.ReplaceVariants)
	if err := q.Done(); err != nil {
		return nil, err
	}
	o.SetSettings(s)
	return o, nil
}

// Close stops the sweep goroutine and closes the connection the storage
// made (not a Client it was given). Bodies still being read or stored fail
// with model.ErrClosed. Close is idempotent.
func (s *Redis) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.maintDone
		s.closed.Store(true)
		if s.ownClient {
			err = s.c.Close()
		}
	})
	return err
}

// breaker fails calls at once for a while after Redis was found
// unavailable, then lets one through to try it again.
type breaker struct {
	until   atomic.Int64 // unix nanoseconds until which calls fail at once
	probing atomic.Bool  // a call is trying Redis again
	lastErr atomic.Pointer[error]
}

// errOpTimeout is the cause of a command's context when Timeout ended it.
var errOpTimeout = errors.New("redis did not answer in time")

// call runs fn, which sends commands to Redis, with a context bounded by
// Timeout; it fails at once while the breaker is open. An error that says
// Redis is unreachable or slow wraps model.ErrUnavailable and opens the
// breaker; the caller's own context ending is its error.
func (s *Redis) call(ctx context.Context, fn func(ctx context.Context) error) error {
	if ctx == nil {
		return fmt.Errorf("hishel: redis: nil context: %w", model.ErrInvalid)
	}
	if s.closed.Load() {
		return model.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	probe := false
	if until := s.br.until.Load(); until != 0 {
		if time.Now().UnixNano() < until || !s.br.probing.CompareAndSwap(false, true) {
			last := "unknown"
			if e := s.br.lastErr.Load(); e != nil {
				last = (*e).Error()
			}
			return fmt.Errorf("redis at %s: %w (last error: %s)", s.addr, model.ErrUnavailable, last)
		}
		probe = true
	}
	cctx, cancel := context.WithTimeoutCause(ctx, s.timeout, errOpTimeout)
	err := fn(cctx)
	cancel()
	if probe {
		defer s.br.probing.Store(false)
	}
	switch {
	case err == nil || errors.Is(err, goredis.Nil):
		if probe {
			s.br.until.Store(0)
		}
		return err
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(err, goredis.ErrClosed):
		return fmt.Errorf("redis at %s: %w", s.addr, model.ErrClosed)
	case unavailable(err) || cctx.Err() != nil:
		s.br.lastErr.Store(&err)
		s.br.until.Store(time.Now().Add(s.retryAfter).UnixNano())
		return fmt.Errorf("redis at %s: %w (%w)", s.addr, model.ErrUnavailable, err)
	}
	return fmt.Errorf("redis at %s: %w", s.addr, err)
}

// unavailable reports whether err says the server could not be reached or
// did not answer: a network error, a dropped connection, a pool timeout,
// or a server still loading its data.
func unavailable(err error) bool {
	var ne net.Error
	switch {
	case errors.As(err, &ne), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, goredis.ErrPoolTimeout), errors.Is(err, goredis.ErrPoolExhausted):
		return true
	}
	msg := err.Error()
	for _, s := range []string{"EOF", "connection reset", "broken pipe", "connection refused", "LOADING", "BUSY"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}
