package template

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/model"
)

func TestBoltSweep(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	s := openBolt(t, &BoltOptions{Now: c.Now, DefaultTTL: time.Hour, RefreshTTLOnAccess: model.NoRefresh})
	store(t, s, getReq("u"), okResp("expires"), "a")
	keep := getReq("u")
	keep.Options.TTL = model.NoExpiry
	store(t, s, keep, okResp("keeps"), "b")
	old, err := s.CreatePair(ctx, getReq("u")) // never completed
	if err != nil {
		t.Fatal(err)
	}

	sweep := func(want model.SweepResult, wantStats model.Stats) {
		t.Helper()
		got, err := s.Cleanup(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("Cleanup = %+v; want %+v", got, want)
		}
		if st := mustStats(t, s); st != wantStats {
			t.Errorf("Stats = %+v; want %+v", st, wantStats)
		}
	}
	sweep(model.SweepResult{}, model.Stats{Pairs: 2, Incomplete: 1, Bytes: 12})

	c.Advance(30 * time.Minute)
	young, err := s.CreatePair(ctx, getReq("u"))
	if err != nil {
		t.Fatal(err)
	}
	c.Advance(31 * time.Minute) // a expired; old is 61 minutes old, young 31
	sweep(model.SweepResult{Expired: 1, Abandoned: 1}, model.Stats{Pairs: 1, Incomplete: 1, Deleted: 1, Bytes: 12})
	if ps := mustGet(t, s, "a"); len(ps) != 0 {
		t.Errorf("expired pair still served")
	}
	if _, err := s.AddResponse(ctx, old.ID, okResp("late"), "c"); !errors.Is(err, model.ErrNotFound) {
		t.Errorf("AddResponse to an abandoned pair = %v; want ErrNotFound", err)
	}

	c.Advance(DefaultDeletedRetention - time.Minute)
	sweep(model.SweepResult{Abandoned: 1}, model.Stats{Pairs: 1, Deleted: 1, Bytes: 12})
	c.Advance(time.Minute)
	sweep(model.SweepResult{Purged: 1}, model.Stats{Pairs: 1, Bytes: 5})
	_ = young
	if got := bodies(t, mustGet(t, s, "b")); len(got) != 1 || got[0] != "|keeps" {
		t.Errorf("pair without expiry = %q; want [|keeps]", got)
	}
}

func TestBoltSweepBatches(t *testing.T) {
	c := newClock()
	s := openBolt(t, &BoltOptions{Now: c.Now, DefaultTTL: time.Minute})
	n := 2*sweepBatch + 3
	for i := range n {
		store(t, s, getReq("u"), okResp("x"), fmt.Sprint(i))
	}
	c.Advance(2 * time.Minute)
	res, err := s.Cleanup(context.Background())
	if err != nil || res.Expired != n {
		t.Fatalf("Cleanup = %+v, %v; want %d expired", res, err, n)
	}
}

