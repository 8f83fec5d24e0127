package template

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/hishel-go/hishel/model"
)

// TestMemoryEvictionSparesBodiesBeingRead checks that a Memory body being
// read when its pair is evicted (MaxPairs, MaxBytes, MaxVariants) is read
// to its end, while a pair removed (Remove's retention past, Clear) still
// ends its readers with ErrRemoved.
func TestMemoryEvictionSparesBodiesBeingRead(t *testing.T) {
	const size = 256 << 10 // four chunks
	key := func(i int) string { return fmt.Sprint("k", i) }
	tests := []struct {
		name string
		opts MemoryOptions
		key  func(i int) string
	}{
		{"MaxPairs", MemoryOptions{MaxPairs: 1}, key},
		{"MaxBytes", MemoryOptions{MaxBytes: size + size/2}, key},
		{"MaxVariants", MemoryOptions{MaxVariants: 1}, func(int) string { return "k" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			opts := tt.opts
			opts.SweepInterval = -1
			s, err := OpenMemory(ctx, &opts)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			body := func(i int) []byte { return bytes.Repeat([]byte{byte('a' + i)}, size) }
			add := func(i int) {
				inc, err := s.CreatePair(ctx, getReq(fmt.Sprint("u", i)))
				if err != nil {
					t.Fatal(err)
				}
				cp, err := s.AddResponse(ctx, inc.ID, model.Response{Status: 200, Body: model.BytesBody(body(i))}, tt.key(i))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, cp.Response.Body); err != nil {
					t.Fatal(err)
				}
			}
			add(0)
			ps, err := s.GetPairs(ctx, tt.key(0))
			if err != nil || len(ps) != 1 {
				t.Fatalf("GetPairs: %d pairs, %v", len(ps), err)
			}
			r := ps[0].Response.Body
			if _, err := io.ReadFull(r, make([]byte, 1000)); err != nil {
				t.Fatal(err)
			}
			add(1)
			if got, err := s.GetPair(ctx, ps[0].ID); !errors.Is(err, model.ErrNotFound) {
				t.Fatalf("GetPair of the evicted pair: %v, %v; want ErrNotFound", got.ID, err)
			}
			rest, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(rest, body(0)[1000:]) {
				t.Fatalf("body read while its pair was evicted: %d bytes, %v", len(rest), err)
			}

			// Clear still ends a read.
			ps, err = s.GetPairs(ctx, tt.key(1))
			if err != nil || len(ps) != 1 {
				t.Fatalf("GetPairs: %d pairs, %v", len(ps), err)
			}
			r = ps[0].Response.Body
			if _, err := io.ReadFull(r, make([]byte, 1000)); err != nil {
				t.Fatal(err)
			}
			if err := s.Clear(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadAll(r); !errors.Is(err, model.ErrRemoved) {
				t.Fatalf("body read while the store was cleared: %v, want ErrRemoved", err)
			}
		})
	}
}
