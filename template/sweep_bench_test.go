// Sweep scaling: the sweep's cost on databases of 10k, 100k and 1M pairs
// with the same 1000 expired pairs must not grow with the database.
//
// Measured with go test -run '^$' -bench BoltSweep -benchtime 5x ./template
// (2 cores, virtio disk, NoSync; three runs; the databases take 0.05-0.1s,
// 0.7-0.9s and 6-8s to build):
//
//	pairs=10k    14-19 ms/op   1813 pages-written/op   1000 expired/op
//	pairs=100k   30-35 ms/op   3325 pages-written/op   1000 expired/op
//	pairs=1M     45-59 ms/op   4960 pages-written/op   1000 expired/op
//
// 100 times the database costs 2.6-3.9 times as much; 10 times (100k to 1M),
// 1.5-1.7 times. The sweep walks only the due part of the expiry index: its
// cost is bounded by expired pairs x tree depth, not by the database. What
// grows is the number of distinct pages the 1000 pairs sit on: at 10k the
// access and keys indexes hold all 10k entries in 100-160 leaves, so the
// expired pairs share them; at 100k they have leaves of their own; at 1M
// they also stop sharing branch pages, and the keys bucket gains a level.
// TestBoltSweepWorkScales checks the same by counting (allocations, nodes,
// pages), not timing.

package template

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/model"
)

// sweepDB is a database of complete pairs built with raw bbolt in the
// template's layout. Every pair has a TTL and an expiry index entry; all
// expire a day after the build except the pairs in due, spread evenly over
// the ID space and the access order, which are already expired.
type sweepDB struct {
	path  string
	due   []model.PairID
	built time.Duration
}

const sweepBuildTx = 100_000 // puts per build transaction

