package backend

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"testing"

	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/model"
)

// chunkRow is a row of a chunk table held in memory.
type chunkRow struct {
	n    int64
	data []byte
	crc  uint32
}

// memTable is a ChunkTable over rows in memory, in chunk-number order:
// what a backend's queries would return.
type memTable struct {
	rows    []chunkRow
	removed bool
	closed  bool
	bad     []model.PairID
	calls   int // Chunks calls
}

func (m *memTable) table(chunkSize int) *ChunkTable {
	return &ChunkTable{
		Chunks: func(ctx context.Context, id model.PairID, kind bolt.Kind, nonce uint64, from, limit int64, fn func(int64, []byte, uint32) error) error {
			m.calls++
			if m.removed {
				return nil
			}
			for _, r := range m.rows {
				if r.n < from || limit == 0 {
					continue
				}
				limit--
				if err := fn(r.n, bytes.Clone(r.data), r.crc); err != nil {
					return err
				}
			}
			return nil
		},
		Removed:   func(context.Context, model.PairID, uint64) (bool, error) { return m.removed, nil },
		Closed:    func() bool { return m.closed },
		NoteBad:   func(id model.PairID) { m.bad = append(m.bad, id) },
		ReadAhead: int64(2 * chunkSize),
		ChunkSize: chunkSize,
	}
}

// stored returns the rows of body cut into chunks of size n: the marker,
// then the chunks, each with its checksum.
func stored(body []byte, n int) []chunkRow {
	var rows []chunkRow
	for i := 0; len(body) > 0; i++ {
		c := body[:min(n, len(body))]
		body = body[len(c):]
		rows = append(rows, chunkRow{n: int64(i), data: c, crc: Checksum(c)})
	}
	size := 0
	for _, r := range rows {
		size += len(r.data)
	}
	m := bolt.EncodeMarker(bolt.Marker{Size: int64(size), Chunks: uint64(len(rows))})
	return append([]chunkRow{{n: MarkerChunk, data: m, crc: Checksum(m)}}, rows...)
}

func TestChunkTableBody(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789"), 100) // 1000 bytes: chunks 0-9 of 100
	tests := []struct {
		name    string
		change  func(m *memTable)
		want    error // nil: the body reads back whole
		wantBad bool  // the pair is noted for the sweep
	}{
		{name: "whole"},
		{name: "checksum mismatch", change: func(m *memTable) { m.rows[4].crc++ }, want: model.ErrCorrupt, wantBad: true},
		{name: "altered byte", change: func(m *memTable) { m.rows[7].data = slices.Clone(m.rows[7].data); m.rows[7].data[3] ^= 1 }, want: model.ErrCorrupt, wantBad: true},
		{name: "marker missing", change: func(m *memTable) { m.rows = m.rows[1:] }, want: model.ErrCorrupt, wantBad: true},
		{name: "bad marker", change: func(m *memTable) { m.rows[0].data = []byte{1}; m.rows[0].crc = Checksum([]byte{1}) }, want: model.ErrCorrupt, wantBad: true},
		{name: "chunk missing", change: func(m *memTable) { m.rows = slices.Delete(m.rows, 5, 6) }, want: model.ErrCorrupt, wantBad: true},
		{name: "last chunks missing", change: func(m *memTable) { m.rows = m.rows[:6] }, want: model.ErrCorrupt, wantBad: true},
		{name: "size not the marker's", change: func(m *memTable) {
			m.rows[10].data = m.rows[10].data[:50]
			m.rows[10].crc = Checksum(m.rows[10].data)
		}, want: model.ErrCorrupt, wantBad: true},
		{name: "removed", change: func(m *memTable) { m.removed = true }, want: model.ErrRemoved},
		{name: "closed", change: func(m *memTable) { m.closed = true }, want: model.ErrClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &memTable{rows: stored(body, 100)}
			if tt.change != nil {
				tt.change(m)
			}
			rec := &bolt.Record{ID: model.NewPairID(), Nonce: 7}
			b := m.table(100).Body(rec, bolt.KindResponse, int64(len(body)))
			got, err := io.ReadAll(b)
			switch {
			case tt.want == nil && (err != nil || !bytes.Equal(got, body)):
				t.Fatalf("ReadAll = %d bytes, %v; want the %d bytes stored", len(got), err, len(body))
			case tt.want != nil && !errors.Is(err, tt.want):
				t.Fatalf("ReadAll = %d bytes, %v; want %v", len(got), err, tt.want)
			case tt.want != nil && len(got) >= len(body):
				t.Fatalf("ReadAll = %d bytes with %v; want a short read", len(got), err)
			}
			if bad := len(m.bad) > 0; bad != tt.wantBad || bad && m.bad[0] != rec.ID {
				t.Errorf("noted bad = %v; want %v", m.bad, tt.wantBad)
			}
		})
	}
}

// TestChunkTableReadAhead: a body is read ReadAhead bytes per Chunks call
// (at least two chunks), not a chunk per call nor all at once.
func TestChunkTableReadAhead(t *testing.T) {
	body := bytes.Repeat([]byte{'x'}, 1000)
	m := &memTable{rows: stored(body, 100)}
	tb := m.table(100) // 2 chunks per call
	if _, err := io.ReadAll(tb.Body(&bolt.Record{ID: model.NewPairID()}, bolt.KindRequest, 1000)); err != nil {
		t.Fatal(err)
	}
	// marker + chunk 0, then 1-2, 3-4, 5-6, 7-8, 9.
	if m.calls != 6 {
		t.Errorf("Chunks calls = %d; want 6", m.calls)
	}
}

func TestChunkTableEmptyAndClosedBody(t *testing.T) {
	m := &memTable{removed: true}
	tb := m.table(100)
	if got, err := io.ReadAll(tb.Body(&bolt.Record{}, bolt.KindRequest, 0)); err != nil || len(got) != 0 || m.calls != 0 {
		t.Errorf("empty body: ReadAll = %q, %v after %d queries; want nothing, no query", got, err, m.calls)
	}
	m = &memTable{rows: stored([]byte("abc"), 100)}
	b := m.table(100).Body(&bolt.Record{ID: model.NewPairID()}, bolt.KindRequest, 3)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Read(make([]byte, 10)); err == nil {
		t.Errorf("Read after Close = nil error; want one")
	}
}
