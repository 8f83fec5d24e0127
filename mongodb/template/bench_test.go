package template

import (
	"context"
	"testing"
	"time"

	"github.com/hishel-go/hishel/internal/backendbench"
	"github.com/hishel-go/hishel/internal/testserver"
)

// backends are the MongoDB stores the benchmarks compare with Bolt, in the
// same run: bodies in chunk documents and in GridFS, on the test server
// (every change acknowledged, so NoSync is the same as durable here).
func backends() []backendbench.Backend {
	open := func(gridfs bool) func(b *testing.B, _ bool, clock func() time.Time) backendbench.Store {
		return func(b *testing.B, _ bool, clock func() time.Time) backendbench.Store {
			srv := testserver.Mongo(b)
			s, err := OpenMongo(context.Background(), &MongoOptions{URI: srv.URI, Database: srv.Database, GridFS: gridfs,
				SweepInterval: -1, MaxVariants: -1, Now: clock})
			if err != nil {
				b.Fatal(err)
			}
			return s
		}
	}
	return []backendbench.Backend{{Name: "MongoDB", Open: open(false)}, {Name: "GridFS", Open: open(true)}}
}

func BenchmarkStore(b *testing.B) { backendbench.Stores(b, backends()...) }

// BenchmarkHit reads one of 100 stored pairs (FerretDB scans the pairs
// collection for each GetPairs: a larger one measures FerretDB).
func BenchmarkHit(b *testing.B) { backendbench.Hit(b, 100, backends()...) }

// BenchmarkSweep soft-deletes 20 expired pairs among 200 that stay.
func BenchmarkSweep(b *testing.B) { backendbench.Sweep(b, 200, 20, backends()...) }
