package model

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
)

func TestPairIDString(t *testing.T) {
	before := time.Now().UnixMilli()
	id := NewPairID()
	after := time.Now().UnixMilli()
	if id[6]>>4 != 7 || id[8]>>6 != 2 {
		t.Errorf("NewPairID() = %v; not a version 7 UUID", id)
	}
	var ms int64
	for _, b := range id[:6] {
		ms = ms<<8 | int64(b)
	}
	if ms < before || ms > after {
		t.Errorf("NewPairID() = %v: time %d ms; want %d to %d", id, ms, before, after)
	}
	if later := NewPairID(); id == later {
		t.Errorf("NewPairID() twice = %v", id)
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

// NextChunk makes a Body the source of another: chunks pass through as they
// are, and a plain reader's short reads come out at their own size, not in a
// DefaultChunkSize buffer.
func TestBodyNextChunk(t *testing.T) {
	want := strings.Repeat("hishel-", 20000)
	for name, mk := range sources() {
		t.Run(name, func(t *testing.T) {
			got, err := io.ReadAll(NewBody(mk()))
			if err != nil || string(got) != want {
				t.Fatalf("ReadAll(NewBody(body)) = %d bytes, %v; want %d", len(got), err, len(want))
			}
		})
	}
	tests := []struct {
		name string
		size int
		lens []int // length of each chunk
	}{
		{"short", 1000, []int{1000}},
		{"one chunk", DefaultChunkSize, []int{DefaultChunkSize}},
		{"chunk and a bit", DefaultChunkSize + 10, []int{DefaultChunkSize, 10}},
	}
	for _, tt := range tests {
		t.Run("reader/"+tt.name, func(t *testing.T) {
			b := NewBody(bytes.NewReader(make([]byte, tt.size)))
			var lens []int
			for {
				c, err := b.NextChunk()
				if len(c) > 0 {
					lens = append(lens, len(c))
					if cap(c) > 2*len(c) {
						t.Errorf("a chunk of %d bytes holds a buffer of %d", len(c), cap(c))
					}
				}
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if diff := cmp.Diff(tt.lens, lens); diff != "" {
				t.Errorf("chunk lengths (-want +got):\n%s", diff)
			}
		})
	}
}

// A slow source's bytes go on as they come, in every view.
func TestBodySlowSource(t *testing.T) {
	views := []struct {
		name  string
		first func(b *Body) (string, error)
	}{
		{"NextChunk", func(b *Body) (string, error) { c, err := b.NextChunk(); return string(c), err }},
		{"Chunks", func(b *Body) (string, error) {
			c := <-b.Chunks(context.Background())
			return string(c.Data), c.Err
		}},
		{"All", func(b *Body) (string, error) {
			for c, err := range b.All() {
				return string(c), err
			}
			return "", io.EOF
		}},
	}
	for _, v := range views {
		t.Run(v.name, func(t *testing.T) {
			pr, pw := io.Pipe()
			defer pw.Close()
			go pw.Write([]byte("first"))
			got, err := v.first(NewBody(pr))
			if err != nil || got != "first" {
				t.Errorf("first piece = %q, %v; want \"first\" while the source is still open", got, err)
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
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
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
}

// A nil context is an ErrInvalid error, never a panic: not from Chunks,
// and not in the goroutine Chunks would have started.
func TestNilContext(t *testing.T) {
	if err := CheckContext(nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("CheckContext(nil) = %v; want ErrInvalid", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := CheckContext(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("CheckContext(cancelled) = %v; want context.Canceled", err)
	}
	for _, tt := range []struct {
		name string
		body *Body
	}{
		{"plain reader", NewBody(strings.NewReader("abc"))},
		{"chunked source", StringBody("abc")},
		{"nil body", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var got []Chunk
			for c := range tt.body.Chunks(nil) {
				got = append(got, c)
			}
			if len(got) != 1 || !errors.Is(got[0].Err, ErrInvalid) {
				t.Fatalf("Chunks(nil) = %v; want one chunk with ErrInvalid", got)
			}
			if tt.body != nil {
				if _, err := tt.body.Read(make([]byte, 1)); !errors.Is(err, ErrBodyClosed) {
					t.Errorf("Read after Chunks(nil) = %v; want ErrBodyClosed (the body is closed)", err)
				}
			}
		})
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

// sharedSource hands out the same chunks to every body over it, as a
// storage holding a body in memory does.
type sharedSource struct{ chunks [][]byte }

func (s *sharedSource) SharedChunk() ([]byte, error) {
	if len(s.chunks) == 0 {
		return nil, io.EOF
	}
	c := s.chunks[0]
	s.chunks = s.chunks[1:]
	return c, nil
}

func (s *sharedSource) NextChunk() ([]byte, error) {
	c, err := s.SharedChunk()
	return bytes.Clone(c), err
}

// A SharedSource's chunks reach io.Writers as they are, and every view that
// hands a chunk to its caller hands a copy: changing it never changes the
// shared bytes.
func TestBodySharedSource(t *testing.T) {
	stored := [][]byte{[]byte("hello, "), []byte("world")}
	views := []struct {
		name string
		read func(b *Body) (string, error)
	}{
		{"WriteTo", func(b *Body) (string, error) {
			var w bytes.Buffer
			_, err := b.WriteTo(&w)
			return w.String(), err
		}},
		{"Read", func(b *Body) (string, error) { got, err := io.ReadAll(b); return string(got), err }},
		{"NextChunk", func(b *Body) (string, error) {
			var out []byte
			for {
				c, err := b.NextChunk()
				out = append(out, c...)
				for i := range c {
					c[i] = '!'
				}
				if err == io.EOF {
					return string(out), nil
				}
				if err != nil {
					return string(out), err
				}
			}
		}},
		{"Chunks", func(b *Body) (string, error) {
			var out []byte
			for c := range b.Chunks(context.Background()) {
				if c.Err != nil {
					return "", c.Err
				}
				out = append(out, c.Data...)
				for i := range c.Data {
					c.Data[i] = '!'
				}
			}
			return string(out), nil
		}},
		{"All", func(b *Body) (string, error) {
			var out []byte
			for c, err := range b.All() {
				if err != nil {
					return "", err
				}
				out = append(out, c...)
				for i := range c {
					c[i] = '!'
				}
			}
			return string(out), nil
		}},
	}
	for _, v := range views {
		t.Run(v.name, func(t *testing.T) {
			b := NewChunkBody(&sharedSource{chunks: stored}, nil)
			got, err := v.read(b)
			if err != nil || got != "hello, world" {
				t.Fatalf("body = %q, %v; want \"hello, world\"", got, err)
			}
			if string(stored[0])+string(stored[1]) != "hello, world" {
				t.Fatalf("reading through %s changed the shared chunks to %q", v.name, stored)
			}
		})
	}
}

// reusingSource lends every chunk in one buffer, which it scribbles over
// at the next call, as SharedSource allows.
type reusingSource struct {
	chunks [][]byte
	buf    []byte
}

func (s *reusingSource) SharedChunk() ([]byte, error) {
	for i := range s.buf {
		s.buf[i] = '#'
	}
	if len(s.chunks) == 0 {
		return nil, io.EOF
	}
	s.buf = append(s.buf[:0], s.chunks[0]...)
	s.chunks = s.chunks[1:]
	return s.buf, nil
}

func (s *reusingSource) NextChunk() ([]byte, error) {
	c, err := s.SharedChunk()
	return bytes.Clone(c), err
}

// A Body is done with a lent chunk before it asks its source for the next
// one, whichever way it is read on after a partial Read.
func TestBodyReusingSharedSource(t *testing.T) {
	rest := map[string]func(b *Body) (string, error){
		"Read": func(b *Body) (string, error) { got, err := io.ReadAll(b); return string(got), err },
		"WriteTo": func(b *Body) (string, error) {
			var w bytes.Buffer
			_, err := b.WriteTo(&w)
			return w.String(), err
		},
		"NextChunk": func(b *Body) (string, error) {
			var out []byte
			for {
				c, err := b.NextChunk()
				out = append(out, c...)
				if err == io.EOF {
					return string(out), nil
				}
				if err != nil {
					return string(out), err
				}
			}
		},
		"Chunks": func(b *Body) (string, error) {
			var out []byte
			for c := range b.Chunks(context.Background()) {
				if c.Err != nil {
					return "", c.Err
				}
				out = append(out, c.Data...)
			}
			return string(out), nil
		},
		"All": func(b *Body) (string, error) {
			var out []byte
			for c, err := range b.All() {
				if err != nil {
					return "", err
				}
				out = append(out, c...)
			}
			return string(out), nil
		},
	}
	for name, read := range rest {
		t.Run(name, func(t *testing.T) {
			b := NewChunkBody(&reusingSource{chunks: [][]byte{[]byte("hello, "), []byte("wor"), []byte("ld")}}, nil)
			head := make([]byte, 3)
			if _, err := io.ReadFull(b, head); err != nil {
				t.Fatal(err)
			}
			got, err := read(b)
			if err != nil || string(head)+got != "hello, world" {
				t.Errorf("body = %q + %q, %v; want \"hello, world\"", head, got, err)
			}
		})
	}
}

// bufferedShared is a sharedSource whose chunks are all in memory.
type bufferedShared struct{ sharedSource }

func (s *bufferedShared) Buffered() ([][]byte, bool) {
	var out [][]byte
	for _, c := range s.chunks {
		out = append(out, bytes.Clone(c))
	}
	s.chunks = nil
	return out, true
}

// After a partial Read, Chunks hands out the rest of the current shared
// chunk as a copy too.
func TestBodySharedChunksAfterRead(t *testing.T) {
	stored := [][]byte{[]byte("hello, "), []byte("world")}
	b := NewChunkBody(&bufferedShared{sharedSource{chunks: stored}}, nil)
	if _, err := io.ReadFull(b, make([]byte, 3)); err != nil {
		t.Fatal(err)
	}
	var got []byte
	for c := range b.Chunks(context.Background()) {
		if c.Err != nil {
			t.Fatal(c.Err)
		}
		got = append(got, c.Data...)
		for i := range c.Data {
			c.Data[i] = '!'
		}
	}
	if string(got) != "lo, world" {
		t.Errorf("Chunks after Read = %q; want \"lo, world\"", got)
	}
	if string(stored[0]) != "hello, " {
		t.Errorf("the shared chunk became %q", stored[0])
	}
}

// readerSource is a ChunkSource that can also read into the caller's buffer.
type readerSource struct {
	r          io.Reader
	nextChunks int
}

func (s *readerSource) Read(p []byte) (int, error) { return s.r.Read(p) }

func (s *readerSource) NextChunk() ([]byte, error) {
	s.nextChunks++
	p := make([]byte, 4)
	n, err := s.r.Read(p)
	return p[:n], err
}

// Read reads a source that is also an io.Reader straight into the caller's
// buffer; chunk by chunk only for the rest of a chunk already taken.
func TestBodyReadsReaderSource(t *testing.T) {
	src := &readerSource{r: strings.NewReader("hello, world")}
	b := NewBody(src)
	c, err := b.NextChunk() // "hell", taken as a chunk
	if err != nil || string(c) != "hell" {
		t.Fatalf("NextChunk = %q, %v", c, err)
	}
	rest, err := io.ReadAll(b)
	if err != nil || string(rest) != "o, world" {
		t.Errorf("ReadAll after NextChunk = %q, %v; want \"o, world\"", rest, err)
	}
	if src.nextChunks != 1 {
		t.Errorf("NextChunk called %d times; want 1 (Read reads the source directly)", src.nextChunks)
	}
}

// writerToSource is a reusingSource that writes the rest of its body
// itself, as a stored body in a file does, and counts its WriteTo calls.
type writerToSource struct {
	reusingSource
	writeTos int
}

func (s *writerToSource) WriteTo(w io.Writer) (int64, error) {
	s.writeTos++
	var n int64
	for {
		c, err := s.SharedChunk()
		if len(c) > 0 {
			m, werr := w.Write(c)
			n += int64(m)
			if werr != nil {
				return n, werr
			}
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// A Body whose source is an io.WriterTo hands WriteTo to it, after what a
// partial Read left of the current chunk (which the source may reuse once
// asked again), through a Body over the Body too; a closed Body does not.
func TestBodyWriterToSource(t *testing.T) {
	const whole = "hello, world, and more"
	for _, tt := range []struct {
		name     string
		read     int  // bytes Read first
		wrap     bool // a Body over the Body
		closed   bool
		want     string
		writeTos int
		err      error
	}{
		{name: "whole", want: whole, writeTos: 1},
		{name: "after a partial Read", read: 3, want: whole[3:], writeTos: 1},
		{name: "after a chunk", read: 7, want: whole[7:], writeTos: 1},
		{name: "Body over Body", read: 3, wrap: true, want: whole[3:], writeTos: 1},
		{name: "closed", closed: true, err: ErrBodyClosed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			src := &writerToSource{reusingSource: reusingSource{chunks: [][]byte{[]byte("hello, "), []byte("world, "), []byte("and more")}}}
			b := NewChunkBody(src, nil)
			if tt.wrap {
				b = NewBody(b)
			}
			if tt.read > 0 {
				if _, err := io.ReadFull(b, make([]byte, tt.read)); err != nil {
					t.Fatal(err)
				}
			}
			if tt.closed {
				b.Close()
			}
			var w bytes.Buffer
			n, err := b.WriteTo(&w)
			if w.String() != tt.want || n != int64(len(tt.want)) || !errors.Is(err, tt.err) && err != tt.err {
				t.Errorf("WriteTo = %d, %q, %v; want %d, %q, %v", n, w.String(), err, len(tt.want), tt.want, tt.err)
			}
			if src.writeTos != tt.writeTos {
				t.Errorf("the source's WriteTo ran %d times; want %d", src.writeTos, tt.writeTos)
			}
		})
	}
}
