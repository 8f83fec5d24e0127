package storagetest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hishel-go/hishel/model"
)

// abortSize is the size of the bodies aborted streams store part of: more
// than one of Bolt's lazy flushes (1 MiB), so that part of the body has been
// handed to storage when the stream is aborted.
const abortSize = 3 << 20

// A body stream that fails, is closed early, whose context ends, or whose
// pair is removed or cleared meanwhile leaves nothing visible; its bytes are
// reclaimed at once (Stats back to zero), and the store stays usable.
func testAbortedStreams(t *testing.T, open Opener) {
	errBoom := errors.New("boom")
	big := pattern(abortSize, 5)
	half := func(b *model.Body) error {
		_, err := io.ReadFull(b, make([]byte, abortSize/2))
		return err
	}
	type env struct {
		s      Store
		id     model.PairID
		cancel context.CancelFunc
	}
	tests := []struct {
		name    string
		body    func(cancel context.CancelFunc) *model.Body
		consume func(e env, b *model.Body) error
		want    []error // errors the stream's last Read wraps
	}{
		{
			name: "source error",
			body: func(context.CancelFunc) *model.Body { return model.NewBody(&failingReader{data: big, err: errBoom}) },
			consume: func(_ env, b *model.Body) error {
				_, err := io.ReadAll(b)
				return err
			},
			want: []error{errBoom, model.ErrAborted},
		},
		{
			name: "closed early",
			body: func(context.CancelFunc) *model.Body { return model.BytesBody(big) },
			consume: func(_ env, b *model.Body) error {
				if err := half(b); err != nil {
					return err
				}
				if err := b.Close(); err != nil {
					return err
				}
				if _, err := b.Read(make([]byte, 1)); !errors.Is(err, model.ErrBodyClosed) {
					return errors.New("Read after Close did not fail with ErrBodyClosed")
				}
				return nil
			},
		},
		{
			name: "context cancelled",
			body: func(context.CancelFunc) *model.Body { return model.BytesBody(big) },
			consume: func(e env, b *model.Body) error {
				if err := half(b); err != nil {
					return err
				}
				e.cancel()
				_, err := io.ReadAll(b)
				return err
			},
			want: []error{context.Canceled, model.ErrAborted},
		},
		{
			// A source that ends cleanly once the context ends, as a
			// ChanBody does whose producer closes its channel when its
			// context is done: the stream was cut short, not complete.
			name: "context cancelled, then the source ends",
			body: func(cancel context.CancelFunc) *model.Body {
				return model.NewBody(&cancelAtEnd{data: big[:abortSize/2], cancel: cancel})
			},
			consume: func(_ env, b *model.Body) error {
				_, err := io.ReadAll(b)
				return err
			},
			want: []error{context.Canceled, model.ErrAborted},
		},
		{
			name: "pair removed",
			body: func(context.CancelFunc) *model.Body { return model.BytesBody(big) },
			consume: func(e env, b *model.Body) error {
				if err := half(b); err != nil {
					return err
				}
				if err := e.s.Remove(context.Background(), e.id); err != nil {
					return err
				}
				_, err := io.ReadAll(b)
				return err
			},
			want: []error{model.ErrAborted},
		},
		{
			name: "storage cleared",
			body: func(context.CancelFunc) *model.Body { return model.BytesBody(big) },
			consume: func(e env, b *model.Body) error {
				if err := half(b); err != nil {
					return err
				}
				if err := e.s.Clear(context.Background()); err != nil {
					return err
				}
				_, err := io.ReadAll(b)
				return err
			},
			want: []error{model.ErrAborted},
		},
	}
	for _, tt := range tests {
		for _, side := range []string{"request", "response"} {
			t.Run(tt.name+"/"+side, func(t *testing.T) {
				s := open(t, Options{ChunkSize: 16 << 10})
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				req, resp := getReq("u"), okResp("ok")
				if side == "request" {
					req.Body = tt.body(cancel)
				} else {
					resp.Body = tt.body(cancel)
				}
				inc, err := s.CreatePair(ctx, req)
				if err != nil {
					t.Fatal(err)
				}
				e := env{s: s, id: inc.ID, cancel: cancel}
				var got error
				if side == "request" {
					got = tt.consume(e, inc.Request.Body)
					// The pair was reclaimed: nothing to add a response to.
					if _, err := s.AddResponse(context.Background(), inc.ID, resp, "k"); !errors.Is(err, model.ErrNotFound) {
						t.Errorf("AddResponse() after the request stream was aborted: error = %v; want ErrNotFound", err)
					}
				} else {
					cp, err := s.AddResponse(ctx, inc.ID, resp, "k")
					if err != nil {
						t.Fatal(err)
					}
					got = tt.consume(e, cp.Response.Body)
				}
				if tt.want == nil && got != nil {
					t.Errorf("stream error = %v; want nil", got)
				}
				for _, want := range tt.want {
					if !errors.Is(got, want) {
						t.Errorf("stream error = %v; want it to wrap %v", got, want)
					}
				}
				if n := count(t, s, "k"); n != 0 {
					t.Errorf("GetPairs() = %d pairs after an aborted stream; want 0", n)
				}
				if _, err := s.GetPair(context.Background(), inc.ID); !errors.Is(err, model.ErrNotFound) {
					t.Errorf("GetPair(aborted) error = %v; want ErrNotFound", err)
				}
				wantStats(t, "after the abort", syncedStats(t, s), model.Stats{})
				if ps := infos(t, s); len(ps) != 0 {
					t.Errorf("Pairs() lists %d pairs after the abort; want none (reclaimed at once)", len(ps))
				}
				// The store stays usable.
				store(t, s, getReq("u"), okResp("fine"), "k")
				if got := getBodies(t, s, "k"); !cmp.Equal(got, []string{"|fine"}) {
					t.Errorf("after the abort, bodies = %q; want [|fine]", short(got))
				}
			})
		}
	}
}

