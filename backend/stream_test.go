package backend

import (
	"bytes"
	"context"
	"io"
	"slices"
	"testing"

	"github.com/hishel-go/hishel/model"
)

// pacedSink records the hand-overs of its stream: the bytes of each, and
// whether it ended the body. Once started, it asks for every chunk (a
// Pacer), as a sink that writes chunks out at once does.
type pacedSink struct {
	got     []byte
	handed  []int
	final   []bool
	next    int // NextFlush's answer
	aborted bool
}

func (k *pacedSink) Check() error { return nil }
func (k *pacedSink) Abort()       { k.aborted = true }
func (k *pacedSink) NextFlush() int {
	return k.next
}

func (k *pacedSink) Store(_ context.Context, chunks [][]byte, _ int64, final bool) error {
	n := 0
	for _, c := range chunks {
		k.got = append(k.got, c...)
		n += len(c)
	}
	k.handed = append(k.handed, n)
	k.final = append(k.final, final)
	return nil
}

// TestStreamPacer checks that a Pacer sets the hand-overs after the first:
// the first comes at flushAt, the others as NextFlush says (every chunk,
// or only at the end), and the body is stored whole either way.
func TestStreamPacer(t *testing.T) {
	const chunk = 4 << 10
	body := bytes.Repeat([]byte("0123456789abcdef"), 40<<10/16+3) // 10 chunks and 48 bytes
	for _, tt := range []struct {
		name   string
		next   int
		handed []int
	}{
		{"every chunk", 1, []int{3 * chunk, chunk, chunk, chunk, chunk, chunk, chunk, chunk, 48}},
		{"two chunks", 2 * chunk, []int{3 * chunk, 2 * chunk, 2 * chunk, 2 * chunk, chunk + 48}},
		{"at the end", 0, []int{3 * chunk, 7*chunk + 48}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sk := &pacedSink{next: tt.next}
			v := NewStream(context.Background(), model.PairID{}, model.NewBody(bytes.NewReader(body)), sk, chunk, 3*chunk)
			var out bytes.Buffer
			if _, err := io.CopyBuffer(struct{ io.Writer }{&out}, struct{ io.Reader }{v}, make([]byte, 1000)); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), body) || !bytes.Equal(sk.got, body) {
				t.Fatalf("read %d bytes, stored %d; want the %d of the body", out.Len(), len(sk.got), len(body))
			}
			if !slices.Equal(sk.handed, tt.handed) {
				t.Errorf("hand-overs = %v bytes; want %v", sk.handed, tt.handed)
			}
			for i, f := range sk.final {
				if f != (i == len(sk.final)-1) {
					t.Errorf("hand-over %d final = %v", i, f)
				}
			}
			if sk.aborted {
				t.Error("the stream was aborted")
			}
		})
	}
}
