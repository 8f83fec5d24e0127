package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/hishel-go/hishel/internal/testclock"
	"github.com/hishel-go/hishel/model"
)

// Clock is a settable clock for stores under test. It is safe for
// concurrent use.
type Clock = testclock.Clock

// NewClock returns a Clock set to a fixed time.
func NewClock() *Clock { return testclock.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) }

// equateEmpty treats nil and empty header maps alike.
var equateEmpty = cmpopts.EquateEmpty()

// store creates a pair and completes it, reading both bodies to the end.
func store(tb testing.TB, s Store, req model.Request, resp model.Response, key string, opts ...model.CreateOption) model.CompletePair {
	tb.Helper()
	ctx := context.Background()
	inc, err := s.CreatePair(ctx, req, opts...)
	if err != nil {
		tb.Fatalf("CreatePair(%s %s) error = %v", req.Method, req.URL, err)
	}
	if _, err := io.Copy(io.Discard, inc.Request.Body); err != nil {
		tb.Fatalf("reading request body to store it: %v", err)
	}
	cp, err := s.AddResponse(ctx, inc.ID, resp, key)
	if err != nil {
		tb.Fatalf("AddResponse(%v) error = %v", inc.ID, err)
	}
	if _, err := io.Copy(io.Discard, cp.Response.Body); err != nil {
		tb.Fatalf("reading response body to store it: %v", err)
	}
	return cp
}

func getReq(url string) model.Request {
	return model.Request{Method: "GET", URL: url, Header: http.Header{"Accept": {"*/*"}}}
}

func okResp(body string) model.Response {
	return model.Response{Status: 200, Header: http.Header{"Content-Type": {"text/plain"}}, Body: model.StringBody(body)}
}

// bodies reads both bodies of every pair, as "request|response".
func bodies(tb testing.TB, pairs []model.CompletePair) []string {
	tb.Helper()
	var out []string
	for _, p := range pairs {
		req, err := model.ReadAll(p.Request.Body)
		if err != nil {
			tb.Fatalf("reading stored request body of %v: %v", p.ID, err)
		}
		resp, err := model.ReadAll(p.Response.Body)
		if err != nil {
			tb.Fatalf("reading stored response body of %v: %v", p.ID, err)
		}
		out = append(out, string(req)+"|"+string(resp))
	}
	return out
}

// short shortens long bodies for a failure message.
func short(bodies []string) []string {
	out := make([]string, len(bodies))
	for i, b := range bodies {
		if len(b) > 40 {
			b = fmt.Sprintf("%s… (%d bytes)", b[:40], len(b))
		}
		out[i] = b
	}
	return out
}

// getBodies is GetPairs(key) read with bodies.
func getBodies(tb testing.TB, s Store, key string) []string {
	tb.Helper()
	return bodies(tb, mustGet(tb, s, key))
}

func mustGet(tb testing.TB, s Store, key string) []model.CompletePair {
	tb.Helper()
	ps, err := s.GetPairs(context.Background(), key)
	if err != nil {
		tb.Fatalf("GetPairs(%.40q) error = %v", key, err)
	}
	return ps
}

// count returns how many pairs GetPairs(key) serves, closing them.
func count(tb testing.TB, s Store, key string) int {
	tb.Helper()
	ps := mustGet(tb, s, key)
	for _, p := range ps {
		p.Close()
	}
	return len(ps)
}

// mustStats returns Stats as the suite's expectations read them: Bytes
// counts bodies only. Stats.Bytes counts every pair's heads too (its key,
// method, URL and header fields, see headBytes): mustStats checks that
// Bytes holds at least the heads of the pairs Pairs lists, and takes them
// off, so that an expectation in body bytes checks the heads exactly too.
func mustStats(tb testing.TB, s Store) model.Stats {
	tb.Helper()
	st, err := s.Stats(context.Background())
	if err != nil {
		tb.Fatalf("Stats() error = %v", err)
	}
	var heads int64
	for _, p := range infos(tb, s) {
		heads += headBytes(p)
	}
	if st.Bytes < heads {
		tb.Errorf("Stats().Bytes = %d; the heads of the pairs stored alone are %d bytes", st.Bytes, heads)
	}
	st.Bytes -= heads
	return st
}

// syncedStats is Stats after Sync, for when a lazily committed change (a new
// incomplete pair, chunks of a body being stored) must be counted.
func syncedStats(tb testing.TB, s Store) model.Stats {
	tb.Helper()
	if err := s.Sync(context.Background()); err != nil {
		tb.Fatalf("Sync() error = %v", err)
	}
	return mustStats(tb, s)
}

func wantStats(tb testing.TB, what string, got, want model.Stats) {
	tb.Helper()
	if diff := cmp.Diff(want, got); diff != "" {
		tb.Errorf("%s: Stats() mismatch (-want +got):\n%s", what, diff)
	}
}

func mustSweep(tb testing.TB, s Store) model.SweepResult {
	tb.Helper()
	res, err := s.Cleanup(context.Background())
	if err != nil {
		tb.Fatalf("Cleanup() error = %v", err)
	}
	return res
}

// infos lists every pair with Pairs.
func infos(tb testing.TB, s Store) []model.PairInfo {
	tb.Helper()
	out, err := list(context.Background(), s, model.Filter{})
	if err != nil {
		tb.Fatalf("Pairs() error = %v", err)
	}
	return out
}

// list collects what Pairs(f) lists, up to its error.
func list(ctx context.Context, s Store, f model.Filter) ([]model.PairInfo, error) {
	var out []model.PairInfo
	for p, err := range s.Pairs(ctx, f) {
		if err != nil {
			return out, err
		}
		out = append(out, p)
	}
	return out, nil
}

// pattern returns n bytes that differ with seed and position, so that a
// misplaced chunk shows.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7+i>>10) ^ seed
	}
	return b
}

// failingReader returns data, then err.
type failingReader struct {
	data []byte
	err  error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if len(f.data) == 0 {
		return 0, f.err
	}
	n := copy(p, f.data)
	f.data = f.data[n:]
	return n, nil
}

// chanBody returns a body fed by a goroutine that sends data in pieces of
// size piece, and stops when ctx ends.
func chanBody(ctx context.Context, data []byte, piece int) *model.Body {
	ch := make(chan model.Chunk)
	go func() {
		defer close(ch)
		for len(data) > 0 {
			n := min(piece, len(data))
			select {
			case ch <- model.Chunk{Data: data[:n]}:
			case <-ctx.Done():
				return
			}
			data = data[n:]
		}
	}()
	return model.ChanBody(ch)
}

// readChunks reads b with Chunks, as a channel consumer would.
func readChunks(ctx context.Context, b *model.Body) ([]byte, error) {
	var buf bytes.Buffer
	for c := range b.Chunks(ctx) {
		if c.Err != nil {
			return buf.Bytes(), c.Err
		}
		buf.Write(c.Data)
	}
	return buf.Bytes(), nil
}

// readAll reads b with the iterator view.
func readAll(b *model.Body) ([]byte, error) {
	var buf bytes.Buffer
	for c, err := range b.All() {
		if err != nil {
			return buf.Bytes(), err
		}
		buf.Write(c)
	}
	return buf.Bytes(), nil
}

// errIs reports whether err matches want: nil only for nil, otherwise
// errors.Is.
func errIs(err, want error) bool {
	if want == nil {
		return err == nil
	}
	return errors.Is(err, want)
}
