package model

import (
	"bytes"
	"context"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

func TestPairIDString(t *testing.T) {
	id := NewPairID()
	if id[6]>>4 != 4 || id[8]>>6 != 2 {
		t.Errorf("NewPairID() = %v; not a version 4 UUID", id)
	}
	for _, s := range []string{id.String(), strings.ReplaceAll(id.String(), "-", "")} {
		got, err := ParsePairID(s)
		if err != nil || got != id {
			t.Errorf("ParsePairID(%q) = %v, %v; want %v", s, got, err, id)
		}
	}
	for _, bad := range []string{"", "xyz", strings.Repeat("g", 32), "0123456789ab-def-0123-456789abcdef0", id.String()[:35] + "-"} {
		if _, err := ParsePairID(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParsePairID(%q) err = %v; want ErrInvalid", bad, err)
		}
	}
	b, _ := id.MarshalText()
	var back PairID
	if err := back.UnmarshalText(b); err != nil || back != id {
		t.Errorf("text round trip = %v, %v; want %v", back, err, id)
	}
}

func FuzzParsePairID(f *testing.F) {
	f.Add(NewPairID().String())
	f.Add("00000000000000000000000000000000")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParsePairID(s)
		if err != nil {
			return
		}
		again, err := ParsePairID(id.String())
		if err != nil || again != id {
			t.Fatalf("ParsePairID(%q).String() does not parse back", s)
		}
	})
}

func sources() map[string]func() *Body {
	data := strings.Repeat("hishel-", 20000)
	return map[string]func() *Body{
		"reader": func() *Body { return NewBody(iotest.HalfReader(strings.NewReader(data))) },
		"bytes":  func() *Body { return StringBody(data) },
		"chan": func() *Body {
			ch := make(chan Chunk)
			go func() {
				defer close(ch)
				for i := 0; i < len(data); i += 999 {
					ch <- Chunk{Data: []byte(data[i:min(i+999, len(data))])}
				}
			}()
			return ChanBody(ch)
		},
	}
}

func TestBodyViews(t *testing.T) {
	want := strings.Repeat("hishel-", 20000)
	for name, mk := range sources() {
		t.Run(name+"/Read", func(t *testing.T) {
			got, err := io.ReadAll(mk())
			if err != nil || string(got) != want {
				t.Fatalf("ReadAll = %d bytes, %v; want %d", len(got), err, len(want))
			}
		})
		t.Run(name+"/Chunks", func(t *testing.T) {
			var buf bytes.Buffer
			for c := range mk().Chunks(context.Background()) {
				if c.Err != nil {
					t.Fatal(c.Err)
				}
				buf.Write(c.Data)
			}
			if buf.String() != want {
				t.Fatalf("Chunks gave %d bytes; want %d", buf.Len(), len(want))
			}
		})
		t.Run(name+"/All", func(t *testing.T) {
			var buf bytes.Buffer
			for c, err := range mk().All() {
				if err != nil {
					t.Fatal(err)
				}
				buf.Write(c)
			}
			if buf.String() != want {
				t.Fatalf("All gave %d bytes; want %d", buf.Len(), len(want))
			}
		})
	}
}

func TestNilBody(t *testing.T) {
	var b *Body
	if n, err := b.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("nil Body Read = %d, %v; want 0, EOF", n, err)
	}
	if b.Consumed() || b.Close() != nil {
		t.Errorf("nil Body is consumed or fails to close")
	}
	for range b.Chunks(context.Background()) {
		t.Errorf("nil Body sent a chunk")
	}
}

func TestBodyErrors(t *testing.T) {
	errBoom := errors.New("boom")
	ch := make(chan Chunk, 2)
	ch <- Chunk{Data: []byte("a")}
	ch <- Chunk{Err: errBoom}
	if _, err := io.ReadAll(ChanBody(ch)); !errors.Is(err, errBoom) {
		t.Errorf("ChanBody in-band error = %v; want boom", err)
	}
	var last Chunk
	for c := range NewBody(iotest.ErrReader(errBoom)).Chunks(context.Background()) {
		last = c
	}
	if !errors.Is(last.Err, errBoom) {
		t.Errorf("Chunks last chunk = %+v; want the read error", last)
	}
	b := StringBody("abc")
	b.Close()
	if _, err := b.Read(make([]byte, 1)); !errors.Is(err, ErrBodyClosed) {
		t.Errorf("Read after Close = %v; want ErrBodyClosed", err)
	}
	if !b.Consumed() {
		t.Errorf("closed Body not Consumed")
	}
}

// A consumer that abandons a body cancels its context; the producer
// goroutine ends and the consumer sees ctx's error in-band, not a short body.
func TestBodyChunksCancel(t *testing.T) {
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	ch := NewBody(io.LimitReader(zeros{}, 1<<30)).Chunks(ctx)
	<-ch
	cancel()
	var sawErr bool
	for c := range ch {
		if c.Err != nil {
			sawErr = errors.Is(c.Err, context.Canceled)
		}
	}
	if !sawErr {
		t.Errorf("cancelled Chunks ended without context.Canceled in-band")
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Fatalf("goroutines: %d before, %d after cancel", before, runtime.NumGoroutine())
		}
		time.Sleep(time.Millisecond)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func TestApplyCreateOptions(t *testing.T) {
	id := NewPairID()
	if got := ApplyCreateOptions([]CreateOption{nil, WithID(id)}); got.ID != id {
		t.Errorf("ApplyCreateOptions(WithID) = %v; want %v", got.ID, id)
	}
}
