package main

// The Redis comparison: hishel-go's Redis backend against its bbolt one
// and against gregjones/httpcache's Redis cache, through a Transport each,
// on a redis-server of the test harness (internal/testserver; or the one
// HISHEL_TEST_REDIS names), in one run:
//
//	cd bench && go test -run '^$' -bench Redis -count 3 .
//
// Every subject fetches from the same local origin; the plain
// http.Transport is the baseline.

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	redigo "github.com/gomodule/redigo/redis"
	gjcache "github.com/gregjones/httpcache"
	gjredis "github.com/gregjones/httpcache/redis"

	"github.com/hishel-go/hishel"
	"github.com/hishel-go/hishel/cache"
	"github.com/hishel-go/hishel/internal/testserver"
	hredis "github.com/hishel-go/hishel/redis"
)

func TestMain(m *testing.M) { os.Exit(testserver.Main(m)) }

// redisSubjects are the transports compared, each made for one
// sub-benchmark.
func redisSubjects(b *testing.B, srv testserver.RedisServer, up http.RoundTripper) []struct {
	name string
	rt   func() http.RoundTripper
} {
	return []struct {
		name string
		rt   func() http.RoundTripper
	}{
		{"plain", func() http.RoundTripper { return up }},
		{"hishel-bolt", func() http.RoundTripper {
			s, err := cache.OpenBolt(context.Background(), &cache.BoltOptions{Path: filepath.Join(b.TempDir(), "h.db"), SweepInterval: -1})
			if err != nil {
				b.Fatal(err)
			}
			t, _ := hishel.NewTransport(&hishel.Options{Storage: s, Transport: up})
			b.Cleanup(func() { t.Close(); s.Close() })
			return t
		}},
		{"hishel-redis", func() http.RoundTripper {
			s, err := hredis.OpenRedis(context.Background(), &hredis.RedisOptions{Addr: srv.Addr, Password: srv.Password,
				Username: srv.Username, DB: srv.DB, Prefix: srv.Prefix, SweepInterval: -1})
			if err != nil {
				b.Fatal(err)
			}
			t, _ := hishel.NewTransport(&hishel.Options{Storage: s, Transport: up})
			b.Cleanup(func() { t.Close(); s.Close() })
			return t
		}},
		{"gregjones-redis", func() http.RoundTripper {
			opts := []redigo.DialOption{redigo.DialDatabase(srv.DB)}
			if srv.Password != "" {
				opts = append(opts, redigo.DialPassword(srv.Password), redigo.DialUsername(srv.Username))
			}
			conn, err := redigo.Dial("tcp", srv.Addr, opts...)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { conn.Close() })
			t := gjcache.NewTransport(gjredis.NewWithClient(conn))
			t.Transport = up
			return t
		}},
	}
}

// BenchmarkRedis: hit and miss+store of 1 KiB and 1 MiB bodies through
// each subject, in alternating rounds of 32 fetches (every subject takes
// its turn in each round, so that the machine's noise hits them alike)
// for the benchmark time. It reports each subject's ns/op and the ratios
// that matter, measured together: hishel-redis over hishel-bolt, over
// gregjones-redis, and over the plain transport. b.N is not used: one
// run is one interleaved measurement.
func BenchmarkRedis(b *testing.B) {
	srv := testserver.Redis(b)
	o := origin()
	b.Cleanup(o.Close)
	up := &http.Transport{MaxIdleConnsPerHost: 16}
	b.Cleanup(up.CloseIdleConnections)
	var seq atomic.Int64
	for _, size := range []int{1 << 10, 1 << 20} {
		for _, hit := range []bool{true, false} {
			kind := "miss+store"
			if hit {
				kind = "hit"
			}
			b.Run(fmt.Sprintf("%s/%s", kind, human2(size)), func(b *testing.B) {
				subjects := redisSubjects(b, srv, up)
				ops := make([]op, len(subjects))
				for i, subj := range subjects {
					c := &http.Client{Transport: subj.rt()}
					if !hit {
						ops[i] = func(int, int) error {
							return fetch(c, fmt.Sprintf("%s/size/%d/m%d-%s", o.URL, size, seq.Add(1), subj.name))
						}
						continue
					}
					u := fmt.Sprintf("%s/size/%d/hit-%s", o.URL, size, subj.name)
					if err := fetch(c, u); err != nil {
						b.Fatal(err)
					}
					ops[i] = func(int, int) error { return fetch(c, u) }
				}
				sides := make([]side, len(subjects))
				d := benchTime()
				for total := time.Duration(0); total < d; {
					for i := range subjects {
						if err := round(&sides[i], ops[i], 1, 32); err != nil {
							b.Fatal(err)
						}
					}
					total = 0
					for _, sd := range sides {
						total += sd.elapsed
					}
				}
				ns := map[string]float64{}
				for i, subj := range subjects {
					ns[subj.name] = sides[i].nsOp()
					b.ReportMetric(sides[i].nsOp(), subj.name+"-ns/op")
				}
				b.ReportMetric(ns["hishel-redis"]/ns["hishel-bolt"], "redis/bolt")
				b.ReportMetric(ns["hishel-redis"]/ns["gregjones-redis"], "redis/gregjones")
				b.ReportMetric(ns["hishel-redis"]/ns["plain"], "redis/plain")
			})
		}
	}
}

// benchTime is how long one interleaved measurement runs: -test.benchtime
// when it is a duration, else 2s.
func benchTime() time.Duration {
	if f := flag.Lookup("test.benchtime"); f != nil {
		if d, err := time.ParseDuration(f.Value.String()); err == nil && d > 0 {
			return d
		}
	}
	return 2 * time.Second
}

func human2(n int) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%dMiB", n>>20)
	}
	return fmt.Sprintf("%dKiB", n>>10)
}
