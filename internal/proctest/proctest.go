// Package proctest holds the tests of a backend that need other OS
// processes: a crash test (a writer killed with SIGKILL at random moments
// leaves nothing partial visible) and a sharing test (two processes store
// and read one store at once, and every pair either completed is served
// whole). A backend's test package runs them by re-executing its own test
// binary as the helper process:
//
//	func TestMain(m *testing.M) {
//		if proctest.IsHelper() {
//			proctest.Helper(func(ctx context.Context, cfg string) (proctest.Store, error) { ... })
//		}
//		os.Exit(testserver.Main(m))
//	}
//
// cfg is a string the parent chose (a connection string, a table prefix):
// what the helper needs to open the same store the parent opens.
//
// It uses the standard library and package model only.
package proctest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"iter"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hishel-go/hishel/backend"
	"github.com/hishel-go/hishel/model"
)

// Store is what the tests use of a store.
type Store interface {
	CreatePair(ctx context.Context, req model.Request, opts ...model.CreateOption) (model.IncompletePair, error)
	AddResponse(ctx context.Context, id model.PairID, resp model.Response, key string) (model.CompletePair, error)
	GetPairs(ctx context.Context, key string) ([]model.CompletePair, error)
	GetPair(ctx context.Context, id model.PairID) (model.CompletePair, error)
	UpdatePairFunc(ctx context.Context, id model.PairID, fn func(model.CompletePair) (model.CompletePair, error)) (model.CompletePair, error)
	Remove(ctx context.Context, id model.PairID) error
	Cleanup(ctx context.Context) (model.SweepResult, error)
	Pairs(ctx context.Context, f model.Filter) iter.Seq2[model.PairInfo, error]
	Stats(ctx context.Context) (model.Stats, error)
	Close() error
}

// Opener opens the store cfg names, in a helper or in the parent.
type Opener func(ctx context.Context, cfg string) (Store, error)

// The helper's environment: which helper, its store and its seed.
const (
	envMode = "HISHEL_PROCTEST_HELPER" // "crash", "share" or "update"
	envPair = "HISHEL_PROCTEST_PAIR"   // the pair "update" helpers update
	envCfg  = "HISHEL_PROCTEST_CFG"
	envSeed = "HISHEL_PROCTEST_SEED"
	// Keys is the number of cache keys pairs are stored under: k0..k15.
	Keys = 16
)

// IsHelper reports whether this process is a helper started by Crash or
// Share (TestMain then calls Helper).
func IsHelper() bool { return os.Getenv(envMode) != "" }

// Helper runs the helper this process was started as, with the store open
// opens, and exits.
func Helper(open Opener) {
	seed, _ := strconv.ParseUint(os.Getenv(envSeed), 10, 64)
	cfg := os.Getenv(envCfg)
	switch os.Getenv(envMode) {
	case "crash":
		crashHelper(open, cfg, seed)
	case "share":
		shareHelper(open, cfg, seed)
	case "update":
		updateHelper(open, cfg)
	}
	fmt.Fprintf(os.Stderr, "helper: unknown mode %q\n", os.Getenv(envMode))
	os.Exit(2)
}

// start starts this test binary as the helper mode on cfg with seed; its
// stdout is returned for reading.
func start(t *testing.T, mode, cfg string, seed uint64) (*exec.Cmd, io.Reader, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envMode+"="+mode, envCfg+"="+cfg, envSeed+"="+strconv.FormatUint(seed, 10))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, stdout, &stderr
}

// out writes a helper's report lines, one write(2) each, on an unbuffered
// stdout, after the call each reports has returned:
//
//	READY          the store is open
//	DONE <id>      the pair's last body returned io.EOF: complete and durable
//	ABORTED <id>   a body was aborted: the pair is never served
//	REMOVING <id>  Remove is about to be called: the pair may be served or not
//	REMOVED <id>   Remove returned: the pair is never served again
//
// A kill between REMOVING and REMOVED leaves a pair whose removal may have
// taken effect (a store may even apply a request the killed process had
// sent), though the helper never said so: such a pair is neither owed
// nor forbidden, only whole if it is served.
type out struct{ mu sync.Mutex }

