package backend

import (
	"bytes"
	"testing"
)

// FillChunk cuts any sequence of reads into chunks of exactly size bytes
// (the last one shorter), and a small body costs its own size.
func TestFillChunk(t *testing.T) {
	tests := []struct {
		name    string
		reads   []int
		size    int
		wantCap int // capacity of the first chunk, if the body is under size
	}{
		{"one small read", []int{1024}, 64 << 10, 1024},
		{"tiny read", []int{10}, 64 << 10, 512},
		{"two small reads", []int{600, 424}, 64 << 10, 4 << 10},
		{"reads of 4 KiB", []int{4096, 4096, 4096, 4096, 100}, 64 << 10, 32 << 10},
		{"exact chunks", []int{16, 16, 16}, 16, 0},
		{"reads across chunks", []int{7, 30, 1, 50, 3}, 16, 0},
		{"one read of many chunks", []int{100}, 16, 0},
		{"empty reads", []int{0, 5, 0, 11}, 16, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var all []byte
			var cur []byte
			var chunks [][]byte
			for i, n := range tt.reads {
				p := bytes.Repeat([]byte{byte('a' + i)}, n)
				all = append(all, p...)
				for len(p) > 0 {
					var full bool
					cur, p, full = FillChunk(cur, p, tt.size)
					if full {
						chunks = append(chunks, cur)
						cur = nil
					}
				}
			}
			if tt.wantCap != 0 && len(chunks) == 0 && cap(cur) != tt.wantCap {
				t.Errorf("chunk capacity = %d; want %d", cap(cur), tt.wantCap)
			}
			for i, c := range chunks {
				if len(c) != tt.size {
					t.Errorf("chunk %d has %d bytes; want %d", i, len(c), tt.size)
				}
			}
			if len(cur) >= tt.size {
				t.Errorf("tail of %d bytes; want under %d", len(cur), tt.size)
			}
			if got := bytes.Join(append(chunks, cur), nil); !bytes.Equal(got, all) {
				t.Errorf("chunks join to %q; want %q", got, all)
			}
		})
	}
}
