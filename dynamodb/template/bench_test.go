package template

import (
	"context"
	"testing"
	"time"

	"github.com/hishel-go/hishel/internal/backendbench"
	"github.com/hishel-go/hishel/internal/testserver"
)

// dynamo is the DynamoDB store the benchmarks compare with Bolt, in the
// same run, on a table of the test server (every write acknowledged, so
// NoSync is the same as durable here).
var dynamo = backendbench.Backend{Name: "DynamoDB", Open: func(b *testing.B, _ bool, clock func() time.Time) backendbench.Store {
	srv := testserver.DynamoDB(b)
	o := options(srv.Endpoint, srv.Table)
	o.Now = clock
	s, err := OpenDynamoDB(context.Background(), o)
	if err != nil {
		b.Fatal(err)
	}
	return s
}}

func BenchmarkStore(b *testing.B) { backendbench.Stores(b, dynamo) }

// BenchmarkHit reads one of 100 stored pairs.
func BenchmarkHit(b *testing.B) { backendbench.Hit(b, 100, dynamo) }

// BenchmarkSweep soft-deletes 20 expired pairs among 200 that stay.
func BenchmarkSweep(b *testing.B) { backendbench.Sweep(b, 200, 20, dynamo) }
