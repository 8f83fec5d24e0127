package cacheasync

import (
	"context"
	"fmt"
	"net/url"

	"github.com/hishel-go/hishel/internal/registry"
	"github.com/hishel-go/hishel/model"
)

// Store is what every store of this API does, whatever its backend: the
// operations of the template backends, each returning a [Future]. The
// stores of this package ([Bolt], [Memory], [Dir]) and of every backend's
// async package (such as github.com/hishel-go/hishel/sqlite/sqliteasync)
// satisfy it; [Open] returns one.
type Store interface {
	CreatePair(ctx context.Context, req model.Request, opts ...model.CreateOption) Future[model.IncompletePair]
	AddResponse(ctx context.Context, id model.PairID, resp model.Response, key string) Future[model.CompletePair]
	GetPairs(ctx context.Context, key string) Future[[]model.CompletePair]
	GetPair(ctx context.Context, id model.PairID) Future[model.CompletePair]
	UpdatePair(ctx context.Context, id model.PairID, pair model.CompletePair) Future[model.CompletePair]
	UpdatePairFunc(ctx context.Context, id model.PairID, fn func(model.CompletePair) (model.CompletePair, error)) Future[model.CompletePair]
	Remove(ctx context.Context, id model.PairID) Future[struct{}]
	Cleanup(ctx context.Context) Future[model.SweepResult]
	Clear(ctx context.Context) Future[struct{}]
	Pairs(ctx context.Context, f model.Filter) Stream[model.PairInfo]
	Delete(ctx context.Context, f model.Filter) Future[int]
	Sync(ctx context.Context) Future[struct{}]
	Stats(ctx context.Context) Future[model.Stats]
	Close() error
}

// Opener opens the store a URL names, its calls run as async configures;
// see [Register].
type Opener func(ctx context.Context, u *url.URL, async *Options) (Store, error)

var openers = registry.New[Opener]("cacheasync")

// Register makes open the opener of store URLs with the given scheme, for
// [Open]. A backend's async package calls it from init (generated code
// does, for a template backend that names its scheme with
// //hishel:scheme), so that importing the package is enough:
//
//	import _ "github.com/hishel-go/hishel/sqlite/sqliteasync"
//
// Register panics if scheme is not a lower-case URL scheme or is
// registered already.
func Register(scheme string, open Opener) { openers.Register(scheme, open) }

// Schemes returns the schemes registered with [Register], sorted.
func Schemes() []string { return openers.Schemes() }

// Open opens the store that rawURL names, as cache.Open does (the same
// schemes and parameters), with its calls run as async configures (nil:
// the defaults). Open itself blocks until the store is open.
func Open(ctx context.Context, rawURL string, async *Options) (Store, error) {
	if ctx == nil {
		return nil, fmt.Errorf("cacheasync: open: nil context: %w", model.ErrInvalid)
	}
	u, open, err := openers.Lookup(rawURL)
	if err != nil {
		return nil, err
	}
	return open(ctx, u, async)
}
