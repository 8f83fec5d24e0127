package storagetest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hishel-go/hishel/model"
)

// within runs fn and fails tb if it has not returned after d: a deadlock
// fails the test instead of hanging it.
func within(tb testing.TB, d time.Duration, what string, fn func()) {
	tb.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
	case <-time.After(d):
		tb.Fatalf("%s did not return within %v (deadlock?)", what, d)
	}
}

// The function given to UpdatePairFunc may call the store: reads, writes
// of other pairs, even UpdatePair or Remove of the pair being updated
// (then the function runs again on the new value, or the update fails
// with ErrNotFound). A function that changes its own pair every time
// makes UpdatePairFunc give up with ErrConflict rather than loop for
// ever.
func testUpdatePairFuncReentrant(t *testing.T, open Opener) {
	ctx := context.Background()
	t.Run("calls the store", func(t *testing.T) {
		s := open(t, Options{})
		cp := store(t, s, getReq("u"), okResp("body"), "k")
		other := store(t, s, getReq("u2"), okResp("other"), "k2")
		gone := store(t, s, getReq("u3"), okResp("gone"), "k3")
		within(t, 20*time.Second, "UpdatePairFunc whose function calls the store", func() {
			got, err := s.UpdatePairFunc(ctx, cp.ID, func(p model.CompletePair) (model.CompletePair, error) {
				steps := []struct {
					name string
					err  error
				}{
					{"GetPairs", func() error { _, err := readAllPairs(s, "k"); return err }()},
					{"GetPair", func() error {
						q, err := s.GetPair(ctx, cp.ID)
						if err == nil {
							q.Close()
						}
						return err
					}()},
					{"Stats", func() error { _, err := s.Stats(ctx); return err }()},
					{"Pairs", func() error { _, err := list(ctx, s, model.Filter{}); return err }()},
					{"store another pair", storeErr(s, "k4", "new")},
					{"UpdatePair of another pair", func() error {
						o := other
						o.Response.Header = http.Header{"X-Other": {"1"}}
						_, err := s.UpdatePair(ctx, other.ID, o)
						return err
					}()},
					{"Remove another pair", s.Remove(ctx, gone.ID)},
					{"Sync", s.Sync(ctx)},
				}
				for _, st := range steps {
					if st.err != nil {
						return p, fmt.Errorf("%s from the function: %w", st.name, st.err)
					}
				}
				p.Response.Header.Set("X-Updated", "1")
				return p, nil
			})
			if err != nil {
				t.Fatalf("UpdatePairFunc() error = %v", err)
			}
			if got.Response.Header.Get("X-Updated") != "1" {
				t.Errorf("UpdatePairFunc() = header %v; want X-Updated", got.Response.Header)
			}
			got.Close()
		})
		if got := getBodies(t, s, "k4"); !cmp.Equal(got, []string{"new|new"}) {
			t.Errorf("GetPairs(k4) = %q; want the pair stored from the function", got)
		}
		if n := count(t, s, "k3"); n != 0 {
			t.Errorf("GetPairs(k3) = %d pairs; want the pair removed from the function gone", n)
		}
		ps := mustGet(t, s, "k")
		if len(ps) != 1 || ps[0].Response.Header.Get("X-Updated") != "1" {
			t.Errorf("GetPairs(k) = %d pairs; want the update stored", len(ps))
		}
		for _, p := range ps {
			p.Close()
		}
	})
	t.Run("updates its own pair once", func(t *testing.T) {
		s := open(t, Options{})
		cp := store(t, s, getReq("u"), okResp("body"), "k")
		calls := 0
		within(t, 20*time.Second, "UpdatePairFunc", func() {
			got, err := s.UpdatePairFunc(ctx, cp.ID, func(p model.CompletePair) (model.CompletePair, error) {
				calls++
				if calls == 1 {
					inner := p
					inner.Request.Header = http.Header{"X-Inner": {"1"}}
					if _, err := s.UpdatePair(ctx, p.ID, inner); err != nil {
						return p, err
					}
				}
				p.Response.Header.Set("X-Outer", fmt.Sprint(calls))
				return p, nil
			})
			if err != nil {
				t.Fatalf("UpdatePairFunc() error = %v", err)
			}
			got.Close()
			if calls != 2 || got.Request.Header.Get("X-Inner") != "1" || got.Response.Header.Get("X-Outer") != "2" {
				t.Errorf("UpdatePairFunc() after an UpdatePair from its function: %d calls, request %v, response %v; "+
					"want 2 calls, the second on the inner update", calls, got.Request.Header, got.Response.Header)
			}
		})
	})
	t.Run("updates its own pair every time", func(t *testing.T) {
		s := open(t, Options{})
		cp := store(t, s, getReq("u"), okResp("body"), "k")
		calls := 0
		within(t, 60*time.Second, "UpdatePairFunc", func() {
			_, err := s.UpdatePairFunc(ctx, cp.ID, func(p model.CompletePair) (model.CompletePair, error) {
				calls++
				if _, err := s.UpdatePair(ctx, p.ID, p); err != nil {
					return p, err
				}
				return p, nil
			})
			if !errors.Is(err, model.ErrConflict) {
				t.Errorf("UpdatePairFunc(fn updating the pair every time) error = %v after %d calls; want ErrConflict", err, calls)
			}
		})
	})
	t.Run("removes its own pair", func(t *testing.T) {
		s := open(t, Options{})
		cp := store(t, s, getReq("u"), okResp("body"), "k")
		within(t, 20*time.Second, "UpdatePairFunc", func() {
			_, err := s.UpdatePairFunc(ctx, cp.ID, func(p model.CompletePair) (model.CompletePair, error) {
				return p, s.Remove(ctx, p.ID)
			})
			if !errors.Is(err, model.ErrNotFound) {
				t.Errorf("UpdatePairFunc(fn removing the pair) error = %v; want ErrNotFound", err)
			}
		})
		if n := count(t, s, "k"); n != 0 {
			t.Errorf("GetPairs(k) = %d pairs; want the pair removed by the function to stay removed", n)
		}
	})
	t.Run("close after", func(t *testing.T) {
		s := open(t, Options{})
		cp := store(t, s, getReq("u"), okResp("body"), "k")
		within(t, 20*time.Second, "UpdatePairFunc then Close", func() {
			_, err := s.UpdatePairFunc(ctx, cp.ID, func(p model.CompletePair) (model.CompletePair, error) {
				if _, err := s.GetPairs(ctx, "k"); err != nil {
					return p, err
				}
				return p, errors.New("changed my mind")
			})
			if err == nil || err.Error() != "changed my mind" {
				t.Errorf("UpdatePairFunc() error = %v; want the function's", err)
			}
			if err := s.Close(); err != nil {
				t.Errorf("Close() = %v", err)
			}
		})
	})
}

