package cacheasync

import (
	"context"
	"errors"
	"testing"

	"github.com/hishel-go/hishel/model"
)

func TestGoNow(t *testing.T) {
	ctx := context.Background()
	r := NewRunner(&Options{MaxInFlight: 1})

	// A free slot: f runs in the caller's goroutine, the future is ready.
	ran := false
	f := GoNow(r, ctx, func(context.Context) (int, error) { ran = true; return 7, nil })
	if !ran {
		t.Fatalf("GoNow with a free slot did not run f before returning")
	}
	select {
	case res := <-f:
		if res.Value != 7 || res.Err != nil {
			t.Errorf("GoNow result = %+v; want 7, nil", res)
		}
	default:
		t.Fatalf("GoNow with a free slot returned an empty future")
	}

	// No free slot: f runs later, in a goroutine, once the slot frees.
	release := make(chan struct{})
	holding := make(chan struct{})
	busy := Go(r, ctx, func(context.Context) (int, error) { close(holding); <-release; return 0, nil })
	<-holding
	started := make(chan struct{})
	var inCaller bool
	queued := GoErrNow(r, ctx, func(context.Context) error { close(started); return errors.ErrUnsupported })
	select {
	case <-started:
		inCaller = true
	default:
	}
	if inCaller {
		t.Errorf("GoErrNow ran f in the caller's goroutine while the only slot was busy")
	}
	close(release)
	if _, err := busy.Await(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := queued.Await(ctx); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("queued GoErrNow = %v; want ErrUnsupported", err)
	}

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := GoNow(r, cancelled, func(context.Context) (int, error) { return 1, nil }).Await(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("GoNow with a cancelled ctx = %v; want context.Canceled", err)
	}
	r.Close()
	if _, err := GoNow(r, ctx, func(context.Context) (int, error) { return 1, nil }).Await(ctx); !errors.Is(err, model.ErrClosed) {
		t.Errorf("GoNow after Close = %v; want ErrClosed", err)
	}
}
