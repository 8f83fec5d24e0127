// Package storagetest is the behavioural suite that every hishel-go
// storage backend passes, through each API it is rendered into: ours
// (Bolt, Memory, Dir, SQLite, ...) and anyone's, as testing/fstest is for
// file systems. A backend is tested by giving [Run] an [Opener] that opens
// it through the blocking API, and [RunAsync] one that opens it through
// the async API:
//
//	func TestStorage(t *testing.T) {
//		storagetest.Run(t, func(tb testing.TB, o storagetest.Options) storagetest.Store {
//			opts := &mycache.MineOptions{Dir: tb.TempDir()}
//			opts.SetSettings(o.Settings()) // however the backend takes them
//			return storagetest.Opened[storagetest.Store](tb)(mycache.OpenMine(context.Background(), opts))
//		})
//	}
//
// # Rules
//
// Run checks the storage rules of package template's documentation and of
// the storage contract every backend follows (see package backend), one
// sub-test per rule: round trips of heads, keys and bodies; visibility only
// once both bodies are stored; aborted streams leaving nothing behind; a
// typed error for every bad input; UpdatePair, Remove, newest-first order;
// bodies failing, never shortened, when their pair is removed while read;
// TTLs, sweeps, the size budget and the pair cap with an injected clock;
// iteration and filters (Pairs), Delete by every criterion of
// model.Filter; use after Close; a 64-goroutine mix after which the
// counters agree with a full scan; the variant cap (MaxVariants); a budget
// (MaxBytes, Stats.Bytes) that counts every byte of a pair; the eviction
// counter (Stats.Evicted) after MaxPairs, MaxBytes and MaxVariants
// evictions, and not after sweeps or removals; MaxTTL; and an
// UpdatePairFunc whose function may call the store and whose context is
// honoured.
//
// A backend must honour every field of [Options]: each is one of the
// options every backend has (see backend.Settings).
//
// # Processes
//
// A backend that several processes share also runs [RunCrash] (a writer
// process killed at random points: no visible incomplete pair, no lost
// complete one, a store that opens) and [RunShared] (two processes storing
// and reading one store at once), with [ProcessMain] as its TestMain.
//
// # Laziness
//
// Some backends (Bolt) commit changes that nobody can observe yet (a new
// incomplete pair, chunks of a body still streaming) a moment later, and
// Stats reports the last commit. The suite calls Sync before it looks at
// such changes, and nowhere else: a change that makes a pair visible or
// hides it must be visible to Stats and GetPairs as soon as it returns.
package storagetest

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/hishel-go/hishel/backend"
	"github.com/hishel-go/hishel/cache"
	"github.com/hishel-go/hishel/model"
	"github.com/hishel-go/hishel/template"
)

// Store is the blocking shape of a storage, cache.Store: the stores of
// package cache and of every backend's blocking package satisfy it as
// they are; an async store satisfies it through [Blocking].
type Store = cache.Store

// Options are the knobs the suite turns. Every zero field means the
// backend's default, except SweepInterval.
type Options struct {
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// DefaultTTL, RefreshTTLOnAccess, DeletedRetention, IncompleteAge,
	// MaxBytes, MaxPairs, MaxVariants and ChunkSize mean what the
	// backends' options of the same names mean (see backend.Settings).
	DefaultTTL         time.Duration
	RefreshTTLOnAccess model.Refresh
	DeletedRetention   time.Duration
	IncompleteAge      time.Duration
	MaxBytes           int64
	MaxPairs           int
	MaxVariants        int
	ChunkSize          int
	// SweepInterval is how often the background sweep runs. Unlike the
	// backends' default, zero means never: the suite sweeps with Cleanup,
	// at the times its clock says.
	SweepInterval time.Duration
	// NoSync says that the test does not need durable commits (it checks
	// concurrency or iteration, not crashes). Backends without the notion
	// ignore it.
	NoSync bool
}

// Opener opens a new, empty store configured by o, for the test tb. It
// registers the store's Close with tb.Cleanup (Close may be called again by
// the test), and fails tb if the store cannot be opened.
type Opener func(tb testing.TB, o Options) Store

// Opened finishes an Opener, or any constructor of a store of type S (the
// async API's tests use it too). The function it returns takes the
// constructor's results: it fails tb if the error is not nil, and otherwise
// registers the store's Close with tb.Cleanup and returns the store.
//
//	return storagetest.Opened[storagetest.Store](tb)(cache.OpenMemory(ctx, o.MemoryOptions()))
func Opened[S interface{ Close() error }](tb testing.TB) func(S, error) S {
	return func(s S, err error) S {
		tb.Helper()
		if err != nil {
			tb.Fatalf("open store: %v", err)
		}
		tb.Cleanup(func() {
			if err := s.Close(); err != nil {
				tb.Errorf("Close() = %v; want nil", err)
			}
		})
		return s
	}
}

// Settings returns o as the settings every backend shares, for an Opener
// to hand to its backend's options. SweepInterval is translated: the
// suite's zero (no background sweep) is the backends' negative.
func (o Options) Settings() backend.Settings {
	return backend.Settings{
		DefaultTTL:         o.DefaultTTL,
		RefreshTTLOnAccess: o.RefreshTTLOnAccess,
		SweepInterval:      o.sweepInterval(),
		DeletedRetention:   o.DeletedRetention,
		IncompleteAge:      o.IncompleteAge,
		MaxBytes:           o.MaxBytes,
		MaxPairs:           o.MaxPairs,
		MaxVariants:        o.MaxVariants,
		ChunkSize:          o.ChunkSize,
		Now:                o.Now,
	}
}