func (o *out) say(verb string, id model.PairID) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, err := os.Stdout.WriteString(verb + " " + id.String() + "\n"); err != nil {
		os.Exit(4)
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "helper: "+format+"\n", args...)
	os.Exit(2)
}

// SeedBody returns the body of n bytes for seed and kind (0 request, 1
// response): the ChaCha8 stream of the seed, so that a checker recomputes
// every stored body from the headers that carry seed and sizes.
func SeedBody(seed uint64, kind byte, n int64) []byte {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	key[8] = kind + 1
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(key).Read(b)
	return b
}

// SeedRequest returns a request whose headers say how to recompute its
// bodies, and its key.
func SeedRequest(seed uint64, reqSize, respSize int64) (model.Request, string) {
	req := model.Request{Method: "POST", URL: fmt.Sprintf("https://proctest.example/%x", seed), Header: http.Header{
		"X-Seed":      {strconv.FormatUint(seed, 10)},
		"X-Req-Size":  {strconv.FormatInt(reqSize, 10)},
		"X-Resp-Size": {strconv.FormatInt(respSize, 10)},
	}}
	if reqSize > 0 {
		req.Body = model.BytesBody(SeedBody(seed, 0, reqSize))
	}
	return req, fmt.Sprint("k", seed%Keys)
}

// CheckPair reads both bodies of p and compares them with what its
// headers say they are.
func CheckPair(p model.CompletePair) error {
	seed, err1 := strconv.ParseUint(p.Request.Header.Get("X-Seed"), 10, 64)
	reqSize, err2 := strconv.ParseInt(p.Request.Header.Get("X-Req-Size"), 10, 64)
	respSize, err3 := strconv.ParseInt(p.Request.Header.Get("X-Resp-Size"), 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		p.Close()
		return fmt.Errorf("pair %s: bad headers: %w", p.ID, err)
	}
	req, err := model.ReadAll(p.Request.Body)
	if err != nil {
		p.Close()
		return fmt.Errorf("pair %s: request body: %w", p.ID, err)
	}
	resp, err := model.ReadAll(p.Response.Body)
	if err != nil {
		return fmt.Errorf("pair %s: response body: %w", p.ID, err)
	}
	if !bytes.Equal(req, SeedBody(seed, 0, reqSize)) || !bytes.Equal(resp, SeedBody(seed, 1, respSize)) {
		return fmt.Errorf("pair %s: bodies of %d and %d bytes differ from the %d and %d stored", p.ID, len(req), len(resp), reqSize, respSize)
	}
	return nil
}

// CheckScan compares Stats with a full scan through Pairs: pairs by state,
// and bytes as the sum of the stored body sizes.
func CheckScan(t testing.TB, s Store) {
	t.Helper()
	ctx := context.Background()
	var want model.Stats
	for p, err := range s.Pairs(ctx, model.Filter{}) {
		if err != nil {
			t.Fatalf("Pairs() error = %v", err)
		}
		switch p.State {
		case model.StateComplete:
			want.Pairs++
		case model.StateIncomplete:
			want.Incomplete++
		case model.StateDeleted:
			want.Deleted++
		}
		want.Bytes += p.Meta.RequestSize + p.Meta.ResponseSize + // and the heads (model.Stats.Bytes)
			backend.HeadBytes(p.Key, p.Request.Method, p.Request.URL, p.Request.Header, p.Response.Header)
	}
	if got, err := s.Stats(ctx); err != nil || got != want {
		t.Errorf("Stats() = %+v, %v; want %+v, as a full scan counts", got, err, want)
	}
}

