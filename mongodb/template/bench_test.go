package template

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/hishel-go/hishel/internal/testserver"
	"github.com/hishel-go/hishel/model"
	core "github.com/hishel-go/hishel/template"
)

// benchStore is what the benchmarks call, of this backend and of Bolt, the
// baseline measured in the same run.
type benchStore interface {
	CreatePair(ctx context.Context, req model.Request, opts ...model.CreateOption) (model.IncompletePair, error)
	AddResponse(ctx context.Context, id model.PairID, resp model.Response, key string) (model.CompletePair, error)
	GetPairs(ctx context.Context, key string) ([]model.CompletePair, error)
	Cleanup(ctx context.Context) (model.SweepResult, error)
	Close() error
}

// benchBackends opens, for each sub-benchmark, Bolt (a durable file) and
// this backend on the test server, with the clock now.
func benchBackends(b *testing.B, now func() time.Time) []struct {
	name string
	open func(b *testing.B) benchStore
} {
	return []struct {
		name string
		open func(b *testing.B) benchStore
	}{
		{"bolt", func(b *testing.B) benchStore {
			s, err := core.OpenBolt(context.Background(), &core.BoltOptions{Path: filepath.Join(b.TempDir(), "c.db"), SweepInterval: -1, Now: now})
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
		{"mongodb", func(b *testing.B) benchStore {
			srv := testserver.Mongo(b)
			s, err := OpenMongo(context.Background(), &MongoOptions{URI: srv.URI, Database: srv.Database, SweepInterval: -1, Now: now})
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
		{"gridfs", func(b *testing.B) benchStore {
			srv := testserver.Mongo(b)
			s, err := OpenMongo(context.Background(), &MongoOptions{URI: srv.URI, Database: srv.Database, GridFS: true, SweepInterval: -1, Now: now})
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
	}
}

func benchPut(b *testing.B, s benchStore, key string, body []byte, ttl time.Duration) {
	ctx := context.Background()
	req := model.Request{Method: "GET", URL: "http://example.com/" + key, Options: model.RequestOptions{TTL: ttl}}
	inc, err := s.CreatePair(ctx, req)
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

// BenchmarkStore stores a pair with a 16 KiB response body.
func BenchmarkStore(b *testing.B) {
	body := make([]byte, 16<<10)
	for _, bk := range benchBackends(b, nil) {
		b.Run(bk.name, func(b *testing.B) {
			s := bk.open(b)
			defer s.Close()
			b.SetBytes(int64(len(body)))
			for i := 0; b.Loop(); i++ {
				benchPut(b, s, fmt.Sprint("k", i), body, 0)
			}
		})
	}
}

// BenchmarkHit serves a stored pair: GetPairs and its 16 KiB body.
func BenchmarkHit(b *testing.B) {
	body := make([]byte, 16<<10)
	ctx := context.Background()
	for _, bk := range benchBackends(b, nil) {
		b.Run(bk.name, func(b *testing.B) {
			s := bk.open(b)
			defer s.Close()
			benchPut(b, s, "hit", body, 0)
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				ps, err := s.GetPairs(ctx, "hit")
				if err != nil || len(ps) != 1 {
					b.Fatal(len(ps), err)
				}
				if _, err := model.ReadAll(ps[0].Response.Body); err != nil {
					b.Fatal(err)
				}
				ps[0].Close()
			}
		})
	}
}

// BenchmarkSweep sweeps 20 expired pairs out of 200: each op stores 20
// pairs that expire, moves the clock past them and runs Cleanup (only the
// Cleanup is timed).
func BenchmarkSweep(b *testing.B) {
	body := make([]byte, 1<<10)
	ctx := context.Background()
	clock := time.Now()
	now := func() time.Time { return clock }
	for _, bk := range benchBackends(b, now) {
		b.Run(bk.name, func(b *testing.B) {
			s := bk.open(b)
			defer s.Close()
			for i := range 180 {
				benchPut(b, s, fmt.Sprint("keep", i), body, 0)
			}
			for i := 0; b.Loop(); i++ {
				b.StopTimer()
				for j := range 20 {
					benchPut(b, s, fmt.Sprint("exp", i, "-", j), body, time.Minute)
				}
				clock = clock.Add(2 * time.Minute)
				b.StartTimer()
				res, err := s.Cleanup(ctx)
				if err != nil || res.Expired != 20 {
					b.Fatalf("Cleanup() = %+v, %v; want 20 expired", res, err)
				}
			}
		})
	}
}
