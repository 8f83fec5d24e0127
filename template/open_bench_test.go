package template

import (
	"bytes"
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/hishel-go/hishel/backend"
	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/model"
)

var (
	openPairs = flag.Int("bolt.openpairs", 100_000, "1 KiB pairs in the file BenchmarkBoltOpen opens (1000000 for the README's numbers)")
	openPath  = flag.String("bolt.openfile", "", "the file BenchmarkBoltOpen opens: built there if missing, and kept (default: built in a temporary directory)")
)

// openBenchFile returns the file BenchmarkBoltOpen opens: -bolt.openfile,
// or a file built in a temporary directory of b.
func openBenchFile(b *testing.B) string {
	path := *openPath
	if path == "" {
		path = filepath.Join(b.TempDir(), "open.db")
	}
	if _, err := os.Stat(path); err == nil {
		return path
	}
	buildPairsFile(b, path, *openPairs)
	return path
}

// buildPairsFile stores n pairs of a 1 KiB body in a new file at path, under
// the keys pairsFileKey(0) to pairsFileKey(n-1), and closes it.
func buildPairsFile(b *testing.B, path string, n int) {
	ctx := context.Background()
	s, err := OpenBolt(ctx, &BoltOptions{Path: path, NoSync: true, SweepInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	body := make([]byte, 1<<10)
	start := time.Now()
	for i := range n {
		if err := storePair(ctx, s, pairsFileKey(i), body); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	fi, _ := os.Stat(path)
	b.Logf("%d pairs stored in %v, file %d MiB", n, time.Since(start).Round(time.Millisecond), fi.Size()>>20)
}

// pairsFileKey is the key of pair i of a file buildPairsFile built.
func pairsFileKey(i int) string { return fmt.Sprint("https://example.com/", i) }

// BenchmarkBoltOpen measures opening and closing a file of -bolt.openpairs
// 1 KiB pairs (100k by default):
//   - open-close: OpenBolt (lock, CheckFile of the branch pages, bbolt
//     reading the free list kept in the file, the format check and its
//     commit) then Close, with the open and the close timed apart;
//   - check-branches and check-deep: bolt.CheckFile alone, as every open
//     runs it, and as an open runs it when bbolt must rebuild its free
//     list (a file without one);
//   - bbolt-scan: bbolt opening the same file without a free list kept in
//     it, as Bolt opened every file before (NoFreelistSync): bbolt walks
//     the whole tree to rebuild the free list.
func BenchmarkBoltOpen(b *testing.B) {
	path := openBenchFile(b)
	ctx := context.Background()
	b.Run("open-close", func(b *testing.B) {
		var open, closing time.Duration
		for b.Loop() {
			t0 := time.Now()
			s, err := OpenBolt(ctx, &BoltOptions{Path: path, SweepInterval: -1})
			if err != nil {
				b.Fatal(err)
			}
			t1 := time.Now()
			if err := s.Close(); err != nil {
				b.Fatal(err)
			}
			open += t1.Sub(t0)
			closing += time.Since(t1)
		}
		b.ReportMetric(float64(open.Milliseconds())/float64(b.N), "open-ms")
		b.ReportMetric(float64(closing.Milliseconds())/float64(b.N), "close-ms")
	})
	for _, deep := range []bool{false, true} {
		name := map[bool]string{false: "check-branches", true: "check-deep"}[deep]
		b.Run(name, func(b *testing.B) {
			f, err := os.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			st, _ := f.Stat()
			var r io.ReaderAt = f // as OpenBolt reads the file
			if deep {
				rm, release := fileReader(f, st.Size())
				defer release()
				r = rm
			}
			for b.Loop() {
				if _, err := bolt.CheckFile(r, st.Size(), deep); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("bbolt-scan", func(b *testing.B) {
		scan := filepath.Join(b.TempDir(), "scan.db")
		copyFile(b, path, scan)
		// A commit under NoFreelistSync leaves the meta page without a
		// free list, as Bolt's files were.
		db, err := bbolt.Open(scan, 0o600, &bbolt.Options{NoFreelistSync: true, FreelistType: bbolt.FreelistMapType})
		if err != nil {
			b.Fatal(err)
		}
		if err := db.Update(func(*bbolt.Tx) error { return nil }); err != nil {
			b.Fatal(err)
		}
		db.Close()
		for b.Loop() {
			db, err := bbolt.Open(scan, 0o600, &bbolt.Options{NoFreelistSync: true, FreelistType: bbolt.FreelistMapType})
			if err != nil {
				b.Fatal(err)
			}
			db.Close()
		}
	})
}

func copyFile(tb testing.TB, from, to string) {
	tb.Helper()
	src, err := os.Open(from)
	if err != nil {
		tb.Fatal(err)
	}
	defer src.Close()
	dst, err := os.Create(to)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		tb.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkBoltCommitFreelist measures what keeping the free list in the
// file costs a commit: raw bbolt commits of one 1 KiB put, without fsync
// (the two fdatasyncs of a durable commit are the same either way), with
// the free list written by each commit and without, taking turns on the
// same file with about free pages free. "x-unsynced" is the commit's time
// over the time without the free list.
func BenchmarkBoltCommitFreelist(b *testing.B) {
	for _, free := range []int{0, 16_000, 100_000} {
		b.Run(fmt.Sprintf("free=%d", free), func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "fl.db")
			db, err := bbolt.Open(path, 0o600, &bbolt.Options{NoSync: true, FreelistType: bbolt.FreelistMapType})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			// Values of 3 KiB take a page each: deleting every other one
			// frees about one page per deletion.
			val := make([]byte, 3<<10)
			n := 2*free + 1000
			for done := 0; done < n; {
				err := db.Update(func(tx *bbolt.Tx) error {
					bk, err := tx.CreateBucketIfNotExists([]byte("b"))
					if err != nil {
						return err
					}
					for i := 0; i < 10_000 && done < n; i, done = i+1, done+1 {
						if err := bk.Put(binary.BigEndian.AppendUint64(nil, uint64(done)), val); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			err = db.Update(func(tx *bbolt.Tx) error {
				bk := tx.Bucket([]byte("b"))
				for i := 0; i < 2*free; i += 2 {
					if err := bk.Delete(binary.BigEndian.AppendUint64(nil, uint64(i))); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
			if err := db.Update(func(*bbolt.Tx) error { return nil }); err != nil { // the deletions' pages are free now
				b.Fatal(err)
			}
			b.ReportMetric(float64(db.Stats().FreePageN), "free-pages")
			small := make([]byte, 1<<10)
			commit := func(i int) {
				err := db.Update(func(tx *bbolt.Tx) error {
					return tx.Bucket([]byte("b")).Put(binary.BigEndian.AppendUint64([]byte{0xff}, uint64(i)), small)
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			var synced, unsynced time.Duration
			const round = 16
			for done := 0; done < b.N; done += round {
				k := min(round, b.N-done)
				db.NoFreelistSync = false
				t0 := time.Now()
				for i := range k {
					commit(2 * (done + i))
				}
				t1 := time.Now()
				db.NoFreelistSync = true
				for i := range k {
					commit(2*(done+i) + 1)
				}
				synced += t1.Sub(t0)
				unsynced += time.Since(t1)
			}
			db.NoFreelistSync = false
			b.ReportMetric(float64(unsynced.Nanoseconds())/float64(b.N), "unsynced-ns/op")
			b.ReportMetric(float64(synced)/float64(unsynced), "x-unsynced")
		})
	}
}

// BenchmarkChecksum measures what the checksums cost next to the work
// they ride on: CRC-32C of a 64 KiB pair's chunk and record, and of 1 GiB
// of chunks, against storing (durably, one writer) and reading back the
// same, in the same process. "share" is the checksum's time over the
// store's or the read's.
func BenchmarkChecksum(b *testing.B) {
	body := bytes.Repeat([]byte("0123456789abcdef"), benchBody/16)
	rec := bolt.EncodeRecord(&bolt.Record{Method: "GET", URL: benchRequest().URL, ReqHeader: benchRequest().Header,
		RespHeader: benchResponse(nil).Header, Key: "k"})
	sum := func(n int) time.Duration {
		t0 := time.Now()
		var s uint32
		for range n {
			s += backend.UpdateChecksum(backend.Checksum(body[:bolt.ChunkSeekLen]), body)
			s += backend.Checksum(rec)
		}
		_ = s
		return time.Since(t0)
	}
	b.Run("crc32c-64KiB", func(b *testing.B) { // the checksum alone
		b.SetBytes(benchBody)
		for b.Loop() {
			backend.UpdateChecksum(backend.Checksum(body[:bolt.ChunkSeekLen]), body)
		}
	})
	b.Run("64KiB-write", func(b *testing.B) {
		ctx := context.Background()
		s := openBolt(b, nil)
		b.SetBytes(benchBody)
		t0 := time.Now()
		for i := range b.N {
			if err := storePair(ctx, s, fmt.Sprint("k", i), body); err != nil {
				b.Fatal(err)
			}
		}
		store := time.Since(t0)
		b.ReportMetric(float64(sum(b.N))/float64(store), "share")
	})
	// A read computes the record's checksum and those of the chunks it
	// checks (see BoltOptions.VerifyEveryRead): share is what those cost,
	// timed apart, over the read's time.
	crcChunk := perOp(func() { backend.UpdateChecksum(backend.Checksum(body[:bolt.ChunkSeekLen]), body) })
	crcRec := perOp(func() { backend.Checksum(rec) })
	crcCost := func(reads int, checked int64) time.Duration {
		return time.Duration(float64(crcChunk)*float64(checked)/float64(len(body))) + time.Duration(reads)*crcRec
	}
	for _, every := range []bool{false, true} {
		b.Run(fmt.Sprintf("64KiB-read/verify-every-read=%v", every), func(b *testing.B) {
			ctx := context.Background()
			s := openBolt(b, &BoltOptions{NoSync: true, VerifyEveryRead: every})
			for i := range 100 {
				if err := storePair(ctx, s, fmt.Sprint("k", i), body); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(benchBody)
			buf := make([]byte, 32<<10)
			checked := s.verified.bytes.Load()
			t0 := time.Now()
			for i := range b.N {
				ps, err := s.GetPairs(ctx, fmt.Sprint("k", i%100))
				if err != nil || len(ps) != 1 {
					b.Fatal(err)
				}
				if _, err := io.CopyBuffer(io.Discard, ps[0].Response.Body, buf); err != nil {
					b.Fatal(err)
				}
				ps[0].Close()
			}
			read := time.Since(t0)
			checked = s.verified.bytes.Load() - checked
			b.ReportMetric(float64(crcCost(b.N, checked))/float64(read), "share")
		})
	}
	b.Run("1GiB-first-read", func(b *testing.B) { // every chunk read for the first time
		const size = 1 << 30
		ctx := context.Background()
		s := openBolt(b, &BoltOptions{NoSync: true})
		b.SetBytes(size)
		var read time.Duration
		var checked int64
		for range b.N {
			inc, err := s.CreatePair(ctx, benchRequest())
			if err != nil {
				b.Fatal(err)
			}
			cp, err := s.AddResponse(ctx, inc.ID, model.Response{Status: 200, Body: model.NewBody(io.LimitReader(zeros{}, size))}, "big")
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, cp.Response.Body); err != nil {
				b.Fatal(err)
			}
			c0 := s.verified.bytes.Load()
			t0 := time.Now()
			ps, err := s.GetPairs(ctx, "big")
			if err != nil || len(ps) != 1 {
				b.Fatal(err)
			}
			if n, err := io.Copy(io.Discard, ps[0].Response.Body); err != nil || n != size {
				b.Fatal(n, err)
			}
			ps[0].Close()
			read += time.Since(t0)
			checked += s.verified.bytes.Load() - c0
			if err := s.Remove(ctx, inc.ID); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(crcCost(b.N, checked))/float64(read), "share")
		b.ReportMetric(float64(b.N)*size/1e6/read.Seconds(), "read-MB/s")
	})
	b.Run("1GiB-write", func(b *testing.B) {
		const size = 1 << 30
		ctx := context.Background()
		s := openBolt(b, nil)
		b.SetBytes(size)
		var store time.Duration
		for range b.N {
			t0 := time.Now()
			inc, err := s.CreatePair(ctx, benchRequest())
			if err != nil {
				b.Fatal(err)
			}
			cp, err := s.AddResponse(ctx, inc.ID, model.Response{Status: 200, Body: model.NewBody(io.LimitReader(zeros{}, size))}, "big")
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, cp.Response.Body); err != nil {
				b.Fatal(err)
			}
			store += time.Since(t0)
			if err := s.Remove(ctx, inc.ID); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(sum(b.N*size/benchBody))/float64(store), "share")
	})
}

// perOp returns what one call of f costs, timed over a few milliseconds.
func perOp(f func()) time.Duration {
	n := 1
	for {
		t0 := time.Now()
		for range n {
			f()
		}
		if d := time.Since(t0); d > 20*time.Millisecond {
			return d / time.Duration(n)
		}
		n *= 2
	}
}

// zeros reads zeros for ever.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }
