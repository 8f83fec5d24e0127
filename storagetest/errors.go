package storagetest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/hishel-go/hishel/model"
)

// Every bad input gets a typed error and changes nothing.
func testBadInput(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t, Options{})
	complete := store(t, s, getReq("u"), okResp("x"), "k")
	incomplete, err := s.CreatePair(ctx, getReq("v"))
	if err != nil {
		t.Fatal(err)
	}
	// Settle the new pair, so that what a panicking UpdatePairFunc below may
	// do to writes made just before it is left to testUpdatePairFuncPanic.
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	consumed := model.StringBody("abc")
	_, _ = consumed.Read(make([]byte, 1))
	closedBody := model.StringBody("abc")
	_ = closedBody.Close()
	unknown := model.NewPairID()
	withResp := func(status int, body *model.Body) model.Response {
		return model.Response{Status: status, Header: http.Header{}, Body: body}
	}
	update := func(f func(*model.CompletePair)) func() error {
		return func() error {
			p := complete
			p.Request.Body, p.Response.Body = nil, nil
			f(&p)
			_, err := s.UpdatePair(ctx, complete.ID, p)
			return err
		}
	}
	updateFunc := func(f func(model.CompletePair) (model.CompletePair, error)) func() error {
		return func() error {
			_, err := s.UpdatePairFunc(ctx, complete.ID, f)
			return err
		}
	}
	errFn := errors.New("fn failed")

	tests := []struct {
		name string
		op   func() error
		want error
	}{
		{"AddResponse(unknown id)", func() error {
			_, err := s.AddResponse(ctx, unknown, okResp("x"), "k")
			return err
		}, model.ErrNotFound},
		{"AddResponse(zero id)", func() error {
			_, err := s.AddResponse(ctx, model.PairID{}, okResp("x"), "k")
			return err
		}, model.ErrNotFound},
		{"AddResponse(complete pair)", func() error {
			_, err := s.AddResponse(ctx, complete.ID, okResp("x"), "k")
			return err
		}, model.ErrInvalid},
		{"AddResponse(status 0)", func() error {
			_, err := s.AddResponse(ctx, incomplete.ID, withResp(0, nil), "k")
			return err
		}, model.ErrInvalid},
		{"AddResponse(status 99)", func() error {
			_, err := s.AddResponse(ctx, incomplete.ID, withResp(99, nil), "k")
			return err
		}, model.ErrInvalid},
		{"AddResponse(status 1000)", func() error {
			_, err := s.AddResponse(ctx, incomplete.ID, withResp(1000, nil), "k")
			return err
		}, model.ErrInvalid},
		{"AddResponse(status -200)", func() error {
			_, err := s.AddResponse(ctx, incomplete.ID, withResp(-200, nil), "k")
			return err
		}, model.ErrInvalid},
		{"AddResponse(consumed body)", func() error {
			_, err := s.AddResponse(ctx, incomplete.ID, withResp(200, consumed), "k")
			return err
		}, model.ErrBodyConsumed},
		{"AddResponse(closed body)", func() error {
			_, err := s.AddResponse(ctx, incomplete.ID, withResp(200, closedBody), "k")
			return err
		}, model.ErrBodyConsumed},
		{"CreatePair(consumed body)", func() error {
			r := getReq("u")
			r.Body = consumed
			_, err := s.CreatePair(ctx, r)
			return err
		}, model.ErrBodyConsumed},
		{"CreatePair(closed body)", func() error {
			r := getReq("u")
			r.Body = closedBody
			_, err := s.CreatePair(ctx, r)
			return err
		}, model.ErrBodyConsumed},
		{"CreatePair(empty method)", func() error {
			_, err := s.CreatePair(ctx, model.Request{URL: "u"})
			return err
		}, model.ErrInvalid},
		{"CreatePair(duplicate id)", func() error {
			_, err := s.CreatePair(ctx, getReq("u"), model.WithID(complete.ID))
			return err
		}, model.ErrDuplicateID},
		{"CreatePair(id of an incomplete pair)", func() error {
			_, err := s.CreatePair(ctx, getReq("u"), model.WithID(incomplete.ID))
			return err
		}, model.ErrDuplicateID},
		{"GetPair(unknown id)", func() error {
			_, err := s.GetPair(ctx, unknown)
			return err
		}, model.ErrNotFound},
		{"UpdatePair(unknown id)", func() error {
			_, err := s.UpdatePair(ctx, unknown, complete)
			return err
		}, model.ErrNotFound},
		{"UpdatePair(incomplete pair)", func() error {
			_, err := s.UpdatePair(ctx, incomplete.ID, model.CompletePair{ID: incomplete.ID})
			return err
		}, model.ErrNotFound},
		{"UpdatePair(other id)", update(func(p *model.CompletePair) { p.ID = unknown }), model.ErrIDChanged},
		{"UpdatePair(zero id)", update(func(p *model.CompletePair) { p.ID = model.PairID{} }), model.ErrIDChanged},
		{"UpdatePair(empty method)", update(func(p *model.CompletePair) { p.Request.Method = "" }), model.ErrInvalid},
		{"UpdatePair(status 0)", update(func(p *model.CompletePair) { p.Response.Status = 0 }), model.ErrInvalid},
		{"UpdatePair(status 1000)", update(func(p *model.CompletePair) { p.Response.Status = 1000 }), model.ErrInvalid},
		{"UpdatePair(negative TTL)", update(func(p *model.CompletePair) { p.Meta.TTL = -1 }), model.ErrInvalid},
		{"UpdatePairFunc(unknown id)", func() error {
			_, err := s.UpdatePairFunc(ctx, unknown, func(p model.CompletePair) (model.CompletePair, error) {
				return p, fmt.Errorf("fn called for an unknown pair")
			})
			return err
		}, model.ErrNotFound},
		{"UpdatePairFunc(changes id)", updateFunc(func(p model.CompletePair) (model.CompletePair, error) {
			p.ID = unknown
			return p, nil
		}), model.ErrIDChanged},
		{"UpdatePairFunc(fn error)", updateFunc(func(p model.CompletePair) (model.CompletePair, error) {
			// Changes made before the error must not be stored.
			p.Key = "moved"
			p.Response.Status = 500
			if p.Response.Header != nil {
				p.Response.Header.Set("Content-Type", "changed/in-place")
			}
			return p, errFn
		}), errFn},
		{"UpdatePairFunc(fn panics)", func() error {
			err := updateFunc(func(p model.CompletePair) (model.CompletePair, error) { panic("caller bug") })()
			if err == nil || !strings.Contains(err.Error(), "caller bug") {
				return fmt.Errorf("error = %v; want the panic reported", err)
			}
			return nil
		}, nil},
		{"Remove(unknown id) is a no-op", func() error { return s.Remove(ctx, unknown) }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.op(); !errIs(err, tt.want) {
				t.Errorf("%s error = %v; want %v", tt.name, err, tt.want)
			}
		})
	}

	// Nothing stored was changed by the bad calls, and the store still works.
	ps := mustGet(t, s, "k")
	if len(ps) != 1 || ps[0].Response.Status != 200 || ps[0].Response.Header.Get("Content-Type") != "text/plain" {
		t.Errorf("after bad input, GetPairs() = %v; want the pair as stored", ps)
	}
	if got := bodies(t, ps); !cmp.Equal(got, []string{"|x"}) {
		t.Errorf("after bad input, bodies = %q; want [|x]", got)
	}
	if n := count(t, s, "moved"); n != 0 {
		t.Errorf("a failed UpdatePairFunc moved the pair")
	}
	wantStats(t, "after bad input", syncedStats(t, s), model.Stats{Pairs: 1, Incomplete: 1, Bytes: 1})
	cp, err := s.AddResponse(ctx, incomplete.ID, okResp("late"), "k")
	if err != nil {
		t.Fatalf("AddResponse(incomplete) after bad input: %v", err)
	}
	if _, err := io.Copy(io.Discard, cp.Response.Body); err != nil {
		t.Fatal(err)
	}
	if n := count(t, s, "k"); n != 2 {
		t.Errorf("GetPairs() = %d pairs; want 2", n)
	}
}