func readReport(r io.Reader, ready chan<- struct{}) (map[string]map[model.PairID]bool, error) {
	rep := map[string]map[model.PairID]bool{"DONE": {}, "ABORTED": {}, "REMOVING": {}, "REMOVED": {}}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if line == "READY" {
			close(ready)
			continue
		}
		verb, arg, ok := strings.Cut(line, " ")
		if m := rep[verb]; ok && m != nil {
			id, err := model.ParsePairID(arg)
			if err != nil {
				return rep, fmt.Errorf("helper said %q: %w", line, err)
			}
			m[id] = true
		}
	}
	return rep, sc.Err()
}

// crashHelper stores pairs from three goroutines, abandoning, aborting and
// removing some, until it is killed.
func crashHelper(open Opener, cfg string, seed uint64) {
	ctx := context.Background()
	s, err := open(ctx, cfg)
	if err != nil {
		fail("open: %v", err)
	}
	o := &out{}
	_, _ = os.Stdout.WriteString("READY\n")
	for w := range 3 {
		go func() {
			r := rand.New(rand.NewPCG(seed, uint64(w)+1))
			for {
				if err := crashWriteOne(ctx, s, r, o); err != nil {
					fail("writer %d: %v", w, err)
				}
			}
		}()
	}
	time.Sleep(2 * time.Minute)
	fail("not killed within two minutes")
}

func crashSize(r *rand.Rand) int64 {
	switch r.IntN(4) {
	case 0:
		return 0
	case 1, 2:
		return r.Int64N(64 << 10)
	}
	return r.Int64N(2<<20 + 1)
}

func crashWriteOne(ctx context.Context, s Store, r *rand.Rand, o *out) error {
	seed := r.Uint64()
	req, key := SeedRequest(seed, crashSize(r), crashSize(r))
	respSize, _ := strconv.ParseInt(req.Header.Get("X-Resp-Size"), 10, 64)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	inc, err := s.CreatePair(ctx, req)
	if err != nil {
		return err
	}
	mode := r.IntN(10)
	if mode == 0 { // never completed
		_, _ = io.CopyN(io.Discard, inc.Request.Body, 100)
		return nil
	}
	if _, err := io.Copy(io.Discard, inc.Request.Body); err != nil {
		return err
	}
	resp := model.Response{Status: 200, Body: model.BytesBody(SeedBody(seed, 1, respSize))}
	cp, err := s.AddResponse(ctx, inc.ID, resp, key)
	if err != nil {
		return err
	}
	if mode == 1 && respSize > 0 { // aborted half-way
		_, _ = io.CopyN(io.Discard, cp.Response.Body, r.Int64N(respSize))
		cancel()
		if _, err := io.Copy(io.Discard, cp.Response.Body); !errors.Is(err, context.Canceled) {
			return fmt.Errorf("pair %s: read after cancel: %v; want context.Canceled", inc.ID, err)
		}
		o.say("ABORTED", inc.ID)
		return nil
	}
	if _, err := io.Copy(io.Discard, cp.Response.Body); err != nil {
		return err
	}
	o.say("DONE", inc.ID)
	if mode == 2 {
		o.say("REMOVING", inc.ID)
		if err := s.Remove(ctx, inc.ID); err != nil {
			return err
		}
		o.say("REMOVED", inc.ID)
	}
	return nil
}

// Crash runs runs rounds of the crash test on the store cfg names: a
// helper process stores pairs from a few goroutines, aborting and removing
// some, and is killed with SIGKILL at a random moment. After each kill,
// open (with the clock now) opens the store, and Crash checks that every
// pair the helper saw completed is served whole, that nothing aborted,
// removed or incomplete is served, that every pair served is whole, and
// that the counters agree with a scan; a sweep an hour on then removes the
// incomplete pairs the kill left. A pair the kill caught while Remove was
// being called may be served or not (whole, if it is). The helper's and
// the parent's stores must keep every variant (MaxVariants < 0): the check
// looks for every pair completed.
func Crash(t *testing.T, runs int, cfg string, open func(now func() time.Time) (Store, error)) {
	crash(t, runs, cfg, open)
}

