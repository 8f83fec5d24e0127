package cacheasync_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hishel-go/hishel/cacheasync"
	"github.com/hishel-go/hishel/model"
	"github.com/hishel-go/hishel/storagetest"
	"github.com/hishel-go/hishel/template"
	"go.uber.org/goleak"
)

// asyncStore is what the tests use of a store of this package.
type asyncStore = cacheasync.Store

// backends are the stores of package cacheasync that the behavioural suite
// and the tests below run against. Testing a new backend is adding its line
// here.
var backends = []struct {
	name string
	open func(tb testing.TB, o storagetest.Options, async *cacheasync.Options) asyncStore
}{
	{"Bolt", func(tb testing.TB, o storagetest.Options, a *cacheasync.Options) asyncStore {
		return storagetest.Opened[asyncStore](tb)(cacheasync.OpenBolt(context.Background(), o.BoltOptions(tb), a))
	}},
	{"BoltNoSync", func(tb testing.TB, o storagetest.Options, a *cacheasync.Options) asyncStore {
		o.NoSync = true
		return storagetest.Opened[asyncStore](tb)(cacheasync.OpenBolt(context.Background(), o.BoltOptions(tb), a))
	}},
	{"Memory", func(tb testing.TB, o storagetest.Options, a *cacheasync.Options) asyncStore {
		return storagetest.Opened[asyncStore](tb)(cacheasync.OpenMemory(context.Background(), o.MemoryOptions(), a))
	}},
	{"Dir", func(tb testing.TB, o storagetest.Options, a *cacheasync.Options) asyncStore {
		return storagetest.Opened[asyncStore](tb)(cacheasync.OpenDir(context.Background(), o.DirOptions(tb), a))
	}},
	// A memory tier in front of Bolt; the lower tier is a blocking store
	// (the Tiered's calls run in the async API's goroutines).
	{"TieredBoltNoSync", func(tb testing.TB, o storagetest.Options, a *cacheasync.Options) asyncStore {
		o.NoSync = true // durability is BoltOptions's, tested above
		lower, err := template.OpenBolt(context.Background(), o.BoltOptions(tb))
		if err != nil {
			tb.Fatalf("open the lower tier: %v", err)
		}
		return storagetest.Opened[asyncStore](tb)(cacheasync.OpenTiered(context.Background(), lower, &cacheasync.TieredOptions{Now: o.Now}, a))
	}},
}

// TestStorage runs the behavioural suite through the async API: every call
// is made as a caller would, store.Op(ctx, …).Await(ctx).
func TestStorage(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			storagetest.RunAsync(t, func(tb testing.TB, o storagetest.Options) cacheasync.Store {
				return b.open(tb, o, nil)
			})
		})
	}
}

// ready reports whether f already holds its result, and returns it.
func ready[T any](f cacheasync.Future[T]) (cacheasync.Result[T], bool) {
	select {
	case r := <-f:
		return r, true
	default:
		return cacheasync.Result[T]{}, false
	}
}

// outcome is what became of one call: whether its future held the result
// when the call returned, and the result's error.
type outcome struct {
	ready bool
	err   error
}

