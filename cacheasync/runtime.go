package cacheasync

import (
	"context"
	"fmt"
	"iter"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/semaphore"

	"github.com/hishel-go/hishel/model"
)

// DefaultMaxInFlight is the number of calls of one store that may run at once
// when [Options] is nil or its MaxInFlight is zero or less.
const DefaultMaxInFlight = 64

// Options configures the calls of an async store. A nil *Options means the
// defaults.
type Options struct {
	// MaxInFlight bounds how many calls of one store run their storage
	// operation at the same time; zero or less means [DefaultMaxInFlight].
	// The bound is a [golang.org/x/sync/semaphore.Weighted]: a call beyond it
	// still returns its future at once, and its goroutine waits for a free
	// slot, or for the call's context to end, before doing any work.
	MaxInFlight int
}

func (o *Options) maxInFlight() int64 {
	if o == nil || o.MaxInFlight <= 0 {
		return DefaultMaxInFlight
	}
	return int64(o.MaxInFlight)
}

// Result is the outcome of one asynchronous call: the operation's value and
// its error. When Err is not nil, Value is whatever the operation returned
// with it, usually the zero value.
type Result[T any] struct {
	Value T
	Err   error
}

// Future is the pending result of one asynchronous call. It is a
// receive-only channel, buffered to 1, on which exactly one [Result] is sent;
// the channel is never closed. The value can be received once: use
// [Future.Await], or receive from the channel directly, for example in a
// select statement.
//
// The result is sent whether or not anyone receives it, and the buffer means
// the sending goroutine never waits for a receiver, so abandoning a Future
// leaks no goroutine. A Result that holds resources (such as pairs whose
// bodies stream from storage) is then abandoned with them; a caller that may
// stop waiting should drain the future and close what it holds.
type Future[T any] <-chan Result[T]

