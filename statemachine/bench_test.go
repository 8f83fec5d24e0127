package statemachine

import (
	"fmt"
	"testing"
	"time"

	"github.com/hishel-go/hishel/model"
)

// variants returns n stored variants of one URL, Vary: Accept-Language,
// with realistic response headers; the request matches the last one.
func variants(n int) ([]model.CompletePair, model.Request) {
	pairs := make([]model.CompletePair, n)
	for i := range pairs {
		p := stored(time.Duration(i+1)*time.Second, hdr(
			"Cache-Control", "public, max-age=3600",
			"Content-Type", "text/html; charset=utf-8",
			"Content-Length", "5120",
			"Etag", fmt.Sprintf(`"v%d"`, i),
			"Last-Modified", httpDate(t0.Add(-48*time.Hour)),
			"Vary", "Accept-Encoding, Accept-Language",
		))
		p.Request.Header = hdr("Accept-Encoding", "gzip, br", "Accept-Language", fmt.Sprintf("lang-%d", i), "User-Agent", "bench")
		pairs[i] = p
	}
	return pairs, get(hdr("Accept-Encoding", "gzip, br", "Accept-Language", fmt.Sprintf("lang-%d", n-1), "User-Agent", "bench"))
}

func benchIdle(b *testing.B, n int, shared bool) {
	pairs, req := variants(n)
	benchPairs(b, pairs, req, shared)
}

func benchPairs(b *testing.B, pairs []model.CompletePair, req model.Request, shared bool) {
	now := t0
	s := &IdleClient{Options: &Options{Shared: shared, Now: clock(&now)}}
	if _, ok := s.Next(req, pairs).(*FromCache); !ok {
		b.Fatal("benchmark request is not a hit")
	}
	b.ReportAllocs()
	for b.Loop() {
		s.Next(req, pairs)
	}
}

func BenchmarkIdleClient1Variant(b *testing.B)         { benchIdle(b, 1, false) }
func BenchmarkIdleClient16Variants(b *testing.B)       { benchIdle(b, 16, false) }
func BenchmarkIdleClient16VariantsShared(b *testing.B) { benchIdle(b, 16, true) }

func BenchmarkIdleClientRevalidate(b *testing.B) {
	pairs, req := variants(16)
	now := t0.Add(2 * time.Hour)
	s := &IdleClient{Options: &Options{Now: clock(&now)}}
	if _, ok := s.Next(req, pairs).(*NeedRevalidation); !ok {
		b.Fatal("benchmark request does not revalidate")
	}
	b.ReportAllocs()
	for b.Loop() {
		s.Next(req, pairs)
	}
}

func BenchmarkParseCacheControl(b *testing.B) {
	v := []string{`public, max-age=3600, s-maxage=600, stale-while-revalidate=30, must-revalidate`}
	b.ReportAllocs()
	for b.Loop() {
		ParseCacheControl(v)
	}
}

func BenchmarkParseHTTPDate(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		ParseHTTPDate("Sun, 06 Nov 1994 08:49:37 GMT", t0)
	}
}

// BenchmarkIdleClientTargeted is a shared hit whose freshness comes from
// CDN-Cache-Control, parsed as a Structured Fields Dictionary on every
// use; compare it with BenchmarkIdleClient1VariantShared, the same hit by
// Cache-Control.
func BenchmarkIdleClientTargeted(b *testing.B) {
	pairs, req := variants(1)
	pairs[0].Response.Header["Cdn-Cache-Control"] = []string{"max-age=3600, stale-while-revalidate=60"}
	pairs[0].Response.Header["Cache-Control"] = []string{"no-store"}
	benchPairs(b, pairs, req, true)
}

func BenchmarkIdleClient1VariantShared(b *testing.B) { benchIdle(b, 1, true) }
