package hishel_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/hishel-go/hishel/model"
	"github.com/hishel-go/hishel/statemachine"
)

// A response without a validator is stored with a MaxTTL: once stale
// beyond its stale-* windows it can be neither served nor revalidated, and
// the sweep reclaims it then. One with a validator is kept.
func TestTransportReclaimsUselessPairs(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, statemachine.Options{}, nil)
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60, stale-if-error=30")
		if r.URL.Path == "/etag" {
			w.Header().Set("ETag", `"v1"`)
		}
		w.Write([]byte("body"))
	})
	for _, path := range []string{"/plain", "/etag"} {
		if code, _, _ := f.get(t, o.URL+path); code != 200 {
			t.Fatalf("GET %s = %d", path, code)
		}
	}
	maxTTL := map[string]time.Duration{}
	for p, err := range f.store.Pairs(ctx, model.Filter{}) {
		if err != nil {
			t.Fatal(err)
		}
		maxTTL[p.Request.URL] = p.Request.Options.MaxTTL
	}
	// The Date field has whole seconds: the apparent age is under 1s.
	if got := maxTTL[o.URL+"/plain"]; got <= 89*time.Second || got > 90*time.Second {
		t.Errorf("stored MaxTTL without a validator = %v; want 90s (max-age 60 + stale-if-error 30) less the age", got)
	}
	if got := maxTTL[o.URL+"/etag"]; got != 0 {
		t.Errorf("stored MaxTTL with an ETag = %v; want none", got)
	}
	f.clock.Advance(91 * time.Second)
	if _, err := f.store.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := f.store.Stats(ctx)
	if err != nil || st.Pairs != 1 {
		t.Errorf("after 91s and a sweep: Stats() = %+v, %v; want the pair with a validator alone", st, err)
	}
}
