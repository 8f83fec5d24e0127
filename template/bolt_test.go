package template

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hishel-go/hishel/model"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// openBolt opens a Bolt in a temporary directory, closed at the end of the
// test. Background sweeping is off unless opts says otherwise.
func openBolt(tb testing.TB, opts *BoltOptions) *Bolt {
	tb.Helper()
	var o BoltOptions
	if opts != nil {
		o = *opts
	}
	if o.Path == "" {
		o.Path = filepath.Join(tb.TempDir(), "cache.db")
	}
	if o.SweepInterval == 0 {
		o.SweepInterval = -1
	}
	s, err := OpenBolt(context.Background(), &o)
	if err != nil {
		tb.Fatalf("OpenBolt: %v", err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

// store creates and completes a pair, draining both bodies.
func store(tb testing.TB, s *Bolt, req model.Request, resp model.Response, key string, opts ...model.CreateOption) model.CompletePair {
	tb.Helper()
	ctx := context.Background()
	inc, err := s.CreatePair(ctx, req, opts...)
	if err != nil {
		tb.Fatalf("CreatePair: %v", err)
	}
	if _, err := io.Copy(io.Discard, inc.Request.Body); err != nil {
		tb.Fatalf("read request body: %v", err)
	}
	cp, err := s.AddResponse(ctx, inc.ID, resp, key)
	if err != nil {
		tb.Fatalf("AddResponse: %v", err)
	}
	if _, err := io.Copy(io.Discard, cp.Response.Body); err != nil {
		tb.Fatalf("read response body: %v", err)
	}
	return cp
}

func getReq(url string) model.Request {
	return model.Request{Method: "GET", URL: url, Header: http.Header{"Accept": {"*/*"}}}
}

func okResp(body string) model.Response {
	return model.Response{Status: 200, Header: http.Header{"Content-Type": {"text/plain"}}, Body: model.StringBody(body)}
}

// bodies reads both bodies of every pair.
func bodies(tb testing.TB, pairs []model.CompletePair) []string {
	tb.Helper()
	var out []string
	for _, p := range pairs {
		req, err := model.ReadAll(p.Request.Body)
		if err != nil {
			tb.Fatalf("read stored request body: %v", err)
		}
		resp, err := model.ReadAll(p.Response.Body)
		if err != nil {
			tb.Fatalf("read stored response body: %v", err)
		}
		out = append(out, string(req)+"|"+string(resp))
	}
	return out
}

func mustGet(tb testing.TB, s *Bolt, key string) []model.CompletePair {
	tb.Helper()
	ps, err := s.GetPairs(context.Background(), key)
	if err != nil {
		tb.Fatalf("GetPairs(%q): %v", key, err)
	}
	return ps
}

func mustStats(tb testing.TB, s *Bolt) model.Stats {
	tb.Helper()
	st, err := s.Stats(context.Background())
	if err != nil {
		tb.Fatalf("Stats: %v", err)
	}
	return st
}

func TestBoltRoundTrip(t *testing.T) {
	s := openBolt(t, nil)
	req := model.Request{
		Method: "POST", URL: "https://example.com/a?b=c",
		Header: http.Header{"X-Multi": {"1", "2", "3"}, "Cookie": {"a=b"}},
		Body:   model.StringBody("request body"),
	}
	resp := model.Response{
		Status: 201,
		Header: http.Header{"Set-Cookie": {"a=1; Path=/", "b=2, c=3"}, "Content-Type": {"text/plain"}},
		Body:   model.NewBody(strings.NewReader("response body")),
	}
	cp := store(t, s, req, resp, "POST:https://example.com/a?b=c")
	ps := mustGet(t, s, "POST:https://example.com/a?b=c")
	if len(ps) != 1 {
		t.Fatalf("GetPairs returned %d pairs; want 1", len(ps))
	}
	p := ps[0]
	if p.ID != cp.ID {
		t.Errorf("ID = %v; want %v", p.ID, cp.ID)
	}
	if diff := cmp.Diff(req.Header, p.Request.Header); diff != "" {
		t.Errorf("request header (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(resp.Header, p.Response.Header); diff != "" {
		t.Errorf("response header (-want +got):\n%s", diff)
	}
	if p.Request.Method != "POST" || p.Request.URL != req.URL || p.Response.Status != 201 {
		t.Errorf("heads = %s %s %d; want POST %s 201", p.Request.Method, p.Request.URL, p.Response.Status, req.URL)
	}
	if got, want := bodies(t, ps), []string{"request body|response body"}; !cmp.Equal(got, want) {
		t.Errorf("bodies = %q; want %q", got, want)
	}
	if p.Meta.RequestSize != 12 || p.Meta.ResponseSize != 13 {
		t.Errorf("sizes = %d, %d; want 12, 13", p.Meta.RequestSize, p.Meta.ResponseSize)
	}
	if got := mustStats(t, s); got != (model.Stats{Pairs: 1, Bytes: 25}) {
		t.Errorf("Stats = %+v; want 1 pair, 25 bytes", got)
	}
}

func TestBoltBodySizes(t *testing.T) {
	s := openBolt(t, &BoltOptions{ChunkSize: 1000})
	for _, n := range []int{0, 1, 999, 1000, 1001, 5000, flushBytes - 1, flushBytes, flushBytes + 1, 3*flushBytes + 17} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			body := make([]byte, n)
			for i := range body {
				body[i] = byte(i * 7)
			}
			key := fmt.Sprint("k", n)
			store(t, s, getReq("u"), model.Response{Status: 200, Body: model.NewBody(bytes.NewReader(body))}, key)
			ps := mustGet(t, s, key)
			if len(ps) != 1 {
				t.Fatalf("GetPairs = %d pairs; want 1", len(ps))
			}
			got, err := model.ReadAll(ps[0].Response.Body)
			if err != nil || !bytes.Equal(got, body) {
				t.Fatalf("body read back: %d bytes, err %v; want %d identical bytes", len(got), err, n)
			}
		})
	}
}

func TestBoltVisibility(t *testing.T) {
	ctx := context.Background()
	s := openBolt(t, nil)
	inc, err := s.CreatePair(ctx, model.Request{Method: "GET", URL: "u", Body: model.StringBody("req")})
	if err != nil {
		t.Fatal(err)
	}
	cp, err := s.AddResponse(ctx, inc.ID, okResp("resp"), "k")
	if err != nil {
		t.Fatal(err)
	}
	if ps := mustGet(t, s, "k"); len(ps) != 0 {
		t.Fatalf("pair visible before its bodies are stored")
	}
	if _, err := io.ReadAll(cp.Response.Body); err != nil {
		t.Fatal(err)
	}
	if ps := mustGet(t, s, "k"); len(ps) != 0 {
		t.Fatalf("pair visible before its request body is stored")
	}
	if _, err := s.GetPair(ctx, inc.ID); !errors.Is(err, model.ErrNotFound) {
		t.Errorf("GetPair(incomplete) err = %v; want ErrNotFound", err)
	}
	if _, err := io.ReadAll(inc.Request.Body); err != nil {
		t.Fatal(err)
	}
	if got := bodies(t, mustGet(t, s, "k")); !cmp.Equal(got, []string{"req|resp"}) {
		t.Fatalf("bodies = %q; want [req|resp]", got)
	}
	if _, err := s.GetPair(ctx, inc.ID); err != nil {
		t.Errorf("GetPair(complete) err = %v", err)
	}
}

// failingReader returns data then an error.
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

func TestBoltAbortedStreams(t *testing.T) {
	errBoom := errors.New("boom")
	big := bytes.Repeat([]byte("x"), 3*flushBytes)
	tests := []struct {
		name    string
		body    func() *model.Body
		consume func(ctx context.Context, cancel context.CancelFunc, b *model.Body) error
		wantErr error
	}{
		{
			name: "source error",
			body: func() *model.Body { return model.NewBody(&failingReader{data: big, err: errBoom}) },
			consume: func(_ context.Context, _ context.CancelFunc, b *model.Body) error {
				_, err := io.ReadAll(b)
				return err
			},
			wantErr: errBoom,
		},
		{
			name: "closed early",
			body: func() *model.Body { return model.BytesBody(big) },
			consume: func(_ context.Context, _ context.CancelFunc, b *model.Body) error {
				buf := make([]byte, flushBytes+10)
				if _, err := io.ReadFull(b, buf); err != nil {
					return err
				}
				return b.Close()
			},
		},
		{
			name: "context cancelled",
			body: func() *model.Body { return model.BytesBody(big) },
			consume: func(_ context.Context, cancel context.CancelFunc, b *model.Body) error {
				buf := make([]byte, flushBytes+10)
				if _, err := io.ReadFull(b, buf); err != nil {
					return err
				}
				cancel()
				_, err := io.ReadAll(b)
				return err
			},
			wantErr: context.Canceled,
		},
	}
	for _, tt := range tests {
		for _, which := range []string{"request", "response"} {
			t.Run(tt.name+"/"+which, func(t *testing.T) {
				s := openBolt(t, nil)
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				req := getReq("u")
				resp := okResp("ok")
				if which == "request" {
					req.Body = tt.body()
				} else {
					resp.Body = tt.body()
				}
				inc, err := s.CreatePair(ctx, req)
				if err != nil {
					t.Fatal(err)
				}
				var got error
				if which == "request" {
					got = tt.consume(ctx, cancel, inc.Request.Body)
				}
				cp, err := s.AddResponse(ctx, inc.ID, resp, "k")
				if which == "request" && err == nil {
					// the pair was reclaimed, so AddResponse must not find it
					t.Fatalf("AddResponse after an aborted request body succeeded")
				}
				if which == "response" {
					if err != nil {
						t.Fatal(err)
					}
					got = tt.consume(ctx, cancel, cp.Response.Body)
				}
				if tt.wantErr != nil && !errors.Is(got, tt.wantErr) {
					t.Errorf("stream error = %v; want %v", got, tt.wantErr)
				}
				if tt.wantErr != nil && !errors.Is(got, model.ErrAborted) {
					t.Errorf("stream error = %v; want it to wrap ErrAborted", got)
				}
				if ps := mustGet(t, s, "k"); len(ps) != 0 {
					t.Errorf("aborted pair is visible")
				}
				if st := mustStats(t, s); st != (model.Stats{}) {
					t.Errorf("Stats after abort = %+v; want all zero (reclaimed at once)", st)
				}
				// The store stays usable.
				store(t, s, getReq("u"), okResp("fine"), "k")
				if got := bodies(t, mustGet(t, s, "k")); !cmp.Equal(got, []string{"|fine"}) {
					t.Errorf("after abort, bodies = %q; want [|fine]", got)
				}
			})
		}
	}
}

func TestBoltBadInput(t *testing.T) {
	ctx := context.Background()
	s := openBolt(t, nil)
	complete := store(t, s, getReq("u"), okResp("x"), "k")
	incomplete, err := s.CreatePair(ctx, getReq("v"))
	if err != nil {
		t.Fatal(err)
	}
	consumed := model.StringBody("abc")
	_, _ = consumed.Read(make([]byte, 1))
	closedBody := model.StringBody("abc")
	_ = closedBody.Close()
	unknown := model.NewPairID()

	tests := []struct {
		name string
		op   func() error
		want error
	}{
		{"AddResponse unknown id", func() error {
			_, err := s.AddResponse(ctx, unknown, okResp("x"), "k")
			return err
		}, model.ErrNotFound},
		{"AddResponse twice", func() error {
			_, err := s.AddResponse(ctx, complete.ID, okResp("x"), "k")
			return err
		}, model.ErrInvalid},
		{"AddResponse bad status", func() error {
			_, err := s.AddResponse(ctx, incomplete.ID, model.Response{Status: 0}, "k")
			return err
		}, model.ErrInvalid},
		{"AddResponse consumed body", func() error {
			_, err := s.AddResponse(ctx, incomplete.ID, model.Response{Status: 200, Body: consumed}, "k")
			return err
		}, model.ErrBodyConsumed},
		{"CreatePair consumed body", func() error {
			r := getReq("u")
			r.Body = consumed
			_, err := s.CreatePair(ctx, r)
			return err
		}, model.ErrBodyConsumed},
		{"CreatePair closed body", func() error {
			r := getReq("u")
			r.Body = closedBody
			_, err := s.CreatePair(ctx, r)
			return err
		}, model.ErrBodyConsumed},
		{"CreatePair empty method", func() error {
			_, err := s.CreatePair(ctx, model.Request{URL: "u"})
			return err
		}, model.ErrInvalid},
		{"CreatePair duplicate id", func() error {
			_, err := s.CreatePair(ctx, getReq("u"), model.WithID(complete.ID))
			return err
		}, model.ErrDuplicateID},
		{"UpdatePair unknown id", func() error {
			_, err := s.UpdatePair(ctx, unknown, complete)
			return err
		}, model.ErrNotFound},
		{"UpdatePair incomplete", func() error {
			_, err := s.UpdatePair(ctx, incomplete.ID, model.CompletePair{ID: incomplete.ID})
			return err
		}, model.ErrNotFound},
		{"UpdatePair changes id", func() error {
			p := complete
			p.ID = unknown
			_, err := s.UpdatePair(ctx, complete.ID, p)
			return err
		}, model.ErrIDChanged},
		{"UpdatePairFunc error", func() error {
			_, err := s.UpdatePairFunc(ctx, complete.ID, func(p model.CompletePair) (model.CompletePair, error) {
				return p, io.ErrShortWrite
			})
			return err
		}, io.ErrShortWrite},
		{"UpdatePairFunc panics", func() error {
			_, err := s.UpdatePairFunc(ctx, complete.ID, func(p model.CompletePair) (model.CompletePair, error) {
				panic("caller bug")
			})
			if err == nil || !strings.Contains(err.Error(), "caller bug") {
				return fmt.Errorf("err = %v; want the panic reported", err)
			}
			return nil
		}, nil},
		{"GetPair unknown", func() error {
			_, err := s.GetPair(ctx, unknown)
			return err
		}, model.ErrNotFound},
		{"Remove unknown is a no-op", func() error {
			return s.Remove(ctx, unknown)
		}, nil},
		{"cancelled context", func() error {
			c, cancel := context.WithCancel(ctx)
			cancel()
			_, err := s.GetPairs(c, "k")
			return err
		}, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.op()
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("err = %v; want %v", err, tt.want)
			}
		})
	}
	// Nothing stored was damaged by the bad calls.
	if got := bodies(t, mustGet(t, s, "k")); !cmp.Equal(got, []string{"|x"}) {
		t.Errorf("after bad input, bodies = %q; want [|x]", got)
	}
}

