package storagetest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hishel-go/hishel/backend"
	"github.com/hishel-go/hishel/internal/testclock"
	"github.com/hishel-go/hishel/model"
)

// The process tests re-execute the test binary: with helperEnv set,
// ProcessMain runs the helper it names instead of the tests.
const (
	helperEnv     = "HISHEL_STORAGETEST_HELPER" // "crash", "share" or "update"
	helperEnvDB   = "HISHEL_STORAGETEST_HELPER_PATH"
	helperEnvSeed = "HISHEL_STORAGETEST_HELPER_SEED"
	helperEnvPair = "HISHEL_STORAGETEST_HELPER_PAIR" // the pair "update" helpers update
	helperKeys    = 16                               // pairs are stored under keys k0..k15
)

// PathOpener opens the store under test at path (a file, a directory, a
// key prefix: whatever the backend's processes share), configured by o; it
// is called in the test's process and in helper processes alike.
type PathOpener func(path string, o Options) (Store, error)

var processOpen PathOpener

// ProcessMain is the TestMain of a package that runs [RunCrash],
// [RunShared] or [RunUpdates]: those re-execute the test binary as helper processes, and
// in a helper ProcessMain runs the helper (and exits) instead of the
// tests. open opens the store under test, in every process.
//
//	func TestMain(m *testing.M) { storagetest.ProcessMain(m, openAt) }
func ProcessMain(m *testing.M, open PathOpener) {
	HelperMain(open)
	os.Exit(m.Run())
}

// HelperMain is the part of [ProcessMain] for a TestMain that runs its
// tests some other way (through a test server's harness, say): it records
// open, and in a helper process runs the helper and exits; in the test
// process it returns.
//
//	func TestMain(m *testing.M) {
//		storagetest.HelperMain(openAt)
//		os.Exit(testserver.Main(m))
//	}
func HelperMain(open PathOpener) {
	processOpen = open
	switch os.Getenv(helperEnv) {
	case "":
		return
	case "crash":
		crashHelper()
	case "share":
		shareHelper()
	case "update":
		updateHelper()
	default:
		fmt.Fprintf(os.Stderr, "unknown helper %q\n", os.Getenv(helperEnv))
	}
	os.Exit(2)
}

func openAt(path string, o Options) (Store, error) {
	if processOpen == nil {
		return nil, errors.New("storagetest: the package's TestMain must call storagetest.ProcessMain")
	}
	return processOpen(path, o)
}

// startHelper starts this binary as the helper named mode on the database
// at path, with seed; its stdout is returned for reading.
func startHelper(t *testing.T, mode, path string, seed uint64) (*exec.Cmd, io.Reader, *bytes.Buffer) {
	t.Helper()
	if processOpen == nil {
		t.Fatal("storagetest: the package's TestMain must call storagetest.ProcessMain")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, helperEnvDB+"="+path, helperEnvSeed+"="+strconv.FormatUint(seed, 10))
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

func helperArgs() (string, uint64) {
	seed, _ := strconv.ParseUint(os.Getenv(helperEnvSeed), 10, 64)
	return os.Getenv(helperEnvDB), seed
}

// out writes a helper's report lines, one write(2) each, on an unbuffered
// stdout, after the call each reports has returned.
type out struct{ mu sync.Mutex }

func (o *out) say(verb string, id model.PairID) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, err := os.Stdout.WriteString(verb + " " + id.String() + "\n"); err != nil {
		os.Exit(4)
	}
}

// seedBody returns the body of n bytes for seed and kind (0 request, 1
// response): the ChaCha8 stream of the seed, so that a checker recomputes
// every stored body from the headers that carry seed and sizes.
func seedBody(seed uint64, kind byte, n int64) []byte {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	key[8] = kind + 1
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(key).Read(b)
	return b
}

// seedRequest returns a request whose headers say how to recompute its
// bodies, and its key.
func seedRequest(seed uint64, reqSize, respSize int64) (model.Request, string) {
	req := model.Request{Method: "POST", URL: fmt.Sprintf("https://storagetest.example/%x", seed), Header: http.Header{
		"X-Seed":      {strconv.FormatUint(seed, 10)},
		"X-Req-Size":  {strconv.FormatInt(reqSize, 10)},
		"X-Resp-Size": {strconv.FormatInt(respSize, 10)},
	}}
	if reqSize > 0 {
		req.Body = model.BytesBody(seedBody(seed, 0, reqSize))
	}
	return req, fmt.Sprint("k", seed%helperKeys)
}

