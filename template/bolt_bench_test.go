package template

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/model"
)

// The benchmarks here measure the Bolt template against raw bbolt writing or
// reading the same bytes in the same layout, in the same process. Each
// reports its own ns/op and the baseline's (raw-ns/op), and "of-raw": the
// template's throughput as a fraction of raw bbolt's (1.0 = as fast).

const benchBody = 64 << 10

// benchRequest is a request whose record is about 500 bytes.
func benchRequest() model.Request {
	return model.Request{
		Method: "GET",
		URL:    "https://example.com/some/resource/path?with=query&and=more",
		Header: http.Header{
			"Accept":          {"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"},
			"Accept-Language": {"en-US,en;q=0.5"},
			"User-Agent":      {"Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"},
			"Cookie":          {strings.Repeat("c", 120)},
		},
	}
}

func benchResponse(body []byte) model.Response {
	return model.Response{Status: 200, Header: http.Header{
		"Content-Type":  {"text/html; charset=utf-8"},
		"Cache-Control": {"max-age=3600"},
		"Etag":          {`"0123456789abcdef"`},
	}, Body: model.BytesBody(body)}
}

// storePair is the template's full write path for one pair.
func storePair(ctx context.Context, s *Bolt, key string, body []byte) error {
	inc, err := s.CreatePair(ctx, benchRequest())
	if err != nil {
		return err
	}
	cp, err := s.AddResponse(ctx, inc.ID, benchResponse(body), key)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, cp.Response.Body)
	return err
}

// rawPair is what the template writes for one complete pair, as raw puts.
type rawPair struct {
	id    model.PairID
	nonce uint64
	rec   []byte
	key   string
	body  []byte
	now   int64
}

// rawNonces hands out raw pairs' nonces in increasing order, as a Bolt does.
var rawNonces atomic.Uint64

func newRawPair(key string, body []byte) rawPair {
	req, resp := benchRequest(), benchResponse(nil)
	id := model.NewPairID()
	nonce := rawNonces.Add(1)
	now := time.Now().UnixNano()
	rec := &bolt.Record{ID: id, Nonce: nonce, Flags: bolt.FlagComplete | bolt.FlagHasResponse | bolt.FlagRequestDone | bolt.FlagResponseDone,
		Created: now, Completed: now, LastAccess: now, Key: key, Method: req.Method, URL: req.URL,
		ReqHeader: req.Header, Status: 200, RespHeader: resp.Header, RespSize: int64(len(body))}
	return rawPair{id: id, nonce: nonce, rec: bolt.EncodeRecord(rec), key: key, body: body, now: now}
}

func (p rawPair) put(tx *bbolt.Tx, chunkSize int) error {
	puts := []struct {
		bucket []byte
		k, v   []byte
	}{
		{bolt.BucketPairs, p.id[:], p.rec},
		{bolt.BucketKeys, bolt.KeysKey(bolt.KeyHash(p.key), p.id), nil},
		{bolt.BucketAccess, bolt.TimeKey(p.now, p.id), nil},
		// The request body is empty: no chunks, no marker.
	}
	var seq uint64
	for off := 0; off < len(p.body); off += chunkSize {
		puts = append(puts, struct {
			bucket []byte
			k, v   []byte
		}{bolt.BucketChunks, bolt.ChunkKey(p.nonce, bolt.KindResponse, seq, p.body[off:min(off+chunkSize, len(p.body))]), p.body[off:min(off+chunkSize, len(p.body))]})
		seq++
	}
	marker := bolt.EncodeMarker(bolt.Marker{Size: int64(len(p.body)), Chunks: seq})
	puts = append(puts, struct {
		bucket []byte
		k, v   []byte
	}{bolt.BucketChunks, bolt.ChunkKey(p.nonce, bolt.KindResponse, bolt.MarkerSeq, marker), marker})
	for _, x := range puts {
		b := tx.Bucket(x.bucket)
		if !bytes.Equal(x.bucket, bolt.BucketKeys) {
			b.FillPercent = appendFill // as the writer fills them
		}
		if err := b.Put(x.k, x.v); err != nil {
			return err
		}
	}
	return nil
}

func openRaw(b *testing.B, noSync bool) *bbolt.DB {
	// As Bolt opens its files (commits do not write the free list): the
	// baseline writes the same keys and values, checksums computed.
	db, err := bbolt.Open(filepath.Join(b.TempDir(), "raw.db"), 0o600, &bbolt.Options{NoSync: noSync, FreelistType: bbolt.FreelistMapType, NoFreelistSync: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	if _, err := initDB(db, nil); err != nil {
		b.Fatal(err)
	}
	return db
}

// rawGroupWriter is the baseline for concurrent writers: one goroutine that
// writes every pair queued while it was committing in one transaction.
type rawGroupWriter struct {
	db *bbolt.DB
	ch chan rawReq
}

type rawReq struct {
	p    rawPair
	done chan error
}

func newRawGroupWriter(db *bbolt.DB) *rawGroupWriter {
	w := &rawGroupWriter{db: db, ch: make(chan rawReq)}
	go func() {
		for first := range w.ch {
			batch := []rawReq{first}
		more:
			for {
				select {
				case r, ok := <-w.ch:
					if !ok {
						break more
					}
					batch = append(batch, r)
				default:
					break more
				}
			}
			err := db.Update(func(tx *bbolt.Tx) error {
				for _, r := range batch {
					if err := r.p.put(tx, DefaultChunkSize); err != nil {
						return err
					}
				}
				return nil
			})
			for _, r := range batch {
				r.done <- err
			}
		}
	}()
	return w
}

func (w *rawGroupWriter) put(p rawPair) error {
	done := make(chan error, 1)
	w.ch <- rawReq{p, done}
	return <-done
}

// timeN runs fn n times from `writers` goroutines and returns the time taken.
func timeN(n, writers int, fn func(i int) error) (time.Duration, error) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	next := make(chan int)
	start := time.Now()
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(i); err != nil {
					mu.Lock()
					first = err
					mu.Unlock()
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return time.Since(start), first
}

func reportVsRaw(b *testing.B, ours, raw time.Duration) {
	b.ReportMetric(float64(raw.Nanoseconds())/float64(b.N), "raw-ns/op")
	b.ReportMetric(float64(raw)/float64(ours), "of-raw")
}

// BenchmarkBoltWritePair stores a pair of ~500 B metadata and a 64 KiB
// body, durably, with 1, 8 and 32 concurrent writers; the baseline is raw
// bbolt writing the same keys and values (one Update per pair for one
// writer, a group-commit goroutine for more).
func BenchmarkBoltWritePair(b *testing.B) {
	body := bytes.Repeat([]byte("0123456789abcdef"), benchBody/16)
	for _, writers := range []int{1, 8, 32} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			ctx := context.Background()
			s := openBolt(b, nil)
			db := openRaw(b, false)
			var rawPut func(p rawPair) error
			if writers == 1 {
				rawPut = func(p rawPair) error {
					return db.Update(func(tx *bbolt.Tx) error { return p.put(tx, DefaultChunkSize) })
				}
			} else {
				g := newRawGroupWriter(db)
				defer close(g.ch)
				rawPut = g.put
			}
			b.SetBytes(benchBody)
			b.ResetTimer()
			c0, st0 := s.w.commits.Load(), s.db.Stats()
			ours, err := timeN(b.N, writers, func(i int) error { return storePair(ctx, s, fmt.Sprint("k", i), body) })
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			raw, err := timeN(b.N, writers, func(i int) error { return rawPut(newRawPair(fmt.Sprint("k", i), body)) })
			if err != nil {
				b.Fatal(err)
			}
			reportVsRaw(b, ours, raw)
			b.ReportMetric(float64(s.w.commits.Load()-c0)/float64(b.N), "commits/op")
			st := s.db.Stats()
			b.ReportMetric(float64(st.TxStats.GetPageCount()-st0.TxStats.GetPageCount())/float64(b.N), "pages/op")
		})
	}
}

