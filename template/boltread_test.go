package template

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hishel-go/hishel/model"
)

// TestBoltReadsSeeEveryCommit checks that the read transactions a Bolt
// keeps between reads never serve a state older than a commit: readers
// hammer one key while it is updated, and each must see the version the
// last finished update wrote, or a later one, never an earlier one.
func TestBoltReadsSeeEveryCommit(t *testing.T) {
	for _, noSync := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoSync=%v", noSync), func(t *testing.T) {
			ctx := context.Background()
			s := openBolt(t, &BoltOptions{NoSync: noSync})
			resp := okResp("body")
			resp.Header.Set("X-Version", "0")
			cp := store(t, s, getReq("u"), resp, "k")

			version := func(ps []model.CompletePair) (int, error) {
				for _, p := range ps {
					p.Close()
				}
				if len(ps) != 1 {
					return 0, fmt.Errorf("%d pairs, want 1", len(ps))
				}
				return strconv.Atoi(ps[0].Response.Header.Get("X-Version"))
			}
			var done sync.WaitGroup
			var mu sync.Mutex
			var finished int // the last update that returned
			stop := make(chan struct{})
			errs := make(chan error, 8)
			for range 4 {
				done.Add(1)
				go func() {
					defer done.Done()
					for {
						select {
						case <-stop:
							return
						default:
						}
						mu.Lock()
						floor := finished
						mu.Unlock()
						ps, err := s.GetPairs(ctx, "k")
						if err != nil {
							errs <- err
							return
						}
						v, err := version(ps)
						if err != nil {
							errs <- err
							return
						}
						if v < floor {
							errs <- fmt.Errorf("read version %d after update %d had returned", v, floor)
							return
						}
					}
				}()
			}
			for i := 1; i <= 200; i++ {
				next := cp
				next.Response.Header = cp.Response.Header.Clone()
				next.Response.Header.Set("X-Version", strconv.Itoa(i))
				if _, err := s.UpdatePair(ctx, cp.ID, next); err != nil {
					t.Fatal(err)
				}
				mu.Lock()
				finished = i
				mu.Unlock()
				v, err := version(mustGet(t, s, "k"))
				if err != nil {
					t.Fatal(err)
				}
				if v != i {
					t.Fatalf("GetPairs after update %d = version %d", i, v)
				}
			}
			close(stop)
			done.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}

// TestBoltKeptReadsDoNotBlockGrowth grows the file, which makes bbolt remap
// it, while reads have left transactions to keep: a commit that remaps
// waits for every open read transaction, so a kept one that were not
// dropped first would hang it for good.
func TestBoltKeptReadsDoNotBlockGrowth(t *testing.T) {
	ctx := context.Background()
	s := openBolt(t, &BoltOptions{InitialMmapSize: 32 << 10})
	store(t, s, getReq("u"), okResp("small"), "k")

	var wg sync.WaitGroup
	for range 8 { // leave several kept transactions
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				for _, p := range mustGet(t, s, "k") {
					p.Close()
				}
			}
		}()
	}
	wg.Wait()
	s.rd.mu.Lock()
	kept := len(s.rd.idle)
	s.rd.mu.Unlock()
	if kept == 0 {
		t.Fatal("no read transaction was kept; the test needs some")
	}

	grown := make(chan error, 1)
	go func() {
		body := bytes.Repeat([]byte("x"), 1<<20)
		for i := range 16 {
			inc, err := s.CreatePair(ctx, getReq(fmt.Sprint("big", i)))
			if err == nil {
				_, err = io.Copy(io.Discard, inc.Request.Body)
			}
			var cp model.CompletePair
			if err == nil {
				cp, err = s.AddResponse(ctx, inc.ID, model.Response{Status: 200, Body: model.BytesBody(body)}, fmt.Sprint("big", i))
			}
			if err == nil {
				_, err = io.Copy(io.Discard, cp.Response.Body)
			}
			if err != nil {
				grown <- err
				return
			}
			// Keep transactions again between the commits.
			for _, p := range mustGet(t, s, "k") {
				p.Close()
			}
		}
		grown <- nil
	}()
	select {
	case err := <-grown:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("writing 16 MiB hung: a kept read transaction blocks the remap")
	}
	if n := len(mustGet(t, s, "big15")); n != 1 {
		t.Fatalf("GetPairs(big15) = %d pairs, want 1", n)
	}
}

// TestBoltWritesBeginWithoutKeptReads checks that a write transaction
// begins with no read transaction kept open: bbolt reuses the pages the last
// commit freed only if no read transaction is older than the new write.
func TestBoltWritesBeginWithoutKeptReads(t *testing.T) {
	ctx := context.Background()
	s := openBolt(t, nil)
	store(t, s, getReq("u"), okResp("body"), "k")
	for _, p := range mustGet(t, s, "k") { // keeps its read transaction
		p.Close()
	}
	if n := s.db.Stats().OpenTxN; n != 1 {
		t.Fatalf("after a read, %d read transactions are open; want the 1 kept", n)
	}
	open := -1
	if err := s.w.do(ctx, true, func(*wtx) error {
		open = s.db.Stats().OpenTxN
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if open != 0 {
		t.Fatalf("a write transaction began with %d read transactions open; want 0", open)
	}
}