func TestBoltBackgroundSweep(t *testing.T) {
	c := newClock()
	s := openBolt(t, &BoltOptions{Now: c.Now, DefaultTTL: time.Minute, SweepInterval: 5 * time.Millisecond})
	store(t, s, getReq("u"), okResp("x"), "k")
	c.Advance(2 * time.Minute)
	deadline := time.Now().Add(10 * time.Second)
	for mustStats(t, s).Deleted != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("background sweep did not soft-delete the expired pair: %+v", mustStats(t, s))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestBoltSizeBudget(t *testing.T) {
	c := newClock()
	s := openBolt(t, &BoltOptions{Now: c.Now, MaxBytes: 3000})
	body := string(bytes.Repeat([]byte("x"), 1000))
	for _, k := range []string{"a", "b", "c"} {
		store(t, s, getReq("u"), okResp(body), k)
		c.Advance(time.Second)
	}
	bodies(t, mustGet(t, s, "a")) // a is now the most recently used
	c.Advance(time.Second)
	store(t, s, getReq("u"), okResp(body), "d") // over budget: b goes
	for k, want := range map[string]int{"a": 1, "b": 0, "c": 1, "d": 1} {
		if got := len(mustGet(t, s, k)); got != want {
			t.Errorf("after eviction, %d pairs under %q; want %d", got, k, want)
		}
	}
	if st := mustStats(t, s); st.Bytes > 3000 || st.Pairs != 3 {
		t.Errorf("Stats = %+v; want 3 pairs within 3000 bytes", st)
	}
}

func TestBoltOpenErrors(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	rawDB := func(name string, fn func(tx *bbolt.Tx) error) string {
		p := filepath.Join(dir, name)
		db, err := bbolt.Open(p, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Update(fn); err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		return p
	}
	held := filepath.Join(dir, "held.db")
	holder := openBolt(t, &BoltOptions{Path: held})
	_ = holder

	tests := []struct {
		name string
		path string
		want error
	}{
		{"held by another opener", held, model.ErrLocked},
		{"text file", write("text.db", bytes.Repeat([]byte("not a database\n"), 1000)), model.ErrCorrupt},
		{"short file", write("short.db", []byte("xyz")), model.ErrCorrupt},
		{"foreign bbolt file", rawDB("foreign.db", func(tx *bbolt.Tx) error {
			_, err := tx.CreateBucket([]byte("other"))
			return err
		}), model.ErrCorrupt},
		{"newer format", rawDB("newer.db", func(tx *bbolt.Tx) error {
			b, err := tx.CreateBucket(bolt.BucketMeta)
			if err != nil {
				return err
			}
			return b.Put(bolt.MetaFormat, []byte{bolt.FormatVersion + 1})
		}), model.ErrFormatVersion},
		{"missing directory", filepath.Join(dir, "no", "such", "dir.db"), os.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := OpenBolt(ctx, &BoltOptions{Path: tt.path, OpenTimeout: 50 * time.Millisecond, SweepInterval: -1})
			if err == nil {
				s.Close()
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("OpenBolt(%s) err = %v; want %v", tt.name, err, tt.want)
			}
		})
	}
}

func TestBoltReadOnlyDirectory(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(dir, 0o700) })
	path := filepath.Join(dir, "cache.db")
	if f, err := os.Create(path); err == nil {
		// Running as root, permissions do not stop us: use a directory
		// no one can create files in instead.
		f.Close()
		os.Remove(path)
		path = "/proc/hishel-test/cache.db"
	}
	_, err := OpenBolt(context.Background(), &BoltOptions{Path: path, SweepInterval: -1})
	if err == nil || !(errors.Is(err, os.ErrPermission) || errors.Is(err, os.ErrNotExist)) {
		t.Fatalf("OpenBolt in a read-only directory: err = %v; want a permission or not-exist error", err)
	}
}

func TestBoltUnknownRecordVersion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.db")
	s := openBolt(t, &BoltOptions{Path: path})
	cp := store(t, s, getReq("u"), okResp("x"), "k")
	s.Close()
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bolt.BucketPairs)
		v := bytes.Clone(b.Get(cp.ID[:]))
		v[0] = 99
		return b.Put(cp.ID[:], v)
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	s = openBolt(t, &BoltOptions{Path: path})
	if _, err := s.GetPairs(context.Background(), "k"); !errors.Is(err, model.ErrFormatVersion) {
		t.Fatalf("GetPairs over a record of an unknown version: err = %v; want ErrFormatVersion", err)
	}
}

func TestBoltUseAfterClose(t *testing.T) {
	ctx := context.Background()
	s := openBolt(t, nil)
	cp := store(t, s, getReq("u"), model.Response{Status: 200, Body: model.BytesBody(make([]byte, 4*readAhead))}, "k")
	inc, err := s.CreatePair(ctx, model.Request{Method: "GET", URL: "u", Body: model.StringBody("req")})
	if err != nil {
		t.Fatal(err)
	}
	ps := mustGet(t, s, "k")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	checks := map[string]error{}
	_, checks["CreatePair"] = s.CreatePair(ctx, getReq("u"))
	_, checks["AddResponse"] = s.AddResponse(ctx, cp.ID, okResp("x"), "k")
	_, checks["GetPairs"] = s.GetPairs(ctx, "k")
	_, checks["GetPair"] = s.GetPair(ctx, cp.ID)
	_, checks["UpdatePair"] = s.UpdatePair(ctx, cp.ID, cp)
	checks["Remove"] = s.Remove(ctx, cp.ID)
	_, checks["Cleanup"] = s.Cleanup(ctx)
	checks["Clear"] = s.Clear(ctx)
	checks["Pairs"] = s.Pairs(ctx, func(model.PairInfo) error { return nil })
	_, checks["Stats"] = s.Stats(ctx)
	_, checks["request body stream"] = io.ReadAll(inc.Request.Body)
	// The first 64 KiB of a stored body come with GetPairs; the rest is
	// read from the closed database.
	_, checks["stored body read"] = io.ReadAll(ps[0].Response.Body)
	for name, err := range checks {
		if !errors.Is(err, model.ErrClosed) {
			t.Errorf("%s after Close: err = %v; want ErrClosed", name, err)
		}
	}
}