func TestBoltWithID(t *testing.T) {
	s := openBolt(t, nil)
	id := model.NewPairID()
	cp := store(t, s, getReq("u"), okResp("x"), "k", model.WithID(id))
	if cp.ID != id {
		t.Fatalf("ID = %v; want %v", cp.ID, id)
	}
	p, err := s.GetPair(context.Background(), id)
	if err != nil || p.ID != id {
		t.Fatalf("GetPair(%v) = %v, %v", id, p.ID, err)
	}
	p.Close()
}

func TestBoltUpdatePair(t *testing.T) {
	ctx := context.Background()
	s := openBolt(t, nil)
	cp := store(t, s, getReq("u"), okResp("body"), "old")

	next := cp
	next.Key = "new"
	next.Response.Status = 203
	next.Response.Header = http.Header{"X-Updated": {"1"}}
	got, err := s.UpdatePair(ctx, cp.ID, next)
	if err != nil {
		t.Fatal(err)
	}
	if got.Key != "new" || got.Response.Status != 203 {
		t.Errorf("UpdatePair = key %q status %d; want new 203", got.Key, got.Response.Status)
	}
	if b, err := model.ReadAll(got.Response.Body); err != nil || string(b) != "body" {
		t.Errorf("updated pair body = %q, %v; want body", b, err)
	}
	if ps := mustGet(t, s, "old"); len(ps) != 0 {
		t.Errorf("pair still under the old key")
	}
	ps := mustGet(t, s, "new")
	if len(ps) != 1 || ps[0].Response.Header.Get("X-Updated") != "1" {
		t.Fatalf("GetPairs(new) = %d pairs; want the updated pair", len(ps))
	}
	bodies(t, ps)

	got, err = s.UpdatePairFunc(ctx, cp.ID, func(p model.CompletePair) (model.CompletePair, error) {
		if p.Response.Body != nil {
			t.Errorf("UpdatePairFunc got a body")
		}
		p.Response.Header.Set("X-Count", "2")
		return p, nil
	})
	if err != nil || got.Response.Header.Get("X-Count") != "2" || got.Response.Header.Get("X-Updated") != "1" {
		t.Fatalf("UpdatePairFunc = %v, %v", got.Response.Header, err)
	}
	got.Close()
}

