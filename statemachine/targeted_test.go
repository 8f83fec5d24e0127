package statemachine

import (
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hishel-go/hishel/model"
)

// RFC 9213 §2.1 and §3: whether a response is stored, in a private cache
// (targeted fields ignored) and a shared one (the first valid targeted
// field wins over Cache-Control and Expires).
func TestTargetedStore(t *testing.T) {
	lm := httpDate(t0.Add(-48 * time.Hour))
	tests := []struct {
		name       string
		opts       Options
		resp       http.Header
		want       string
		wantShared string
		check      func(t *testing.T, shared bool, s StoreNext)
	}{
		{name: "§3 CDN-Cache-Control max-age overrides Cache-Control no-store",
			resp: hdr("Cdn-Cache-Control", "max-age=600", "Cache-Control", "no-store"),
			want: "CouldNotBeStored", wantShared: "StoreAndUse"},
		{name: "§3 CDN-Cache-Control: none lets only the CDN store", resp: hdr("Cdn-Cache-Control", "none", "Cache-Control", "no-store", "ETag", `"a"`),
			want: "CouldNotBeStored", wantShared: "StoreAndUse"},
		{name: "§2.1 no-store in the targeted field", resp: hdr("Cdn-Cache-Control", "no-store", "Cache-Control", "max-age=60"),
			want: "StoreAndUse", wantShared: "CouldNotBeStored"},
		{name: "§2.1 private in the targeted field", resp: hdr("Cdn-Cache-Control", "private, max-age=60", "Cache-Control", "public, max-age=60"),
			want: "StoreAndUse", wantShared: "CouldNotBeStored"},
		{name: "§2.1 no-store=?0 is no no-store", resp: hdr("Cdn-Cache-Control", "no-store=?0, max-age=60", "Cache-Control", "no-store"),
			want: "CouldNotBeStored", wantShared: "StoreAndUse"},
		{name: "§2.1 no-store with another value still forbids", resp: hdr("Cdn-Cache-Control", "no-store=1, max-age=60"),
			want: "CouldNotBeStored", wantShared: "CouldNotBeStored"},
		{name: "§2.1 Expires is ignored with a targeted field", resp: hdr("Cdn-Cache-Control", "must-revalidate", "Expires", httpDate(t0.Add(time.Hour))),
			want: "StoreAndUse", wantShared: "CouldNotBeStored"},
		{name: "§2.2 invalid targeted field is ignored as a whole", resp: hdr("Cdn-Cache-Control", "max-age=600,", "Cache-Control", "no-store"),
			want: "CouldNotBeStored", wantShared: "CouldNotBeStored"},
		{name: "§2.2 directive names are lower case in a Dictionary", resp: hdr("Cdn-Cache-Control", "NO-STORE", "Cache-Control", "max-age=60"),
			want: "StoreAndUse", wantShared: "StoreAndUse"},
		{name: "§2.2 empty targeted field is ignored", resp: hdr("Cdn-Cache-Control", "", "Cache-Control", "no-store"),
			want: "CouldNotBeStored", wantShared: "CouldNotBeStored"},
		{name: "§2.1 target list order: Hishel-Cache-Control first", opts: Options{TargetedFields: []string{"hishel-cache-control"}},
			resp: hdr("Hishel-Cache-Control", "max-age=60", "Cdn-Cache-Control", "no-store", "Cache-Control", "no-store"),
			want: "CouldNotBeStored", wantShared: "StoreAndUse"},
		{name: "§2.1 an invalid first field falls to the next", opts: Options{TargetedFields: []string{"Hishel-Cache-Control"}},
			resp: hdr("Hishel-Cache-Control", "max-age=\"60", "Cdn-Cache-Control", "no-store", "Cache-Control", "max-age=60"),
			want: "StoreAndUse", wantShared: "CouldNotBeStored"},
		{name: "§2.1 fields off the target list change nothing", opts: Options{IgnoreCDNCacheControl: true},
			resp: hdr("Cdn-Cache-Control", "no-store", "Other-Cache-Control", "no-store", "Cache-Control", "max-age=60"),
			want: "StoreAndUse", wantShared: "StoreAndUse"},
		{name: "§2.1 s-maxage in the targeted field", resp: hdr("Cdn-Cache-Control", "s-maxage=60", "Cache-Control", "no-store"),
			want: "CouldNotBeStored", wantShared: "StoreAndUse"},
		{name: "§2.1 private=field strips the field", resp: hdr("Cdn-Cache-Control", `private="X-User", max-age=60`, "X-User", "u", "Cache-Control", "max-age=60"),
			want: "StoreAndUse", check: func(t *testing.T, shared bool, s StoreNext) {
				h := s.(*StoreAndUse).Response.Header
				if (h.Get("X-User") == "") != shared {
					t.Errorf("stored X-User = %q (shared %v); want it stripped only by the shared cache", h.Get("X-User"), shared)
				}
				if h.Get("Cdn-Cache-Control") == "" {
					t.Errorf("stored header lacks CDN-Cache-Control; it is kept and passed on (RFC 9213 §3)")
				}
			}},
		{name: "§2.1 heuristics with an empty policy", resp: hdr("Cdn-Cache-Control", "unknown-directive", "Cache-Control", "no-store", "Last-Modified", lm),
			want: "CouldNotBeStored", wantShared: "StoreAndUse"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			modes(t, func(t *testing.T, shared bool) {
				now := t0
				o := tt.opts
				o.Shared, o.Now = shared, clock(&now)
				miss := (&IdleClient{Options: &o}).Next(get(nil), nil).(*CacheMiss)
				got := miss.Next(model.Response{Status: 200, Header: tt.resp.Clone()})
				if want := pick(shared, tt.want, tt.wantShared); kind(got) != want {
					t.Fatalf("CacheMiss.Next(%v) = %s (%v); want %s", tt.resp, kind(got), got.Why(), want)
				}
				if tt.check != nil {
					tt.check(t, shared, got)
				}
			})
		})
	}
}