// A body being read when its pair's data is removed fails with ErrRemoved;
// it never ends early as if it were complete.
func testRemovedWhileReading(t *testing.T, open Opener) {
	// Larger than what GetPairs reads ahead, so that the rest is read from
	// storage after the removal.
	body := pattern(1<<20, 6)
	tests := []struct {
		name   string
		remove func(t *testing.T, s Store, c *Clock, id model.PairID)
		// soft: the data is still there; the reader may finish or fail,
		// but not end short.
		soft bool
	}{
		{"Clear", func(t *testing.T, s Store, _ *Clock, _ model.PairID) {
			if err := s.Clear(context.Background()); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"Remove then purge", func(t *testing.T, s Store, c *Clock, id model.PairID) {
			if err := s.Remove(context.Background(), id); err != nil {
				t.Fatal(err)
			}
			c.Advance(8 * 24 * time.Hour)
			if res := mustSweep(t, s); res != (model.SweepResult{Purged: 1}) {
				t.Errorf("Cleanup() = %+v; want 1 purged", res)
			}
		}, false},
		{"expire then purge", func(t *testing.T, s Store, c *Clock, id model.PairID) {
			c.Advance(2 * time.Hour)
			if res := mustSweep(t, s); res != (model.SweepResult{Expired: 1}) {
				t.Errorf("Cleanup() = %+v; want 1 expired", res)
			}
			c.Advance(8 * 24 * time.Hour)
			if res := mustSweep(t, s); res != (model.SweepResult{Purged: 1}) {
				t.Errorf("Cleanup() = %+v; want 1 purged", res)
			}
		}, false},
		{"Remove only", func(t *testing.T, s Store, _ *Clock, id model.PairID) {
			if err := s.Remove(context.Background(), id); err != nil {
				t.Fatal(err)
			}
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewClock()
			s := open(t, Options{Now: c.Now, DefaultTTL: time.Hour, RefreshTTLOnAccess: model.NoRefresh})
			cp := store(t, s, model.Request{Method: "PUT", URL: "u", Body: model.BytesBody(body)},
				model.Response{Status: 200, Body: model.BytesBody(body)}, "k")
			ps := mustGet(t, s, "k")
			if len(ps) != 1 {
				t.Fatalf("GetPairs() = %d pairs; want 1", len(ps))
			}
			p := ps[0]
			head := make([]byte, 1000)
			for _, b := range []*model.Body{p.Request.Body, p.Response.Body} {
				if _, err := io.ReadFull(b, head); err != nil || !bytes.Equal(head, body[:1000]) {
					t.Fatalf("reading the first bytes: %v", err)
				}
			}
			tt.remove(t, s, c, cp.ID)
			for name, b := range map[string]*model.Body{"request": p.Request.Body, "response": p.Response.Body} {
				rest, err := io.ReadAll(b)
				b.Close()
				whole := err == nil && bytes.Equal(rest, body[1000:])
				switch {
				case tt.soft && (whole || errors.Is(err, model.ErrRemoved)):
				case !tt.soft && errors.Is(err, model.ErrRemoved):
				default:
					t.Errorf("%s body: read after %s = %d more bytes, error %v; want ErrRemoved", name, tt.name, len(rest), err)
				}
			}
			if !tt.soft {
				wantStats(t, "after the removal", mustStats(t, s), model.Stats{})
			}
		})
	}
}

// cancelAtEnd reads data, then cancels its context and reports the end.
type cancelAtEnd struct {
	data   []byte
	cancel context.CancelFunc
}

func (c *cancelAtEnd) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		c.cancel()
		return 0, io.EOF
	}
	n := copy(p, c.data)
	c.data = c.data[n:]
	return n, nil
}