func outcomeOf[T any](f cacheasync.Future[T]) outcome {
	if r, ok := ready(f); ok {
		return outcome{true, r.Err}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := f.Await(ctx)
	return outcome{false, err}
}

// streamOutcome is outcomeOf for a stream: whether its first result was
// there when the call returned, and the error the stream ends with.
func streamOutcome[T any](st cacheasync.Stream[T]) outcome {
	var o outcome
	select {
	case r, ok := <-st:
		o.ready = true
		if !ok {
			return o
		}
		o.err = r.Err
	default:
	}
	for r := range st {
		o.err = r.Err
	}
	return o
}

// calls makes every operation of s with ctx, on the pair id.
func calls(ctx context.Context, s asyncStore, id model.PairID) map[string]outcome {
	return map[string]outcome{
		"CreatePair":  outcomeOf(s.CreatePair(ctx, model.Request{Method: "GET", URL: "u"})),
		"AddResponse": outcomeOf(s.AddResponse(ctx, id, model.Response{Status: 200}, "k")),
		"GetPairs":    outcomeOf(s.GetPairs(ctx, "k")),
		"GetPair":     outcomeOf(s.GetPair(ctx, id)),
		"UpdatePair":  outcomeOf(s.UpdatePair(ctx, id, model.CompletePair{ID: id})),
		"UpdatePairFunc": outcomeOf(s.UpdatePairFunc(ctx, id, func(p model.CompletePair) (model.CompletePair, error) {
			return p, nil
		})),
		"Remove":  outcomeOf(s.Remove(ctx, id)),
		"Cleanup": outcomeOf(s.Cleanup(ctx)),
		"Clear":   outcomeOf(s.Clear(ctx)),
		"Pairs":   streamOutcome(s.Pairs(ctx, model.Filter{})),
		"Delete":  outcomeOf(s.Delete(ctx, model.Filter{Keys: []string{"k"}})),
		"Sync":    outcomeOf(s.Sync(ctx)),
		"Stats":   outcomeOf(s.Stats(ctx)),
	}
}

// After Close, every call's future already holds an error wrapping ErrClosed
// when the call returns.
func TestClosedStore(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			s := b.open(t, storagetest.Options{}, nil)
			cp := storePair(t, s, "k", []byte("x"))
			if err := s.Close(); err != nil {
				t.Fatalf("Close() = %v; want nil", err)
			}
			if err := s.Close(); err != nil {
				t.Errorf("second Close() = %v; want nil", err)
			}
			for name, got := range calls(ctx, s, cp.ID) {
				if !got.ready {
					t.Errorf("%s after Close: future not ready when the call returned", name)
				}
				if !errors.Is(got.err, cacheasync.ErrClosed) || !errors.Is(got.err, model.ErrClosed) {
					t.Errorf("%s after Close: error = %v; want ErrClosed", name, got.err)
				}
			}
		})
	}
}

// Close waits for the calls already started, and they complete.
func TestCloseWaitsForCalls(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			s := b.open(t, storagetest.Options{}, nil)
			cp := storePair(t, s, "k", []byte("x"))
			release := make(chan struct{})
			started := blockedUpdate(ctx, s, cp.ID, release)
			closed := make(chan error, 1)
			go func() { closed <- s.Close() }()
			select {
			case err := <-closed:
				t.Fatalf("Close() = %v returned while a call was running; want it to wait", err)
			case <-time.After(50 * time.Millisecond):
			}
			close(release)
			if _, err := (<-started).Await(ctx); err != nil {
				t.Errorf("UpdatePairFunc() started before Close: error = %v; want nil", err)
			}
			if err := <-closed; err != nil {
				t.Errorf("Close() = %v; want nil", err)
			}
		})
	}
}

// A call whose context is done does nothing: its future holds the context's
// error when the call returns. A call whose context ends while it waits for
// a slot does nothing either.
func TestCancelledCalls(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name+"/before the call", func(t *testing.T) {
			s := b.open(t, storagetest.Options{}, nil)
			cp := storePair(t, s, "k", []byte("x"))
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			for name, got := range calls(ctx, s, cp.ID) {
				if !got.ready {
					t.Errorf("%s(cancelled context): future not ready when the call returned", name)
				}
				if !errors.Is(got.err, context.Canceled) {
					t.Errorf("%s(cancelled context): error = %v; want context.Canceled", name, got.err)
				}
			}
			if got := countPairs(t, s, "k"); got != 1 {
				t.Errorf("after cancelled calls, GetPairs() = %d pairs; want 1", got)
			}
		})
		// A call cancelled while it waits for a slot is covered at the
		// Runner level (runtime_test.go): no store operation can be made to
		// hold a slot for a test, since those that take a function run
		// outside the bound.
	}
}

