package template

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hishel-go/hishel/internal/backendbench"
	"github.com/hishel-go/hishel/internal/testserver"
)

// The benchmarks run PostgreSQL and Bolt side by side in one process, on
// the same operations, so that their ratio (README's backend table) is
// measured in the same run:
//
//	go test -run '^$' -bench . -benchtime 2s -count 3 ./template

var benchTables atomic.Int64

// pg opens a store with tables of its own in the benchmark's database.
func pg(b *testing.B) backendbench.Backend {
	db := testserver.Postgres(b)
	return backendbench.Backend{Name: "Postgres", Open: func(b *testing.B, noSync bool, clock func() time.Time) backendbench.Store {
		s, err := OpenPostgres(context.Background(), &PostgresOptions{ConnString: db.DSN(), Table: fmt.Sprint("b", benchTables.Add(1)),
			NoSync: noSync, SweepInterval: -1, MaxVariants: -1, Now: clock})
		if err != nil {
			b.Fatal(err)
		}
		return s
	}}
}

// BenchmarkStore stores one pair (a GET and a 4 KiB response) per op.
func BenchmarkStore(b *testing.B) { backendbench.Stores(b, pg(b)) }

// BenchmarkHit reads one pair (GetPairs and its 4 KiB body) of 1000 per op.
func BenchmarkHit(b *testing.B) { backendbench.Hit(b, 1000, pg(b)) }

// BenchmarkSweep: a sweep that soft-deletes 500 expired pairs among 5000
// that stay, per op.
func BenchmarkSweep(b *testing.B) { backendbench.Sweep(b, 5000, 500, pg(b)) }