// BoltOptions returns o as Bolt options, with the database file in a
// temporary directory of tb.
func (o Options) BoltOptions(tb testing.TB) *template.BoltOptions {
	return &template.BoltOptions{
		Path:               filepath.Join(tb.TempDir(), "cache.db"),
		NoSync:             o.NoSync,
		DefaultTTL:         o.DefaultTTL,
		RefreshTTLOnAccess: o.RefreshTTLOnAccess,
		SweepInterval:      o.sweepInterval(),
		DeletedRetention:   o.DeletedRetention,
		IncompleteAge:      o.IncompleteAge,
		MaxBytes:           o.MaxBytes,
		MaxPairs:           o.MaxPairs,
		MaxVariants:        o.MaxVariants,
		ChunkSize:          o.ChunkSize,
		Now:                o.Now,
	}
}

// DirOptions returns o as Dir options, with the directory a temporary
// directory of tb.
func (o Options) DirOptions(tb testing.TB) *template.DirOptions {
	d := &template.DirOptions{Path: filepath.Join(tb.TempDir(), "cache"), NoSync: o.NoSync}
	d.SetSettings(o.Settings())
	return d
}

// MemoryOptions returns o as Memory options.
func (o Options) MemoryOptions() *template.MemoryOptions {
	return &template.MemoryOptions{
		DefaultTTL:         o.DefaultTTL,
		RefreshTTLOnAccess: o.RefreshTTLOnAccess,
		SweepInterval:      o.sweepInterval(),
		DeletedRetention:   o.DeletedRetention,
		IncompleteAge:      o.IncompleteAge,
		MaxBytes:           o.MaxBytes,
		MaxPairs:           o.MaxPairs,
		MaxVariants:        o.MaxVariants,
		ChunkSize:          o.ChunkSize,
		Now:                o.Now,
	}
}

func (o Options) sweepInterval() time.Duration {
	if o.SweepInterval == 0 {
		return -1
	}
	return o.SweepInterval
}

type rule struct {
	name string
	test func(t *testing.T, open Opener)
}

// suite is the list of rules Run checks, in order.
var suite = []rule{
	{"RoundTrip", testRoundTrip},
	{"Keys", testKeys},
	{"BodySizes", testBodySizes},
	{"BodySources", testBodySources},
	{"ReaderOwnsChunks", testReaderOwnsChunks},
	{"Visibility", testVisibility},
	{"AbortedStreams", testAbortedStreams},
	{"BadInput", testBadInput},
	{"UpdatePairFuncPanic", testUpdatePairFuncPanic},
	{"CancelledContext", testCancelledContext},
	{"WithID", testWithID},
	{"UpdatePair", testUpdatePair},
	{"Remove", testRemove},
	{"NewestFirst", testNewestFirst},
	{"RemovedWhileReading", testRemovedWhileReading},
	{"TTL", testTTL},
	{"Sweep", testSweep},
	{"SweepWhileStreaming", testSweepWhileStreaming},
	{"BackgroundSweep", testBackgroundSweep},
	{"SizeBudget", testSizeBudget},
	{"MaxPairs", testMaxPairs},
	{"Pairs", testPairs},
	{"Filter", testFilter},
	{"Delete", testDelete},
	{"PartialContent", testPartialContent},
	{"UseAfterClose", testUseAfterClose},
	{"Concurrent", testConcurrent},
	{"VariantCap", testVariantCap},
	{"Evictions", testEvictions},
	{"BudgetCountsHeads", testBudgetCountsHeads},
	{"MaxTTL", testMaxTTL},
	{"UpdatePairFuncReentrant", testUpdatePairFuncReentrant},
	{"UpdatePairFuncContext", testUpdatePairFuncContext},
}

// A RunOption changes what Run checks.
type RunOption func(*runConfig)

type runConfig struct{ without map[string]string }

// Without leaves the named rules out of the run, for a test server that
// cannot pass them although the real server would; why says what the
// server lacks, and the run logs it. A rule not in the suite fails the
// test.
func Without(why string, rules ...string) RunOption {
	return func(c *runConfig) {
		for _, r := range rules {
			c.without[r] = why
		}
	}
}

// Run runs the whole suite against the stores open makes, one sub-test per
// rule. Every sub-test opens its own stores.
func Run(t *testing.T, open Opener, opts ...RunOption) {
	c := runConfig{without: map[string]string{}}
	for _, o := range opts {
		o(&c)
	}
	for name := range c.without {
		if !slices.ContainsFunc(suite, func(r rule) bool { return r.name == name }) {
			t.Errorf("storagetest.Without(%q): no such rule", name)
		}
	}
	for _, tc := range suite {
		if why, ok := c.without[tc.name]; ok {
			t.Logf("rule %s left out: %s", tc.name, why)
			continue
		}
		t.Run(tc.name, func(t *testing.T) { tc.test(t, open) })
	}
}
