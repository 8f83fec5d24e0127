//go:build unix

package template

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/internal/testclock"
	"github.com/hishel-go/hishel/model"
)

// The crash test: a helper process (this test binary, re-executed with
// -test.run=^TestCrashHelper$) stores pairs into a durable Bolt from a few
// goroutines and is killed with SIGKILL at a random moment. After each kill
// the parent checks the file and the pairs in it, sweeps, and starts the
// next helper on the same file.
//
// Bodies are a function of a seed carried in the request's headers (X-Seed,
// X-Req-Size, X-Resp-Size): the bytes are the ChaCha8 stream of the seed, so
// the checker recomputes every stored body without a side log. The helper
// prints one line per fact the parent may hold it to, each written with one
// write(2) on an unbuffered stdout after the call it reports returned:
//
//	READY            the storage is open
//	DONE <id>        the pair's last body returned io.EOF: it is complete and durable
//	ABORTED <id>     a body was aborted (closed early, context cancelled): the pair is gone
//	REMOVING <id>    Remove is about to be called (the pair may be complete or deleted)
//	REMOVED <id>     Remove returned: the pair is never served again

var crashRuns = flag.Int("crash.runs", 50, "kill-and-check rounds of TestBoltCrash (10 with -short)")

const (
	crashEnvDB   = "HISHEL_CRASH_HELPER_DB"   // helper mode and its database file
	crashEnvSeed = "HISHEL_CRASH_HELPER_SEED" // the helper's random seed
	crashKeys    = 16                         // pairs are stored under keys k0..k15
	crashWriters = 3                          // helper goroutines storing pairs
)

// crashBody returns the body of n bytes for seed and kind.
func crashBody(seed uint64, kind bolt.Kind, n int64) io.Reader {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	key[8] = byte(kind) + 1
	return &patternReader{n: n, rng: rand.NewChaCha8(key)}
}

// crashSize picks a body size: empty, small, or up to 2 MiB.
func crashSize(r *rand.Rand) int64 {
	switch r.IntN(10) {
	case 0:
		return 0
	case 1, 2, 3, 4:
		return r.Int64N(64 << 10)
	default:
		return r.Int64N(2<<20 + 1)
	}
}

// TestCrashHelper is the writer process of TestBoltCrash; run on its own it
// skips.
func TestCrashHelper(t *testing.T) {
	path := os.Getenv(crashEnvDB)
	if path == "" {
		t.Skip("helper process of TestBoltCrash")
	}
	seed, _ := strconv.ParseUint(os.Getenv(crashEnvSeed), 10, 64)
	crashHelper(path, seed) // never returns
}

// crashOut writes the helper's report lines, one write(2) each.
type crashOut struct{ mu sync.Mutex }

func (o *crashOut) say(verb string, id model.PairID) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, err := os.Stdout.WriteString(verb + " " + id.String() + "\n"); err != nil {
		os.Exit(4)
	}
}

func crashHelper(path string, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 0))
	chunk := []int{4 << 10, 16 << 10, DefaultChunkSize}[r.IntN(3)]
	ctx := context.Background()
	s, err := OpenBolt(ctx, &BoltOptions{Path: path, ChunkSize: chunk, SweepInterval: -1})
	if err != nil {
		fmt.Fprintf(os.Stderr, "helper: OpenBolt: %v\n", err)
		os.Exit(2)
	}
	out := &crashOut{}
	_, _ = os.Stdout.WriteString("READY\n")
	for w := range crashWriters {
		go func() {
			r := rand.New(rand.NewPCG(seed, uint64(w)+1))
			for {
				if err := crashWriteOne(ctx, s, r, out); err != nil {
					fmt.Fprintf(os.Stderr, "helper: writer %d: %v\n", w, err)
					os.Exit(2)
				}
			}
		}()
	}
	// The parent kills us long before this; exit rather than linger if it
	// died first.
	time.Sleep(time.Minute)
	fmt.Fprintln(os.Stderr, "helper: not killed within a minute")
	os.Exit(3)
}

