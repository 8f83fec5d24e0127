package statemachine

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// RFC 9110 §14.1.1 (byte ranges), §14.2 (Range), §15.3.7 (206), §15.5.17
// (416).
func TestResolveRange(t *testing.T) {
	whole := RangeAnswer{Status: 200}
	r416 := RangeAnswer{Status: 416, ContentRange: "bytes */1000"}
	tests := []struct {
		header string
		size   int64
		want   RangeAnswer
	}{
		{"bytes=0-99", 1000, RangeAnswer{206, ByteRange{0, 100}, "bytes 0-99/1000"}},
		{"bytes=500-", 1000, RangeAnswer{206, ByteRange{500, 500}, "bytes 500-999/1000"}},
		{"bytes=-200", 1000, RangeAnswer{206, ByteRange{800, 200}, "bytes 800-999/1000"}},
		{"bytes=-5000", 1000, RangeAnswer{206, ByteRange{0, 1000}, "bytes 0-999/1000"}},
		{"bytes=900-5000", 1000, RangeAnswer{206, ByteRange{900, 100}, "bytes 900-999/1000"}},
		{"bytes=999-999", 1000, RangeAnswer{206, ByteRange{999, 1}, "bytes 999-999/1000"}},
		{"BYTES=0-0", 1000, RangeAnswer{206, ByteRange{0, 1}, "bytes 0-0/1000"}},
		{"bytes= 0-9 ,", 1000, RangeAnswer{206, ByteRange{0, 10}, "bytes 0-9/1000"}},
		{"bytes=0-99999999999999999999999", 1000, RangeAnswer{206, ByteRange{0, 1000}, "bytes 0-999/1000"}},
		{"bytes=1000-", 1000, r416},
		{"bytes=1000-2000", 1000, r416},
		{"bytes=99999999999999999999999-", 1000, r416},
		{"bytes=-0", 1000, r416},
		{"bytes=0-0", 0, RangeAnswer{Status: 416, ContentRange: "bytes */0"}},
		{"bytes=-10", 0, RangeAnswer{Status: 416, ContentRange: "bytes */0"}},
		{"bytes=0-1,5-6", 1000, whole},
		{"bytes=0-1, 0-1", 1000, whole},
		{"bytes=5-1", 1000, whole},
		{"bytes=a-b", 1000, whole},
		{"bytes=-", 1000, whole},
		{"bytes=", 1000, whole},
		{"bytes=1", 1000, whole},
		{"bytes=+1-2", 1000, whole},
		{"bytes =0-1", 1000, whole},
		{"items=0-1", 1000, whole},
		{"", 1000, whole},
		{"0-1", 1000, whole},
		{"bytes=0-99", -1, whole},
	}
	for _, tt := range tests {
		got := ResolveRange(tt.header, tt.size)
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("ResolveRange(%q, %d) mismatch (-want +got):\n%s", tt.header, tt.size, diff)
		}
	}
}

func FuzzResolveRange(f *testing.F) {
	f.Add("bytes=0-99", int64(1000))
	f.Add("bytes=-5", int64(3))
	f.Add("bytes=5-", int64(0))
	f.Add("bytes=0-1,2-3", int64(10))
	f.Add("bytes=99999999999999999999-", int64(1<<62))
	f.Add("bytes=-99999999999999999999", int64(7))
	f.Add("x", int64(-1))
	f.Fuzz(func(t *testing.T, header string, size int64) {
		got := ResolveRange(header, size)
		switch got.Status {
		case 200:
			if got != (RangeAnswer{Status: 200}) {
				t.Fatalf("ResolveRange(%q, %d) = %+v; a 200 carries nothing", header, size, got)
			}
		case 206:
			r := got.Range
			if size < 0 || r.Start < 0 || r.Length <= 0 || r.Start >= size || r.Length > size-r.Start {
				t.Fatalf("ResolveRange(%q, %d) = %+v; range outside the representation", header, size, got)
			}
		case 416:
			if size < 0 || got.ContentRange == "" {
				t.Fatalf("ResolveRange(%q, %d) = %+v", header, size, got)
			}
		default:
			t.Fatalf("ResolveRange(%q, %d) = status %d", header, size, got.Status)
		}
	})
}