// checkPair reads both bodies of p and compares them with what its
// headers say they are.
func checkPair(p model.CompletePair) error {
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
	if !bytes.Equal(req, seedBody(seed, 0, reqSize)) || !bytes.Equal(resp, seedBody(seed, 1, respSize)) {
		return fmt.Errorf("pair %s: bodies of %d and %d bytes differ from the %d and %d stored", p.ID, len(req), len(resp), reqSize, respSize)
	}
	return nil
}

// scanStats compares Stats with a full scan through Pairs.
func scanStats(t *testing.T, s Store) {
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
		want.Bytes += p.Meta.RequestSize + p.Meta.ResponseSize + headBytes(p)
	}
	if got, err := s.Stats(ctx); err != nil || got != want {
		t.Errorf("Stats() = %+v, %v; want %+v, as a full scan counts", got, err, want)
	}
}

// The crash helper's report, a line per fact, each written with one
// write(2) after the call it reports returned:
//
//	READY          the storage is open
//	DONE <id>      the pair's last body returned io.EOF: complete and durable
//	ABORTED <id>   a body was aborted: the pair is never served
//	REMOVING <id>  Remove is about to be called: the pair may be served or not
//	REMOVED <id>   Remove returned: the pair is never served again

func crashHelper() {
	path, seed := helperArgs()
	ctx := context.Background()
	s, err := openAt(path, Options{ChunkSize: 16 << 10, MaxVariants: -1})
	if err != nil {
		fmt.Fprintf(os.Stderr, "helper: open: %v\n", err)
		os.Exit(2)
	}
	o := &out{}
	_, _ = os.Stdout.WriteString("READY\n")
	for w := range 3 {
		go func() {
			r := rand.New(rand.NewPCG(seed, uint64(w)+1))
			for {
				if err := crashWriteOne(ctx, s, r, o); err != nil {
					fmt.Fprintf(os.Stderr, "helper: writer %d: %v\n", w, err)
					os.Exit(2)
				}
			}
		}()
	}
	time.Sleep(2 * time.Minute)
	fmt.Fprintln(os.Stderr, "helper: not killed within two minutes")
	os.Exit(3)
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
	req, key := seedRequest(seed, crashSize(r), crashSize(r))
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
	resp := model.Response{Status: 200, Body: model.BytesBody(seedBody(seed, 1, respSize))}
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

// readReport reads a helper's report; it closes ready at READY and, if
// not nil, done at the first DONE.
func readReport(r io.Reader, ready, done chan<- struct{}) (map[string]map[model.PairID]bool, error) {
	rep := map[string]map[model.PairID]bool{"DONE": {}, "ABORTED": {}, "REMOVING": {}, "REMOVED": {}}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if line == "READY" {
			close(ready)
			continue
		}
		verb, arg, ok := strings.Cut(line, " ")
		if verb == "DONE" && done != nil {
			close(done)
			done = nil
		}
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

// RunCrash is the crash test: rounds times, a helper process (see
// ProcessMain) stores pairs from three goroutines into the store at path,
// aborting and removing some, and is killed (SIGKILL) at a random moment
// (in every other round, a random moment after it completed a pair).
// After each kill RunCrash opens the store and checks that every pair the
// helper saw completed is served whole, that nothing aborted, removed or
// incomplete is served, that every pair served is whole, that the counters
// agree with a scan, and that a sweep an hour later abandons what the
// kill left incomplete; then the next helper starts on the same store. A
// pair the kill caught while Remove was being called may be served or not
// (whole, if it is): a server may even apply a request the killed process
// had sent.
func RunCrash(t *testing.T, path string, rounds int) {
	runCrash(t, path, rounds)
}

// killDelay is how long after it is ready (or, every other round, after
// it completed a pair) RunCrash's helper is killed.
var killDelay = func(r *rand.Rand) time.Duration { return time.Duration(10+r.IntN(400)) * time.Millisecond }

// runCrash is RunCrash; it returns how many pairs the kills caught while
// Remove was being called.
func runCrash(t *testing.T, path string, rounds int) int {
	runs := rounds
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0))
	completed := map[model.PairID]bool{} // every pair ever reported DONE and not removed
	gone := map[model.PairID]bool{}      // aborted or removed
	maybe := map[model.PairID]bool{}     // Remove called, not seen returning: removed or not
	for run := range runs {
		cmd, stdout, stderr := startHelper(t, "crash", path, r.Uint64())
		ready, first := make(chan struct{}), make(chan struct{})
		type result struct {
			rep map[string]map[model.PairID]bool
			err error
		}
		done := make(chan result, 1)
		go func() {
			rep, err := readReport(stdout, ready, first)
			done <- result{rep, err}
		}()
		select {
		case <-ready:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatalf("run %d: helper not ready within 30s\n%s", run, stderr)
		}
		if run%2 == 1 {
			// Every other run, the kill comes once the helper has
			// completed a pair: a backend whose writes are network round
			// trips would otherwise be killed before it stores anything.
			select {
			case <-first:
			case <-time.After(30 * time.Second):
			}
		}
		time.Sleep(killDelay(r))
		if err := cmd.Process.Kill(); err != nil {
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
			maybe[id], completed[id] = true, false // removed or not: either is right
		}
		for _, verb := range []string{"ABORTED", "REMOVED"} {
			for id := range res.rep[verb] {
				gone[id], completed[id] = true, false
				delete(maybe, id)
			}
		}
		crashCheck(t, run, path, completed, gone, maybe)
		if t.Failed() {
			break
		}
	}
	return len(maybe)
}