func TestBoltRemove(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	s := openBolt(t, &BoltOptions{Now: c.Now})
	a := store(t, s, getReq("u"), okResp("a"), "k")
	store(t, s, getReq("u"), okResp("b"), "k")
	if err := s.Remove(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if got := bodies(t, mustGet(t, s, "k")); !cmp.Equal(got, []string{"|b"}) {
		t.Errorf("after Remove, bodies = %q; want [|b]", got)
	}
	if err := s.Remove(ctx, a.ID); err != nil {
		t.Errorf("second Remove = %v; want nil", err)
	}
	if st := mustStats(t, s); st.Pairs != 1 || st.Deleted != 1 || st.Bytes != 2 {
		t.Errorf("Stats = %+v; want 1 pair, 1 deleted, 2 bytes", st)
	}
	if _, err := s.UpdatePair(ctx, a.ID, a); !errors.Is(err, model.ErrNotFound) {
		t.Errorf("UpdatePair(removed) = %v; want ErrNotFound", err)
	}
	if _, err := s.AddResponse(ctx, a.ID, okResp("x"), "k"); !errors.Is(err, model.ErrNotFound) {
		t.Errorf("AddResponse(removed) = %v; want ErrNotFound", err)
	}
}

func TestBoltNewestFirst(t *testing.T) {
	c := newClock()
	s := openBolt(t, &BoltOptions{Now: c.Now})
	for _, b := range []string{"1", "2", "3"} {
		store(t, s, getReq("u"), okResp(b), "k")
		c.Advance(time.Second)
	}
	if got := bodies(t, mustGet(t, s, "k")); !cmp.Equal(got, []string{"|3", "|2", "|1"}) {
		t.Errorf("bodies = %q; want newest first", got)
	}
}

func TestBoltLongAndBinaryKeys(t *testing.T) {
	s := openBolt(t, nil)
	keys := []string{"", "\x00", "\xff\xfe", strings.Repeat("k", 40<<10), strings.Repeat("k", 40<<10) + "x"}
	for i, k := range keys {
		store(t, s, getReq("u"), okResp(fmt.Sprint(i)), k)
	}
	for i, k := range keys {
		if got := bodies(t, mustGet(t, s, k)); !cmp.Equal(got, []string{fmt.Sprint("|", i)}) {
			t.Errorf("key %d: bodies = %q; want [|%d]", i, got, i)
		}
	}
}

func TestBoltRemovedWhileReading(t *testing.T) {
	ctx := context.Background()
	s := openBolt(t, nil)
	body := bytes.Repeat([]byte("abcdefgh"), 1<<17) // 1 MiB
	store(t, s, getReq("u"), model.Response{Status: 200, Body: model.BytesBody(body)}, "k")
	ps := mustGet(t, s, "k")
	buf := make([]byte, 1000)
	if _, err := io.ReadFull(ps[0].Response.Body, buf); err != nil {
		t.Fatal(err)
	}
	if err := s.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, ps[0].Response.Body)
	if !errors.Is(err, model.ErrRemoved) {
		t.Fatalf("read after Clear: %d more bytes, err %v; want ErrRemoved", n, err)
	}
	if st := mustStats(t, s); st != (model.Stats{}) {
		t.Errorf("Stats after Clear = %+v; want zero", st)
	}
}