// crashWriteOne stores, aborts, abandons or removes one pair.
func crashWriteOne(ctx context.Context, s *Bolt, r *rand.Rand, out *crashOut) error {
	seed := r.Uint64()
	reqSize, respSize := crashSize(r), crashSize(r)
	if r.IntN(3) == 0 {
		reqSize = 0
	}
	req := model.Request{
		Method: "POST",
		URL:    fmt.Sprintf("https://crash.example/%x", seed),
		Header: http.Header{
			"X-Seed":      {strconv.FormatUint(seed, 10)},
			"X-Req-Size":  {strconv.FormatInt(reqSize, 10)},
			"X-Resp-Size": {strconv.FormatInt(respSize, 10)},
		},
	}
	if reqSize > 0 || r.IntN(2) == 0 {
		req.Body = model.NewBody(crashBody(seed, bolt.KindRequest, reqSize))
	}
	if r.IntN(4) == 0 {
		req.Options.TTL = time.Hour
	}
	key := fmt.Sprint("k", seed%crashKeys)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// abort reads part of b and then closes it or cancels ctx; the pair
	// must then be gone.
	abort := func(id model.PairID, b *model.Body, size int64) error {
		_, _ = io.CopyN(io.Discard, b, r.Int64N(size+1))
		if r.IntN(2) == 0 {
			_ = b.Close()
		} else {
			cancel()
			if _, err := io.Copy(io.Discard, b); !errors.Is(err, context.Canceled) {
				return fmt.Errorf("pair %s: read after cancel: %v; want context.Canceled", id, err)
			}
		}
		out.say("ABORTED", id)
		return nil
	}

	mode := r.IntN(20)
	inc, err := s.CreatePair(ctx, req)
	if err != nil {
		return err
	}
	switch {
	case mode < 2 && req.Body != nil:
		return abort(inc.ID, inc.Request.Body, reqSize)
	case mode == 2: // created, request stored, never completed
		_, err := io.Copy(io.Discard, inc.Request.Body)
		return err
	case mode == 3: // created, request body half read and dropped
		_, err := io.CopyN(io.Discard, inc.Request.Body, r.Int64N(reqSize+1))
		if err == io.EOF {
			err = nil
		}
		return err
	}
	if _, err := io.Copy(io.Discard, inc.Request.Body); err != nil {
		return err
	}
	resp := model.Response{Status: 200, Header: http.Header{"Content-Type": {"application/octet-stream"}}}
	if respSize > 0 || r.IntN(2) == 0 {
		resp.Body = model.NewBody(crashBody(seed, bolt.KindResponse, respSize))
	}
	cp, err := s.AddResponse(ctx, inc.ID, resp, key)
	if err != nil {
		return err
	}
	switch {
	case mode < 7 && resp.Body != nil:
		return abort(inc.ID, cp.Response.Body, respSize)
	case mode == 7: // response body half read and dropped
		_, err := io.CopyN(io.Discard, cp.Response.Body, r.Int64N(respSize+1))
		if err == io.EOF {
			err = nil
		}
		return err
	case mode == 8 && resp.Body != nil: // removed while its response streams
		_, _ = io.CopyN(io.Discard, cp.Response.Body, r.Int64N(respSize+1))
		out.say("REMOVING", inc.ID)
		if err := s.Remove(ctx, inc.ID); err != nil {
			return err
		}
		out.say("REMOVED", inc.ID)
		_, _ = io.Copy(io.Discard, cp.Response.Body) // may fail or, if it had ended, not
		return nil
	}
	if _, err := io.Copy(io.Discard, cp.Response.Body); err != nil {
		return err
	}
	out.say("DONE", inc.ID)
	if mode == 9 || mode == 10 {
		out.say("REMOVING", inc.ID)
		if err := s.Remove(ctx, inc.ID); err != nil {
			return err
		}
		out.say("REMOVED", inc.ID)
	}
	return nil
}

// crashReport is what one helper said before it died.
type crashReport struct {
	done, aborted, removing, removed map[model.PairID]bool
}

func readCrashReport(r io.Reader, ready chan<- struct{}) (*crashReport, error) {
	rep := &crashReport{done: map[model.PairID]bool{}, aborted: map[model.PairID]bool{},
		removing: map[model.PairID]bool{}, removed: map[model.PairID]bool{}}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if line == "READY" {
			close(ready)
			continue
		}
		verb, arg, ok := strings.Cut(line, " ")
		m := map[string]map[model.PairID]bool{"DONE": rep.done, "ABORTED": rep.aborted,
			"REMOVING": rep.removing, "REMOVED": rep.removed}[verb]
		if !ok || m == nil {
			continue // the test framework's own output
		}
		id, err := model.ParsePairID(arg)
		if err != nil {
			return rep, fmt.Errorf("helper said %q: %w", line, err)
		}
		m[id] = true
	}
	return rep, sc.Err()
}

