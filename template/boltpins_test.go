package template

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/hishel-go/hishel/model"
)

// TestBoltEvictionSparesBodiesBeingRead checks that a pair whose body is
// being read is not evicted under MaxPairs, MaxBytes or MaxVariants: the
// read ends with every byte, another pair goes instead, and the pair is
// evictable again once its body was read to the end, closed, or left
// unread for readerStall.
func TestBoltEvictionSparesBodiesBeingRead(t *testing.T) {
	const size = 1 << 20 // over what GetPairs and a first read load
	key := func(i int) string { return fmt.Sprint("k", i) }
	tests := []struct {
		name     string
		opts     BoltOptions
		key      func(i int) string // the key of the i-th pair stored
		bodySize int
	}{
		{"MaxPairs", BoltOptions{MaxPairs: 2, FileBodyMin: -1}, key, size},
		{"MaxBytes", BoltOptions{MaxBytes: 2*size + size/2, FileBodyMin: -1}, key, size},
		{"MaxVariants", BoltOptions{MaxVariants: 2, FileBodyMin: -1}, func(int) string { return "k" }, size},
		{"MaxPairs, bodies in files", BoltOptions{MaxPairs: 2}, key, size},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			clock := newClock()
			opts := tt.opts
			opts.Now = clock.Now
			s := openBolt(t, &opts)
			body := func(i int) []byte { return bytes.Repeat([]byte{byte('a' + i)}, tt.bodySize) }
			n := 0
			add := func() model.PairID {
				clock.Advance(time.Second)
				cp := store(t, s, getReq(fmt.Sprint("u", n)), model.Response{Status: 200, Body: model.BytesBody(body(n))}, tt.key(n))
				n++
				return cp.ID
			}
			has := func(id model.PairID) bool {
				for p, err := range s.Pairs(ctx, model.Filter{}) {
					if err != nil {
						t.Fatal(err)
					}
					if p.ID == id && p.State == model.StateComplete {
						return true
					}
				}
				return false
			}
			// open starts reading pair i's body: it is then the most
			// recently used, and the next two pairs stored make it the
			// least.
			open := func(id model.PairID, i int) io.ReadCloser {
				clock.Advance(time.Second)
				for _, p := range mustGet(t, s, tt.key(i)) {
					if p.ID != id {
						p.Close()
						continue
					}
					if _, err := io.ReadFull(p.Response.Body, make([]byte, 1000)); err != nil {
						t.Fatal(err)
					}
					return p.Response.Body
				}
				t.Fatalf("pair %s not found", id)
				return nil
			}

			// Read to the end while two pairs come.
			a := add()
			r := open(a, 0)
			b, c := add(), add()
			rest, err := io.ReadAll(r)
			if err != nil {
				t.Fatalf("body read while others were stored: %v", err)
			}
			if want := body(0)[1000:]; !bytes.Equal(rest, want) {
				t.Fatalf("body read while others were stored: %d bytes, want %d", len(rest), len(want))
			}
			if !has(a) || has(b) || !has(c) {
				t.Fatalf("after reading a while b and c were stored: a %v, b %v, c %v; want a and c", has(a), has(b), has(c))
			}
			if got := mustStats(t, s).Evicted; got != 1 {
				t.Fatalf("Evicted = %d, want 1", got)
			}
			// Read to the end, a is the least recently used again.
			add()
			if has(a) {
				t.Fatal("a, read to its end, was not evicted")
			}

			// Closed: evictable at once.
			d := add()
			r = open(d, n-1)
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}
			add()
			add()
			if has(d) {
				t.Fatal("a pair whose body was closed was not evicted")
			}

			// Stalled: evictable once readerStall passed, and the read
			// then fails rather than end early.
			e := add()
			r = open(e, n-1)
			clock.Advance(readerStall)
			add()
			add()
			if has(e) {
				t.Fatalf("a pair whose reader stalled for %v was not evicted", readerStall)
			}
			if _, err := io.ReadAll(r); !errors.Is(err, model.ErrRemoved) {
				t.Fatalf("reading an evicted pair's body: %v, want ErrRemoved", err)
			}
			if left := s.reading.prune(clock.Now().UnixNano()); left != 0 {
				t.Fatalf("%d pins left after every body was read, closed or stalled", left)
			}
		})
	}
}

// TestBoltEvictionBeforeRead checks the other order: a pair that a
// transaction not yet committed evicts is left out by GetPairs, whose
// snapshot still holds it (its body would end with ErrRemoved), and is
// served again if that transaction rolls back.
func TestBoltEvictionBeforeRead(t *testing.T) {
	for _, commit := range []bool{true, false} {
		t.Run(fmt.Sprint("commit=", commit), func(t *testing.T) {
			ctx := context.Background()
			s := openBolt(t, &BoltOptions{FileBodyMin: -1})
			body := bytes.Repeat([]byte{'x'}, 1<<20)
			cp := store(t, s, getReq("u"), model.Response{Status: 200, Body: model.BytesBody(body)}, "k")
			evicted, release := make(chan struct{}), make(chan struct{})
			errc := make(chan error, 1)
			go func() {
				errc <- s.w.do(ctx, false, func(t *wtx) error {
					rec, err := t.record(cp.ID)
					if err != nil || rec == nil {
						return fmt.Errorf("record: %v %v", rec, err)
					}
					if !s.evictPair(t, rec, s.now().UnixNano()) {
						return errors.New("pair not evicted")
					}
					close(evicted)
					<-release
					if !commit {
						t.fatal = errors.New("rolled back")
					}
					return nil
				})
			}()
			<-evicted
			var once sync.Once
			end := func() { once.Do(func() { close(release) }) }
			defer end() // a failure below must not leave the writer held
			if ps := mustGet(t, s, "k"); len(ps) != 0 {
				t.Fatalf("GetPairs during the eviction: %d pairs, want 0", len(ps))
			}
			if _, err := s.GetPair(ctx, cp.ID); !errors.Is(err, model.ErrNotFound) {
				t.Fatalf("GetPair during the eviction: %v, want ErrNotFound", err)
			}
			end()
			err := <-errc
			if commit && err != nil || !commit && err == nil {
				t.Fatalf("eviction: %v", err)
			}
			ps := mustGet(t, s, "k")
			if !commit {
				if len(ps) != 1 {
					t.Fatalf("after a rolled back eviction: %d pairs, want 1", len(ps))
				}
				got, err := model.ReadAll(ps[0].Response.Body)
				if err != nil || !bytes.Equal(got, body) {
					t.Fatalf("after a rolled back eviction: %d bytes, %v", len(got), err)
				}
			} else if len(ps) != 0 {
				t.Fatalf("after the eviction: %d pairs, want 0", len(ps))
			}
		})
	}
}
