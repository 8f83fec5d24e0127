package template

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hishel-go/hishel/internal/backendbench"
	"github.com/hishel-go/hishel/internal/testserver"
)

// The benchmarks run S3 (on the test server, versitygw on a local disk)
// and Bolt side by side in one process, on the same operations, so that
// their ratio (README's backend table) is measured in the same run:
//
//	go test -run '^$' -bench . -benchtime 2s -count 3 ./template

// s3Backend opens a store with a prefix of its own in the benchmark's
// bucket. S3 has no NoSync mode: every write is durable when it returns.
func s3Backend(b *testing.B) backendbench.Backend {
	srv := testserver.S3(b)
	return backendbench.Backend{Name: "S3", Open: func(b *testing.B, _ bool, clock func() time.Time) backendbench.Store {
		s, err := OpenS3(context.Background(), &S3Options{Bucket: srv.Bucket, Prefix: fmt.Sprint("b", prefixes.Add(1)),
			Endpoint: srv.Endpoint, Region: srv.Region, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
			SweepInterval: -1, MaxVariants: -1, Now: clock})
		if err != nil {
			b.Fatal(err)
		}
		return s
	}}
}

// BenchmarkStore stores one pair (a GET and a 4 KiB response) per op.
func BenchmarkStore(b *testing.B) { backendbench.Stores(b, s3Backend(b)) }

// BenchmarkHit reads one pair (GetPairs and its 4 KiB body) of 200 per op.
func BenchmarkHit(b *testing.B) { backendbench.Hit(b, 200, s3Backend(b)) }

// BenchmarkSweep: a sweep that soft-deletes 50 expired pairs among 200 and
// among 800 that stay, per op: its cost follows what it removes.
func BenchmarkSweep(b *testing.B) {
	for _, live := range []int{200, 800} {
		b.Run(fmt.Sprint("live=", live), func(b *testing.B) { backendbench.Sweep(b, live, 50, s3Backend(b)) })
	}
}