func TestBoltPairsIteration(t *testing.T) {
	ctx := context.Background()
	s := openBolt(t, nil)
	want := map[model.PairID]model.PairState{}
	for i := range listPage + 10 {
		cp := store(t, s, getReq("u"), okResp("x"), fmt.Sprint(i))
		want[cp.ID] = model.StateComplete
	}
	inc, _ := s.CreatePair(ctx, getReq("u"))
	want[inc.ID] = model.StateIncomplete
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	got := map[model.PairID]model.PairState{}
	err := s.Pairs(ctx, func(p model.PairInfo) error {
		if _, dup := got[p.ID]; dup {
			return fmt.Errorf("pair %v listed twice", p.ID)
		}
		got[p.ID] = p.State
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("Pairs listed %d pairs; want %d", len(got), len(want))
	}
	for id, st := range want {
		if got[id] != st {
			t.Errorf("pair %v state %v; want %v", id, got[id], st)
		}
	}
	errStop := errors.New("stop")
	if err := s.Pairs(ctx, func(model.PairInfo) error { return errStop }); !errors.Is(err, errStop) {
		t.Errorf("Pairs with a failing fn = %v; want errStop", err)
	}
}

// TestBoltConcurrent runs 64 goroutines of mixed operations; run it with
// -race. At the end the counters must agree with a full scan.
func TestBoltConcurrent(t *testing.T) {
	ctx := context.Background()
	s := openBolt(t, &BoltOptions{NoSync: true, ChunkSize: 512, DefaultTTL: time.Hour})
	const workers, rounds = 64, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for i := range rounds {
				key := fmt.Sprint("k", r.IntN(8))
				if err := concurrentStep(ctx, s, r, key, w, i); err != nil {
					errs <- fmt.Errorf("worker %d round %d: %w", w, i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	checkStats(t, s)
}

func concurrentStep(ctx context.Context, s *Bolt, r *rand.Rand, key string, w, i int) error {
	switch r.IntN(6) {
	case 0, 1: // store
		body := bytes.Repeat([]byte{byte(w)}, r.IntN(3000))
		req := getReq("u")
		req.Body = model.BytesBody([]byte(fmt.Sprint(w, i)))
		inc, err := s.CreatePair(ctx, req)
		if err != nil {
			return err
		}
		if _, err := io.Copy(io.Discard, inc.Request.Body); err != nil {
			return err
		}
		cp, err := s.AddResponse(ctx, inc.ID, model.Response{Status: 200, Body: model.BytesBody(body)}, key)
		if err != nil {
			return err
		}
		if r.IntN(5) == 0 { // abandon half-way
			return cp.Response.Body.Close()
		}
		_, err = io.Copy(io.Discard, cp.Response.Body)
		return err
	case 2: // read
		ps, err := s.GetPairs(ctx, key)
		if err != nil {
			return err
		}
		for _, p := range ps {
			b, err := model.ReadAll(p.Response.Body)
			if err != nil && !errors.Is(err, model.ErrRemoved) {
				return err
			}
			if err == nil && int64(len(b)) != p.Meta.ResponseSize {
				return fmt.Errorf("read %d bytes; stored %d", len(b), p.Meta.ResponseSize)
			}
			p.Request.Body.Close()
		}
		return nil
	case 3: // update or remove one
		ps, err := s.GetPairs(ctx, key)
		if err != nil || len(ps) == 0 {
			return err
		}
		for _, p := range ps {
			p.Close()
		}
		p := ps[r.IntN(len(ps))]
		if r.IntN(2) == 0 {
			return s.Remove(ctx, p.ID)
		}
		_, err = s.UpdatePairFunc(ctx, p.ID, func(cp model.CompletePair) (model.CompletePair, error) {
			cp.Response.Header = cp.Response.Header.Clone()
			cp.Response.Header.Set("X-Touched", fmt.Sprint(w))
			return cp, nil
		})
		if errors.Is(err, model.ErrNotFound) { // removed meanwhile
			err = nil
		}
		return err
	case 4:
		_, err := s.Cleanup(ctx)
		return err
	default:
		_, err := s.Stats(ctx)
		return err
	}
}

// checkStats compares the counters with a full scan of the pairs and chunks.
func checkStats(tb testing.TB, s *Bolt) {
	tb.Helper()
	var want model.Stats
	err := s.Pairs(context.Background(), func(p model.PairInfo) error {
		switch p.State {
		case model.StateComplete:
			want.Pairs++
		case model.StateIncomplete:
			want.Incomplete++
		case model.StateDeleted:
			want.Deleted++
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	err = s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bolt.BucketChunks).ForEach(func(k, v []byte) error {
			if _, _, seq, _ := bolt.ParseChunkKey(k); seq != bolt.MarkerSeq {
				want.Bytes += int64(len(v))
			}
			return nil
		})
	})
	if err != nil {
		tb.Fatal(err)
	}
	if got := mustStats(tb, s); got != want {
		tb.Errorf("Stats = %+v; a full scan finds %+v", got, want)
	}
}

// patternReader yields n pseudo-random bytes without holding them.
type patternReader struct {
	n   int64
	rng *rand.ChaCha8
}

func (p *patternReader) Read(b []byte) (int, error) {
	if p.n == 0 {
		return 0, io.EOF
	}
	if int64(len(b)) > p.n {
		b = b[:p.n]
	}
	p.rng.Read(b)
	p.n -= int64(len(b))
	return len(b), nil
}

// heapWatch samples the live heap.
type heapWatch struct{ base, peak uint64 }

func newHeapWatch() *heapWatch {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return &heapWatch{base: m.HeapAlloc, peak: m.HeapAlloc}
}

func (h *heapWatch) sample() {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	h.peak = max(h.peak, m.HeapAlloc)
}

// hashingWriter hashes what it is given and samples the heap every 8 MiB.
type hashingWriter struct {
	h     io.Writer
	n     int64
	watch *heapWatch
}

func (w *hashingWriter) Write(p []byte) (int, error) {
	before := w.n >> 23
	w.n += int64(len(p))
	if w.n>>23 != before {
		w.watch.sample()
	}
	return w.h.Write(p)
}

func TestBoltLargeBodyBoundedMemory(t *testing.T) {
	size := int64(256 << 20)
	if testing.Short() {
		size = 32 << 20
	}
	s := openBolt(t, nil)
	watch := newHeapWatch()
	hin := sha256.New()
	src := io.TeeReader(&patternReader{n: size, rng: rand.NewChaCha8([32]byte{1})}, &hashingWriter{h: hin, watch: watch})
	cp := store(t, s, getReq("u"), model.Response{Status: 200, Body: model.NewBody(src)}, "big")
	if cp.Meta.ResponseSize != 0 && cp.Meta.ResponseSize != size {
		t.Fatalf("stored size %d; want %d", cp.Meta.ResponseSize, size)
	}
	ps := mustGet(t, s, "big")
	if len(ps) != 1 || ps[0].Meta.ResponseSize != size {
		t.Fatalf("GetPairs = %d pairs; want 1 of %d bytes", len(ps), size)
	}
	hout := sha256.New()
	n, err := io.Copy(&hashingWriter{h: hout, watch: watch}, ps[0].Response.Body)
	if err != nil || n != size {
		t.Fatalf("read back %d bytes, err %v; want %d", n, err, size)
	}
	if !bytes.Equal(hin.Sum(nil), hout.Sum(nil)) {
		t.Fatalf("body read back differs from the body stored")
	}
	growth := int64(watch.peak) - int64(watch.base)
	t.Logf("%d MiB body: heap peak %.1f MiB above baseline", size>>20, float64(growth)/(1<<20))
	if growth > 32<<20 {
		t.Errorf("heap grew by %.1f MiB streaming a %d MiB body; want at most 32 MiB", float64(growth)/(1<<20), size>>20)
	}
}