// runCrashHelper starts a helper on path, kills it with SIGKILL at a random
// moment and returns what it reported.
func runCrashHelper(t *testing.T, path string, r *rand.Rand) *crashReport {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnvDB+"="+path, crashEnvSeed+"="+strconv.FormatUint(r.Uint64(), 10))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	type result struct {
		rep *crashReport
		err error
	}
	reported := make(chan result, 1)
	go func() {
		rep, err := readCrashReport(stdout, ready)
		reported <- result{rep, err}
	}()

	var delay time.Duration
	if r.IntN(8) == 0 {
		// Now and then, kill it early: while it opens the file.
		delay = time.Duration(r.Int64N(int64(50 * time.Millisecond)))
	} else {
		select {
		case <-ready:
		case res := <-reported:
			_ = cmd.Wait()
			t.Fatalf("helper ended before it was ready (%v):\n%s", res.err, stderr.String())
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-reported
			_ = cmd.Wait()
			t.Fatalf("helper not ready within 30s:\n%s", stderr.String())
		}
		delay = 20*time.Millisecond + time.Duration(r.Int64N(int64(280*time.Millisecond)))
	}
	select {
	case res := <-reported:
		_ = cmd.Wait()
		t.Fatalf("helper ended before it was killed (%v):\n%s", res.err, stderr.String())
	case <-time.After(delay):
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	res := <-reported
	werr := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(werr, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("helper: %v, not killed by SIGKILL:\n%s", werr, stderr.String())
	}
	if res.err != nil {
		t.Fatalf("reading the helper's report: %v", res.err)
	}
	if stderr.Len() > 0 {
		t.Errorf("helper wrote to stderr:\n%s", stderr.String())
	}
	return res.rep
}

// TestBoltCrash kills a writing process at random moments, over and over, on
// one database file: after each kill the file must pass bbolt's consistency
// check and open; every complete pair must read back byte-identical to what
// was written; every pair whose store returned must be there, every pair
// whose Remove or abort returned must not be served; the counters must match
// a full scan; and one sweep must reclaim every incomplete pair.
func TestBoltCrash(t *testing.T) {
	runs := *crashRuns
	if testing.Short() {
		runs = min(runs, 10)
	}
	path := filepath.Join(t.TempDir(), "crash.db")
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0))
	kept := map[model.PairID]bool{} // complete pairs the previous rounds left in place
	var stored, seen int
	start := time.Now()
	for run := range runs {
		rep := runCrashHelper(t, path, r)
		stored += len(rep.done)
		seen += checkCrashedFile(t, path, rep, kept, r)
		if t.Failed() {
			t.Fatalf("round %d of %d failed (database %s)", run+1, runs, path)
		}
	}
	fi, _ := os.Stat(path)
	t.Logf("%d kills in %v: %d pairs stored durably, %d complete pairs verified, file %d MiB",
		runs, time.Since(start).Round(time.Millisecond), stored, seen, fi.Size()>>20)
}

