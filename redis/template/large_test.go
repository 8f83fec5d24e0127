package template

import (
	"context"
	"crypto/sha256"
	"flag"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hishel-go/hishel/internal/testserver"
	"github.com/hishel-go/hishel/model"
)

// large makes TestLargeBodyBoundedMemory store 1 GiB instead of 64 MiB
// (minutes under -race on a loaded machine; go test -run LargeBody -large).
var large = flag.Bool("large", false, "TestLargeBodyBoundedMemory stores a 1 GiB body")

// A 64 MiB body (1 GiB with -large) is stored and read back through Redis
// with the heap bounded by a small constant, the same for any size:
// bodies stream in chunks both ways, never whole.
func TestLargeBodyBoundedMemory(t *testing.T) {
	size := int64(64 << 20)
	if *large {
		size = 1 << 30
	}
	srv := testserver.Redis(t)
	s := open(t, srv, RedisOptions{})
	ctx := context.Background()

	var peak atomic.Int64
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := int64(ms.HeapAlloc)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			if v := int64(m.HeapAlloc) - base; v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	})

	start := time.Now()
	in := sha256.New()
	inc, err := s.CreatePair(ctx, getReq("u"))
	if err != nil {
		t.Fatal(err)
	}
	resp := okResp(nil)
	resp.Body = model.NewBody(io.TeeReader(io.LimitReader(counting{}, size), in))
	cp, err := s.AddResponse(ctx, inc.ID, resp, "big")
	if err != nil {
		t.Fatal(err)
	}
	if n, err := io.Copy(io.Discard, cp.Response.Body); err != nil || n != size {
		t.Fatalf("storing the body: %d bytes, %v", n, err)
	}
	stored := time.Since(start)
	ps, err := s.GetPairs(ctx, "big")
	if err != nil || len(ps) != 1 {
		t.Fatalf("GetPairs() = %d pairs, %v", len(ps), err)
	}
	out := sha256.New()
	if n, err := io.Copy(out, ps[0].Response.Body); err != nil || n != size {
		t.Fatalf("reading the body back: %d bytes, %v", n, err)
	}
	close(stop)
	wg.Wait()
	if string(in.Sum(nil)) != string(out.Sum(nil)) {
		t.Errorf("the body read back differs from the body stored")
	}
	t.Logf("%d MiB stored in %v, read back in %v; heap peak %.1f MiB above baseline",
		size>>20, stored.Round(time.Millisecond), (time.Since(start) - stored).Round(time.Millisecond), float64(peak.Load())/(1<<20))
	if p := peak.Load(); p > 32<<20 {
		t.Errorf("heap peak %.1f MiB above baseline; want at most 32 MiB whatever the body's size", float64(p)/(1<<20))
	}
	if err := s.Remove(ctx, cp.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.Clear(ctx); err != nil {
		t.Fatal(err)
	}
}

// counting is an endless reader of varied bytes.
type counting struct{}

var countingBytes = pattern(64<<10+1, 7) // a length no chunk boundary matches

func (counting) Read(p []byte) (int, error) { return copy(p, countingBytes), nil }
