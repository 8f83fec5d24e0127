// Package backendbench holds the benchmarks that compare a backend with
// Bolt in the same process and run (store, hit, sweep), so that the ratio
// that README's backend table reports is measured against a baseline that
// ran under the same load:
//
//	func BenchmarkStore(b *testing.B) { backendbench.Stores(b, backends) }
//
// Bolt is always the first backend; the others follow.
package backendbench

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/hishel-go/hishel/internal/testclock"
	"github.com/hishel-go/hishel/model"
	"github.com/hishel-go/hishel/template"
)

// Store is what the benchmarks use of a store.
type Store interface {
	CreatePair(ctx context.Context, req model.Request, opts ...model.CreateOption) (model.IncompletePair, error)
	AddResponse(ctx context.Context, id model.PairID, resp model.Response, key string) (model.CompletePair, error)
	GetPairs(ctx context.Context, key string) ([]model.CompletePair, error)
	Cleanup(ctx context.Context) (model.SweepResult, error)
	Close() error
}

// Backend opens a new, empty store of one backend for a benchmark: durable
// unless noSync, with clock as its clock (nil: time.Now), no background
// sweep and every variant kept.
type Backend struct {
	Name string
	Open func(b *testing.B, noSync bool, clock func() time.Time) Store
}

// Bolt is the baseline.
var Bolt = Backend{"Bolt", func(b *testing.B, noSync bool, clock func() time.Time) Store {
	s, err := template.OpenBolt(context.Background(), &template.BoltOptions{Path: filepath.Join(b.TempDir(), "b.db"),
		NoSync: noSync, SweepInterval: -1, Now: clock})
	if err != nil {
		b.Fatal(err)
	}
	return s
}}

// Put stores one GET pair with body as its response under key.
func Put(b *testing.B, s Store, key string, body []byte, ttl time.Duration) {
	ctx := context.Background()
	inc, err := s.CreatePair(ctx, model.Request{Method: "GET", URL: "https://bench.example/" + key, Options: model.RequestOptions{TTL: ttl}})
	if err != nil {
		b.Fatal(err)
	}
	cp, err := s.AddResponse(ctx, inc.ID, model.Response{Status: 200, Body: model.BytesBody(body)}, key)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, cp.Response.Body); err != nil {
		b.Fatal(err)
	}
}

// Stores stores one pair (a GET and a 4 KiB response) per op, durably and
// in NoSync mode, in Bolt and each of others.
func Stores(b *testing.B, others ...Backend) {
	body := make([]byte, 4<<10)
	for _, mode := range []struct {
		name   string
		noSync bool
	}{{"durable", false}, {"nosync", true}} {
		for _, be := range append([]Backend{Bolt}, others...) {
			b.Run(mode.name+"/"+be.Name, func(b *testing.B) {
				s := be.Open(b, mode.noSync, nil)
				defer s.Close()
				b.SetBytes(int64(len(body)))
				i := 0
				for b.Loop() {
					Put(b, s, fmt.Sprint("k", i), body, 0)
					i++
				}
			})
		}
	}
}

// Hit reads one pair (GetPairs and its 4 KiB body) of n stored per op.
func Hit(b *testing.B, n int, others ...Backend) {
	body := make([]byte, 4<<10)
	ctx := context.Background()
	for _, be := range append([]Backend{Bolt}, others...) {
		b.Run(be.Name, func(b *testing.B) {
			s := be.Open(b, true, nil)
			defer s.Close()
			for i := range n {
				Put(b, s, fmt.Sprint("k", i), body, 0)
			}
			b.SetBytes(int64(len(body)))
			i := 0
			for b.Loop() {
				ps, err := s.GetPairs(ctx, fmt.Sprint("k", i%n))
				if err != nil || len(ps) != 1 {
					b.Fatalf("GetPairs = %d pairs, %v", len(ps), err)
				}
				if _, err := io.Copy(io.Discard, ps[0].Response.Body); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// Sweep times a sweep that soft-deletes expired pairs (512-byte bodies)
// among live ones that stay, per op; the pairs are stored outside the
// timer. Its cost follows what it removes: compare ns/op across sizes of
// the store.
func Sweep(b *testing.B, live, expired int, others ...Backend) {
	ctx := context.Background()
	body := make([]byte, 512)
	for _, be := range append([]Backend{Bolt}, others...) {
		b.Run(be.Name, func(b *testing.B) {
			c := testclock.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
			s := be.Open(b, true, c.Now)
			defer s.Close()
			for i := range live {
				Put(b, s, fmt.Sprint("live", i), body, 0)
			}
			round := 0
			for b.Loop() {
				b.StopTimer()
				for i := range expired {
					Put(b, s, fmt.Sprint("exp", round, "-", i), body, time.Minute)
				}
				c.Advance(2 * time.Minute)
				b.StartTimer()
				res, err := s.Cleanup(ctx)
				if err != nil || res.Expired != expired {
					b.Fatalf("Cleanup() = %+v, %v; want %d expired", res, err, expired)
				}
				round++
			}
		})
	}
}