// crashCheck opens the store a killed helper left and checks it.
func crashCheck(t *testing.T, run int, path string, completed, gone, maybe map[model.PairID]bool) {
	ctx := context.Background()
	c := testclock.New(time.Now())
	s, err := openAt(path, Options{MaxVariants: -1, Now: c.Now})
	if err != nil {
		t.Fatalf("run %d: the file does not open after a kill: %v", run, err)
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
		if err := checkPair(p); err != nil {
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
		if err := checkPair(p); err != nil {
			t.Errorf("run %d: pair %s, its Remove cut short by the kill: %v", run, id, err)
		}
	}
	served := 0
	for k := range helperKeys {
		ps, err := s.GetPairs(ctx, fmt.Sprint("k", k))
		if err != nil {
			t.Fatalf("run %d: GetPairs(k%d) error = %v", run, k, err)
		}
		for _, p := range ps {
			served++
			if gone[p.ID] {
				t.Errorf("run %d: pair %s was aborted or removed, and is served", run, p.ID)
			}
			if err := checkPair(p); err != nil {
				t.Errorf("run %d: served: %v", run, err)
			}
		}
	}
	scanStats(t, s)
	// Incomplete pairs the kill left are abandoned by a sweep an hour on.
	c.Advance(backend.DefaultIncompleteAge + time.Minute)
	if _, err := s.Cleanup(ctx); err != nil {
		t.Fatalf("run %d: Cleanup() error = %v", run, err)
	}
	if st, err := s.Stats(ctx); err != nil || st.Incomplete != 0 {
		t.Errorf("run %d: after a sweep, Stats() = %+v, %v; want no incomplete pair", run, st, err)
	}
	t.Logf("run %d: %d pairs served, all whole; %d caught by a kill during Remove so far, %d of them removed",
		run, served, len(maybe), cutRemoved)
}

// sharePairs is how many pairs each process of RunShared stores, from two
// goroutines. (Enough to interleave: each costs a test server whose
// queries scan, such as FerretDB, in proportion to the pairs stored.)
const sharePairs = 40

// shareHelper stores sharePairs pairs from two goroutines while a third
// reads the pairs under every key, checking each one served; it reports
// the pairs it completed.
func shareHelper() {
	path, seed := helperArgs()
	ctx := context.Background()
	s, err := openAt(path, Options{ChunkSize: 8 << 10})
	if err != nil {
		fmt.Fprintf(os.Stderr, "helper: open: %v\n", err)
		os.Exit(2)
	}
	o := &out{}
	_, _ = os.Stdout.WriteString("READY\n")
	r := rand.New(rand.NewPCG(seed, 1))
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 2 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(seed, uint64(w)+2))
			for range sharePairs / 2 {
				seed := r.Uint64()
				req, key := seedRequest(seed, r.Int64N(20<<10), r.Int64N(200<<10))
				respSize, _ := strconv.ParseInt(req.Header.Get("X-Resp-Size"), 10, 64)
				inc, err := s.CreatePair(ctx, req)
				if err == nil {
					_, err = io.Copy(io.Discard, inc.Request.Body)
				}
				var cp model.CompletePair
				if err == nil {
					cp, err = s.AddResponse(ctx, inc.ID, model.Response{Status: 200, Body: model.BytesBody(seedBody(seed, 1, respSize))}, key)
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
			ps, err := s.GetPairs(ctx, fmt.Sprint("k", r.IntN(helperKeys)))
			if err != nil {
				errs <- fmt.Errorf("GetPairs: %w", err)
				return
			}
			for _, p := range ps {
				if err := checkPair(p); err != nil && !errors.Is(err, model.ErrRemoved) {
					errs <- fmt.Errorf("a pair served while the other process writes: %w", err)
					return
				}
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		fmt.Fprintf(os.Stderr, "helper: %v\n", err)
		os.Exit(2)
	}
	if err := s.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "helper: Close: %v\n", err)
		os.Exit(2)
	}
	os.Exit(0)
}