// An operation whose context is done returns the context's error and does
// nothing; one given a nil context returns an error wrapping
// model.ErrInvalid, never a panic, and does nothing.
func testCancelledContext(t *testing.T, open Opener) {
	s := open(t, Options{})
	cp := store(t, s, getReq("u"), okResp("x"), "k")
	inc, err := s.CreatePair(context.Background(), getReq("v"))
	if err != nil {
		t.Fatal(err)
	}
	before := syncedStats(t, s)

	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithTimeout(context.Background(), 0)
	defer cancel2()
	<-expired.Done()
	for _, c := range []struct {
		name string
		ctx  context.Context
		want error
	}{{"cancelled", cancelled, context.Canceled}, {"deadline", expired, context.DeadlineExceeded}, {"nil", nil, model.ErrInvalid}} {
		ctx := c.ctx
		ops := map[string]func() error{
			"CreatePair": func() error {
				_, err := s.CreatePair(ctx, model.Request{Method: "GET", Body: model.StringBody("b")})
				return err
			},
			"AddResponse": func() error { _, err := s.AddResponse(ctx, inc.ID, okResp("y"), "k"); return err },
			"GetPairs":    func() error { _, err := s.GetPairs(ctx, "k"); return err },
			"GetPair":     func() error { _, err := s.GetPair(ctx, cp.ID); return err },
			"UpdatePair": func() error {
				p := cp
				p.Key = "moved"
				_, err := s.UpdatePair(ctx, cp.ID, p)
				return err
			},
			"UpdatePairFunc": func() error {
				_, err := s.UpdatePairFunc(ctx, cp.ID, func(p model.CompletePair) (model.CompletePair, error) {
					p.Key = "moved"
					return p, nil
				})
				return err
			},
			"Remove":  func() error { return s.Remove(ctx, cp.ID) },
			"Cleanup": func() error { _, err := s.Cleanup(ctx); return err },
			"Clear":   func() error { return s.Clear(ctx) },
			"Pairs": func() error {
				ps, err := list(ctx, s, model.Filter{})
				if len(ps) > 0 {
					return errors.New("a pair listed")
				}
				return err
			},
			"Delete": func() error { _, err := s.Delete(ctx, model.Filter{}); return err },
			"Sync":   func() error { return s.Sync(ctx) },
			"Stats":  func() error { _, err := s.Stats(ctx); return err },
		}
		for name, op := range ops {
			t.Run(c.name+"/"+name, func(t *testing.T) {
				defer func() {
					if p := recover(); p != nil {
						t.Fatalf("%s(%s context) panicked: %v", name, c.name, p)
					}
				}()
				if err := op(); !errors.Is(err, c.want) {
					t.Errorf("%s(%s context) error = %v; want %v", name, c.name, err, c.want)
				}
			})
		}
	}
	wantStats(t, "after cancelled calls", syncedStats(t, s), before)
	if got := getBodies(t, s, "k"); !cmp.Equal(got, []string{"|x"}) {
		t.Errorf("after cancelled calls, bodies = %q; want [|x]", got)
	}
}

