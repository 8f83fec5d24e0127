package template

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/hishel-go/hishel/model"
	"github.com/hishel-go/hishel/storagetest"
	bolttmpl "github.com/hishel-go/hishel/template"
)

// The benchmarks run SQLite and Bolt side by side in one process, on the
// same operations, so that their ratio (README's backend table) is
// measured in the same run:
//
//	go test -run '^$' -bench . -benchtime 2s -count 3 ./template

// benchStore is what the benchmarks use of a store.
type benchStore interface {
	CreatePair(ctx context.Context, req model.Request, opts ...model.CreateOption) (model.IncompletePair, error)
	AddResponse(ctx context.Context, id model.PairID, resp model.Response, key string) (model.CompletePair, error)
	GetPairs(ctx context.Context, key string) ([]model.CompletePair, error)
	Cleanup(ctx context.Context) (model.SweepResult, error)
	Close() error
}

type benchBackend struct {
	name string
	open func(b *testing.B, noSync bool, clock func() time.Time) benchStore
}

var benchBackends = []benchBackend{
	{"Bolt", func(b *testing.B, noSync bool, clock func() time.Time) benchStore {
		s, err := bolttmpl.OpenBolt(context.Background(), &bolttmpl.BoltOptions{Path: filepath.Join(b.TempDir(), "b.db"),
			NoSync: noSync, SweepInterval: -1, Now: clock})
		if err != nil {
			b.Fatal(err)
		}
		return s
	}},
	{"SQLite", func(b *testing.B, noSync bool, clock func() time.Time) benchStore {
		s, err := OpenSQLite(context.Background(), &SQLiteOptions{Path: filepath.Join(b.TempDir(), "s.db"),
			NoSync: noSync, SweepInterval: -1, MaxVariants: -1, Now: clock})
		if err != nil {
			b.Fatal(err)
		}
		return s
	}},
}

func benchPut(b *testing.B, s benchStore, key string, body []byte, ttl time.Duration) {
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

// BenchmarkStore stores one pair (a GET and a 4 KiB response) per op.
func BenchmarkStore(b *testing.B) {
	body := make([]byte, 4<<10)
	for _, mode := range []struct {
		name   string
		noSync bool
	}{{"durable", false}, {"nosync", true}} {
		for _, be := range benchBackends {
			b.Run(mode.name+"/"+be.name, func(b *testing.B) {
				s := be.open(b, mode.noSync, nil)
				defer s.Close()
				b.SetBytes(int64(len(body)))
				i := 0
				for b.Loop() {
					benchPut(b, s, fmt.Sprint("k", i), body, 0)
					i++
				}
			})
		}
	}
}

// BenchmarkHit reads one pair (GetPairs and its 4 KiB body) of 1000 per op.
func BenchmarkHit(b *testing.B) {
	body := make([]byte, 4<<10)
	ctx := context.Background()
	for _, be := range benchBackends {
		b.Run(be.name, func(b *testing.B) {
			s := be.open(b, true, nil)
			defer s.Close()
			const n = 1000
			for i := range n {
				benchPut(b, s, fmt.Sprint("k", i), body, 0)
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

// BenchmarkSweep: a sweep that soft-deletes 500 expired pairs among 5000
// that stay, per op; the pairs are stored outside the timer. Its cost
// follows what it removes: compare ns/op with the size of the database.
func BenchmarkSweep(b *testing.B) {
	ctx := context.Background()
	body := make([]byte, 512)
	for _, be := range benchBackends {
		b.Run(be.name, func(b *testing.B) {
			c := storagetest.NewClock()
			s := be.open(b, true, c.Now)
			defer s.Close()
			for i := range 5000 {
				benchPut(b, s, fmt.Sprint("live", i), body, 0)
			}
			round := 0
			for b.Loop() {
				b.StopTimer()
				for i := range 500 {
					benchPut(b, s, fmt.Sprint("exp", round, "-", i), body, time.Minute)
				}
				c.Advance(2 * time.Minute)
				b.StartTimer()
				res, err := s.Cleanup(ctx)
				if err != nil || res.Expired != 500 {
					b.Fatalf("Cleanup() = %+v, %v; want 500 expired", res, err)
				}
				round++
			}
		})
	}
}