// crash is Crash; it returns how many pairs the kills caught while Remove
// was being called.
func crash(t *testing.T, runs int, cfg string, open func(now func() time.Time) (Store, error)) int {
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0))
	completed := map[model.PairID]bool{} // every pair ever reported DONE and not removed
	gone := map[model.PairID]bool{}      // aborted or removed
	maybe := map[model.PairID]bool{}     // Remove called, not seen returning: removed or not
	for run := range runs {
		cmd, stdout, stderr := start(t, "crash", cfg, r.Uint64())
		ready := make(chan struct{})
		type result struct {
			rep map[string]map[model.PairID]bool
			err error
		}
		done := make(chan result, 1)
		go func() {
			rep, err := readReport(stdout, ready)
			done <- result{rep, err}
		}()
		select {
		case <-ready:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatalf("run %d: helper not ready within 30s\n%s", run, stderr)
		}
		time.Sleep(time.Duration(200+r.IntN(1300)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		res := <-done
		_ = cmd.Wait()
		if res.err != nil {
			t.Fatalf("run %d: %v", run, res.err)
		}
		if strings.Contains(stderr.String(), "helper:") {
			t.Fatalf("run %d: the helper failed:\n%s", run, stderr)
		}
		for id := range res.rep["DONE"] {
			completed[id] = true
		}
		for id := range res.rep["REMOVING"] {
			maybe[id], completed[id] = true, false
		}
		for _, verb := range []string{"ABORTED", "REMOVED"} {
			for id := range res.rep[verb] {
				gone[id], completed[id] = true, false
				delete(maybe, id)
			}
		}
		crashCheck(t, run, len(res.rep["DONE"]), open, completed, gone, maybe)
		if t.Failed() {
			break
		}
	}
	return len(maybe)
}

func crashCheck(t *testing.T, run, done int, open func(now func() time.Time) (Store, error), completed, gone, maybe map[model.PairID]bool) {
	ctx := context.Background()
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	s, err := open(clock)
	if err != nil {
		t.Fatalf("run %d: the store does not open after a kill: %v", run, err)
	}
	defer s.Close()
	for id, ok := range completed {
		if !ok {
			continue
		}
		p, err := s.GetPair(ctx, id)
		if err != nil {
			t.Errorf("run %d: pair %s completed before the kill: GetPair error = %v", run, id, err)
			continue
		}
		if err := CheckPair(p); err != nil {
			t.Errorf("run %d: %v", run, err)
		}
	}
	cutRemoved := 0         // of the maybe pairs, those the kill's Remove did remove
	for id := range maybe { // removed or not, never anything between
		p, err := s.GetPair(ctx, id)
		if errors.Is(err, model.ErrNotFound) {
			cutRemoved++
			continue
		}
		if err != nil {
			t.Errorf("run %d: pair %s, its Remove cut short by the kill: GetPair error = %v; want the pair or ErrNotFound", run, id, err)
			continue
		}
		if err := CheckPair(p); err != nil {
			t.Errorf("run %d: pair %s, its Remove cut short by the kill: %v", run, id, err)
		}
	}
	served := 0
	for k := range Keys {
		ps, err := s.GetPairs(ctx, fmt.Sprint("k", k))
		if err != nil {
			t.Fatalf("run %d: GetPairs(k%d) error = %v", run, k, err)
		}
		for _, p := range ps {
			served++
			if gone[p.ID] {
				t.Errorf("run %d: pair %s was aborted or removed, and is served", run, p.ID)
			}
			if err := CheckPair(p); err != nil {
				t.Errorf("run %d: served: %v", run, err)
			}
		}
	}
	CheckScan(t, s)
	mu.Lock()
	now = now.Add(time.Hour + time.Minute) // past the default IncompleteAge
	mu.Unlock()
	if _, err := s.Cleanup(ctx); err != nil {
		t.Fatalf("run %d: Cleanup() error = %v", run, err)
	}
	if st, err := s.Stats(ctx); err != nil || st.Incomplete != 0 {
		t.Errorf("run %d: after a sweep, Stats() = %+v, %v; want no incomplete pair", run, st, err)
	}
	t.Logf("run %d: %d pairs completed in this run; %d served, all whole; %d caught by a kill during Remove so far, %d of them removed",
		run, done, served, len(maybe), cutRemoved)
}

// shareHelper stores 2x20 pairs from two goroutines while a third reads
// the pairs under every key, checking each one served; it reports the
// pairs it completed.
func shareHelper(open Opener, cfg string, seed uint64) {
	ctx := context.Background()
	s, err := open(ctx, cfg)
	if err != nil {
		fail("open: %v", err)
	}
	o := &out{}
	_, _ = os.Stdout.WriteString("READY\n")
	r := rand.New(rand.NewPCG(seed, 1))
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 2 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(seed, uint64(w)+2))
			for range SharePairs / 2 {
				seed := r.Uint64()
				req, key := SeedRequest(seed, r.Int64N(20<<10), r.Int64N(200<<10))
				respSize, _ := strconv.ParseInt(req.Header.Get("X-Resp-Size"), 10, 64)
				inc, err := s.CreatePair(ctx, req)
				if err == nil {
					_, err = io.Copy(io.Discard, inc.Request.Body)
				}
				var cp model.CompletePair
				if err == nil {
					cp, err = s.AddResponse(ctx, inc.ID, model.Response{Status: 200, Body: model.BytesBody(SeedBody(seed, 1, respSize))}, key)
				}
				if err == nil {
					_, err = io.Copy(io.Discard, cp.Response.Body)
				}
				if err != nil {
					errs <- fmt.Errorf("store: %w", err)
					return
				}
				o.say("DONE", inc.ID)
			}
		})
	}
	wg.Go(func() { // a reader, all along
		for range 100 {
			ps, err := s.GetPairs(ctx, fmt.Sprint("k", r.IntN(Keys)))
			if err != nil {
				errs <- fmt.Errorf("GetPairs: %w", err)
				return
			}
			for _, p := range ps {
				if err := CheckPair(p); err != nil && !errors.Is(err, model.ErrRemoved) {
					errs <- fmt.Errorf("a pair served while the other process writes: %w", err)
					return
				}
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		fail("%v", err)
	}
	if err := s.Close(); err != nil {
		fail("Close: %v", err)
	}
	os.Exit(0)
}

// SharePairs is the number of pairs each helper of Share stores.
const SharePairs = 40

// Share runs the sharing test: two helper processes store pairs into the
// store cfg names at once, and read the pairs under every key as they go,
// checking that each pair served is whole (never a partial or foreign
// body). Then the parent opens the store with open and checks that every
// pair either process completed is served whole: nothing lost, nothing
// incomplete, and the counters agree with a scan.
func Share(t *testing.T, cfg string, open func() (Store, error)) {
	type proc struct {
		cmd    *exec.Cmd
		stderr *bytes.Buffer
		rep    chan map[string]map[model.PairID]bool
	}
	var procs []proc
	for i := range 2 {
		cmd, stdout, stderr := start(t, "share", cfg, uint64(i+1)*7919)
		p := proc{cmd: cmd, stderr: stderr, rep: make(chan map[string]map[model.PairID]bool, 1)}
		go func() {
			rep, _ := readReport(stdout, make(chan struct{}))
			p.rep <- rep
		}()
		procs = append(procs, p)
	}
	done := map[model.PairID]bool{}
	for i, p := range procs {
		rep := <-p.rep
		if err := p.cmd.Wait(); err != nil {
			t.Fatalf("process %d: %v\n%s", i, err, p.stderr)
		}
		if n := len(rep["DONE"]); n != SharePairs {
			t.Errorf("process %d completed %d pairs; want %d", i, n, SharePairs)
		}
		for id := range rep["DONE"] {
			done[id] = true
		}
	}
	s, err := open()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	for id := range done {
		p, err := s.GetPair(ctx, id)
		if err != nil {
			t.Errorf("pair %s, completed by a process: GetPair error = %v", id, err)
			continue
		}
		if err := CheckPair(p); err != nil {
			t.Error(err)
		}
	}
	if st, err := s.Stats(ctx); err != nil || st.Pairs != len(done) || st.Incomplete != 0 {
		t.Errorf("Stats() = %+v, %v; want %d pairs and nothing incomplete", st, err, len(done))
	}
	CheckScan(t, s)
}

// UpdateBumps is how many UpdatePairFunc calls each helper of Updates
// makes.
const UpdateBumps = 20

// updateHelper adds one to the X-Count response header of the pair
// envPair names, UpdateBumps times, with UpdatePairFunc.
func updateHelper(open Opener, cfg string) {
	ctx := context.Background()
	id, err := model.ParsePairID(os.Getenv(envPair))
	if err != nil {
		fail("%s: %v", envPair, err)
	}
	s, err := open(ctx, cfg)
	if err != nil {
		fail("open: %v", err)
	}
	for range UpdateBumps {
		if err := Bump(ctx, s, id); err != nil {
			fail("UpdatePairFunc: %v", err)
		}
	}
	if err := s.Close(); err != nil {
		fail("close: %v", err)
	}
	os.Exit(0)
}

// Bump adds one to the X-Count response header of pair id with
// UpdatePairFunc.
func Bump(ctx context.Context, s Store, id model.PairID) error {
	_, err := s.UpdatePairFunc(ctx, id, func(p model.CompletePair) (model.CompletePair, error) {
		n, _ := strconv.Atoi(p.Response.Header.Get("X-Count"))
		p.Response.Header = p.Response.Header.Clone()
		if p.Response.Header == nil {
			p.Response.Header = http.Header{}
		}
		p.Response.Header.Set("X-Count", strconv.Itoa(n+1))
		return p, nil
	})
	return err
}

// Updates runs the test of UpdatePairFunc across processes: the parent
// stores one pair in the store open opens, two helper processes on the
// store cfg names each add one to its X-Count header UpdateBumps times at
// once, and Updates returns the count the pair ends with. Every update
// counts where UpdatePairFunc is atomic across processes: the count is
// then 2*UpdateBumps; the caller says what it expects.
func Updates(t *testing.T, cfg string, open func() (Store, error)) int {
	ctx := context.Background()
	s, err := open()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	inc, err := s.CreatePair(ctx, model.Request{Method: "GET", URL: "https://example.com/counter"})
	if err != nil {
		t.Fatal(err)
	}
	cp, err := s.AddResponse(ctx, inc.ID, model.Response{Status: 200, Body: model.StringBody("counter")}, "counter")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, cp.Response.Body); err != nil {
		t.Fatal(err)
	}
	t.Setenv(envPair, inc.ID.String())
	type proc struct {
		cmd    *exec.Cmd
		stderr *bytes.Buffer
	}
	var procs []proc
	for i := range 2 {
		cmd, stdout, stderr := start(t, "update", cfg, uint64(i+1))
		go io.Copy(io.Discard, stdout)
		procs = append(procs, proc{cmd, stderr})
	}
	for i, p := range procs {
		if err := p.cmd.Wait(); err != nil {
			t.Fatalf("process %d: %v\n%s", i, err, p.stderr)
		}
	}
	p, err := s.GetPair(ctx, inc.ID)
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	n, _ := strconv.Atoi(p.Response.Header.Get("X-Count"))
	return n
}