// RFC 9213 §2.1: freshness from the targeted field, with Age applied
// (RFC 9111 §4.2.3), and the directives it must implement.
func TestTargetedReuse(t *testing.T) {
	runIdle(t, []idleCase{
		{name: "§2.1 max-age longer than Cache-Control's",
			pairs: []model.CompletePair{stored(5*time.Minute, hdr("Cdn-Cache-Control", "max-age=600", "Cache-Control", "max-age=60", "ETag", `"a"`))},
			want:  "NeedRevalidation", wantShared: "FromCache"},
		{name: "§2.1 max-age shorter than Cache-Control's",
			pairs: []model.CompletePair{stored(5*time.Minute, hdr("Cdn-Cache-Control", "max-age=60", "Cache-Control", "max-age=600", "ETag", `"a"`))},
			want:  "FromCache", wantShared: "NeedRevalidation"},
		{name: "§2.1 Age counts", pairs: []model.CompletePair{stored(5*time.Minute, hdr("Cdn-Cache-Control", "max-age=600", "Age", "400", "ETag", `"a"`))},
			want: "NeedRevalidation", wantShared: "NeedRevalidation"},
		{name: "§2.1 no-cache", pairs: []model.CompletePair{stored(time.Minute, hdr("Cdn-Cache-Control", "no-cache, max-age=600", "Cache-Control", "max-age=600", "ETag", `"a"`))},
			want: "FromCache", wantShared: "NeedRevalidation", section: "RFC 9111 §4.2"},
		{name: "§2.1 must-revalidate forbids max-stale",
			req:   get(hdr("Cache-Control", "max-stale")),
			pairs: []model.CompletePair{stored(5*time.Minute, hdr("Cdn-Cache-Control", "max-age=60, must-revalidate", "Cache-Control", "max-age=60", "ETag", `"a"`))},
			want:  "FromCache(stale)", wantShared: "NeedRevalidation"},
		{name: "§2.1 Expires ignored", pairs: []model.CompletePair{stored(5*time.Minute, hdr("Cdn-Cache-Control", "must-revalidate", "Expires", httpDate(t0.Add(time.Hour)), "ETag", `"a"`))},
			want: "FromCache", wantShared: "NeedRevalidation"},
		{name: "§2.1 decimal max-age is not consumed", pairs: []model.CompletePair{stored(5*time.Minute, hdr("Cdn-Cache-Control", "max-age=600.0", "Cache-Control", "max-age=600", "ETag", `"a"`))},
			want: "FromCache", wantShared: "NeedRevalidation"},
		{name: "§3.5 public in the targeted field allows Authorization", req: get(hdr("Authorization", "Basic eA==")),
			pairs: []model.CompletePair{stored(time.Minute, hdr("Cdn-Cache-Control", "public, max-age=600", "Cache-Control", "max-age=600"))},
			want:  "FromCache", wantShared: "FromCache"},
		{name: "§3.5 without public the targeted field forbids Authorization", req: get(hdr("Authorization", "Basic eA==")),
			pairs: []model.CompletePair{stored(time.Minute, hdr("Cdn-Cache-Control", "max-age=600", "Cache-Control", "public, max-age=600"))},
			want:  "FromCache", wantShared: "CacheMiss"},
	})
}

// RFC 9213 §2.1: the stored targeted field is kept, served and passed on,
// and a 304 freshens it like any other field (RFC 9111 §4.3.4).
func TestTargetedFreshen(t *testing.T) {
	now := t0
	o := &Options{Shared: true, Now: clock(&now)}
	p := stored(5*time.Minute, hdr("Cdn-Cache-Control", "max-age=60", "ETag", `"a"`))
	nr := revalidation(t, o, get(nil), p)
	got := nr.Next(model.Response{Status: 304, Header: hdr("ETag", `"a"`, "Cdn-Cache-Control", "max-age=3600")})
	up, ok := got.(*NeedToBeUpdated)
	if !ok {
		t.Fatalf("Next(304) = %s; want NeedToBeUpdated", kind(got))
	}
	if diff := cmp.Diff([]string{"max-age=3600"}, up.Updates[0].Response.Header["Cdn-Cache-Control"]); diff != "" {
		t.Errorf("freshened CDN-Cache-Control (-want +got):\n%s", diff)
	}
	now = now.Add(30 * time.Minute)
	if got := (&IdleClient{Options: o}).Next(get(nil), up.Updates); kind(got) != "FromCache" {
		t.Errorf("30 minutes after a 304 with CDN-Cache-Control: max-age=3600: %s; want FromCache", kind(got))
	}
}