func TestBoltTTL(t *testing.T) {
	// Every step advances the clock and calls GetPairs, which is an access.
	type step struct {
		advance time.Duration
		want    bool // visible
	}
	tests := []struct {
		name  string
		opts  BoltOptions
		req   model.RequestOptions
		steps []step
	}{
		{"no ttl never expires", BoltOptions{}, model.RequestOptions{},
			[]step{{advance: 1000 * time.Hour, want: true}}},
		{"default ttl", BoltOptions{DefaultTTL: time.Hour, RefreshTTLOnAccess: model.NoRefresh}, model.RequestOptions{},
			[]step{{advance: 59 * time.Minute, want: true}, {advance: time.Minute, want: false}}},
		{"default ttl refreshed on access", BoltOptions{DefaultTTL: time.Hour}, model.RequestOptions{},
			[]step{{advance: 59 * time.Minute, want: true}, {advance: 59 * time.Minute, want: true}, {advance: time.Hour, want: false}}},
		{"request ttl overrides", BoltOptions{DefaultTTL: time.Hour, RefreshTTLOnAccess: model.NoRefresh}, model.RequestOptions{TTL: 2 * time.Hour},
			[]step{{advance: 90 * time.Minute, want: true}, {advance: 30 * time.Minute, want: false}}},
		{"request no expiry", BoltOptions{DefaultTTL: time.Hour}, model.RequestOptions{TTL: model.NoExpiry},
			[]step{{advance: 1000 * time.Hour, want: true}}},
		{"request no refresh", BoltOptions{DefaultTTL: time.Hour}, model.RequestOptions{Refresh: model.NoRefresh},
			[]step{{advance: 59 * time.Minute, want: true}, {advance: time.Minute, want: false}}},
		{"request refresh", BoltOptions{DefaultTTL: time.Hour, RefreshTTLOnAccess: model.NoRefresh}, model.RequestOptions{Refresh: model.RefreshOnAccess},
			[]step{{advance: 59 * time.Minute, want: true}, {advance: 59 * time.Minute, want: true}}},
	}
	for _, tt := range tests {
		for _, reopen := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/reopen=%v", tt.name, reopen), func(t *testing.T) {
				c := newClock()
				opts := tt.opts
				opts.Now = c.Now
				opts.Path = filepath.Join(t.TempDir(), "ttl.db")
				s := openBolt(t, &opts)
				req := getReq("u")
				req.Options = tt.req
				store(t, s, req, okResp("x"), "k")
				for i, st := range tt.steps {
					c.Advance(st.advance)
					if reopen {
						// Close writes pending access times; the TTL
						// rules must hold across the reopen.
						if err := s.Close(); err != nil {
							t.Fatal(err)
						}
						s = openBolt(t, &opts)
					}
					ps := mustGet(t, s, "k")
					bodies(t, ps)
					if got := len(ps) == 1; got != st.want {
						t.Fatalf("step %d: visible = %v; want %v", i, got, st.want)
					}
				}
			})
		}
	}
}