// A consumer that reads part of a stored body from its channel, then cancels
// its context and walks away without draining it, leaks no goroutine, and
// the pair is still there whole.
func TestAbandonedBodyChannel(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			bg := context.Background()
			s := b.open(t, storagetest.Options{ChunkSize: 16 << 10}, nil)
			data := bodyPattern(2<<20, 1)
			storePair(t, s, "k", data)
			base := goleak.IgnoreCurrent()

			ctx, cancel := context.WithCancel(bg)
			ps, err := s.GetPairs(ctx, "k").Await(ctx)
			if err != nil || len(ps) != 1 {
				t.Fatalf("GetPairs() = %d pairs, %v; want 1", len(ps), err)
			}
			ch := ps[0].Response.Body.Chunks(ctx)
			for range 3 {
				if c := <-ch; c.Err != nil {
					t.Fatalf("reading the body: %v", c.Err)
				}
			}
			cancel() // and never read ch again
			goleak.VerifyNone(t, base)

			ps, err = s.GetPairs(bg, "k").Await(bg)
			if err != nil || len(ps) != 1 {
				t.Fatalf("GetPairs() after the abandoned read = %d pairs, %v; want 1", len(ps), err)
			}
			got, err := readBodyChunks(bg, ps[0].Response.Body)
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("body read again = %d bytes, %v; want the %d bytes stored", len(got), err, len(data))
			}
		})
	}
}

// A response body fed from a channel by a producer and stored as its
// consumer reads it with Chunks: when the consumer stops half-way and
// cancels, the pair is not stored, every goroutine ends (the store's and
// the producer's), and nothing is left in storage.
func TestAbandonedStoreChannel(t *testing.T) {
	producers := []struct {
		name string
		// closes: the producer closes its channel when its context ends;
		// otherwise it just stops sending, which ChanBody's contract allows.
		closes bool
	}{
		{"producer closes its channel", true},
		{"producer stops sending", false},
	}
	for _, b := range backends {
		for _, p := range producers {
			t.Run(b.name+"/"+p.name, func(t *testing.T) {
				bg := context.Background()
				s := b.open(t, storagetest.Options{ChunkSize: 16 << 10}, nil)
				base := goleak.IgnoreCurrent()

				ctx, cancel := context.WithCancel(bg)
				defer cancel()
				data := bodyPattern(4<<20, 2)
				half := make(chan struct{})
				src := make(chan model.Chunk)
				go func() { // the producer: half the body, then a slow origin
					if p.closes {
						defer close(src)
					}
					for i := 0; i < len(data)/2; i += 32 << 10 {
						select {
						case src <- model.Chunk{Data: data[i : i+32<<10]}:
						case <-ctx.Done():
							return
						}
					}
					close(half)
					<-ctx.Done()
				}()
				inc, err := s.CreatePair(ctx, model.Request{Method: "GET", URL: "u"}).Await(ctx)
				if err != nil {
					t.Fatal(err)
				}
				cp, err := s.AddResponse(ctx, inc.ID, model.Response{Status: 200, Body: model.ChanBody(src)}, "k").Await(ctx)
				if err != nil {
					t.Fatal(err)
				}
				ch := cp.Response.Body.Chunks(ctx)
				// Read all the producer sends: the store's goroutine then
				// waits for the slow origin.
				var n int
				for n < len(data)/2 {
					c := <-ch
					if c.Err != nil {
						t.Fatalf("storing the body: %v", c.Err)
					}
					n += len(c.Data)
				}
				<-half
				cancel() // and never read ch again
				goleak.VerifyNone(t, base)

				if got := countPairs(t, s, "k"); got != 0 {
					t.Errorf("GetPairs() = %d pairs after the consumer gave up; want 0", got)
				}
				// The abort happens in the store's goroutine as it ends.
				deadline := time.Now().Add(5 * time.Second)
				for {
					if _, err := s.Sync(bg).Await(bg); err != nil {
						t.Fatal(err)
					}
					st, err := s.Stats(bg).Await(bg)
					if err == nil && st == (model.Stats{}) {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("Stats() = %+v, %v; want nothing stored", st, err)
					}
					time.Sleep(10 * time.Millisecond)
				}
			})
		}
	}
}