// Await waits for the result of f and returns its value and error. If ctx
// ends first, Await returns ctx's error and the result stays in the future;
// the call itself is not stopped (cancel the context the call was started
// with to stop it). Await on a nil Future waits until ctx ends. A nil ctx
// is an error wrapping [model.ErrInvalid] unless the result is already
// there; the result then stays in the future.
func (f Future[T]) Await(ctx context.Context) (T, error) {
	select {
	case r := <-f: // already there (GoNow): no need to watch ctx
		return r.Value, r.Err
	default:
	}
	if ctx == nil {
		var zero T
		return zero, fmt.Errorf("cacheasync: Await: %w", model.CheckContext(ctx))
	}
	select {
	case r := <-f:
		return r.Value, r.Err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}

// Runner runs the calls of one async store. It owns the semaphore that
// bounds how many of them run at once, and tracks every call it has started
// so that [Runner.Close] can wait for them. Generated async stores hold one
// Runner each; other code rarely needs one.
//
// A Runner is safe for concurrent use. The zero value is not usable: create
// Runners with [NewRunner].
type Runner struct {
	sem *semaphore.Weighted

	// calls counts the calls registered and not yet finished, plus
	// closedBit once Close has begun; registering then fails.
	calls     atomic.Int64
	closeOnce sync.Once
	drainOnce sync.Once
	drained   chan struct{} // closed once Close has begun and calls are none
	closing   chan struct{} // closed when Close begins: streams stop
}

// closedBit marks a closed Runner in Runner.calls, far above any count of
// calls.
const closedBit = 1 << 62

// NewRunner returns a Runner configured by opts; nil opts means the defaults.
func NewRunner(opts *Options) *Runner {
	return &Runner{sem: semaphore.NewWeighted(opts.maxInFlight()), drained: make(chan struct{}), closing: make(chan struct{})}
}

// Go runs f asynchronously under r and returns at once with the future of
// its result.
//
// If ctx is nil or already done, or r is closed, Go does no work: the future
// holds an error wrapping [model.ErrInvalid], ctx's error, or an error
// wrapping [model.ErrClosed]. Otherwise Go starts
// one goroutine, which acquires a slot of r's semaphore with ctx, calls
// f(ctx), sends f's result on the future and releases the slot. If ctx ends
// while the goroutine is waiting for a slot, f is not called and the future
// holds ctx's error. The goroutine ends as soon as the result is sent, which
// never blocks, so its lifetime is that of the call.
//
// A panic in f is not recovered: like a panic in a blocking call, it crashes
// the program.
func Go[T any](r *Runner, ctx context.Context, f func(context.Context) (T, error)) Future[T] {
	return spawn(r, ctx, true, f)
}

// register records a call about to start, so that Close waits for it; it
// fails with ctx's error, or ErrClosed after Close, and then the call must
// not run. A registered call ends with r.done.
func (r *Runner) register(ctx context.Context) error {
	if err := model.CheckContext(ctx); err != nil {
		return err
	}
	if r.calls.Add(1)&closedBit != 0 {
		r.done()
		return fmt.Errorf("cacheasync: call after Close: %w", model.ErrClosed)
	}
	return nil
}

// done ends a registered call.
func (r *Runner) done() {
	if r.calls.Add(-1) == closedBit {
		r.drainOnce.Do(func() { close(r.drained) })
	}
}

// spawn runs f in a goroutine of its own, holding a semaphore slot if
// bounded, and returns the future of its result.
func spawn[T any](r *Runner, ctx context.Context, bounded bool, f func(context.Context) (T, error)) Future[T] {
	ch := make(chan Result[T], 1)
	if err := r.register(ctx); err != nil {
		ch <- Result[T]{Err: err}
		return ch
	}
	go func() {
		defer r.done()
		if bounded {
			if err := r.sem.Acquire(ctx, 1); err != nil {
				ch <- Result[T]{Err: err}
				return
			}
			defer r.sem.Release(1)
		}
		v, err := f(ctx)
		ch <- Result[T]{Value: v, Err: err}
	}()
	return ch
}

// GoNow is [Go] for operations that never wait for I/O, such as those of an
// in-memory store: when a slot of r's semaphore is free at once, f runs in
// the caller's goroutine and the returned future already holds its result,
// which spares the goroutine and the hand-over; otherwise GoNow does what Go
// does.
//
// Generated stores of backends marked //hishel:nonblocking do the same with
// [Runner.TryNow], [Ready] and [Runner.EndNow], which spares the closure
// too when the call runs at once.
func GoNow[T any](r *Runner, ctx context.Context, f func(context.Context) (T, error)) Future[T] {
	if !r.TryNow(ctx) {
		return Go(r, ctx, f)
	}
	defer r.EndNow()
	return Ready(f(ctx))
}

// GoErrNow is [GoNow] for operations that return only an error.
func GoErrNow(r *Runner, ctx context.Context, f func(context.Context) error) Future[struct{}] {
	if !r.TryNow(ctx) {
		return GoErr(r, ctx, f)
	}
	defer r.EndNow()
	return ReadyErr(f(ctx))
}

// TryNow reports whether a call may run at once in the caller's goroutine:
// a slot of r's semaphore was free, ctx is not done and r is not closed.
// The slot is then the caller's, and Close waits for the call: the caller
// must run it and call [Runner.EndNow] when it returns. When TryNow reports
// false it has taken nothing; [Go] then runs the call, or fails it at once
// with ctx's error or [model.ErrClosed].
func (r *Runner) TryNow(ctx context.Context) bool {
	if !r.sem.TryAcquire(1) {
		return false
	}
	if r.register(ctx) != nil {
		r.sem.Release(1)
		return false
	}
	return true
}

// EndNow ends a call that [Runner.TryNow] let run: it gives back the slot.
func (r *Runner) EndNow() {
	r.sem.Release(1)
	r.done()
}

// Ready returns a future that already holds v and err.
func Ready[T any](v T, err error) Future[T] {
	ch := make(chan Result[T], 1)
	ch <- Result[T]{Value: v, Err: err}
	return ch
}

// ReadyErr returns a future that already holds err, for operations that
// return only an error.
func ReadyErr(err error) Future[struct{}] { return Ready(struct{}{}, err) }

// GoUnbounded is [Go] without a slot of r's semaphore: the call starts at
// once in a goroutine of its own, whatever else is in flight. Generated
// stores use it for operations that take a function (UpdatePairFunc):
// such a function may call the store, which would wait
// forever for a slot its own call holds, and may be slow, so it never runs
// in the caller's goroutine. Close waits for these calls too.
func GoUnbounded[T any](r *Runner, ctx context.Context, f func(context.Context) (T, error)) Future[T] {
	return spawn(r, ctx, false, f)
}

// GoErrUnbounded is [GoUnbounded] for operations that return only an error.
func GoErrUnbounded(r *Runner, ctx context.Context, f func(context.Context) error) Future[struct{}] {
	return GoUnbounded(r, ctx, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, f(ctx)
	})
}

