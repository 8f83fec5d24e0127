package cacheasync_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hishel-go/hishel/cacheasync"
	"github.com/hishel-go/hishel/model"
	"go.uber.org/goleak"
)

// noLeaks fails t if, once t's other cleanups have run, a goroutine
// started since it was called is still running (goleak retries while
// goroutines exit, and prints the stacks of those left).
func noLeaks(t *testing.T) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}

func TestAwait(t *testing.T) {
	noLeaks(t)
	errBoom := errors.New("boom")
	tests := []struct {
		name    string
		f       func(context.Context) (int, error)
		want    int
		wantErr error
	}{
		{"value", func(context.Context) (int, error) { return 42, nil }, 42, nil},
		{"error", func(context.Context) (int, error) { return 0, errBoom }, 0, errBoom},
		{"value and error", func(context.Context) (int, error) { return 7, errBoom }, 7, errBoom},
	}
	r := cacheasync.NewRunner(nil)
	defer r.Close()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := cacheasync.Go(r, context.Background(), tt.f).Await(context.Background())
			if got != tt.want || err != tt.wantErr {
				t.Errorf("Go(%s).Await() = %d, %v; want %d, %v", tt.name, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestAwaitContextEndsFirst(t *testing.T) {
	noLeaks(t)
	r := cacheasync.NewRunner(nil)
	defer r.Close()
	release := make(chan struct{})
	f := cacheasync.Go(r, context.Background(), func(context.Context) (string, error) {
		<-release
		return "done", nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if got, err := f.Await(ctx); got != "" || err != context.DeadlineExceeded {
		t.Errorf("Await(expiring ctx) = %q, %v; want \"\", %v", got, err, context.DeadlineExceeded)
	}
	// The call goes on and its result stays in the future.
	close(release)
	if got, err := f.Await(context.Background()); got != "done" || err != nil {
		t.Errorf("Await after the call ends = %q, %v; want %q, nil", got, err, "done")
	}
}

func TestAwaitNilFuture(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var f cacheasync.Future[int]
	if got, err := f.Await(ctx); got != 0 || err != context.Canceled {
		t.Errorf("nil Future.Await(cancelled ctx) = %d, %v; want 0, %v", got, err, context.Canceled)
	}
}

// TestFutureBuffered checks that a future holds its one result without a
// receiver, so that an abandoned future leaks no goroutine.
func TestFutureBuffered(t *testing.T) {
	noLeaks(t)
	r := cacheasync.NewRunner(nil)
	f := cacheasync.Go(r, context.Background(), func(context.Context) (int, error) { return 1, nil })
	if c := cap(f); c != 1 {
		t.Errorf("cap(future) = %d; want 1", c)
	}
	for range 100 {
		cacheasync.Go(r, context.Background(), func(context.Context) (int, error) { return 1, nil })
	}
	r.Close() // returns only once every call has sent its result
	if n := len(f); n != 1 {
		t.Errorf("len(future) after the call = %d; want 1", n)
	}
	res := <-f
	if res.Value != 1 || res.Err != nil {
		t.Errorf("<-future = %+v; want {Value:1 Err:<nil>}", res)
	}
	if n := len(f); n != 0 {
		t.Errorf("len(future) after one receive = %d; want 0 (exactly one result)", n)
	}
}

func TestGoErr(t *testing.T) {
	noLeaks(t)
	r := cacheasync.NewRunner(nil)
	defer r.Close()
	errBoom := errors.New("boom")
	for _, want := range []error{nil, errBoom} {
		got, err := cacheasync.GoErr(r, context.Background(), func(context.Context) error { return want }).Await(context.Background())
		if got != (struct{}{}) || err != want {
			t.Errorf("GoErr(returning %v).Await() = %v, %v; want {}, %v", want, got, err, want)
		}
	}
}

// TestCancelledBeforeCall checks that a call with a done context does no
// work and delivers the context's error.
func TestCancelledBeforeCall(t *testing.T) {
	noLeaks(t)
	r := cacheasync.NewRunner(nil)
	defer r.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var called atomic.Bool
	f := cacheasync.Go(r, ctx, func(context.Context) (int, error) { called.Store(true); return 1, nil })
	if got, err := f.Await(context.Background()); got != 0 || err != context.Canceled {
		t.Errorf("Go(cancelled ctx).Await() = %d, %v; want 0, %v", got, err, context.Canceled)
	}
	if called.Load() {
		t.Error("Go(cancelled ctx) ran its function")
	}
}

// TestCancelledWhileWaiting checks that a call whose context ends while it
// waits for a slot does no work and delivers the context's error.
func TestCancelledWhileWaiting(t *testing.T) {
	noLeaks(t)
	r := cacheasync.NewRunner(&cacheasync.Options{MaxInFlight: 1})
	defer r.Close()
	release := make(chan struct{})
	started := make(chan struct{})
	first := cacheasync.Go(r, context.Background(), func(context.Context) (int, error) {
		close(started)
		<-release
		return 1, nil
	})
	<-started

	ctx, cancel := context.WithCancel(context.Background())
	var called atomic.Bool
	second := cacheasync.Go(r, ctx, func(context.Context) (int, error) { called.Store(true); return 2, nil })
	select {
	case res := <-second:
		t.Fatalf("second call finished while the only slot was held: %+v", res)
	case <-time.After(20 * time.Millisecond):
	}
	cancel()
	if got, err := second.Await(context.Background()); got != 0 || err != context.Canceled {
		t.Errorf("waiting call, cancelled: Await() = %d, %v; want 0, %v", got, err, context.Canceled)
	}
	close(release)
	if got, err := first.Await(context.Background()); got != 1 || err != nil {
		t.Errorf("first call: Await() = %d, %v; want 1, nil", got, err)
	}
	if called.Load() {
		t.Error("a call cancelled while waiting for a slot ran its function")
	}
}

// TestMaxInFlight starts twice as many blocking calls as the bound and
// checks that exactly the bound run at once.
func TestMaxInFlight(t *testing.T) {
	for _, tt := range []struct {
		opts *cacheasync.Options
		want int
	}{
		{&cacheasync.Options{MaxInFlight: 1}, 1},
		{&cacheasync.Options{MaxInFlight: 3}, 3},
		{&cacheasync.Options{MaxInFlight: -1}, cacheasync.DefaultMaxInFlight},
		{&cacheasync.Options{}, cacheasync.DefaultMaxInFlight},
		{nil, cacheasync.DefaultMaxInFlight},
	} {
		t.Run(fmt.Sprintf("%+v", tt.opts), func(t *testing.T) {
			noLeaks(t)
			r := cacheasync.NewRunner(tt.opts)
			defer r.Close()
			var cur, peak atomic.Int64
			release := make(chan struct{})
			futures := make([]cacheasync.Future[struct{}], 2*tt.want)
			for i := range futures {
				futures[i] = cacheasync.GoErr(r, context.Background(), func(context.Context) error {
					n := cur.Add(1)
					for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
					}
					<-release
					cur.Add(-1)
					return nil
				})
			}
			deadline := time.Now().Add(5 * time.Second)
			for cur.Load() < int64(tt.want) && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			time.Sleep(20 * time.Millisecond) // room for a call beyond the bound to start
			if got := cur.Load(); got != int64(tt.want) {
				t.Errorf("calls running at once = %d; want %d", got, tt.want)
			}
			close(release)
			for _, f := range futures {
				if _, err := f.Await(context.Background()); err != nil {
					t.Errorf("Await() error = %v; want nil", err)
				}
			}
			if got := peak.Load(); got != int64(tt.want) {
				t.Errorf("peak of calls running at once = %d; want %d", got, tt.want)
			}
		})
	}
}

// TestClose checks that Close waits for started calls, including those
// waiting for a slot, and that later calls fail with model.ErrClosed.
func TestClose(t *testing.T) {
	noLeaks(t)
	r := cacheasync.NewRunner(&cacheasync.Options{MaxInFlight: 1})
	release := make(chan struct{})
	started := make(chan struct{})
	var done atomic.Int64
	first := cacheasync.Go(r, context.Background(), func(context.Context) (int, error) {
		close(started)
		<-release
		done.Add(1)
		return 1, nil
	})
	<-started
	queued := cacheasync.Go(r, context.Background(), func(context.Context) (int, error) {
		done.Add(1)
		return 2, nil
	})

	closed := make(chan struct{})
	go func() {
		r.Close()
		close(closed)
	}()
	select {
	case <-closed:
		t.Fatal("Close returned while a call was running")
	case <-time.After(20 * time.Millisecond):
	}
	// Close has begun (or is about to): a new call must fail, not run.
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := cacheasync.Go(r, context.Background(), func(context.Context) (int, error) {
			return 3, nil
		}).Await(context.Background())
		if errors.Is(err, model.ErrClosed) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Go during Close: Await() error = %v; want %v", err, model.ErrClosed)
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	<-closed
	if n := done.Load(); n != 2 {
		t.Errorf("calls finished when Close returned = %d; want 2", n)
	}
	if got, err := first.Await(context.Background()); got != 1 || err != nil {
		t.Errorf("first.Await() = %d, %v; want 1, nil", got, err)
	}
	if got, err := queued.Await(context.Background()); got != 2 || err != nil {
		t.Errorf("queued.Await() = %d, %v; want 2, nil", got, err)
	}
	r.Close() // idempotent
	if _, err := cacheasync.Go(r, context.Background(), func(context.Context) (int, error) {
		t.Error("a call after Close ran")
		return 0, nil
	}).Await(context.Background()); !errors.Is(err, model.ErrClosed) {
		t.Errorf("Go after Close: Await() error = %v; want %v", err, model.ErrClosed)
	}
}

// TestConcurrentClose races many calls against Close under -race.
func TestConcurrentClose(t *testing.T) {
	noLeaks(t)
	r := cacheasync.NewRunner(&cacheasync.Options{MaxInFlight: 4})
	var ran, refused atomic.Int64
	futures := make(chan cacheasync.Future[int], 1000)
	go func() {
		defer close(futures)
		for i := range 1000 {
			futures <- cacheasync.Go(r, context.Background(), func(context.Context) (int, error) {
				ran.Add(1)
				return i, nil
			})
		}
	}()
	time.Sleep(time.Millisecond)
	r.Close()
	for f := range futures {
		if _, err := f.Await(context.Background()); errors.Is(err, model.ErrClosed) {
			refused.Add(1)
		} else if err != nil {
			t.Errorf("Await() error = %v; want nil or ErrClosed", err)
		}
	}
	if got := ran.Load() + refused.Load(); got != 1000 {
		t.Errorf("ran + refused = %d; want 1000", got)
	}
}

func ExampleFuture_Await() {
	r := cacheasync.NewRunner(&cacheasync.Options{MaxInFlight: 8})
	defer r.Close()
	f := cacheasync.Go(r, context.Background(), func(ctx context.Context) (string, error) {
		return "stored", nil
	})
	v, err := f.Await(context.Background())
	fmt.Println(v, err)
	// Output: stored <nil>
}

// TestTryNow checks the fast path generated non-blocking stores use: TryNow
// takes a slot only when one is free, ctx is live and the Runner open; Close
// waits for a call it let run until EndNow; Ready and ReadyErr hold their
// result at once.
func TestTryNow(t *testing.T) {
	noLeaks(t)
	ctx := context.Background()
	r := cacheasync.NewRunner(&cacheasync.Options{MaxInFlight: 1})

	done, cancel := context.WithCancel(ctx)
	cancel()
	if r.TryNow(done) {
		t.Fatal("TryNow(done context) = true; want false")
	}
	if !r.TryNow(ctx) {
		t.Fatal("TryNow with a free slot = false; want true")
	}
	if r.TryNow(ctx) {
		t.Fatal("TryNow with no free slot = true; want false")
	}

	closed := make(chan struct{})
	go func() {
		r.Close()
		close(closed)
	}()
	select {
	case <-closed:
		t.Fatal("Close returned while a TryNow call was running")
	case <-time.After(50 * time.Millisecond):
	}
	r.EndNow()
	<-closed
	if r.TryNow(ctx) {
		t.Fatal("TryNow after Close = true; want false")
	}
	if _, err := cacheasync.Go(r, ctx, func(context.Context) (int, error) { return 1, nil }).Await(ctx); !errors.Is(err, model.ErrClosed) {
		t.Fatalf("Go after Close: err = %v; want ErrClosed", err)
	}

	if v, err := cacheasync.Ready(7, nil).Await(ctx); v != 7 || err != nil {
		t.Errorf("Ready(7, nil).Await = %d, %v; want 7, nil", v, err)
	}
	boom := errors.New("boom")
	select {
	case res := <-cacheasync.ReadyErr(boom):
		if res.Err != boom {
			t.Errorf("ReadyErr(boom) holds %v; want boom", res.Err)
		}
	default:
		t.Error("ReadyErr's future is empty; want its result at once")
	}
}

// count yields 0, 1, ... n-1, then err if not nil; it reports how far a
// consumer went in *reached.
func count(n int, err error, reached *atomic.Int64) iter.Seq2[int, error] {
	return func(yield func(int, error) bool) {
		for i := range n {
			reached.Store(int64(i))
			if !yield(i, nil) {
				return
			}
		}
		if err != nil {
			yield(0, err)
		}
	}
}

// drainStream returns the values of st and the error it ends with.
func drainStream[T any](st cacheasync.Stream[T]) ([]T, error) {
	var vs []T
	for r := range st {
		if r.Err != nil {
			return vs, r.Err
		}
		vs = append(vs, r.Value)
	}
	return vs, nil
}

func TestGoSeq(t *testing.T) {
	errBoom := errors.New("boom")
	done, cancel := context.WithCancel(context.Background())
	cancel()
	var reached atomic.Int64
	tests := []struct {
		name    string
		ctx     context.Context
		seq     iter.Seq2[int, error]
		want    []int
		wantErr error
	}{
		{"values", context.Background(), count(3, nil, &reached), []int{0, 1, 2}, nil},
		{"empty", context.Background(), count(0, nil, &reached), nil, nil},
		{"error last", context.Background(), count(2, errBoom, &reached), []int{0, 1}, errBoom},
		{"done context", done, count(3, nil, &reached), nil, context.Canceled},
		{"nil context", nil, count(3, nil, &reached), nil, model.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			noLeaks(t)
			r := cacheasync.NewRunner(nil)
			defer r.Close()
			got, err := drainStream(cacheasync.GoSeq(r, tt.ctx, tt.seq))
			if fmt.Sprint(got) != fmt.Sprint(tt.want) || !errors.Is(err, tt.wantErr) {
				t.Errorf("GoSeq(%s) = %v, %v; want %v, %v", tt.name, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// The iteration stays one value ahead of its consumer, ends when the
// context is cancelled (the consumer sees the error if it still reads),
// and a stream nobody reads does not hold Close up for long: Close ends it.
func TestGoSeqPace(t *testing.T) {
	noLeaks(t)
	r := cacheasync.NewRunner(&cacheasync.Options{MaxInFlight: 1})
	var reached atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	st := cacheasync.GoSeq(r, ctx, count(1000, nil, &reached))
	if v := <-st; v.Value != 0 || v.Err != nil {
		t.Fatalf("first value = %+v; want 0", v)
	}
	time.Sleep(20 * time.Millisecond)
	if n := reached.Load(); n > 2 {
		t.Errorf("after one value received, the iteration reached %d; want at most 2", n)
	}
	// The stream holds no slot: another call runs meanwhile.
	if v, err := cacheasync.Go(r, context.Background(), func(context.Context) (int, error) { return 7, nil }).Await(context.Background()); v != 7 || err != nil {
		t.Errorf("a call while a stream is open = %d, %v; want 7, nil", v, err)
	}
	cancel()
	_, err := drainStream(st)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("stream after cancel ends with %v; want context.Canceled", err)
	}

	unread := cacheasync.GoSeq(r, context.Background(), count(1000, nil, &reached))
	closed := make(chan struct{})
	go func() { r.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return while a stream was unread")
	}
	vs, err := drainStream(unread)
	if !errors.Is(err, model.ErrClosed) || len(vs) > 1 {
		t.Errorf("unread stream after Close = %d values, then %v; want at most 1, then ErrClosed", len(vs), err)
	}
	if _, err := drainStream(cacheasync.GoSeq(r, context.Background(), count(3, nil, &reached))); !errors.Is(err, model.ErrClosed) {
		t.Errorf("GoSeq after Close ends with %v; want ErrClosed", err)
	}
}