// Many writes in flight at once all land.
func TestConcurrentWrites(t *testing.T) {
	const n = 100
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			s := b.open(t, storagetest.Options{}, nil)
			// Start every CreatePair, then every AddResponse, then store
			// every body, without waiting in between more than needed.
			created := make([]cacheasync.Future[model.IncompletePair], n)
			for i := range created {
				created[i] = s.CreatePair(ctx, model.Request{Method: "POST", URL: fmt.Sprint("u", i),
					Body: model.StringBody(fmt.Sprint("request ", i))})
			}
			added := make([]cacheasync.Future[model.CompletePair], n)
			var bodies sync.WaitGroup
			errs := make(chan error, 2*n)
			for i, f := range created {
				inc, err := f.Await(ctx)
				if err != nil {
					t.Fatalf("CreatePair(%d) error = %v", i, err)
				}
				bodies.Go(func() { errs <- drainBody(ctx, inc.Request.Body) })
				added[i] = s.AddResponse(ctx, inc.ID, model.Response{Status: 200,
					Body: model.StringBody(fmt.Sprint("response ", i))}, fmt.Sprint("k", i))
			}
			for i, f := range added {
				cp, err := f.Await(ctx)
				if err != nil {
					t.Fatalf("AddResponse(%d) error = %v", i, err)
				}
				bodies.Go(func() { errs <- drainBody(ctx, cp.Response.Body) })
			}
			bodies.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Errorf("storing a body: %v", err)
				}
			}
			gets := make([]cacheasync.Future[[]model.CompletePair], n)
			for i := range gets {
				gets[i] = s.GetPairs(ctx, fmt.Sprint("k", i))
			}
			for i, f := range gets {
				ps, err := f.Await(ctx)
				if err != nil || len(ps) != 1 {
					t.Errorf("GetPairs(k%d) = %d pairs, %v; want 1", i, len(ps), err)
					continue
				}
				req, err1 := model.ReadAll(ps[0].Request.Body)
				resp, err2 := model.ReadAll(ps[0].Response.Body)
				if err := errors.Join(err1, err2); err != nil || string(req) != fmt.Sprint("request ", i) || string(resp) != fmt.Sprint("response ", i) {
					t.Errorf("pair %d bodies = %q, %q, %v; want request %d, response %d", i, req, resp, err, i, i)
				}
			}
			if st, err := s.Stats(ctx).Await(ctx); err != nil || st.Pairs != n {
				t.Errorf("Stats() = %+v, %v; want %d pairs", st, err, n)
			}
		})
	}
}

// The consumer of Pairs' stream may call the storage between values, also
// when every slot of MaxInFlight is taken.
func TestPairsConsumerCallsStore(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			s := b.open(t, storagetest.Options{}, &cacheasync.Options{MaxInFlight: 1})
			storePair(t, s, "k", []byte("x"))
			storePair(t, s, "k2", []byte("y"))
			n := 0
			for r := range s.Pairs(ctx, model.Filter{}) {
				if r.Err != nil {
					t.Fatalf("Pairs() error = %v", r.Err)
				}
				n++
				wait, cancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := s.Stats(wait).Await(wait)
				cancel()
				if err != nil {
					t.Fatalf("Stats() between Pairs' values with MaxInFlight 1: error = %v; want nil", err)
				}
			}
			if n != 2 {
				t.Errorf("Pairs() listed %d pairs; want 2", n)
			}
		})
	}
}

// A stream abandoned early releases its goroutine once its context is
// cancelled, and Close ends a stream nobody reads: its last result is
// ErrClosed.
func TestAbandonedStream(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			bg := context.Background()
			s := b.open(t, storagetest.Options{NoSync: true}, nil)
			for i := range 10 {
				storePair(t, s, fmt.Sprint("k", i), []byte("x"))
			}
			base := goleak.IgnoreCurrent()
			ctx, cancel := context.WithCancel(bg)
			st := s.Pairs(ctx, model.Filter{})
			if r := <-st; r.Err != nil {
				t.Fatalf("Pairs() first result error = %v", r.Err)
			}
			cancel()
			goleak.VerifyNone(t, base)

			unread := s.Pairs(bg, model.Filter{})
			time.Sleep(10 * time.Millisecond) // the goroutine waits to send its second value
			if err := s.Close(); err != nil {
				t.Fatalf("Close() with a stream unread = %v; want nil", err)
			}
			var last error
			n := 0
			for r := range unread {
				n++
				last = r.Err
			}
			if !errors.Is(last, cacheasync.ErrClosed) || n > 2 {
				t.Errorf("stream unread at Close: %d results, the last %v; want at most 2, the last ErrClosed", n, last)
			}
		})
	}
}

