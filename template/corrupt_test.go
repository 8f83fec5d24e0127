//go:build unix

package template

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/model"
)

// The corruption test: a real cache file is built once, then copies of it
// are damaged (bytes flipped anywhere, page headers garbled, a page
// zeroed, the file cut short) and each copy is opened, read through and
// swept by a child process (this test binary, re-executed with the file's
// path in its environment: TestMain runs CorruptChild). The parent asserts that every child
// exits normally (no panic, no fault, no fatal error) within its time
// limit (no hang), and that it read either correct data or a clean error:
// every error wraps model.ErrCorrupt (or model.ErrFormatVersion, for a
// damaged version byte), and every body read without error is the body
// stored, byte for byte.
//
// The pairs are those of the crash test: bodies are the ChaCha8 stream of a
// seed carried in the request header, so the child recomputes them.

var corruptTrials = flag.Int("corrupt.trials", 200, "damaged copies TestBoltCorruptFiles opens in child processes")

const (
	corruptEnvDB = "HISHEL_CORRUPT_HELPER_DB"
	// corruptDeadline bounds each child; a hang is a failure. A child takes
	// well under a second on a quiet machine: the margin is for a loaded one
	// (a minute was once too little under a load average of 20).
	corruptDeadline = 3 * time.Minute
)

// The child process of TestBoltCorruptFiles: TestMain runs it instead of
// the tests when the environment names a damaged file, and exits with its
// code.
func init() {
	CorruptChild = func() (int, bool) {
		path := os.Getenv(corruptEnvDB)
		if path == "" {
			return 0, false
		}
		out := bufio.NewWriter(os.Stdout)
		code := corruptRead(path, out)
		_ = out.Flush()
		return code, true
	}
}

// corruptRead opens the damaged file at path, reads every pair, sweeps and
// closes. It reports on out, and returns 0 when every outcome was correct
// data or a clean error, 1 otherwise.
func corruptRead(path string, out io.Writer) int {
	ctx := context.Background()
	bad := 0
	clean := func(what string, err error) {
		switch {
		case err == nil:
		case errors.Is(err, model.ErrCorrupt), errors.Is(err, model.ErrFormatVersion):
			fmt.Fprintf(out, "ERR %s: %v\n", what, err)
		default:
			fmt.Fprintf(out, "BAD %s: unexpected error %v\n", what, err)
			bad++
		}
	}
	start := time.Now()
	s, err := OpenBolt(ctx, &BoltOptions{Path: path, SweepInterval: -1, OpenTimeout: 5 * time.Second})
	opened := time.Since(start)
	if err != nil {
		clean("open", err)
		fmt.Fprintf(out, "OPENFAILED\n")
		return min(bad, 1)
	}
	var infos []model.PairInfo
	for p, err := range s.Pairs(ctx, model.Filter{}) {
		if err != nil {
			clean("pairs", err)
			break
		}
		infos = append(infos, p)
	}
	ok := 0
	for _, info := range infos {
		if info.State != model.StateComplete {
			continue
		}
		p, err := s.GetPair(ctx, info.ID)
		if err != nil {
			if !errors.Is(err, model.ErrNotFound) { // expired by a damaged expiry: fine
				clean("get pair", err)
			}
			continue
		}
		switch n, err := seededPairDiff(p); {
		case err != nil:
			clean("read pair "+info.ID.String(), err)
		case n != "":
			fmt.Fprintf(out, "BAD pair %s: %s\n", info.ID, n)
			bad++
		default:
			ok++
		}
		p.Close()
	}
	// By key: the bodies were compared above; here they are read through.
	for k := range corruptKeys {
		ps, err := s.GetPairs(ctx, fmt.Sprint("k", k))
		clean("get pairs", err)
		for _, p := range ps {
			_, err1 := io.Copy(io.Discard, p.Request.Body)
			_, err2 := io.Copy(io.Discard, p.Response.Body)
			clean("read pairs", errors.Join(err1, err2))
			p.Close()
		}
	}
	read := time.Since(start)
	res, err := s.Cleanup(ctx)
	clean("cleanup", err)
	swept := time.Since(start)
	clean("stats", func() error { _, err := s.Stats(ctx); return err }())
	clean("close", s.Close())
	fmt.Fprintf(out, "DONE ok=%d corrupt=%d (opened %v, read %v, swept %v, closed %v)\n", ok, res.Corrupt,
		opened, read, swept, time.Since(start))
	return min(bad, 1)
}