// After Close every operation, and every body stream of the store, fails
// with ErrClosed; Close is idempotent.
func testUseAfterClose(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t, Options{})
	// A body larger than what a read prefetches, so that reading it after
	// Close has to go back to storage.
	cp := store(t, s, getReq("u"), model.Response{Status: 200, Body: model.BytesBody(pattern(1<<20, 4))}, "k")
	inc, err := s.CreatePair(ctx, model.Request{Method: "GET", URL: "u", Body: model.StringBody("req")})
	if err != nil {
		t.Fatal(err)
	}
	ps := mustGet(t, s, "k")
	if err := s.Close(); err != nil {
		t.Fatalf("Close() = %v; want nil", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close() = %v; want nil", err)
	}
	checks := map[string]error{}
	_, checks["CreatePair"] = s.CreatePair(ctx, getReq("u"))
	_, checks["AddResponse"] = s.AddResponse(ctx, inc.ID, okResp("x"), "k")
	_, checks["GetPairs"] = s.GetPairs(ctx, "k")
	_, checks["GetPair"] = s.GetPair(ctx, cp.ID)
	_, checks["UpdatePair"] = s.UpdatePair(ctx, cp.ID, cp)
	_, checks["UpdatePairFunc"] = s.UpdatePairFunc(ctx, cp.ID, func(p model.CompletePair) (model.CompletePair, error) { return p, nil })
	checks["Remove"] = s.Remove(ctx, cp.ID)
	_, checks["Cleanup"] = s.Cleanup(ctx)
	checks["Clear"] = s.Clear(ctx)
	_, checks["Pairs"] = list(ctx, s, model.Filter{})
	_, checks["Delete"] = s.Delete(ctx, model.Filter{URL: "u"})
	checks["Sync"] = s.Sync(ctx)
	_, checks["Stats"] = s.Stats(ctx)
	_, checks["request body stream"] = io.ReadAll(inc.Request.Body)
	_, checks["stored body read"] = io.ReadAll(ps[0].Response.Body)
	for name, err := range checks {
		if !errors.Is(err, model.ErrClosed) {
			t.Errorf("%s after Close: error = %v; want ErrClosed", name, err)
		}
	}
	ps[0].Request.Body.Close()
}

