// Package lent lets hishel's Transport read a store's pairs with the
// header maps the store keeps for itself, where the store lends them: a
// Bolt keeps the decoded heads of the pairs it read recently (its head
// cache), and its GetPairs gives every caller copies of their header maps,
// which the caller may change. A hit served from the pairs only reads
// their heads (the state machine copies what it serves), so the copies are
// work for nothing: about a fifth of a 1 KiB hit's CPU through the proxy.
//
// The package is internal because a lent map is shared: a caller that
// changed one would change what every later reader of the pair sees. The
// Transport takes lent pairs in Transport.Hit and HitHeader alone, serves
// them through a state machine that does not reuse stored header maps (or
// from a map of the caller's into which HitHeader copied the one pair's
// fields, whose value slices it never changes), and hands none of them to
// code that changes headers (a background revalidation gets pairs of its
// own).
package lent

import (
	"context"

	"github.com/hishel-go/hishel/model"
)

// getPairs is the lending GetPairs that package template registers.
var getPairs func(ctx context.Context, store any, key string) ([]model.CompletePair, bool, error)

// Register makes f the lending GetPairs: f reads the pairs of store (a
// template backend) under key as store's GetPairs does, with header maps
// that may be shared, and reports false when store lends none. Package
// template calls it from init.
func Register(f func(ctx context.Context, store any, key string) ([]model.CompletePair, bool, error)) {
	getPairs = f
}

// GetPairs returns what store.GetPairs(ctx, key) returns, with header maps
// that may be shared: the caller must never change them (nor the slices of
// their values). ok is false, and nothing was read, when store lends no
// heads: then call its GetPairs.
func GetPairs(ctx context.Context, store any, key string) (pairs []model.CompletePair, ok bool, err error) {
	if getPairs == nil {
		return nil, false, nil
	}
	return getPairs(ctx, store, key)
}