// GoErr is [Go] for operations that return only an error; the future's
// value is always struct{}{}.
func GoErr(r *Runner, ctx context.Context, f func(context.Context) error) Future[struct{}] {
	return Go(r, ctx, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, f(ctx)
	})
}

// Close stops r from starting calls and waits until every call it has
// started has finished, including calls still waiting for a slot. Calls
// made after Close begins fail with an error wrapping [model.ErrClosed];
// so do the streams of [GoSeq] still running, at their next value.
// Close is idempotent and safe to call from several goroutines; every call
// returns once the started calls have finished. Close must not be called from
// inside a call run by r, which would wait for itself.
func (r *Runner) Close() {
	r.closeOnce.Do(func() {
		close(r.closing)
		if r.calls.Add(closedBit) == closedBit {
			r.drainOnce.Do(func() { close(r.drained) })
		}
	})
	<-r.drained
}

// Stream is the values of one asynchronous iteration, such as a store's
// Pairs: a receive-only channel on which each value arrives in order as a
// [Result], and which is closed after the last. An error ends the stream:
// it arrives as the last Result, with Err set, before the channel is
// closed; a stream that closes without one has delivered every value.
//
//	for r := range s.Pairs(ctx, model.Filter{}) {
//		if r.Err != nil {
//			return r.Err
//		}
//		use(r.Value)
//	}
//
// The goroutine that fills it stays at most one value ahead of the
// consumer, so the consumer's pace drives the iteration. A consumer that
// stops receiving early must cancel the context the call was made with
// (or close the store) to end that goroutine.
type Stream[T any] <-chan Result[T]

// GoSeq runs the iteration seq under r in a goroutine of its own and
// returns at once the [Stream] of its values. Creating seq must do no work;
// ranging over it does.
//
// The goroutine is not bounded by r's semaphore, so that the consumer may
// call the store between values (as [GoUnbounded]), and Close waits for it.
// It sends each value seq yields, at most one ahead of the consumer, and
// ends when seq ends (the stream is closed), when seq yields an error
// (sent last), when ctx ends (ctx's error is sent last, in the place of a
// value the consumer has not received) or when r is closed (an error
// wrapping [model.ErrClosed], likewise). If ctx is already done, or r is
// closed, GoSeq starts nothing and the stream holds that error alone.
func GoSeq[T any](r *Runner, ctx context.Context, seq iter.Seq2[T, error]) Stream[T] {
	ch := make(chan Result[T], 1)
	if ctx == nil {
		ch <- Result[T]{Err: fmt.Errorf("cacheasync: nil context: %w", model.ErrInvalid)}
		close(ch)
		return ch
	}
	if err := r.register(ctx); err != nil {
		ch <- Result[T]{Err: err}
		close(ch)
		return ch
	}
	go func() {
		defer r.done()
		defer close(ch)
		for v, err := range seq {
			select {
			case ch <- Result[T]{Value: v, Err: err}:
				if err != nil {
					return
				}
				continue
			case <-ctx.Done():
				err = ctx.Err()
			case <-r.closing:
				err = fmt.Errorf("cacheasync: stream after Close: %w", model.ErrClosed)
			}
			failStream(ch, err)
			return
		}
	}()
	return ch
}

// failStream replaces the value waiting in ch (whose only sender is the
// caller), if any, with err, so that a consumer still receiving sees err
// before the end.
func failStream[T any](ch chan Result[T], err error) {
	select {
	case <-ch:
	default:
	}
	ch <- Result[T]{Err: err}
}
