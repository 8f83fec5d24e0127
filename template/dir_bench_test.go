package template

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/hishel-go/hishel/internal/testclock"
	"github.com/hishel-go/hishel/model"
)

// Dir's benchmarks run Bolt beside it on the same operations, so that
// README's ratios are measured in one run:
//
//	go test -run '^$' -bench 'BenchmarkDir' -benchtime 2s -count 3 ./template

type dirBenchStore interface {
	CreatePair(ctx context.Context, req model.Request, opts ...model.CreateOption) (model.IncompletePair, error)
	AddResponse(ctx context.Context, id model.PairID, resp model.Response, key string) (model.CompletePair, error)
	GetPairs(ctx context.Context, key string) ([]model.CompletePair, error)
	Cleanup(ctx context.Context) (model.SweepResult, error)
	Close() error
}

var dirBenchBackends = []struct {
	name string
	open func(b *testing.B, noSync bool, now func() time.Time) dirBenchStore
}{
	{"Bolt", func(b *testing.B, noSync bool, now func() time.Time) dirBenchStore {
		s, err := OpenBolt(context.Background(), &BoltOptions{Path: filepath.Join(b.TempDir(), "b.db"), NoSync: noSync, SweepInterval: -1, Now: now})
		if err != nil {
			b.Fatal(err)
		}
		return s
	}},
	{"Dir", func(b *testing.B, noSync bool, now func() time.Time) dirBenchStore {
		s, err := OpenDir(context.Background(), &DirOptions{Path: filepath.Join(b.TempDir(), "d"), NoSync: noSync, SweepInterval: -1, MaxVariants: -1, Now: now})
		if err != nil {
			b.Fatal(err)
		}
		return s
	}},
}

func dirBenchPut(b *testing.B, s dirBenchStore, key string, body []byte, ttl time.Duration) {
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

// BenchmarkDirStore stores one pair (a GET and a 4 KiB response) per op.
func BenchmarkDirStore(b *testing.B) {
	body := make([]byte, 4<<10)
	for _, mode := range []struct {
		name   string
		noSync bool
	}{{"durable", false}, {"nosync", true}} {
		for _, be := range dirBenchBackends {
			b.Run(mode.name+"/"+be.name, func(b *testing.B) {
				s := be.open(b, mode.noSync, nil)
				defer s.Close()
				i := 0
				for b.Loop() {
					dirBenchPut(b, s, fmt.Sprint("k", i), body, 0)
					i++
				}
			})
		}
	}
}

// BenchmarkDirHit reads one pair (GetPairs and its 4 KiB body) of 1000.
func BenchmarkDirHit(b *testing.B) {
	body := make([]byte, 4<<10)
	ctx := context.Background()
	for _, be := range dirBenchBackends {
		b.Run(be.name, func(b *testing.B) {
			s := be.open(b, true, nil)
			defer s.Close()
			for i := range 1000 {
				dirBenchPut(b, s, fmt.Sprint("k", i), body, 0)
			}
			i := 0
			for b.Loop() {
				ps, err := s.GetPairs(ctx, fmt.Sprint("k", i%1000))
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

// BenchmarkDirSweep: a sweep that soft-deletes 100 expired pairs, per op,
// among 1000 or 4000 that stay (stored outside the timer): ns/op shows
// how the sweep's cost follows the size of the cache.
func BenchmarkDirSweep(b *testing.B) {
	ctx := context.Background()
	body := make([]byte, 256)
	for _, live := range []int{1000, 4000} {
		for _, be := range dirBenchBackends {
			b.Run(fmt.Sprintf("live=%d/%s", live, be.name), func(b *testing.B) {
				c := testclock.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
				s := be.open(b, true, c.Now)
				defer s.Close()
				for i := range live {
					dirBenchPut(b, s, fmt.Sprint("live", i), body, 0)
				}
				round := 0
				for b.Loop() {
					b.StopTimer()
					for i := range 100 {
						dirBenchPut(b, s, fmt.Sprint("exp", round, "-", i), body, time.Minute)
					}
					c.Advance(2 * time.Minute)
					b.StartTimer()
					if res, err := s.Cleanup(ctx); err != nil || res.Expired != 100 {
						b.Fatalf("Cleanup() = %+v, %v; want 100 expired", res, err)
					}
					round++
				}
			})
		}
	}
}