// A panic in the function given to UpdatePairFunc is that call's error
// (the panic is reported, the pair is unchanged); it undoes no other
// caller's write, not even one made just before it, and fails no other
// caller's call.
func testUpdatePairFuncPanic(t *testing.T, open Opener) {
	ctx := context.Background()
	panicky := func(s Store, id model.PairID) error {
		_, err := s.UpdatePairFunc(ctx, id, func(p model.CompletePair) (model.CompletePair, error) { panic("caller bug") })
		if err == nil || !strings.Contains(err.Error(), "caller bug") {
			return fmt.Errorf("UpdatePairFunc(fn panics) error = %v; want the panic reported", err)
		}
		return nil
	}
	t.Run("sequential", func(t *testing.T) {
		s := open(t, Options{})
		cp := store(t, s, getReq("u"), okResp("x"), "k")
		const n = 20
		for i := range n {
			inc, err := s.CreatePair(ctx, getReq("u"))
			if err != nil {
				t.Fatal(err)
			}
			if err := panicky(s, cp.ID); err != nil {
				t.Fatal(err)
			}
			rp, err := s.AddResponse(ctx, inc.ID, okResp("y"), "after")
			if err != nil {
				t.Fatalf("attempt %d: AddResponse(pair created just before a panicking UpdatePairFunc) error = %v; want nil", i, err)
			}
			if _, err := io.Copy(io.Discard, rp.Response.Body); err != nil {
				t.Fatal(err)
			}
		}
		if got := count(t, s, "after"); got != n {
			t.Errorf("GetPairs(after) = %d pairs; want %d", got, n)
		}
		if got := getBodies(t, s, "k"); !cmp.Equal(got, []string{"|x"}) {
			t.Errorf("the panicking updates changed the pair: bodies = %q; want [|x]", got)
		}
	})
	t.Run("concurrent", func(t *testing.T) {
		s := open(t, Options{NoSync: true})
		cp := store(t, s, getReq("u"), okResp("x"), "k")
		const writers, rounds = 8, 20
		stop := make(chan struct{})
		panicked := make(chan error, 1)
		go func() {
			defer close(panicked)
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := panicky(s, cp.ID); err != nil {
					panicked <- err
					return
				}
			}
		}()
		errs := make(chan error, writers*rounds)
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				for i := range rounds {
					errs <- storeErr(s, fmt.Sprint("w", w), fmt.Sprint(i))
				}
			})
		}
		wg.Wait()
		close(stop)
		if err := <-panicked; err != nil {
			t.Error(err)
		}
		close(errs)
		failed := 0
		for err := range errs {
			if err != nil {
				if failed == 0 {
					t.Errorf("a write failed while another caller's UpdatePairFunc panicked: %v", err)
				}
				failed++
			}
		}
		if failed > 0 {
			t.Errorf("%d of %d writes failed", failed, writers*rounds)
		}
		if failed == 0 {
			for w := range writers {
				if got := count(t, s, fmt.Sprint("w", w)); got != rounds {
					t.Errorf("GetPairs(w%d) = %d pairs; want %d", w, got, rounds)
				}
			}
		}
	})
}

// storeErr is store for goroutines other than the test's: it returns errors.
func storeErr(s Store, key, body string) error {
	ctx := context.Background()
	inc, err := s.CreatePair(ctx, model.Request{Method: "POST", URL: "u", Body: model.StringBody(body)})
	if err != nil {
		return fmt.Errorf("CreatePair: %w", err)
	}
	if _, err := io.Copy(io.Discard, inc.Request.Body); err != nil {
		return fmt.Errorf("storing request body: %w", err)
	}
	cp, err := s.AddResponse(ctx, inc.ID, okResp(body), key)
	if err != nil {
		return fmt.Errorf("AddResponse: %w", err)
	}
	if _, err := io.Copy(io.Discard, cp.Response.Body); err != nil {
		return fmt.Errorf("storing response body: %w", err)
	}
	return nil
}