// RunShared is the sharing test: two helper processes (see ProcessMain)
// store 40 pairs each into the store at path at once, and read the pairs
// under every key as they go, checking that each pair served is whole
// (never a partial or foreign body); then RunShared checks that every pair
// either process completed is served whole: nothing lost.
func RunShared(t *testing.T, path string) {
	// Create the store first, as one of the processes would.
	s, err := openAt(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	type proc struct {
		cmd    *exec.Cmd
		stderr *bytes.Buffer
		rep    chan map[string]map[model.PairID]bool
	}
	var procs []proc
	for i := range 2 {
		cmd, stdout, stderr := startHelper(t, "share", path, uint64(i+1)*7919)
		p := proc{cmd: cmd, stderr: stderr, rep: make(chan map[string]map[model.PairID]bool, 1)}
		go func() {
			rep, _ := readReport(stdout, make(chan struct{}), nil)
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
		if n := len(rep["DONE"]); n != sharePairs {
			t.Errorf("process %d completed %d pairs; want %d", i, n, sharePairs)
		}
		for id := range rep["DONE"] {
			done[id] = true
		}
	}
	s, err = openAt(path, Options{})
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
		if err := checkPair(p); err != nil {
			t.Error(err)
		}
	}
	if st, err := s.Stats(ctx); err != nil || st.Pairs != len(done) || st.Incomplete != 0 {
		t.Errorf("Stats() = %+v, %v; want %d pairs and nothing incomplete", st, err, len(done))
	}
	scanStats(t, s)
}

// updateBumps is how many UpdatePairFunc calls each helper of RunUpdates
// makes.
const updateBumps = 20

// updateHelper adds one to the X-Count response header of the pair
// helperEnvPair names, updateBumps times, with UpdatePairFunc.
func updateHelper() {
	path, _ := helperArgs()
	ctx := context.Background()
	id, err := model.ParsePairID(os.Getenv(helperEnvPair))
	if err != nil {
		fmt.Fprintf(os.Stderr, "helper: %s: %v\n", helperEnvPair, err)
		os.Exit(2)
	}
	s, err := openAt(path, Options{})
	if err != nil {
		fmt.Fprintf(os.Stderr, "helper: open: %v\n", err)
		os.Exit(2)
	}
	for range updateBumps {
		if err := bump(ctx, s, id); err != nil {
			fmt.Fprintf(os.Stderr, "helper: UpdatePairFunc: %v\n", err)
			os.Exit(2)
		}
	}
	if err := s.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "helper: Close: %v\n", err)
		os.Exit(2)
	}
	os.Exit(0)
}

// bump adds one to the X-Count response header of pair id with
// UpdatePairFunc.
func bump(ctx context.Context, s Store, id model.PairID) error {
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

// RunUpdates is the test of UpdatePairFunc across processes: it stores one
// pair in the store at path, two helper processes (see ProcessMain) each
// add one to its X-Count header 20 times at once, and every update must
// count: UpdatePairFunc is atomic across processes.
func RunUpdates(t *testing.T, path string) {
	if got, want := CountUpdates(t, path); got != want {
		t.Errorf("X-Count = %d; want %d (an update was lost)", got, want)
	}
}

// CountUpdates runs [RunUpdates]'s processes and returns the count the
// pair ends with and the count it would end with had every update counted,
// for a test server known to lose some, which may report what it lost
// instead of failing. It fails the test if a helper does.
func CountUpdates(t *testing.T, path string) (got, want int) {
	ctx := context.Background()
	s, err := openAt(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	inc, err := s.CreatePair(ctx, model.Request{Method: "GET", URL: "https://storagetest.example/counter"})
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
	t.Setenv(helperEnvPair, inc.ID.String())
	type proc struct {
		cmd    *exec.Cmd
		stderr *bytes.Buffer
	}
	var procs []proc
	for i := range 2 {
		cmd, stdout, stderr := startHelper(t, "update", path, uint64(i+1))
		go func() { _, _ = io.Copy(io.Discard, stdout) }()
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
	got, _ = strconv.Atoi(p.Response.Header.Get("X-Count"))
	return got, 2 * updateBumps
}