// checkCrashedFile checks the file after a kill, then sweeps and churns it
// for the next round. It returns the number of complete pairs it verified.
func checkCrashedFile(t *testing.T, path string, rep *crashReport, kept map[model.PairID]bool, r *rand.Rand) int {
	t.Helper()
	ctx := context.Background()

	// bbolt's own consistency check, on the file as the kill left it (a
	// helper killed early may not have created it, or written to it, yet).
	if fi, err := os.Stat(path); err == nil && fi.Size() > 0 {
		db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second, ReadOnly: true})
		if err != nil {
			t.Fatalf("raw bbolt open after a kill: %v", err)
		}
		err = db.View(func(tx *bbolt.Tx) error {
			for err := range tx.Check() {
				t.Errorf("bbolt check after a kill: %v", err)
			}
			return nil
		})
		if cerr := db.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) && err != nil {
		t.Fatal(err)
	}

	c := testclock.New(time.Now())
	s, err := OpenBolt(ctx, &BoltOptions{Path: path, Now: c.Now, SweepInterval: -1})
	if err != nil {
		t.Fatalf("OpenBolt after a kill: %v (corrupt: %v)", err, errors.Is(err, model.ErrCorrupt))
	}
	defer func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()

	infos := crashInfos(t, s)
	for id := range rep.done {
		if rep.removing[id] {
			continue
		}
		if p, ok := infos[id]; !ok || p.State != model.StateComplete {
			t.Errorf("pair %s: stored (its body returned io.EOF) before the kill, but after it: %v", id, crashState(p, ok))
		}
	}
	for id := range kept {
		if p, ok := infos[id]; !ok || p.State != model.StateComplete {
			t.Errorf("pair %s: complete before the helper ran, but after the kill: %v", id, crashState(p, ok))
		}
	}
	for id := range rep.removed {
		if p, ok := infos[id]; ok && p.State == model.StateComplete {
			t.Errorf("pair %s: Remove returned before the kill, but the pair is complete", id)
		}
	}
	for id := range rep.aborted {
		if p, ok := infos[id]; ok {
			t.Errorf("pair %s: its body was aborted before the kill, but the pair is still stored (%v)", id, p.State)
		}
	}

	// Every complete pair reads back as written, and GetPairs serves
	// exactly the complete pairs.
	complete, incomplete := 0, 0
	for id, p := range infos {
		switch p.State {
		case model.StateIncomplete:
			incomplete++
		case model.StateComplete:
			complete++
			checkCrashPair(t, s, id)
		}
	}
	served := 0
	for k := range crashKeys {
		ps, err := s.GetPairs(ctx, fmt.Sprint("k", k))
		if err != nil {
			t.Fatalf("GetPairs: %v", err)
		}
		for _, p := range ps {
			if info := infos[p.ID]; info.State != model.StateComplete {
				t.Errorf("GetPairs serves pair %s, which Pairs says is %v", p.ID, info.State)
			}
			_ = p.Close()
		}
		served += len(ps)
	}
	if served != complete {
		t.Errorf("GetPairs serves %d pairs; Pairs lists %d complete", served, complete)
	}
	checkStats(t, s)
	checkNoOrphanChunks(t, s)

	// One sweep past the incomplete age reclaims every incomplete pair.
	c.Advance(DefaultIncompleteAge + time.Minute)
	res, err := s.Cleanup(ctx)
	if err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	if res.Abandoned != incomplete {
		t.Errorf("Cleanup abandoned %d pairs; %d were incomplete", res.Abandoned, incomplete)
	}
	if st := mustStats(t, s); st.Incomplete != 0 {
		t.Errorf("after Cleanup, Stats.Incomplete = %d; want 0", st.Incomplete)
	}
	for id, p := range crashInfos(t, s) {
		if p.State == model.StateIncomplete {
			t.Errorf("after Cleanup, pair %s is still incomplete", id)
		}
	}
	checkStats(t, s)
	checkNoOrphanChunks(t, s)

	// Churn, so that the next helper reuses freed pages: remove about half
	// of the complete pairs and purge everything soft-deleted.
	clear(kept)
	var remove []model.PairID
	for id, p := range crashInfos(t, s) {
		if p.State != model.StateComplete {
			continue
		}
		if r.IntN(2) == 0 {
			remove = append(remove, id)
		} else {
			kept[id] = true
		}
	}
	if _, err := timeN(len(remove), 8, func(i int) error { return s.Remove(ctx, remove[i]) }); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	c.Advance(DefaultDeletedRetention + time.Minute)
	if _, err := s.Cleanup(ctx); err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	if st := mustStats(t, s); st.Deleted != 0 || st.Incomplete != 0 {
		t.Errorf("after the purge, Stats = %+v; want nothing deleted or incomplete", st)
	}
	checkStats(t, s)
	checkNoOrphanChunks(t, s)
	// Pairs stored with a TTL have expired and been purged by now.
	for id := range kept {
		if _, err := s.GetPair(ctx, id); errors.Is(err, model.ErrNotFound) {
			delete(kept, id)
		} else if err != nil {
			t.Errorf("GetPair(%s): %v", id, err)
		}
	}
	return complete
}

func crashState(p model.PairInfo, ok bool) string {
	if !ok {
		return "missing"
	}
	return p.State.String()
}

func crashInfos(t *testing.T, s *Bolt) map[model.PairID]model.PairInfo {
	t.Helper()
	infos := map[model.PairID]model.PairInfo{}
	for p, err := range s.Pairs(context.Background(), model.Filter{}) {
		if err != nil {
			t.Fatalf("Pairs: %v", err)
		}
		infos[p.ID] = p
	}
	return infos
}

