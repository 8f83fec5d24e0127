package statemachine

import (
	"net/http"
	"testing"
	"time"

	"github.com/hishel-go/hishel/model"
)

// A shared cache stores a response with Set-Cookie only when the origin
// gave it explicit freshness (Expires, max-age, s-maxage): on heuristic
// freshness, or none, it would serve one user's cookie to the next.
func TestStoreSetCookieShared(t *testing.T) {
	lm := httpDate(t0.Add(-48 * time.Hour))
	tests := []struct {
		name             string
		resp             http.Header
		want, wantShared string
	}{
		{"heuristic (Last-Modified)", hdr("Last-Modified", lm, "Set-Cookie", "session=a"), "StoreAndUse", "CouldNotBeStored"},
		{"public, heuristic", hdr("Cache-Control", "public", "Last-Modified", lm, "Set-Cookie", "session=a"), "StoreAndUse", "CouldNotBeStored"},
		{"no-cache with a validator", hdr("Cache-Control", "no-cache", "ETag", `"v"`, "Set-Cookie", "session=a"), "StoreAndUse", "CouldNotBeStored"},
		{"max-age", hdr("Cache-Control", "max-age=60", "Set-Cookie", "session=a"), "StoreAndUse", "StoreAndUse"},
		{"s-maxage", hdr("Cache-Control", "s-maxage=60", "Set-Cookie", "session=a"), "CouldNotBeStored", "StoreAndUse"},
		{"Expires", hdr("Expires", httpDate(t0.Add(time.Hour)), "Set-Cookie", "session=a"), "StoreAndUse", "StoreAndUse"},
		{"heuristic without Set-Cookie", hdr("Last-Modified", lm), "StoreAndUse", "StoreAndUse"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			modes(t, func(t *testing.T, shared bool) {
				now := t0
				o := Options{Shared: shared, Now: clock(&now)}
				miss, ok := (&IdleClient{Options: &o}).Next(get(nil), nil).(*CacheMiss)
				if !ok {
					t.Fatal("IdleClient.Next with no pairs is not a CacheMiss")
				}
				got := miss.Next(model.Response{Status: 200, Header: tt.resp})
				if want := pick(shared, tt.want, tt.wantShared); kind(got) != want {
					t.Errorf("CacheMiss.Next(%v) = %s (%v); want %s", tt.resp, kind(got), got.Why(), want)
				}
			})
		})
	}
}