const corruptKeys = 8

// buildCorruptSource writes the cache file the trials damage: complete
// pairs of assorted sizes under a few keys (several variants each), some
// with TTLs, removed and incomplete pairs, in 4 KiB and 64 KiB chunks.
func buildCorruptSource(t *testing.T, path string) {
	t.Helper()
	ctx := context.Background()
	r := rand.New(rand.NewPCG(7, 7))
	for _, chunk := range []int{4 << 10, DefaultChunkSize} {
		// No mapping ahead: the file grows as bbolt maps it, not by 16 MiB
		// steps, so that the copies stay small.
		s, err := OpenBolt(ctx, &BoltOptions{Path: path, ChunkSize: chunk, SweepInterval: -1, InitialMmapSize: -1})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 36 {
			seed := r.Uint64()
			reqSize, respSize := int64(0), r.Int64N(8<<10)
			if i%5 == 0 {
				reqSize = r.Int64N(4 << 10)
			}
			if i%9 == 0 {
				respSize = 70<<10 + r.Int64N(60<<10) // two or more 64 KiB chunks
			}
			req := model.Request{Method: "POST", URL: fmt.Sprintf("https://corrupt.example/%x", seed), Header: http.Header{
				"X-Seed":      {strconv.FormatUint(seed, 10)},
				"X-Req-Size":  {strconv.FormatInt(reqSize, 10)},
				"X-Resp-Size": {strconv.FormatInt(respSize, 10)},
			}}
			if reqSize > 0 {
				req.Body = model.NewBody(crashBody(seed, bolt.KindRequest, reqSize))
			}
			if i%7 == 0 {
				req.Options.TTL = time.Hour
			}
			inc, err := s.CreatePair(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, inc.Request.Body); err != nil {
				t.Fatal(err)
			}
			if i%13 == 12 {
				continue // left incomplete
			}
			resp := model.Response{Status: 200, Header: http.Header{"Content-Type": {"application/octet-stream"}},
				Body: model.NewBody(crashBody(seed, bolt.KindResponse, respSize))}
			cp, err := s.AddResponse(ctx, inc.ID, resp, fmt.Sprint("k", i%corruptKeys))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, cp.Response.Body); err != nil {
				t.Fatal(err)
			}
			if i%11 == 10 {
				if err := s.Remove(ctx, cp.ID); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// damage damages file b in place (and may cut it short) and says how.
func damage(b []byte, r *rand.Rand) ([]byte, string) {
	ps := os.Getpagesize()
	pages := len(b) / ps
	switch mode := r.IntN(16); {
	case mode < 9: // bytes flipped anywhere
		n := 1 + r.IntN(16)
		for range n {
			b[r.IntN(len(b))] ^= byte(1 + r.IntN(255))
		}
		return b, fmt.Sprintf("%d bytes flipped", n)
	case mode < 13: // page headers and element headers garbled
		n := 1 + r.IntN(4)
		for range n {
			off := r.IntN(pages)*ps + r.IntN(64)
			b[off] ^= byte(1 + r.IntN(255))
		}
		return b, fmt.Sprintf("%d page header bytes flipped", n)
	case mode < 15: // a page zeroed
		p := 2 + r.IntN(pages-2)
		clear(b[p*ps : (p+1)*ps])
		return b, fmt.Sprintf("page %d zeroed", p)
	default: // cut short
		n := r.IntN(len(b))
		return b[:n], fmt.Sprintf("cut to %d bytes", n)
	}
}

// TestBoltCorruptFiles damages copies of a real cache file and opens each
// in a child process (see above): no crash, no hang, and either a clean
// error or correct data, over -corrupt.trials trials (200 by default, 50
// with -short).
func TestBoltCorruptFiles(t *testing.T) {
	trials := *corruptTrials
	if testing.Short() {
		trials = min(trials, 50)
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "source.db")
	buildCorruptSource(t, src)
	closed, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	// The file as a crash leaves it: written by commits that do not keep
	// the free list (Close writes it), so that an open walks the whole
	// tree. One more pair is stored, and the file read while the store is
	// open.
	s, err := OpenBolt(context.Background(), &BoltOptions{Path: src, SweepInterval: -1, InitialMmapSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	seedReq := model.Request{Method: "GET", URL: "https://corrupt.example/crashed", Header: http.Header{
		"X-Seed": {"1"}, "X-Req-Size": {"0"}, "X-Resp-Size": {"5000"}}}
	store(t, s, seedReq, model.Response{Status: 200, Body: model.NewBody(crashBody(1, bolt.KindResponse, 5000))}, "k0")
	if err := s.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	crashed, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	sources := []struct {
		name string
		b    []byte
	}{{"closed", closed}, {"crashed", crashed}}
	// The sources themselves read back whole.
	for _, src := range sources {
		path := filepath.Join(dir, src.name+".db")
		if err := os.WriteFile(path, src.b, 0o600); err != nil {
			t.Fatal(err)
		}
		var sb strings.Builder
		if code := corruptRead(path, &sb); code != 0 || !strings.Contains(sb.String(), "DONE") || strings.Contains(sb.String(), "ERR") {
			t.Fatalf("the undamaged %s file does not read back cleanly:\n%s", src.name, sb.String())
		}
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("files of %d and %d KiB, seed %d", len(closed)>>10, len(crashed)>>10, seed)
	r := rand.New(rand.NewPCG(seed, 0))
	type job struct {
		n    int
		path string
		how  string
	}
	jobs := make(chan job)
	var mu sync.Mutex
	outcomes := map[string]int{}
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for j := range jobs {
				outcome := runCorruptHelper(t, j.path, j.how, j.n)
				mu.Lock()
				outcomes[outcome]++
				mu.Unlock()
				os.Remove(j.path)
			}
		})
	}
	for n := range trials {
		src := sources[n%len(sources)]
		b, how := damage(bytes.Clone(src.b), r)
		how = src.name + " file, " + how
		path := filepath.Join(dir, fmt.Sprintf("trial%d.db", n))
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		jobs <- job{n, path, how}
	}
	close(jobs)
	wg.Wait()
	t.Logf("%d trials: %v", trials, outcomes)
}

// runCorruptHelper runs the child on path and checks how it ended; it
// returns the outcome's class.
func runCorruptHelper(t *testing.T, path, how string, n int) string {
	ctx, cancel := context.WithTimeout(context.Background(), corruptDeadline)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0])
	// Under -race the runtime sleeps a second at exit to let reports
	// arrive; the child reports on stdout, and a race fails it all the same.
	cmd.Env = append(os.Environ(), corruptEnvDB+"="+path, "GORACE=atexit_sleep_ms=0 "+os.Getenv("GORACE"))
	// A child past its deadline gets SIGQUIT: the Go runtime prints every
	// goroutine's stack before it exits, which the report shows.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGQUIT) }
	cmd.WaitDelay = 10 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	report := func() string {
		return fmt.Sprintf("trial %d (%s):\nstdout:\n%s\nstderr:\n%s", n, how, stdout.String(), stderr.String())
	}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		if d := os.Getenv("HISHEL_CORRUPT_KEEP"); d != "" {
			_ = os.Link(path, filepath.Join(d, filepath.Base(path)))
		}
		t.Errorf("hang: the child did not finish within %v; %s", corruptDeadline, report())
		return "hang"
	case errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signaled():
		t.Errorf("the child was killed by %v; %s", ee.Sys().(syscall.WaitStatus).Signal(), report())
		return "crash"
	case err != nil && ee != nil && ee.ExitCode() == 1 && strings.Contains(stdout.String(), "BAD"):
		t.Errorf("wrong data or an unexpected error; %s", report())
		return "wrong"
	case err != nil:
		t.Errorf("the child crashed (%v); %s", err, report())
		return "crash"
	case strings.Contains(stdout.String(), "OPENFAILED"):
		return "open: clean error"
	case strings.Contains(stdout.String(), "ERR"):
		return "read: clean errors"
	case strings.Contains(stdout.String(), "DONE"):
		return "read: correct data"
	}
	t.Errorf("the child said nothing; %s", report())
	return "silent"
}
