// Sweep scaling: the sweep's cost on databases of 10k, 100k and 1M pairs
// with the same 1000 expired pairs must not grow with the database.
//
// Measured with go test -run '^$' -bench 'BoltSweep|BoltStaleClean'
// -benchtime 5x ./template (2 cores, virtio disk, NoSync; the databases
// take 0.05-0.1s, 0.6-1s and 9-10s to build). The sweep itself, with the
// expired pairs as the oldest (a cache whose pairs share a TTL: version 7
// pair IDs and nonces follow creation order, so their records are
// neighbours) and spread evenly (pairs with different TTLs: the worst
// case, every record on its own page):
//
//	              oldest                  spread
//	pairs=10k     8.8 ms   251 pages      18 ms   1094 pages
//	pairs=100k   10.7 ms   259 pages      26 ms   1221 pages
//	pairs=1M     11.7 ms   259 pages      31 ms   2095 pages
//
// (the version before the stale log, which deleted each pair's keys and
// access entries at once, took 25 / 46 / 74 ms and 1720 / 3274 / 4962
// pages spread) and the batch that deletes the keys and access entries the
// sweep leaves in the stale log, two per pair, at the log length that
// starts one:
//
//	pairs=10k     4096 entries   3.5 µs/entry   0.055 pages/entry
//	pairs=100k   12500 entries   5.2 µs/entry   0.18 pages/entry
//	pairs=1M    125000 entries   6.2 µs/entry   0.17 pages/entry
//
// The batch's pages per entry level off once the log is an eighth of the
// pairs (at 10k, the 4096-entry minimum makes batches relatively larger).
// So a sweep's whole cost per 1000 expired pairs, with its share of
// batches, is 16 / 21 / 24 ms and 0.36k / 0.62k / 0.61k pages for the
// oldest, 25 / 36 / 44 ms and 1.2k / 1.6k / 2.4k pages spread. The sweep
// walks only the due part of the expiry index: its cost is bounded by the
// expired pairs times the tree's depth, never a scan. Pages written are
// flat for the oldest; spread, what grows is the number of distinct
// branch pages above the expired pairs' records (at 10k they share them,
// at 1M they do not), bounded by the depth. TestBoltSweepWorkScales checks
// both by counting (allocations, nodes, pages), not timing.

package template

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
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
// expire a day after the build except the pairs in due, which are already
// expired.
type sweepDB struct {
	path  string
	due   []model.PairID
	gone  []model.PairID
	stale int // stale log entries
	built time.Duration
}

const sweepBuildTx = 100_000 // puts per build transaction

// dueAt says where a sweep database's expired pairs are.
type dueAt int

const (
	// dueSpread spreads them evenly over the creation order (and so over
	// the pair IDs, the nonces and the access order): pairs given
	// different TTLs, the worst case for the sweep, whose records then sit
	// on as many distinct pages as there are pairs.
	dueSpread dueAt = iota
	// dueOldest makes them the pairs created first: a cache whose pairs
	// share one TTL, where the oldest expire first. Version 7 pair IDs and
	// nonces follow creation order, so their records are neighbours.
	dueOldest
)

func (d dueAt) String() string { return [...]string{"spread", "oldest"}[d] }

