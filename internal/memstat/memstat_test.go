package memstat

import (
	"runtime"
	"testing"
)

var sink []byte

// Peak sees memory that was allocated and touched while it sampled, and
// Anon counts some memory at all.
func TestPeak(t *testing.T) {
	if Anon() <= 0 {
		t.Fatalf("Anon() = %d; want the process's anonymous memory", Anon())
	}
	runtime.GC()
	done := Peak()
	sink = make([]byte, 64<<20)
	for i := range sink {
		sink[i] = 1
	}
	runtime.Gosched()
	got := done()
	sink = nil
	if got < 32<<20 {
		t.Fatalf("Peak after touching 64 MiB = %d MiB; want at least 32", got>>20)
	}
	if again := done(); again != got {
		t.Fatalf("second call = %d; want %d", again, got)
	}
}