// buildSweepDB writes n complete pairs, with empty bodies, of which due are
// expired, into a new file in dir.
//
// Every bucket is written in key order with pages filled completely, as
// bbolt's compaction leaves a file: that is fast (random puts into large
// transactions are not, and leave a large freelist, which bbolt sorts and
// writes at every commit; a cost of churn that would blur what the sweep
// itself does), and it is the densest layout, the one where a scan of the
// database would cost least compared with the sweep.
func buildSweepDB(tb testing.TB, dir string, n, due int) sweepDB {
	tb.Helper()
	start := time.Now()
	out := sweepDB{path: filepath.Join(dir, fmt.Sprintf("sweep-%d.db", n))}
	db, err := bbolt.Open(out.path, 0o600, &bbolt.Options{NoSync: true, FreelistType: bbolt.FreelistMapType,
		InitialMmapSize: max(n*2<<10, 64<<20)})
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	if _, err := initDB(db); err != nil {
		tb.Fatal(err)
	}

	rng := rand.New(rand.NewPCG(uint64(n), 1))
	ids := make([]model.PairID, n)
	for i := range ids {
		binary.LittleEndian.PutUint64(ids[i][:8], rng.Uint64())
		binary.LittleEndian.PutUint64(ids[i][8:], rng.Uint64())
	}
	slices.SortFunc(ids, func(a, b model.PairID) int { return bytes.Compare(a[:], b[:]) })

	// puts holds one transaction's puts per bucket, each in key order.
	type kv struct{ k, v []byte }
	puts := map[string][]kv{}
	npending := 0
	add := func(bucket []byte, k, v []byte) {
		puts[string(bucket)] = append(puts[string(bucket)], kv{k, v})
		npending++
	}
	commit := func() {
		err := db.Update(func(tx *bbolt.Tx) error {
			for name, kvs := range puts {
				bk := tx.Bucket([]byte(name))
				bk.FillPercent = 1
				for _, p := range kvs {
					if err := bk.Put(p.k, p.v); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			tb.Fatal(err)
		}
		clear(puts)
		npending = 0
	}

	req, resp := benchRequest(), benchResponse(nil)
	now := time.Now().UnixNano()
	every := n / due
	var keys, dueExpiry [][]byte
	for i, id := range ids {
		created := now - int64(n-i)*int64(time.Microsecond)
		expires := created + int64(24*time.Hour)
		if i%every == every/2 && len(out.due) < due {
			expires = now - int64(time.Hour)
			out.due = append(out.due, id)
			dueExpiry = append(dueExpiry, bolt.TimeKey(expires, id))
		} else {
			add(bolt.BucketExpiry, bolt.TimeKey(expires, id), nil)
		}
		key := fmt.Sprint("https://example.com/resource/", rng.Uint64())
		nonce := uint64(i + 1) // handed out in creation order, as a Bolt does
		rec := &bolt.Record{ID: id, Nonce: nonce,
			Flags:   bolt.FlagComplete | bolt.FlagHasResponse | bolt.FlagRequestDone | bolt.FlagResponseDone,
			Created: created, Completed: created, LastAccess: created, Expires: expires, TTL: int64(24 * time.Hour),
			Key: key, Method: req.Method, URL: key, ReqHeader: req.Header, Status: 200, RespHeader: resp.Header}
		add(bolt.BucketPairs, id[:], bolt.EncodeRecord(rec))
		add(bolt.BucketAccess, bolt.TimeKey(created, id), nil)
		// Both bodies are empty: no chunks, no markers.
		keys = append(keys, bolt.KeysKey(bolt.KeyHash(key), id))
		if npending >= sweepBuildTx {
			commit()
		}
	}
	commit()
	// The keys index is in cache-key-hash order, the expired pairs' expiry
	// entries before all others.
	slices.SortFunc(keys, bytes.Compare)
	for _, idx := range []struct {
		bucket []byte
		keys   [][]byte
	}{{bolt.BucketKeys, keys}, {bolt.BucketExpiry, dueExpiry}} {
		for _, k := range idx.keys {
			add(idx.bucket, k, nil)
			if npending >= sweepBuildTx {
				commit()
			}
		}
	}
	add(bolt.BucketMeta, bolt.MetaStats, bolt.EncodeStats(model.Stats{Pairs: n}))
	add(bolt.BucketMeta, bolt.MetaNonce, binary.BigEndian.AppendUint64(nil, uint64(n)))
	commit()
	if err := db.Close(); err != nil {
		tb.Fatal(err)
	}
	out.built = time.Since(start)
	return out
}

// expireAgain makes the pairs ids live, complete and expired at at, whatever
// a sweep did to them, through the storage's writer so that its counters
// stay right.
func expireAgain(s *Bolt, ids []model.PairID, at time.Time) error {
	return s.w.do(context.Background(), true, func(t *wtx) error {
		for _, id := range ids {
			rec, err := t.record(id)
			if err != nil || rec == nil {
				return fmt.Errorf("pair %s: %v", id, err)
			}
			unindex(t, rec)
			rec.Flags &^= bolt.FlagDeleted
			rec.Flags |= bolt.FlagComplete
			rec.Deleted = 0
			rec.Expires = bolt.UnixNano(at)
			t.put(t.keys, bolt.KeysKey(bolt.KeyHash(rec.Key), id), nil)
			t.put(t.acc, bolt.TimeKey(rec.LastAccess, id), nil)
			t.put(t.expiry, bolt.TimeKey(rec.Expires, id), nil)
			t.putRecord(rec)
			t.addStats(1, 0, 0, 0)
		}
		return nil
	})
}

// BenchmarkBoltSweep measures Cleanup soft-deleting the same 1000 expired
// pairs in databases of 10k, 100k and 1M pairs, all with a TTL (the expiry
// index is as large as the database). Each iteration first makes the 1000
// pairs live and expired again (untimed). Numbers at the top of this file.
//
// The databases are built once per benchmark run with raw bbolt (empty
// bodies: body size does not matter to the expiry rule) and opened NoSync, so
// that the numbers are the sweep's own work rather than fsync latency (a
// durable sweep adds two fdatasyncs per transaction of up to 256 pairs).
func BenchmarkBoltSweep(b *testing.B) {
	const due = 1000
	dir := b.TempDir()
	for _, size := range []struct {
		name string
		n    int
	}{{"10k", 10_000}, {"100k", 100_000}, {"1M", 1_000_000}} {
		var once sync.Once
		var sdb sweepDB
		b.Run("pairs="+size.name, func(b *testing.B) {
			once.Do(func() {
				sdb = buildSweepDB(b, dir, size.n, due)
				b.Logf("built %d pairs in %v", size.n, sdb.built.Round(time.Millisecond))
			})
			ctx := context.Background()
			s := openBolt(b, &BoltOptions{Path: sdb.path, NoSync: true})
			expired, pages := 0, int64(0)
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				if err := expireAgain(s, sdb.due, time.Now().Add(-time.Minute)); err != nil {
					b.Fatal(err)
				}
				w0 := pagesWritten(s)
				b.StartTimer()
				res, err := s.Cleanup(ctx)
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if res.Expired != due {
					b.Fatalf("Cleanup = %+v; want %d expired", res, due)
				}
				expired += res.Expired
				pages += pagesWritten(s) - w0
				b.StartTimer()
			}
			b.ReportMetric(float64(expired)/float64(b.N), "expired/op")
			b.ReportMetric(float64(pages)/float64(b.N), "pages-written/op")
		})
	}
}

func pagesWritten(s *Bolt) int64 {
	st := s.db.Stats()
	return st.TxStats.GetWrite()
}

// sweepWork is what one Cleanup cost, counted rather than timed.
type sweepWork struct {
	mallocs uint64 // heap allocations: records decoded and encoded, nodes materialized
	nodes   int64  // bbolt nodes materialized for writing
	writes  int64  // pages written
}

// measureSweep builds a database of n pairs and counts the work of a sweep
// that expires due of them.
func measureSweep(t *testing.T, n, due int) sweepWork {
	t.Helper()
	sdb := buildSweepDB(t, t.TempDir(), n, due)
	s := openBolt(t, &BoltOptions{Path: sdb.path, NoSync: true})
	ctx := context.Background()
	// A first sweep does what is done once (loading the counters, ...).
	if res, err := s.Cleanup(ctx); err != nil || res.Expired != due {
		t.Fatalf("Cleanup = %+v, %v; want %d expired", res, err, due)
	}
	if err := expireAgain(s, sdb.due, time.Now().Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	var m0, m1 runtime.MemStats
	tx0 := s.db.Stats().TxStats
	runtime.ReadMemStats(&m0)
	res, err := s.Cleanup(ctx)
	runtime.ReadMemStats(&m1)
	tx1 := s.db.Stats().TxStats
	if err != nil || res.Expired != due {
		t.Fatalf("Cleanup = %+v, %v; want %d expired", res, err, due)
	}
	return sweepWork{
		mallocs: m1.Mallocs - m0.Mallocs,
		nodes:   tx1.GetNodeCount() - tx0.GetNodeCount(),
		writes:  tx1.GetWrite() - tx0.GetWrite(),
	}
}

// TestBoltSweepWorkScales counts, without production hooks, the work of a
// sweep that expires the same 500 pairs in a database of 20k and of 200k
// pairs, all with a TTL: heap allocations (every record the sweep decodes or
// writes allocates, so a sweep that decoded records beyond the expired ones
// would allocate in proportion to the database) and bbolt's counts of nodes
// materialized and pages written (a sweep that rewrote more than the expired
// pairs would grow those). Ten times the database may cost somewhat more (a
// deeper tree; expired pairs spread over more distinct pages), not ten
// times more.
//
// What it cannot count is a cursor walk that only reads keys (it allocates
// nothing): BenchmarkBoltSweep's times cover that.
func TestBoltSweepWorkScales(t *testing.T) {
	if testing.Short() {
		t.Skip("builds databases of 20k and 200k pairs")
	}
	if sweepRaceBuild() {
		t.Skip("builds databases of 20k and 200k pairs, slow under the race detector; it counts work and races nothing")
	}
	const due = 500
	small := measureSweep(t, 20_000, due)
	large := measureSweep(t, 200_000, due)
	t.Logf("20k pairs: %+v; 200k pairs: %+v", small, large)
	for _, c := range []struct {
		what         string
		small, large float64
	}{
		{"heap allocations", float64(small.mallocs), float64(large.mallocs)},
		{"nodes materialized", float64(small.nodes), float64(large.nodes)},
		{"pages written", float64(small.writes), float64(large.writes)},
	} {
		if c.large > 2*c.small {
			t.Errorf("%s: %.0f for 200k pairs, %.0f for 20k; want at most twice as many", c.what, c.large, c.small)
		}
	}
}

// sweepRaceBuild reports whether the test binary was built with -race.
func sweepRaceBuild() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}