// buildSweepDB writes n pairs, with empty bodies, into a new file in dir:
// due of them complete and expired (placed as at says), gone of them (spread as evenly, but
// never one of those due) soft-deleted with their keys and access entries
// still in place and listed in the stale log, as a sweep leaves them, and
// the others complete and live.
//
// Every bucket is written in key order with pages filled completely, as
// bbolt's compaction leaves a file: that is fast (random puts into large
// transactions are not, and leave a large freelist, which bbolt sorts and
// writes at every commit; a cost of churn that would blur what the sweep
// itself does), and it is the densest layout, the one where a scan of the
// database would cost least compared with the sweep.
func buildSweepDB(tb testing.TB, dir string, n, due, gone int, at dueAt) sweepDB {
	tb.Helper()
	start := time.Now()
	out := sweepDB{path: filepath.Join(dir, fmt.Sprintf("sweep-%d-%s.db", n, at))}
	db, err := bbolt.Open(out.path, 0o600, &bbolt.Options{NoSync: true, FreelistType: bbolt.FreelistMapType,
		InitialMmapSize: max(n*2<<10, 64<<20)})
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	if _, err := initDB(db, nil); err != nil {
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
	spread := func(k int) func(i int) bool {
		if k == 0 {
			return func(int) bool { return false }
		}
		every := n / k
		return func(i int) bool { return i%every == every/2 }
	}
	isDue, isGone := spread(due), spread(gone)
	if at == dueOldest {
		isDue = func(i int) bool { return i < due }
	}
	var keys, dueExpiry, deleted, stale [][]byte
	for i, id := range ids {
		created := now - int64(n-i)*int64(time.Microsecond)
		expires := created + int64(24*time.Hour)
		key := fmt.Sprint("https://example.com/resource/", rng.Uint64())
		nonce := uint64(i + 1) // handed out in creation order, as a Bolt does
		rec := &bolt.Record{ID: id, Nonce: nonce,
			Flags:   bolt.FlagComplete | bolt.FlagHasResponse | bolt.FlagRequestDone | bolt.FlagResponseDone,
			Created: created, Completed: created, LastAccess: created, Expires: expires, TTL: int64(24 * time.Hour),
			Key: key, Method: req.Method, URL: key, ReqHeader: req.Header, Status: 200, RespHeader: resp.Header}
		switch {
		case isDue(i) && len(out.due) < due:
			rec.Expires = now - int64(time.Hour)
			out.due = append(out.due, id)
			dueExpiry = append(dueExpiry, bolt.TimeKey(rec.Expires, id))
		case isGone(i) && len(out.gone) < gone:
			rec.Flags |= bolt.FlagDeleted
			rec.Deleted = now - int64(time.Minute)
			out.gone = append(out.gone, id)
			deleted = append(deleted, bolt.TimeKey(rec.Deleted, id))
			stale = append(stale, bolt.StaleValue(bolt.IndexKeys, bolt.KeysKey(bolt.KeyHash(key), id)),
				bolt.StaleValue(bolt.IndexAccess, bolt.TimeKey(created, id)))
		default:
			add(bolt.BucketExpiry, bolt.TimeKey(expires, id), nil)
		}
		add(bolt.BucketPairs, id[:], bolt.EncodeRecord(rec))
		add(bolt.BucketAccess, bolt.TimeKey(created, id), nil)
		// Both bodies are empty: no chunks, no markers.
		keys = append(keys, bolt.KeysKey(bolt.KeyHash(key), id))
		if npending >= sweepBuildTx {
			commit()
		}
	}
	commit()
	// The stale log in the order the pairs went (here, creation order).
	for i, v := range stale {
		add(bolt.BucketStale, bolt.StaleKey(uint64(i+1)), v)
	}
	out.stale = len(stale)
	// The keys index is in cache-key-hash order, the expired pairs' expiry
	// entries before all others.
	slices.SortFunc(keys, bytes.Compare)
	for _, idx := range []struct {
		bucket []byte
		keys   [][]byte
	}{{bolt.BucketKeys, keys}, {bolt.BucketExpiry, dueExpiry}, {bolt.BucketDeleted, deleted}} {
		for _, k := range idx.keys {
			add(idx.bucket, k, nil)
			if npending >= sweepBuildTx {
				commit()
			}
		}
	}
	add(bolt.BucketMeta, bolt.MetaStats, bolt.EncodeStats(model.Stats{Pairs: n - len(out.gone), Deleted: len(out.gone)}))
	add(bolt.BucketMeta, bolt.MetaNonce, bolt.EncodeNonce(uint64(n)))
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
		// The stale log entries of the last sweep name live entries now;
		// the next sweep must not pay for checking them.
		for t.trimStale(math.MaxUint64, sweepBuildTx) {
		}
		return nil
	})
}

// sweepSizes are the database sizes the sweep benchmarks compare.
var sweepSizes = []struct {
	name string
	n    int
}{{"10k", 10_000}, {"100k", 100_000}, {"1M", 1_000_000}}

// BenchmarkBoltStaleClean measures the batch that deletes the keys and
// access index entries of pairs gone (cleanStale), at the length the
// stale log reaches before a sweep runs one: staleMin entries, or one per
// staleShare pairs, two per pair gone. Each iteration first puts the
// entries and their log back (untimed). With BenchmarkBoltSweep it gives a
// sweep's whole cost: its own, plus two entries' share of a batch per pair
// it expires.
func BenchmarkBoltStaleClean(b *testing.B) {
	dir := b.TempDir()
	for _, size := range sweepSizes {
		var once sync.Once
		var sdb sweepDB
		b.Run("pairs="+size.name, func(b *testing.B) {
			once.Do(func() {
				sdb = buildSweepDB(b, dir, size.n, 0, max(staleMin, size.n/staleShare)/2, dueSpread)
				b.Logf("built %d pairs (%d stale entries) in %v", size.n, sdb.stale, sdb.built.Round(time.Millisecond))
			})
			ctx := context.Background()
			s := openBolt(b, &BoltOptions{Path: sdb.path, NoSync: true})
			var pages int64
			b.ResetTimer()
			for i := range b.N {
				b.StopTimer()
				if i > 0 {
					if err := restoreStale(s, sdb.gone); err != nil {
						b.Fatal(err)
					}
				}
				w0 := pagesWritten(s)
				b.StartTimer()
				if err := s.cleanStale(ctx, staleMin); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				pages += pagesWritten(s) - w0
				if n := bucketLen(b, s, bolt.BucketStale); n != 0 {
					b.Fatalf("stale log after cleanStale: %d entries; want none", n)
				}
				b.StartTimer()
			}
			entries := float64(b.N * sdb.stale)
			b.ReportMetric(float64(sdb.stale), "entries/op")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/entries, "ns/entry")
			b.ReportMetric(float64(pages)/entries, "pages/entry")
		})
	}
}

