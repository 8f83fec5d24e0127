package statemachine

import (
	"net/http"
	"testing"
	"time"

	"github.com/hishel-go/hishel/model"
)

// A stored response without a validator is of use for its freshness
// lifetime less its age, plus its longer stale-* window: StoreAndUse says
// so in MaxTTL. With a validator, or when stale responses may be served
// however stale, there is no such bound.
func TestStoreAndUseMaxTTL(t *testing.T) {
	lm := httpDate(t0.Add(-48 * time.Hour))
	tests := []struct {
		name string
		opts Options
		resp http.Header
		want time.Duration
	}{
		{"max-age", Options{}, hdr("Cache-Control", "max-age=60"), 60 * time.Second},
		{"max-age less Age", Options{}, hdr("Cache-Control", "max-age=60", "Age", "20"), 40 * time.Second},
		{"max-age less the apparent age", Options{}, hdr("Cache-Control", "max-age=60", "Date", httpDate(t0.Add(-15*time.Second))), 45 * time.Second},
		{"stale-while-revalidate", Options{}, hdr("Cache-Control", "max-age=60, stale-while-revalidate=30"), 90 * time.Second},
		{"the longer window", Options{}, hdr("Cache-Control", "max-age=60, stale-while-revalidate=30, stale-if-error=600"), 660 * time.Second},
		{"stale on arrival, a window left", Options{}, hdr("Cache-Control", "max-age=0, stale-if-error=60", "Age", "10"), 50 * time.Second},
		{"stale beyond its window on arrival", Options{}, hdr("Cache-Control", "max-age=10, stale-if-error=5", "Age", "100"), time.Nanosecond},
		{"Expires", Options{}, hdr("Expires", httpDate(t0.Add(time.Hour))), time.Hour},
		{"ETag: revalidated later", Options{}, hdr("Cache-Control", "max-age=60", "ETag", `"a"`), 0},
		{"Last-Modified: revalidated later", Options{}, hdr("Cache-Control", "max-age=60", "Last-Modified", lm), 0},
		{"AllowStale serves it however stale", Options{AllowStale: true}, hdr("Cache-Control", "max-age=60"), 0},
		{"ForceCache", Options{ForceCache: true}, hdr("Cache-Control", "max-age=60"), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := t0
			o := tt.opts
			o.Now = clock(&now)
			miss := (&IdleClient{Options: &o}).Next(get(nil), nil).(*CacheMiss)
			st, ok := miss.Next(model.Response{Status: 200, Header: tt.resp}).(*StoreAndUse)
			if !ok {
				t.Fatalf("CacheMiss.Next(%v) is not StoreAndUse", tt.resp)
			}
			if st.MaxTTL != tt.want {
				t.Errorf("StoreAndUse.MaxTTL for %v = %v; want %v", tt.resp, st.MaxTTL, tt.want)
			}
		})
	}
}

// Freshness reports what Next judges: lifetime, age and when the response
// is (or was) fresh until.
func TestFreshness(t *testing.T) {
	tests := []struct {
		name   string
		shared bool
		p      model.CompletePair
		want   Freshness
	}{
		{"fresh", false, stored(10*time.Second, hdr("Cache-Control", "max-age=60")),
			Freshness{Lifetime: time.Minute, Age: 10 * time.Second, FreshUntil: t0.Add(50 * time.Second)}},
		{"stale", false, stored(90*time.Second, hdr("Cache-Control", "max-age=60")),
			Freshness{Lifetime: time.Minute, Age: 90 * time.Second, FreshUntil: t0.Add(-30 * time.Second)}},
		{"s-maxage in a shared cache", true, stored(0, hdr("Cache-Control", "max-age=60, s-maxage=600")),
			Freshness{Lifetime: 10 * time.Minute, FreshUntil: t0.Add(10 * time.Minute)}},
		{"heuristic", false, stored(0, hdr("Last-Modified", httpDate(t0.Add(-100*time.Hour)))),
			Freshness{Lifetime: 10 * time.Hour, Heuristic: true, FreshUntil: t0.Add(10 * time.Hour)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := t0
			o := Options{Shared: tt.shared, Now: clock(&now)}
			got := o.Freshness(&tt.p)
			if got != tt.want || got.Fresh() != (tt.want.Lifetime > tt.want.Age) {
				t.Errorf("Freshness() = %+v; want %+v", got, tt.want)
			}
		})
	}
}
