package backend

import (
	"context"
	"fmt"

	"github.com/hishel-go/hishel/model"
)

// MaxUpdateAttempts bounds how often UpdatePairFunc calls its function
// when the pair keeps changing under it.
const MaxUpdateAttempts = 64

// UpdatePairFunc is the read-modify-write every backend's UpdatePairFunc
// does (the storage contract's rule that its function may call the store
// without deadlock): read returns pair id as stored, with base, what a
// write needs to tell whether the pair changed since (a revision, say);
// fn runs on it holding nothing, in the caller's goroutine (a panic in it
// is its call's error, see CallUpdate); write stores next unless the pair
// changed since base, which it reports as stale, and then fn runs again on
// the new value, up to MaxUpdateAttempts times (then model.ErrConflict).
// ctx is checked before each read and before each write; a nil ctx is
// model.ErrInvalid (model.CheckContext).
func UpdatePairFunc[B any](ctx context.Context, id model.PairID, fn func(model.CompletePair) (model.CompletePair, error),
	read func(ctx context.Context) (model.CompletePair, B, error),
	write func(ctx context.Context, next model.CompletePair, base B) (out model.CompletePair, stale bool, err error)) (model.CompletePair, error) {
	if err := model.CheckContext(ctx); err != nil {
		return model.CompletePair{}, err
	}
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return model.CompletePair{}, err
		}
		cur, base, err := read(ctx)
		if err != nil {
			return model.CompletePair{}, err
		}
		next, err := CallUpdate(fn, cur)
		if err != nil {
			return model.CompletePair{}, err
		}
		if err := ctx.Err(); err != nil {
			return model.CompletePair{}, err
		}
		out, stale, err := write(ctx, next, base)
		switch {
		case err != nil:
			return model.CompletePair{}, err
		case stale && attempt == MaxUpdateAttempts:
			return model.CompletePair{}, fmt.Errorf("hishel: update pair %s: changed %d times while its function ran: %w", id, attempt, model.ErrConflict)
		case stale:
			continue
		}
		return out, nil
	}
}