// blockedUpdate starts an UpdatePairFunc call whose function blocks until
// release is closed, from a goroutine of its own (a store that runs calls
// in the caller's goroutine would otherwise block the test), and returns
// once the function is running. The returned channel delivers the call's
// future.
func blockedUpdate(ctx context.Context, s asyncStore, id model.PairID, release <-chan struct{}) <-chan cacheasync.Future[model.CompletePair] {
	entered := make(chan struct{})
	var once sync.Once
	f := make(chan cacheasync.Future[model.CompletePair], 1)
	go func() {
		f <- s.UpdatePairFunc(ctx, id, func(p model.CompletePair) (model.CompletePair, error) {
			once.Do(func() { close(entered) })
			<-release
			return p, nil
		})
	}()
	<-entered
	return f
}

// storePair stores a GET pair with body under key through the async API.
func storePair(tb testing.TB, s asyncStore, key string, body []byte) model.CompletePair {
	tb.Helper()
	ctx := context.Background()
	inc, err := s.CreatePair(ctx, model.Request{Method: "GET", URL: "u"}).Await(ctx)
	if err != nil {
		tb.Fatalf("CreatePair() error = %v", err)
	}
	cp, err := s.AddResponse(ctx, inc.ID, model.Response{Status: 200, Body: model.BytesBody(body)}, key).Await(ctx)
	if err != nil {
		tb.Fatalf("AddResponse() error = %v", err)
	}
	if err := drainBody(ctx, cp.Response.Body); err != nil {
		tb.Fatalf("storing the response body: %v", err)
	}
	return cp
}

// drainBody reads b to its end through its channel.
func drainBody(ctx context.Context, b *model.Body) error {
	_, err := readBodyChunks(ctx, b)
	return err
}

func readBodyChunks(ctx context.Context, b *model.Body) ([]byte, error) {
	var buf bytes.Buffer
	for c := range b.Chunks(ctx) {
		if c.Err != nil {
			return buf.Bytes(), c.Err
		}
		buf.Write(c.Data)
	}
	return buf.Bytes(), nil
}

// countPairs returns how many pairs GetPairs(key) serves, closing them.
func countPairs(tb testing.TB, s asyncStore, key string) int {
	tb.Helper()
	ctx := context.Background()
	ps, err := s.GetPairs(ctx, key).Await(ctx)
	if err != nil {
		tb.Fatalf("GetPairs(%q) error = %v", key, err)
	}
	for _, p := range ps {
		p.Close()
	}
	return len(ps)
}

func bodyPattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7+i>>10) ^ seed
	}
	return b
}

// Every call returns at once with its future, also one whose function (of
// UpdatePairFunc) takes its time, and Pairs while nobody reads its stream.
func TestCallbackCallsReturnAtOnce(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			s := b.open(t, storagetest.Options{}, nil)
			cp := storePair(t, s, "k", []byte("x"))
			ops := map[string]func(release <-chan struct{}) func() error{
				"Pairs": func(release <-chan struct{}) func() error {
					st := s.Pairs(ctx, model.Filter{})
					return func() error {
						<-release
						for r := range st {
							if r.Err != nil {
								return r.Err
							}
						}
						return nil
					}
				},
				"UpdatePairFunc": func(release <-chan struct{}) func() error {
					f := s.UpdatePairFunc(ctx, cp.ID, func(p model.CompletePair) (model.CompletePair, error) { <-release; return p, nil })
					return func() error { _, err := f.Await(ctx); return err }
				},
			}
			for name, op := range ops {
				release := make(chan struct{})
				returned := make(chan func() error, 1)
				go func() { returned <- op(release) }()
				select {
				case await := <-returned:
					close(release)
					if err := await(); err != nil {
						t.Errorf("%s() error = %v", name, err)
					}
				case <-time.After(time.Second):
					t.Errorf("%s() did not return while its function ran; want a future at once", name)
					close(release)
					<-returned
				}
			}
		})
	}
}