// readAllPairs reads every pair under key to the end.
func readAllPairs(s Store, key string) (int, error) {
	ps, err := s.GetPairs(context.Background(), key)
	if err != nil {
		return 0, err
	}
	for _, p := range ps {
		if _, err := io.Copy(io.Discard, p.Response.Body); err != nil {
			return 0, err
		}
		p.Close()
	}
	return len(ps), nil
}

// UpdatePairFunc honours its context: one already done fails at once
// without calling the function, and one that ends while the function runs
// fails the call with ctx's error and changes nothing.
func testUpdatePairFuncContext(t *testing.T, open Opener) {
	s := open(t, Options{})
	cp := store(t, s, getReq("u"), okResp("body"), "k")
	done, cancel := context.WithCancel(context.Background())
	cancel()
	called := false
	_, err := s.UpdatePairFunc(done, cp.ID, func(p model.CompletePair) (model.CompletePair, error) {
		called = true
		return p, nil
	})
	if !errors.Is(err, context.Canceled) || called {
		t.Errorf("UpdatePairFunc(cancelled ctx) error = %v, function called %v; want context.Canceled, not called", err, called)
	}

	ctx, cancel := context.WithCancel(context.Background())
	within(t, 20*time.Second, "UpdatePairFunc", func() {
		_, err = s.UpdatePairFunc(ctx, cp.ID, func(p model.CompletePair) (model.CompletePair, error) {
			cancel() // the caller gives up while the function runs
			p.Response.Header.Set("X-Late", "1")
			return p, nil
		})
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("UpdatePairFunc(ctx cancelled while the function ran) error = %v; want context.Canceled", err)
	}
	ps := mustGet(t, s, "k")
	if len(ps) != 1 || ps[0].Response.Header.Get("X-Late") != "" {
		t.Errorf("the update of a cancelled UpdatePairFunc was stored: %v", ps)
	}
	for _, p := range ps {
		p.Close()
	}
}
