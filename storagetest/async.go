package storagetest

import (
	"context"
	"iter"
	"testing"

	"github.com/hishel-go/hishel/cacheasync"
	"github.com/hishel-go/hishel/model"
)

// AsyncOpener is an [Opener] for an async API: it opens a new, empty
// store configured by o (registering its Close with tb.Cleanup, as
// [Opened] does) and returns it as a cacheasync.Store, which the stores of
// package cacheasync and of every backend's async package satisfy.
type AsyncOpener func(tb testing.TB, o Options) cacheasync.Store

// RunAsync runs the whole suite through an async API: every call is made
// as a caller would, store.Op(ctx, ...).Await(ctx).
func RunAsync(t *testing.T, open AsyncOpener, opts ...RunOption) {
	Run(t, func(tb testing.TB, o Options) Store { return Blocking(open(tb, o)) }, opts...)
}

// Blocking adapts an async store to [Store] by awaiting every future with
// the call's context.
func Blocking(s cacheasync.Store) Store { return blocking{s} }

type blocking struct{ s cacheasync.Store }

func (b blocking) CreatePair(ctx context.Context, req model.Request, opts ...model.CreateOption) (model.IncompletePair, error) {
	return b.s.CreatePair(ctx, req, opts...).Await(ctx)
}

func (b blocking) AddResponse(ctx context.Context, id model.PairID, resp model.Response, key string) (model.CompletePair, error) {
	return b.s.AddResponse(ctx, id, resp, key).Await(ctx)
}

func (b blocking) GetPairs(ctx context.Context, key string) ([]model.CompletePair, error) {
	return b.s.GetPairs(ctx, key).Await(ctx)
}

func (b blocking) GetPair(ctx context.Context, id model.PairID) (model.CompletePair, error) {
	return b.s.GetPair(ctx, id).Await(ctx)
}

func (b blocking) UpdatePair(ctx context.Context, id model.PairID, pair model.CompletePair) (model.CompletePair, error) {
	return b.s.UpdatePair(ctx, id, pair).Await(ctx)
}

func (b blocking) UpdatePairFunc(ctx context.Context, id model.PairID, fn func(model.CompletePair) (model.CompletePair, error)) (model.CompletePair, error) {
	return b.s.UpdatePairFunc(ctx, id, fn).Await(ctx)
}

func (b blocking) Remove(ctx context.Context, id model.PairID) error {
	_, err := b.s.Remove(ctx, id).Await(ctx)
	return err
}

func (b blocking) Cleanup(ctx context.Context) (model.SweepResult, error) {
	return b.s.Cleanup(ctx).Await(ctx)
}

func (b blocking) Clear(ctx context.Context) error {
	_, err := b.s.Clear(ctx).Await(ctx)
	return err
}

// Pairs ranges over the async store's stream; a loop that stops early
// cancels the stream's context, which ends its goroutine.
func (b blocking) Pairs(ctx context.Context, f model.Filter) iter.Seq2[model.PairInfo, error] {
	return func(yield func(model.PairInfo, error) bool) {
		if ctx == nil { // the stream says so, in-band
			for r := range b.s.Pairs(ctx, f) {
				yield(r.Value, r.Err)
			}
			return
		}
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		for r := range b.s.Pairs(ctx, f) {
			if !yield(r.Value, r.Err) {
				return
			}
		}
	}
}

func (b blocking) Delete(ctx context.Context, f model.Filter) (int, error) {
	return b.s.Delete(ctx, f).Await(ctx)
}

func (b blocking) Sync(ctx context.Context) error {
	_, err := b.s.Sync(ctx).Await(ctx)
	return err
}

func (b blocking) Stats(ctx context.Context) (model.Stats, error) {
	return b.s.Stats(ctx).Await(ctx)
}

func (b blocking) Close() error { return b.s.Close() }
