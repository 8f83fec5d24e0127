package cache

import (
	"context"
	"fmt"
	"iter"
	"net/url"

	"github.com/hishel-go/hishel/internal/registry"
	"github.com/hishel-go/hishel/model"
)

// Store is what every store of this API does, whatever its backend: the
// operations of the template backends, with their signatures. The stores
// of this package ([Bolt], [Memory], [Dir]) and of every backend package
// (such as github.com/hishel-go/hishel/sqlite) satisfy it; [Open] returns
// one. hishel.Options.Storage takes any Store.
type Store interface {
	CreatePair(ctx context.Context, req model.Request, opts ...model.CreateOption) (model.IncompletePair, error)
	AddResponse(ctx context.Context, id model.PairID, resp model.Response, key string) (model.CompletePair, error)
	GetPairs(ctx context.Context, key string) ([]model.CompletePair, error)
	GetPair(ctx context.Context, id model.PairID) (model.CompletePair, error)
	UpdatePair(ctx context.Context, id model.PairID, pair model.CompletePair) (model.CompletePair, error)
	UpdatePairFunc(ctx context.Context, id model.PairID, fn func(model.CompletePair) (model.CompletePair, error)) (model.CompletePair, error)
	Remove(ctx context.Context, id model.PairID) error
	Cleanup(ctx context.Context) (model.SweepResult, error)
	Clear(ctx context.Context) error
	Pairs(ctx context.Context, f model.Filter) iter.Seq2[model.PairInfo, error]
	Delete(ctx context.Context, f model.Filter) (int, error)
	Sync(ctx context.Context) error
	Stats(ctx context.Context) (model.Stats, error)
	Close() error
}

// Opener opens the store a URL names; see [Register].
type Opener func(ctx context.Context, u *url.URL) (Store, error)

var openers = registry.New[Opener]("cache")

// Register makes open the opener of store URLs with the given scheme, for
// [Open]. A backend's package calls it from init (generated code does, for
// a template backend that names its scheme with //hishel:scheme), so that
// importing the package is enough, as with database/sql drivers:
//
//	import _ "github.com/hishel-go/hishel/sqlite"
//
// Register panics if scheme is not a lower-case URL scheme or is
// registered already.
func Register(scheme string, open Opener) { openers.Register(scheme, open) }

// Schemes returns the schemes registered with [Register], sorted.
func Schemes() []string { return openers.Schemes() }

// Open opens the store that rawURL names, with the backend registered for
// its scheme. Its query parameters set the backend's options; each
// backend's Open*URL constructor documents its own. This package
// registers
//
//	bolt:///path/cache.db    a bbolt file ([OpenBoltURL]); bolt: alone is the default file
//	memory://                 the process's memory ([OpenMemoryURL])
//	file:///path/dir          a directory of files, shared by processes ([OpenDirURL])
//
// and every backend takes the shared parameters ttl, refresh, sweep,
// retention, incomplete-age, max-bytes, max-pairs, max-variants and chunk-size
// (memory://?max-pairs=128&ttl=1h). A URL that does not parse, has an
// unregistered scheme (the error lists the registered ones) or an unknown
// parameter fails with an error wrapping [ErrInvalid].
func Open(ctx context.Context, rawURL string) (Store, error) {
	if ctx == nil {
		return nil, fmt.Errorf("cache: open: nil context: %w", model.ErrInvalid)
	}
	u, open, err := openers.Lookup(rawURL)
	if err != nil {
		return nil, err
	}
	return open(ctx, u)
}