// restoreStale puts back the keys and access entries of the soft-deleted
// pairs ids, and their stale log entries.
func restoreStale(s *Bolt, ids []model.PairID) error {
	return s.w.do(context.Background(), true, func(t *wtx) error {
		for _, id := range ids {
			rec, err := t.record(id)
			if err != nil || rec == nil {
				return fmt.Errorf("pair %s: %v", id, err)
			}
			h := bolt.KeyHash(rec.Key)
			t.put(t.keys, bolt.KeysKey(h, id), nil)
			t.put(t.acc, bolt.TimeKey(rec.LastAccess, id), nil)
			t.retireKey(h, id)
			t.retireAccess(rec.LastAccess, id)
		}
		return nil
	})
}

// bucketLen returns the number of keys in bucket name of s.
func bucketLen(tb testing.TB, s *Bolt, name []byte) int {
	tb.Helper()
	var n int
	if err := s.db.View(func(tx *bbolt.Tx) error {
		n = tx.Bucket(name).Stats().KeyN
		return nil
	}); err != nil {
		tb.Fatal(err)
	}
	return n
}

// BenchmarkBoltSweep measures Cleanup soft-deleting the same 1000 expired
// pairs in databases of 10k, 100k and 1M pairs, all with a TTL (the expiry
// index is as large as the database), with the expired pairs spread evenly
// and as the oldest (see dueAt). Each iteration first makes the 1000 pairs
// live and expired again (untimed). Numbers at the top of this file.
//
// The databases are built once per benchmark run with raw bbolt (empty
// bodies: body size does not matter to the expiry rule) and opened NoSync, so
// that the numbers are the sweep's own work rather than fsync latency (a
// durable sweep adds two fdatasyncs per transaction of up to 256 pairs).
func BenchmarkBoltSweep(b *testing.B) {
	const due = 1000
	dir := b.TempDir()
	for _, at := range []dueAt{dueSpread, dueOldest} {
		for _, size := range sweepSizes {
			var once sync.Once
			var sdb sweepDB
			b.Run(fmt.Sprintf("due=%s/pairs=%s", at, size.name), func(b *testing.B) {
				once.Do(func() {
					sdb = buildSweepDB(b, dir, size.n, due, 0, at)
					b.Logf("built %d pairs in %v", size.n, sdb.built.Round(time.Millisecond))
				})
				benchSweep(b, sdb, due)
			})
		}
	}
}

func benchSweep(b *testing.B, sdb sweepDB, due int) {
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
func measureSweep(t *testing.T, n, due int, at dueAt) sweepWork {
	t.Helper()
	sdb := buildSweepDB(t, t.TempDir(), n, due, 0, at)
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
// pairs would grow those). With the expired pairs as the oldest, ten times
// the database costs about the same (their records are neighbours); spread
// evenly, it may cost somewhat more (a deeper tree; the records' branch
// pages stop being shared), not ten times more.
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
	small := measureSweep(t, 20_000, due, dueSpread)
	large := measureSweep(t, 200_000, due, dueSpread)
	t.Logf("20k pairs: %+v; 200k pairs: %+v", small, large)
	oldSmall, oldLarge := measureSweep(t, 20_000, due, dueOldest), measureSweep(t, 200_000, due, dueOldest)
	t.Logf("the oldest expired: 20k pairs: %+v; 200k pairs: %+v", oldSmall, oldLarge)
	for _, c := range []struct {
		what               string
		small, large       float64
		oldSmall, oldLarge float64
	}{
		{"heap allocations", float64(small.mallocs), float64(large.mallocs), float64(oldSmall.mallocs), float64(oldLarge.mallocs)},
		{"nodes materialized", float64(small.nodes), float64(large.nodes), float64(oldSmall.nodes), float64(oldLarge.nodes)},
		{"pages written", float64(small.writes), float64(large.writes), float64(oldSmall.writes), float64(oldLarge.writes)},
	} {
		if c.large > 2*c.small {
			t.Errorf("%s, expired pairs spread: %.0f for 200k pairs, %.0f for 20k; want at most twice as many", c.what, c.large, c.small)
		}
		// Neighbouring records: the same pages but for a deeper tree's
		// one more branch page per transaction and bucket.
		if c.oldLarge > 1.1*c.oldSmall+16 {
			t.Errorf("%s, the oldest expired: %.0f for 200k pairs, %.0f for 20k; want about as many", c.what, c.oldLarge, c.oldSmall)
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