// BenchmarkBoltReadPair reads a stored 64 KiB pair back: GetPairs and the
// whole response body; the baseline is a raw View doing the same lookups and
// copying the same values.
func BenchmarkBoltReadPair(b *testing.B) {
	ctx := context.Background()
	body := bytes.Repeat([]byte("0123456789abcdef"), benchBody/16)
	s := openBolt(b, &BoltOptions{NoSync: true})
	db := openRaw(b, true)
	const keys = 100
	for i := range keys {
		if err := storePair(ctx, s, fmt.Sprint("k", i), body); err != nil {
			b.Fatal(err)
		}
		p := newRawPair(fmt.Sprint("k", i), body)
		if err := db.Update(func(tx *bbolt.Tx) error { return p.put(tx, DefaultChunkSize) }); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(benchBody)
	b.ResetTimer()
	buf := make([]byte, 32<<10)
	ours, err := timeN(b.N, 1, func(i int) error {
		ps, err := s.GetPairs(ctx, fmt.Sprint("k", i%keys))
		if err != nil || len(ps) != 1 {
			return fmt.Errorf("GetPairs: %d pairs, %v", len(ps), err)
		}
		n, err := io.CopyBuffer(io.Discard, ps[0].Response.Body, buf)
		if n != benchBody {
			return fmt.Errorf("read %d bytes, %v", n, err)
		}
		return ps[0].Close()
	})
	if err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	raw, err := timeN(b.N, 1, func(i int) error {
		key := fmt.Sprint("k", i%keys)
		h := bolt.KeyHash(key)
		var got [][]byte
		return db.View(func(tx *bbolt.Tx) error {
			c := tx.Bucket(bolt.BucketKeys).Cursor()
			k, _ := c.Seek(h[:])
			if k == nil || !bytes.HasPrefix(k, h[:]) {
				return fmt.Errorf("raw key %s missing", key)
			}
			var id model.PairID
			copy(id[:], k[bolt.HashLen:])
			rec, err := bolt.DecodeRecord(tx.Bucket(bolt.BucketPairs).Get(id[:]))
			if err != nil {
				return err
			}
			cc := tx.Bucket(bolt.BucketChunks).Cursor()
			prefix := append(bolt.ChunkPrefix(rec.Nonce), byte(bolt.KindResponse))
			for k, v := cc.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = cc.Next() {
				got = append(got, bytes.Clone(v))
			}
			return nil
		})
	})
	if err != nil {
		b.Fatal(err)
	}
	reportVsRaw(b, ours, raw)
}

// BenchmarkBoltNoSyncPairs stores 1 KiB pairs one after another under
// NoSync, where nothing the caller does waits for a commit: the writer's
// pace sets the rate (posting waits for room in its queue), on an empty
// database and on one of 50k pairs. Close is timed too, so that work left
// queued counts.
func BenchmarkBoltNoSyncPairs(b *testing.B) {
	for _, prefill := range []int{0, 50_000} {
		b.Run(fmt.Sprintf("prefill=%d", prefill), func(b *testing.B) {
			ctx := context.Background()
			s, err := OpenBolt(ctx, &BoltOptions{Path: filepath.Join(b.TempDir(), "c.db"), NoSync: true, SweepInterval: -1})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			body := make([]byte, 1<<10)
			for i := range prefill {
				if err := storePair(ctx, s, fmt.Sprint("https://prefill/", i), body); err != nil {
					b.Fatal(err)
				}
			}
			c0, w0 := s.w.commits.Load(), pagesWritten(s)
			b.ReportAllocs()
			b.SetBytes(1 << 10)
			b.ResetTimer()
			for i := range b.N {
				if err := storePair(ctx, s, fmt.Sprint("https://example.com/", i), body); err != nil {
					b.Fatal(err)
				}
			}
			if err := s.Close(); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/float64(max(1, s.w.commits.Load()-c0)), "pairs/commit")
			b.ReportMetric(float64(pagesWritten(s)-w0)/float64(b.N), "pages/pair")
		})
	}
}