// checkCrashPair reads a complete pair back and compares its bodies with the
// bytes its seed gives.
func checkCrashPair(t *testing.T, s *Bolt, id model.PairID) {
	t.Helper()
	p, err := s.GetPair(context.Background(), id)
	if err != nil {
		t.Errorf("GetPair(%s), complete: %v", id, err)
		return
	}
	defer p.Close()
	switch diff, err := seededPairDiff(p); {
	case err != nil:
		t.Errorf("pair %s: reading a body back: %v", id, err)
	case diff != "":
		t.Errorf("pair %s: %s", id, diff)
	}
}

// seededPairDiff reads both bodies of p, a pair whose request header
// carries the seed and sizes of its bodies (X-Seed, X-Req-Size,
// X-Resp-Size), and compares them and its metadata with what the seed
// gives: it returns a description of the first difference ("" for none),
// or the read's error.
func seededPairDiff(p model.CompletePair) (string, error) {
	h := p.Request.Header
	seed, err1 := strconv.ParseUint(h.Get("X-Seed"), 10, 64)
	reqSize, err2 := strconv.ParseInt(h.Get("X-Req-Size"), 10, 64)
	respSize, err3 := strconv.ParseInt(h.Get("X-Resp-Size"), 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return fmt.Sprintf("request header %v: %v", h, err), nil
	}
	if p.Meta.RequestSize != reqSize || p.Meta.ResponseSize != respSize {
		return fmt.Sprintf("Meta sizes %d, %d; written %d, %d", p.Meta.RequestSize, p.Meta.ResponseSize, reqSize, respSize), nil
	}
	for _, b := range []struct {
		kind bolt.Kind
		body *model.Body
		size int64
	}{{bolt.KindRequest, p.Request.Body, reqSize}, {bolt.KindResponse, p.Response.Body, respSize}} {
		cw := newCompareWriter(crashBody(seed, b.kind, b.size))
		n, err := b.body.WriteTo(cw)
		if err != nil {
			return "", err
		}
		if cw.diff >= 0 || n != b.size {
			return fmt.Sprintf("body %d read back: %d bytes, first difference at %d; written %d bytes", b.kind, n, cw.diff, b.size), nil
		}
	}
	return "", nil
}

// compareWriter compares what is written to it with what want reads, and
// records the offset of the first difference in diff (-1: none so far).
type compareWriter struct {
	want io.Reader
	buf  []byte
	off  int64
	diff int64
}

func newCompareWriter(want io.Reader) *compareWriter { return &compareWriter{want: want, diff: -1} }

func (w *compareWriter) Write(p []byte) (int, error) {
	for rest := p; len(rest) > 0 && w.diff < 0; {
		m := min(len(rest), 256<<10)
		w.buf = slices.Grow(w.buf[:0], m)[:m]
		n, _ := io.ReadFull(w.want, w.buf)
		if !bytes.Equal(rest[:n], w.buf[:n]) || n < m {
			i := 0
			for i < n && rest[i] == w.buf[i] {
				i++
			}
			w.diff = w.off + int64(i)
		}
		w.off += int64(n)
		rest = rest[n:]
	}
	return len(p), nil
}

// checkNoOrphanChunks checks that every stored chunk belongs to a stored pair.
func checkNoOrphanChunks(t *testing.T, s *Bolt) {
	t.Helper()
	var orphans []uint64
	err := s.db.View(func(tx *bbolt.Tx) error {
		nonces := make(map[uint64]bool)
		err := tx.Bucket(bolt.BucketPairs).ForEach(func(_, v []byte) error {
			rec, err := bolt.DecodeRecord(v)
			if err != nil {
				return err
			}
			nonces[rec.Nonce] = true
			return nil
		})
		if err != nil {
			return err
		}
		var last uint64
		return tx.Bucket(bolt.BucketChunks).ForEach(func(k, _ []byte) error {
			nonce, _, _, err := bolt.ParseChunkKey(k)
			if err != nil {
				return err
			}
			if nonce != last && !nonces[nonce] {
				orphans = append(orphans, nonce)
			}
			last = nonce
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(orphans) > 0 {
		t.Errorf("chunks of %d pairs that are not stored, such as the pair with nonce %d", len(orphans), orphans[0])
	}
}
