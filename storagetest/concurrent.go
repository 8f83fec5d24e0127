package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/hishel-go/hishel/model"
)

// 64 goroutines of mixed operations (run with -race); afterwards the
// counters agree with a full scan and every pair reads back whole.
func testConcurrent(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t, Options{NoSync: true, ChunkSize: 512, DefaultTTL: time.Hour})
	const workers, rounds = 64, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for i := range rounds {
				key := fmt.Sprint("k", r.IntN(8))
				if err := concurrentStep(ctx, s, r, key, w, i); err != nil {
					errs <- fmt.Errorf("worker %d round %d: %w", w, i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	checkScan(t, s)
}

func concurrentStep(ctx context.Context, s Store, r *rand.Rand, key string, w, i int) error {
	switch r.IntN(7) {
	case 0, 1: // store, sometimes abandoning the response half-way
		body := bytes.Repeat([]byte{byte(w)}, r.IntN(3000))
		req := getReq("u")
		req.Body = model.BytesBody([]byte(fmt.Sprint(w, "-", i)))
		inc, err := s.CreatePair(ctx, req)
		if err != nil {
			return err
		}
		if _, err := io.Copy(io.Discard, inc.Request.Body); err != nil {
			return err
		}
		cp, err := s.AddResponse(ctx, inc.ID, model.Response{Status: 200, Body: model.BytesBody(body)}, key)
		if err != nil {
			return err
		}
		if r.IntN(5) == 0 {
			if len(body) > 600 {
				if _, err := io.ReadFull(cp.Response.Body, make([]byte, 600)); err != nil {
					return err
				}
			}
			return cp.Response.Body.Close()
		}
		_, err = io.Copy(io.Discard, cp.Response.Body)
		return err
	case 2: // read
		ps, err := s.GetPairs(ctx, key)
		if err != nil {
			return err
		}
		for _, p := range ps {
			b, err := model.ReadAll(p.Response.Body)
			if err != nil && !errors.Is(err, model.ErrRemoved) {
				return err
			}
			if err == nil && int64(len(b)) != p.Meta.ResponseSize {
				return fmt.Errorf("read %d bytes of pair %v; stored %d", len(b), p.ID, p.Meta.ResponseSize)
			}
			p.Request.Body.Close()
		}
		return nil
	case 3: // update or remove one
		ps, err := s.GetPairs(ctx, key)
		if err != nil || len(ps) == 0 {
			return err
		}
		for _, p := range ps {
			p.Close()
		}
		p := ps[r.IntN(len(ps))]
		if r.IntN(2) == 0 {
			return s.Remove(ctx, p.ID)
		}
		move := r.IntN(4) == 0
		up, err := s.UpdatePairFunc(ctx, p.ID, func(cp model.CompletePair) (model.CompletePair, error) {
			cp.Response.Header = cp.Response.Header.Clone()
			if cp.Response.Header == nil {
				cp.Response.Header = make(map[string][]string)
			}
			cp.Response.Header.Set("X-Touched", fmt.Sprint(w))
			if move {
				cp.Key = fmt.Sprint("k", (w+i)%8)
			}
			return cp, nil
		})
		if errors.Is(err, model.ErrNotFound) { // removed meanwhile
			return nil
		}
		if err == nil {
			up.Close()
		}
		return err
	case 4:
		_, err := s.Cleanup(ctx)
		return err
	case 5:
		_, err := list(ctx, s, model.Filter{})
		return err
	default:
		_, err := s.Stats(ctx)
		return err
	}
}

// checkScan compares Stats with a full scan through Pairs, once nothing is
// in flight: pairs by state, and Bytes as the sum of the stored body sizes
// of every pair (an incomplete pair counts a body once it is stored whole;
// none is half-way here). Every complete pair must read back whole.
func checkScan(tb testing.TB, s Store) {
	tb.Helper()
	ctx := context.Background()
	var want model.Stats
	var complete []model.PairInfo
	for _, p := range infos(tb, s) {
		switch p.State {
		case model.StateComplete:
			want.Pairs++
			complete = append(complete, p)
		case model.StateIncomplete:
			want.Incomplete++
		case model.StateDeleted:
			want.Deleted++
		}
		want.Bytes += p.Meta.RequestSize + p.Meta.ResponseSize
	}
	got := syncedStats(tb, s)
	want.Evicted = got.Evicted // a scan cannot see evictions (the Evictions rule checks them)
	wantStats(tb, "after the concurrent mix, against a full scan", got, want)
	for _, info := range complete {
		p, err := s.GetPair(ctx, info.ID)
		if err != nil {
			tb.Errorf("GetPair(%v) of a listed complete pair: %v", info.ID, err)
			continue
		}
		req, err1 := model.ReadAll(p.Request.Body)
		resp, err2 := model.ReadAll(p.Response.Body)
		if err := errors.Join(err1, err2); err != nil || int64(len(req)) != info.Meta.RequestSize || int64(len(resp)) != info.Meta.ResponseSize {
			tb.Errorf("pair %v read back %d and %d bytes, %v; want %d and %d", info.ID, len(req), len(resp), err,
				info.Meta.RequestSize, info.Meta.ResponseSize)
		}
	}
}
