package template

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"reflect"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/hishel-go/hishel/internal/lent"
	"github.com/hishel-go/hishel/model"
)

// TestBoltLendPairs checks the lending GetPairs of package lent: the
// pairs GetPairs gives, with the head cache's own header maps once it
// holds them (the same maps on every read), which a caller's change to
// what GetPairs gave does not reach; and that any other store lends
// nothing.
func TestBoltLendPairs(t *testing.T) {
	ctx := context.Background()
	s := openBolt(t, nil)
	for _, key := range []string{"a", "b"} {
		if err := storePair(ctx, s, key, []byte("body of "+key)); err != nil {
			t.Fatal(err)
		}
	}
	ptr := func(h any) uintptr { return uintptr(reflect.ValueOf(h).UnsafePointer()) }
	ignore := cmp.Options{
		cmpopts.IgnoreFields(model.Request{}, "Body"), cmpopts.IgnoreFields(model.Response{}, "Body"),
		cmpopts.IgnoreFields(model.PairMeta{}, "LastAccess", "Expires"),
	}
	var heads []uintptr
	for i := range 4 {
		own, err := s.GetPairs(ctx, "a")
		if err != nil || len(own) != 1 {
			t.Fatalf("GetPairs = %d pairs, %v", len(own), err)
		}
		pairs, ok, err := lent.GetPairs(ctx, s, "a")
		if !ok || err != nil || len(pairs) != 1 {
			t.Fatalf("lent.GetPairs = %d pairs, %v, %v; want the one pair, lent", len(pairs), ok, err)
		}
		if diff := cmp.Diff(own[0], pairs[0], ignore); diff != "" {
			t.Errorf("read %d: lent pair differs from GetPairs's (-GetPairs +lent):\n%s", i, diff)
		}
		b, err := io.ReadAll(pairs[0].Response.Body)
		if err != nil || string(b) != "body of a" {
			t.Errorf("read %d: lent pair's body = %q, %v", i, b, err)
		}
		if i >= 2 { // kept by the head cache from the second decode on
			heads = append(heads, ptr(pairs[0].Request.Header), ptr(pairs[0].Response.Header))
			if ptr(own[0].Response.Header) == ptr(pairs[0].Response.Header) || ptr(own[0].Request.Header) == ptr(pairs[0].Request.Header) {
				t.Errorf("read %d: GetPairs gave the lent header maps, not copies", i)
			}
		}
		own[0].Response.Header.Set("Etag", "changed by the caller")
		own[0].Request.Header.Del("Accept")
		own[0].Close()
		pairs[0].Close()
	}
	if heads[0] != heads[2] || heads[1] != heads[3] {
		t.Errorf("lent.GetPairs lent new header maps on each read; want the head cache's")
	}
	pairs, ok, err := lent.GetPairs(ctx, s, "a")
	if !ok || err != nil || len(pairs) != 1 {
		t.Fatalf("lent.GetPairs = %d pairs, %v, %v", len(pairs), ok, err)
	}
	defer pairs[0].Close()
	if got := pairs[0].Response.Header.Get("Etag"); got == "changed by the caller" {
		t.Errorf("a change to GetPairs's header reached the lent one")
	}
	m, err := OpenMemory(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, ok, _ := lent.GetPairs(ctx, m, "a"); ok {
		t.Errorf("lent.GetPairs of a Memory store lent pairs; want none")
	}
	if _, ok, _ := lent.GetPairs(ctx, (*Bolt)(nil), "a"); ok {
		t.Errorf("lent.GetPairs of a nil *Bolt lent pairs; want none")
	}
}

// BenchmarkBoltHitLent is BenchmarkBoltHit (GetPairs of one of 100 keys
// and its 1 KiB body) through the lending GetPairs of package lent, which
// hishel's Transport.Hit uses, against GetPairs on the same store, in
// turns of 32: x-getpairs is the ratio of their times, p50-x-getpairs that
// of their medians.
func BenchmarkBoltHitLent(b *testing.B) {
	ctx := context.Background()
	body := bytes.Repeat([]byte("0123456789abcdef"), 1<<10/16)
	const keys = 100
	s := openBolt(b, nil)
	for i := range keys {
		if err := storePair(ctx, s, fmt.Sprint("k", i), body); err != nil {
			b.Fatal(err)
		}
	}
	buf := make([]byte, 32<<10)
	get := [2]func(context.Context, string) ([]model.CompletePair, error){
		func(ctx context.Context, key string) ([]model.CompletePair, error) {
			ps, _, err := lent.GetPairs(ctx, s, key)
			return ps, err
		},
		s.GetPairs,
	}
	for i := range 2 * keys { // both reads keep every head
		if _, err := timeHit(s.GetPairs, ctx, fmt.Sprint("k", i%keys), len(body), buf); err != nil {
			b.Fatal(err)
		}
	}
	hitTurns(b, "getpairs", func(j, i int) (time.Duration, error) {
		return timeHit(get[j], ctx, fmt.Sprint("k", i%keys), len(body), buf)
	})
}
