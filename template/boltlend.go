package template

import (
	"context"

	"github.com/hishel-go/hishel/internal/lent"
	"github.com/hishel-go/hishel/model"
)

func init() { lent.Register(lendPairs) }

// lendPairs is the lending GetPairs of package lent, for hishel's
// Transport: a *Bolt's GetPairs, whose pairs have the head cache's header
// maps where it holds them, shared with every other reader and never
// changed (see headCache), instead of copies. Any other store lends
// nothing.
func lendPairs(ctx context.Context, store any, key string) ([]model.CompletePair, bool, error) {
	s, ok := store.(*Bolt)
	if !ok || s == nil {
		return nil, false, nil
	}
	pairs, err := s.getPairs(ctx, key, true)
	return pairs, true, err
}
