package statemachine

import (
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hishel-go/hishel/model"
)

type idleCase struct {
	name       string
	opts       Options // Shared and Now are set by the test
	req        model.Request
	pairs      []model.CompletePair
	want       string // kind of the state, private cache (and shared unless wantShared)
	wantShared string
	section    string // the Reason's section, when checked
	check      func(t *testing.T, s IdleNext)
}

// runIdle runs each case for a private and a shared cache, each with
// Options.ReuseHeaders off and on: the outcome must be the same, and the
// pairs must come back unchanged, except, with ReuseHeaders, the header of
// the pair a FromCache without Revalidate serves, which becomes its
// Served.Header.
func runIdle(t *testing.T, tests []idleCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			modes(t, func(t *testing.T, shared bool) {
				var served [2]http.Header
				for i, reuse := range []bool{false, true} {
					served[i] = runIdleOnce(t, tt, shared, reuse)
				}
				if !cmp.Equal(served[0], served[1]) {
					t.Errorf("served header with ReuseHeaders = %v; without = %v", served[1], served[0])
				}
			})
		})
	}
}

// runIdleOnce runs one case in one mode and returns the served header, if
// any.
func runIdleOnce(t *testing.T, tt idleCase, shared, reuse bool) (served http.Header) {
	t.Helper()
	now := t0
	o := tt.opts
	o.Shared, o.ReuseHeaders = shared, reuse
	o.Now = clock(&now)
	req := tt.req
	if req.Method == "" {
		req = get(nil)
	}
	reqBefore := req.Header.Clone()
	pairs := clonePairs(tt.pairs) // ReuseHeaders may change them
	before := clonePairs(pairs)
	got := (&IdleClient{Options: &o}).Next(req, pairs)
	name := "copy"
	if reuse {
		name = "reuse"
	}
	t.Run(name, func(t *testing.T) {
		want := pick(shared, tt.want, tt.wantShared)
		if kind(got) != want {
			t.Fatalf("IdleClient.Next(%s %v) = %s (%v); want %s", req.Method, req.Header, kind(got), got.Why(), want)
		}
		if tt.section != "" && want == tt.want && got.Why().Section != tt.section {
			t.Errorf("IdleClient.Next reason = %v; want section %s", got.Why(), tt.section)
		}
		if !cmp.Equal(reqBefore, req.Header) {
			t.Errorf("IdleClient.Next modified the request header: %v, was %v", req.Header, reqBefore)
		}
		reused := -1 // the pair whose header may change
		if fc, ok := got.(*FromCache); ok {
			served = fc.Header
			if len(fc.Header["Age"]) != 1 {
				t.Errorf("FromCache header has Age %q; want one generated Age (RFC 9111 §5.1)", fc.Header["Age"])
			}
			if reuse && fc.Revalidate == nil {
				reused = slices.IndexFunc(pairs, func(p model.CompletePair) bool { return p.ID == fc.Pair.ID })
				if reused < 0 {
					t.Fatalf("FromCache.Pair %v is none of the pairs", fc.Pair.ID)
				}
				// A 304 has a header of its own; a pair without a header map
				// is served from a new one.
				if h := pairs[reused].Response.Header; fc.Status != http.StatusNotModified && h != nil && !sameMap(h, fc.Header) {
					t.Errorf("ReuseHeaders: FromCache.Header is not the served pair's header map")
				}
			}
		}
		for i := range pairs {
			if i != reused && !cmp.Equal(pairs[i], before[i], cmpPairs) {
				t.Errorf("IdleClient.Next modified pair %d: %v, was %v", i, pairs[i].Response.Header, before[i].Response.Header)
			}
		}
		if tt.check != nil {
			tt.check(t, got)
		}
	})
	return served
}

// clonePairs copies pairs with header maps of their own.
func clonePairs(pairs []model.CompletePair) []model.CompletePair {
	out := slices.Clone(pairs)
	for i := range out {
		out[i].Request.Header = out[i].Request.Header.Clone()
		out[i].Response.Header = out[i].Response.Header.Clone()
	}
	return out
}

// sameMap reports whether a and b are one map.
func sameMap(a, b http.Header) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

// cmpPairs compares pairs by their exported fields; bodies are compared by
// identity.
var cmpPairs = cmp.Comparer(func(a, b *model.Body) bool { return a == b })

func header(t *testing.T, s IdleNext) http.Header {
	t.Helper()
	switch v := s.(type) {
	case *FromCache:
		return v.Header
	case *NeedRevalidation:
		return v.Request.Header
	}
	t.Fatalf("no header in %T", s)
	return nil
}

func wantField(name, want string) func(t *testing.T, s IdleNext) {
	return func(t *testing.T, s IdleNext) {
		t.Helper()
		if got := strings.Join(header(t, s)[http.CanonicalHeaderKey(name)], "|"); got != want {
			t.Errorf("%s = %q; want %q", name, got, want)
		}
	}
}

// RFC 9111 §4 (reuse), §4.2.1 (freshness lifetime), §4.2.2 (heuristics),
// §4.2.3 (age), §5.1 (Age), §5.3 (Expires).
func TestIdleFreshness(t *testing.T) {
	cc := func(v string) http.Header { return hdr("Cache-Control", v) }
	runIdle(t, []idleCase{
		{name: "§4 nothing stored", want: "CacheMiss", section: "RFC 9111 §4"},
		{name: "§4.2.1 max-age fresh", pairs: []model.CompletePair{stored(30*time.Second, cc("max-age=60"))},
			want: "FromCache", section: "RFC 9111 §4.2", check: wantField("Age", "30")},
		{name: "§4.2.1 max-age stale", pairs: []model.CompletePair{stored(90*time.Second, cc("max-age=60"))},
			want: "NeedRevalidation"},
		{name: "§4.2.1 s-maxage wins in shared cache only", pairs: []model.CompletePair{stored(30*time.Second, cc("max-age=60, s-maxage=10"))},
			want: "FromCache", wantShared: "NeedRevalidation"},
		{name: "§4.2.1 s-maxage longer than max-age", pairs: []model.CompletePair{stored(90*time.Second, cc("max-age=60, s-maxage=100"))},
			want: "NeedRevalidation", wantShared: "FromCache"},
		{name: "§4.2.1 max-age beats Expires", pairs: []model.CompletePair{stored(90*time.Second,
			hdr("Cache-Control", "max-age=60", "Expires", httpDate(t0.Add(time.Hour))))},
			want: "NeedRevalidation"},
		{name: "§5.3 Expires fresh", pairs: []model.CompletePair{stored(30*time.Second, hdr("Expires", httpDate(t0.Add(30*time.Second))))},
			want: "FromCache"},
		{name: "§5.3 Expires relative to Date, not to now", pairs: []model.CompletePair{stored(30*time.Second,
			hdr("Date", httpDate(t0.Add(-time.Hour)), "Expires", httpDate(t0.Add(-time.Hour+time.Minute))))},
			want: "NeedRevalidation"},
		{name: "§5.3 Expires in rfc850 format", pairs: []model.CompletePair{stored(30*time.Second,
			hdr("Expires", t0.Add(time.Hour).Format("Monday, 02-Jan-06 15:04:05 GMT")))},
			want: "FromCache"},
		{name: "§5.3 Expires in asctime format", pairs: []model.CompletePair{stored(30*time.Second,
			hdr("Expires", t0.Add(time.Hour).Format(time.ANSIC)))},
			want: "FromCache"},
		{name: "§5.3 invalid Expires 0 is expired", pairs: []model.CompletePair{stored(time.Second, hdr("Expires", "0"))},
			want: "NeedRevalidation"},
		{name: "§5.3 malformed Expires is expired", pairs: []model.CompletePair{stored(time.Second, hdr("Expires", "tomorrow"))},
			want: "NeedRevalidation"},
		{name: "§4.2.1 conflicting Expires lines are expired", pairs: []model.CompletePair{stored(time.Second,
			hdr("Expires", httpDate(t0.Add(time.Hour)), "Expires", httpDate(t0.Add(2*time.Hour))))},
			want: "NeedRevalidation"},
		{name: "§4.2.1 invalid max-age is stale", pairs: []model.CompletePair{stored(time.Second, cc("max-age=abc"))},
			want: "NeedRevalidation"},
		{name: "§4.2.1 negative max-age is stale", pairs: []model.CompletePair{stored(time.Second, cc("max-age=-5"))},
			want: "NeedRevalidation"},
		{name: "§4.2.1 conflicting max-age is stale", pairs: []model.CompletePair{stored(time.Second, cc("max-age=60, max-age=30"))},
			want: "NeedRevalidation"},
		{name: "§4.2.1 repeated equal max-age", pairs: []model.CompletePair{stored(time.Second, hdr("Cache-Control", "max-age=60", "Cache-Control", "max-age=60"))},
			want: "FromCache"},
		{name: "§5.2 directive names are case-insensitive", pairs: []model.CompletePair{stored(time.Second, cc("MAX-AGE=60"))},
			want: "FromCache"},
		{name: "§5.2 quoted max-age", pairs: []model.CompletePair{stored(time.Second, cc(`max-age="60"`))},
			want: "FromCache"},
		{name: "§1.2.2 huge max-age", pairs: []model.CompletePair{stored(24*time.Hour, cc("max-age=999999999999999999999"))},
			want: "FromCache"},
		{name: "§4.2.1 no-cache beats max-age", pairs: []model.CompletePair{stored(time.Second, cc("max-age=60, no-cache"))},
			want: "NeedRevalidation", section: "RFC 9111 §5.2.2.4"},
		{name: "§4.2.2 heuristic: 10% of time since Last-Modified", pairs: []model.CompletePair{stored(time.Hour,
			hdr("Last-Modified", httpDate(t0.Add(-time.Hour-20*time.Hour))))},
			want: "FromCache", check: func(t *testing.T, s IdleNext) {
				if got := s.(*FromCache).Lifetime; got != 2*time.Hour {
					t.Errorf("heuristic lifetime = %v; want 2h", got)
				}
			}},
		{name: "§4.2.2 heuristic expired", pairs: []model.CompletePair{stored(3*time.Hour,
			hdr("Last-Modified", httpDate(t0.Add(-3*time.Hour-20*time.Hour))))},
			want: "NeedRevalidation"},
		{name: "§4.2.2 heuristic capped", pairs: []model.CompletePair{stored(25*time.Hour,
			hdr("Last-Modified", httpDate(t0.Add(-1000*time.Hour))))},
			want: "NeedRevalidation"},
		{name: "§4.2.2 heuristics disabled", opts: Options{DisableHeuristics: true}, pairs: []model.CompletePair{stored(time.Hour,
			hdr("Last-Modified", httpDate(t0.Add(-100*time.Hour))))},
			want: "NeedRevalidation"},
		{name: "§4.2.2 heuristic fraction and cap options", opts: Options{HeuristicFraction: 0.5, HeuristicMax: 1000 * time.Hour},
			pairs: []model.CompletePair{stored(40*time.Hour, hdr("Last-Modified", httpDate(t0.Add(-140*time.Hour))))},
			want:  "FromCache"},
		{name: "§4.2.2 Last-Modified after Date gives no heuristic", pairs: []model.CompletePair{stored(time.Second,
			hdr("Last-Modified", httpDate(t0.Add(time.Hour))))},
			want: "NeedRevalidation"},
		{name: "§4.2.2 no heuristic for a 302", pairs: []model.CompletePair{stored(time.Hour,
			hdr(":status", "302", "Last-Modified", httpDate(t0.Add(-100*time.Hour))))},
			want: "NeedRevalidation"},
		{name: "§4.2.2 heuristic for a public 302", pairs: []model.CompletePair{stored(time.Hour,
			hdr(":status", "302", "Cache-Control", "public", "Last-Modified", httpDate(t0.Add(-100*time.Hour))))},
			want: "FromCache"},
		{name: "§4.2.2 heuristic for a 404", pairs: []model.CompletePair{stored(time.Hour,
			hdr(":status", "404", "Last-Modified", httpDate(t0.Add(-100*time.Hour))))},
			want: "FromCache"},
		{name: "§4.2.3 Age adds to the age", pairs: []model.CompletePair{stored(20*time.Second, hdr("Cache-Control", "max-age=60", "Age", "50"))},
			want: "NeedRevalidation"},
		{name: "§4.2.3 Age is in the generated Age", pairs: []model.CompletePair{stored(20*time.Second, hdr("Cache-Control", "max-age=600", "Age", "50"))},
			want: "FromCache", check: wantField("Age", "70")},
		{name: "§5.1 malformed Age is ignored", pairs: []model.CompletePair{stored(20*time.Second, hdr("Cache-Control", "max-age=60", "Age", "lots"))},
			want: "FromCache", check: wantField("Age", "20")},
		{name: "§5.1 negative Age is ignored", pairs: []model.CompletePair{stored(20*time.Second, hdr("Cache-Control", "max-age=60", "Age", "-100"))},
			want: "FromCache", check: wantField("Age", "20")},
		{name: "§5.1 list Age uses the first member", pairs: []model.CompletePair{stored(20*time.Second, hdr("Cache-Control", "max-age=60", "Age", "10, 1000"))},
			want: "FromCache", check: wantField("Age", "30")},
		{name: "§1.2.2 huge Age is 2^31", pairs: []model.CompletePair{stored(time.Second, hdr("Cache-Control", "max-age=60", "Age", "99999999999999999999999"))},
			want: "NeedRevalidation"},
		{name: "§4.2.3 apparent age from Date", pairs: []model.CompletePair{stored(20*time.Second,
			hdr("Cache-Control", "max-age=60", "Date", httpDate(t0.Add(-70*time.Second))))},
			want: "NeedRevalidation"},
		{name: "§4.2.3 Date in the future is no negative age", pairs: []model.CompletePair{stored(20*time.Second,
			hdr("Cache-Control", "max-age=60", "Date", httpDate(t0.Add(time.Hour))))},
			want: "FromCache", check: wantField("Age", "20")},
		{name: "§4.2.3 no Date uses the response time", pairs: []model.CompletePair{stored(20*time.Second,
			hdr("Cache-Control", "max-age=60", "Date", ""))},
			want: "FromCache"},
		{name: "§4.2.3 invalid Date uses the response time", pairs: []model.CompletePair{stored(20*time.Second,
			hdr("Cache-Control", "max-age=60", "Date", "yesterday"))},
			want: "FromCache"},
		{name: "§4.2.3 response delay counts", pairs: []model.CompletePair{func() model.CompletePair {
			p := stored(20*time.Second, hdr("Cache-Control", "max-age=60"))
			p.Meta.Created = p.Meta.Completed.Add(-50 * time.Second)
			return p
		}()}, want: "NeedRevalidation"},
	})
}

// RFC 9111 §5.2.1: request directives.
func TestIdleRequestDirectives(t *testing.T) {
	fresh := func() []model.CompletePair {
		return []model.CompletePair{stored(30*time.Second, hdr("Cache-Control", "max-age=60", "ETag", `"v1"`))}
	}
	staleBy30 := func(extra string) []model.CompletePair {
		return []model.CompletePair{stored(90*time.Second, hdr("Cache-Control", "max-age=60"+extra, "ETag", `"v1"`))}
	}
	req := func(kv ...string) model.Request { return get(hdr(kv...)) }
	runIdle(t, []idleCase{
		{name: "§5.2.1.1 max-age younger than the age", req: req("Cache-Control", "max-age=10"), pairs: fresh(),
			want: "NeedRevalidation", section: "RFC 9111 §5.2.1.1"},
		{name: "§5.2.1.1 max-age older than the age", req: req("Cache-Control", "max-age=40"), pairs: fresh(), want: "FromCache"},
		{name: "§5.2.1.1 max-age=0", req: req("Cache-Control", "max-age=0"), pairs: fresh(), want: "NeedRevalidation"},
		{name: "§5.2.1.1 invalid max-age forces validation", req: req("Cache-Control", "max-age=soon"), pairs: fresh(), want: "NeedRevalidation"},
		{name: "§5.2.1.2 max-stale covers the staleness", req: req("Cache-Control", "max-stale=60"), pairs: staleBy30(""),
			want: "FromCache(stale)", section: "RFC 9111 §5.2.1.2"},
		{name: "§5.2.1.2 max-stale without value", req: req("Cache-Control", "max-stale"), pairs: staleBy30(""), want: "FromCache(stale)"},
		{name: "§5.2.1.2 max-stale too small", req: req("Cache-Control", "max-stale=10"), pairs: staleBy30(""), want: "NeedRevalidation"},
		{name: "§5.2.1.2 invalid max-stale allows nothing", req: req("Cache-Control", "max-stale=x"), pairs: staleBy30(""), want: "NeedRevalidation"},
		{name: "§5.2.2.2 must-revalidate beats max-stale", req: req("Cache-Control", "max-stale"), pairs: staleBy30(", must-revalidate"),
			want: "NeedRevalidation", section: "RFC 9111 §5.2.2.2"},
		{name: "§5.2.2.8 proxy-revalidate binds shared caches", req: req("Cache-Control", "max-stale"), pairs: staleBy30(", proxy-revalidate"),
			want: "FromCache(stale)", wantShared: "NeedRevalidation"},
		{name: "§5.2.2.10 s-maxage implies proxy-revalidate", req: req("Cache-Control", "max-stale"),
			pairs: []model.CompletePair{stored(90*time.Second, hdr("Cache-Control", "max-age=60, s-maxage=60"))},
			want:  "FromCache(stale)", wantShared: "NeedRevalidation"},
		{name: "§5.2.1.3 min-fresh not met", req: req("Cache-Control", "min-fresh=40"), pairs: fresh(),
			want: "NeedRevalidation", section: "RFC 9111 §5.2.1.3"},
		{name: "§5.2.1.3 min-fresh met", req: req("Cache-Control", "min-fresh=20"), pairs: fresh(), want: "FromCache"},
		{name: "§5.2.1.3 invalid min-fresh forces validation", req: req("Cache-Control", "min-fresh=-1"), pairs: fresh(), want: "NeedRevalidation"},
		{name: "§5.2.1.4 no-cache", req: req("Cache-Control", "no-cache"), pairs: fresh(),
			want: "NeedRevalidation", section: "RFC 9111 §5.2.1.4"},
		{name: "§5.2.1.4 No-Cache in capitals", req: req("Cache-Control", "No-Cache"), pairs: fresh(), want: "NeedRevalidation"},
		{name: "§5.4 Pragma: no-cache without Cache-Control", req: req("Pragma", "no-cache"), pairs: fresh(),
			want: "NeedRevalidation", section: "RFC 9111 §5.2.1.4"},
		{name: "§5.4 Pragma ignored with Cache-Control", req: req("Pragma", "no-cache", "Cache-Control", "max-age=100"), pairs: fresh(), want: "FromCache"},
		{name: "§5.2.1.5 no-store still reads the cache", req: req("Cache-Control", "no-store"), pairs: fresh(), want: "FromCache"},
		{name: "§5.2.1.7 only-if-cached with nothing stored", req: req("Cache-Control", "only-if-cached"),
			want: "GatewayTimeout", section: "RFC 9111 §5.2.1.7", check: func(t *testing.T, s IdleNext) {
				if st := s.(*GatewayTimeout).Status; st != 504 {
					t.Errorf("GatewayTimeout.Status = %d; want 504", st)
				}
			}},
		{name: "§5.2.1.7 only-if-cached with a stale response", req: req("Cache-Control", "only-if-cached"), pairs: staleBy30(""), want: "GatewayTimeout"},
		{name: "§5.2.1.7 only-if-cached with a fresh response", req: req("Cache-Control", "only-if-cached"), pairs: fresh(), want: "FromCache"},
		{name: "§5.2.1.7 only-if-cached and max-stale", req: req("Cache-Control", "only-if-cached, max-stale"), pairs: staleBy30(""), want: "FromCache(stale)"},
		{name: "§5.2.1.7 only-if-cached with origin preconditions", req: req("Cache-Control", "only-if-cached", "If-Match", `"v1"`),
			pairs: fresh(), want: "GatewayTimeout"},
		{name: "§4.2.1 conflicting request max-age forces validation", req: req("Cache-Control", "max-age=100", "Cache-Control", "max-age=1000"),
			pairs: fresh(), want: "NeedRevalidation"},
		{name: "§5.2 malformed request Cache-Control", req: req("Cache-Control", `,,"max-age=,=,no-cache="`), pairs: fresh(), want: "FromCache"},
	})
}

// RFC 9111 §5.2.2: response directives, and RFC 5861.
func TestIdleResponseDirectives(t *testing.T) {
	p := func(ago time.Duration, kv ...string) []model.CompletePair {
		return []model.CompletePair{stored(ago, hdr(kv...))}
	}
	runIdle(t, []idleCase{
		{name: "§5.2.2.4 no-cache on a fresh response", pairs: p(time.Second, "Cache-Control", "max-age=60, no-cache", "ETag", `"a"`),
			want: "NeedRevalidation", section: "RFC 9111 §5.2.2.4"},
		{name: "§5.2.2.4 qualified no-cache strips the fields", pairs: p(time.Second, "Cache-Control", `max-age=60, no-cache="Set-Cookie, X-Token"`,
			"Set-Cookie", "a=b", "X-Token", "t", "X-Other", "o"),
			want: "FromCache", check: func(t *testing.T, s IdleNext) {
				h := s.(*FromCache).Header
				if h["Set-Cookie"] != nil || h["X-Token"] != nil || h.Get("X-Other") != "o" {
					t.Errorf("FromCache header = %v; want Set-Cookie and X-Token removed, X-Other kept", h)
				}
			}},
		{name: "§5.4 Pragma: no-cache in a response without Cache-Control", pairs: p(time.Second, "Pragma", "no-cache", "Expires", httpDate(t0.Add(time.Hour))),
			want: "NeedRevalidation"},
		{name: "§5.2.2.2 must-revalidate while fresh", pairs: p(time.Second, "Cache-Control", "max-age=60, must-revalidate"), want: "FromCache"},
		{name: "§5.2.2.2 must-revalidate once stale", pairs: p(time.Minute*2, "Cache-Control", "max-age=60, must-revalidate"), want: "NeedRevalidation"},
		{name: "RFC 8246 immutable ignores a reload's max-age=0", req: get(hdr("Cache-Control", "max-age=0")),
			pairs: p(time.Second, "Cache-Control", "max-age=60, immutable"), want: "FromCache"},
		{name: "RFC 8246 immutable honours no-cache", req: get(hdr("Cache-Control", "no-cache")),
			pairs: p(time.Second, "Cache-Control", "max-age=60, immutable"), want: "NeedRevalidation"},
		{name: "RFC 8246 immutable does not extend freshness", req: get(hdr("Cache-Control", "max-age=0")),
			pairs: p(2*time.Minute, "Cache-Control", "max-age=60, immutable"), want: "NeedRevalidation"},
		{name: "RFC 5861 §3 stale-while-revalidate window", pairs: p(90*time.Second, "Cache-Control", "max-age=60, stale-while-revalidate=60", "ETag", `"a"`),
			want: "FromCache+revalidate", section: "RFC 5861 §3", check: func(t *testing.T, s IdleNext) {
				fc := s.(*FromCache)
				if !fc.Stale || fc.Revalidate.Request.Header.Get("If-None-Match") != `"a"` {
					t.Errorf("FromCache = stale %v, background request %v; want stale with a conditional request", fc.Stale, fc.Revalidate.Request.Header)
				}
			}},
		{name: "RFC 5861 §3 past the stale-while-revalidate window", pairs: p(150*time.Second, "Cache-Control", "max-age=60, stale-while-revalidate=60"),
			want: "NeedRevalidation"},
		{name: "RFC 5861 §3 stale-while-revalidate and must-revalidate", pairs: p(90*time.Second, "Cache-Control", "max-age=60, stale-while-revalidate=60, must-revalidate"),
			want: "NeedRevalidation"},
		{name: "RFC 5861 §3 stale-while-revalidate and s-maxage in a shared cache", pairs: p(90*time.Second, "Cache-Control", "s-maxage=60, max-age=60, stale-while-revalidate=60"),
			want: "FromCache+revalidate", wantShared: "NeedRevalidation"},
		{name: "RFC 5861 §3 invalid stale-while-revalidate", pairs: p(90*time.Second, "Cache-Control", "max-age=60, stale-while-revalidate=x"),
			want: "NeedRevalidation"},
		{name: "§5.2.2.7 private is served by a private cache", pairs: p(time.Second, "Cache-Control", "max-age=60, private"), want: "FromCache"},
	})
}

// RFC 9111 §3.5: Authorization in shared caches; §4: methods and
// preconditions; options.
func TestIdleRequests(t *testing.T) {
	authPair := func(cc string) []model.CompletePair {
		return []model.CompletePair{withReq(stored(time.Second, hdr("Cache-Control", cc)), hdr("Authorization", "Bearer x"))}
	}
	fresh := []model.CompletePair{stored(time.Second, hdr("Cache-Control", "max-age=60", "ETag", `"v1"`, "Last-Modified", httpDate(t0.Add(-time.Hour)), "Content-Length", "10"))}
	req := func(method string, kv ...string) model.Request {
		r := get(hdr(kv...))
		r.Method = method
		return r
	}
	headPair := stored(time.Second, hdr("Cache-Control", "max-age=60"))
	headPair.Request.Method = "HEAD"
	partial := stored(time.Second, hdr(":status", "206", "Cache-Control", "max-age=60"))
	runIdle(t, []idleCase{
		{name: "§3.5 authorized response without permission", pairs: authPair("max-age=60"),
			want: "FromCache", wantShared: "CacheMiss"},
		{name: "§3.5 public allows it", pairs: authPair("max-age=60, public"), want: "FromCache"},
		{name: "§3.5 s-maxage allows it", pairs: authPair("s-maxage=60, max-age=60"), want: "FromCache"},
		{name: "§3.5 must-revalidate allows it", pairs: authPair("max-age=60, must-revalidate"), want: "FromCache"},
		{name: "§3.5 authorized request", req: req("GET", "Authorization", "Basic eA=="), pairs: []model.CompletePair{stored(time.Second, hdr("Cache-Control", "max-age=60"))},
			want: "FromCache", wantShared: "CacheMiss"},
		{name: "§4 HEAD is answered from a stored GET", req: req("HEAD"), pairs: fresh, want: "FromCache"},
		{name: "§4 GET is not answered from a stored HEAD", pairs: []model.CompletePair{headPair}, want: "CacheMiss"},
		{name: "§3.4 stored partial content is not used", pairs: []model.CompletePair{partial}, want: "CacheMiss"},
		{name: "§4 unsafe methods are written through", req: req("POST"), pairs: fresh, want: "WriteThrough", section: "RFC 9111 §4"},
		{name: "§4.4 unknown methods are unsafe", req: req("PURGE"), pairs: fresh, want: "WriteThrough"},
		{name: "§3 safe methods not cached", req: req("OPTIONS"), pairs: fresh, want: "CacheMiss", section: "RFC 9111 §3"},
		{name: "SupportedMethods opts in to POST", opts: Options{SupportedMethods: []string{"GET", "POST"}},
			req: req("POST"), pairs: func() []model.CompletePair {
				p := stored(time.Second, hdr("Cache-Control", "max-age=60"))
				p.Request.Method = "POST"
				return []model.CompletePair{p}
			}(), want: "FromCache"},
		{name: "§4.3.2 If-Match goes to the origin", req: req("GET", "If-Match", `"v1"`), pairs: fresh, want: "CacheMiss", section: "RFC 9111 §4.3.2"},
		{name: "§4.3.2 If-Unmodified-Since goes to the origin", req: req("GET", "If-Unmodified-Since", httpDate(t0)), pairs: fresh, want: "CacheMiss"},
		{name: "§4.3.2 If-None-Match answered with 304", req: req("GET", "If-None-Match", `"x", W/"v1"`), pairs: fresh, want: "FromCache",
			check: func(t *testing.T, s IdleNext) {
				fc := s.(*FromCache)
				if fc.Status != 304 || fc.Header.Get("Etag") != `"v1"` || fc.Header["Content-Length"] != nil || fc.Header.Get("Age") == "" {
					t.Errorf("FromCache = %d %v; want 304 with ETag and Age, without Content-Length", fc.Status, fc.Header)
				}
			}},
		{name: "§4.3.2 If-None-Match * answered with 304", req: req("GET", "If-None-Match", `*`), pairs: fresh, want: "FromCache",
			check: func(t *testing.T, s IdleNext) {
				if st := s.(*FromCache).Status; st != 304 {
					t.Errorf("Status = %d; want 304", st)
				}
			}},
		{name: "§4.3.2 If-None-Match mismatch beats If-Modified-Since", req: req("GET", "If-None-Match", `"x"`, "If-Modified-Since", httpDate(t0)),
			pairs: fresh, want: "FromCache", check: func(t *testing.T, s IdleNext) {
				if st := s.(*FromCache).Status; st != 200 {
					t.Errorf("Status = %d; want 200", st)
				}
			}},
		{name: "§4.3.2 If-Modified-Since answered with 304", req: req("GET", "If-Modified-Since", httpDate(t0.Add(-time.Minute))), pairs: fresh, want: "FromCache",
			check: func(t *testing.T, s IdleNext) {
				if st := s.(*FromCache).Status; st != 304 {
					t.Errorf("Status = %d; want 304", st)
				}
			}},
		{name: "§4.3.2 If-Modified-Since before Last-Modified", req: req("GET", "If-Modified-Since", httpDate(t0.Add(-2*time.Hour))), pairs: fresh, want: "FromCache",
			check: func(t *testing.T, s IdleNext) {
				if st := s.(*FromCache).Status; st != 200 {
					t.Errorf("Status = %d; want 200", st)
				}
			}},
		{name: "AlwaysRevalidate", opts: Options{AlwaysRevalidate: true}, pairs: fresh, want: "NeedRevalidation"},
		{name: "ForceCache ignores no-store and staleness", opts: Options{ForceCache: true},
			pairs: []model.CompletePair{stored(100*time.Hour, hdr("Cache-Control", "no-store, no-cache, max-age=0", "Vary", "*"))},
			want:  "FromCache(stale)"},
		{name: "ForceCache ignores request no-cache", opts: Options{ForceCache: true}, req: req("GET", "Cache-Control", "no-cache"),
			pairs: fresh, want: "FromCache"},
		{name: "ForceCache serves a pair with no header map", opts: Options{ForceCache: true},
			pairs: []model.CompletePair{noHeader(stored(time.Hour, nil))}, want: "FromCache(stale)",
			check: wantField("Age", "3600")},
	})
}

// noHeader takes p's response header map away.
func noHeader(p model.CompletePair) model.CompletePair {
	p.Response.Header = nil
	return p
}

// RFC 9110 §14: Range requests answered from a stored complete 200.
func TestIdleRange(t *testing.T) {
	p := func(kv ...string) []model.CompletePair {
		return []model.CompletePair{stored(time.Second, hdr(append([]string{"Cache-Control", "max-age=60", "ETag", `"v1"`,
			"Last-Modified", httpDate(t0.Add(-time.Hour))}, kv...)...))}
	}
	rangeIs := func(status int, r *ByteRange, cr string) func(t *testing.T, s IdleNext) {
		return func(t *testing.T, s IdleNext) {
			fc := s.(*FromCache)
			if fc.Status != status || !cmp.Equal(fc.Range, r) || fc.Header.Get("Content-Range") != cr {
				t.Errorf("FromCache = %d %+v %q; want %d %+v %q", fc.Status, fc.Range, fc.Header.Get("Content-Range"), status, r, cr)
			}
		}
	}
	req := func(kv ...string) model.Request { return get(hdr(kv...)) }
	runIdle(t, []idleCase{
		{name: "single range", req: req("Range", "bytes=0-9"), pairs: p("Content-Length", "100"), want: "FromCache",
			check: func(t *testing.T, s IdleNext) {
				rangeIs(206, &ByteRange{0, 10}, "bytes 0-9/100")(t, s)
				if cl := s.(*FromCache).Header.Get("Content-Length"); cl != "10" {
					t.Errorf("Content-Length = %q; want 10", cl)
				}
			}},
		{name: "unsatisfiable", req: req("Range", "bytes=100-"), pairs: p("Content-Length", "100"), want: "FromCache",
			check: rangeIs(416, nil, "bytes */100")},
		{name: "multiple ranges served whole", req: req("Range", "bytes=0-1,3-4"), pairs: p("Content-Length", "100"), want: "FromCache",
			check: rangeIs(200, nil, "")},
		{name: "malformed range served whole", req: req("Range", "bytes=x"), pairs: p("Content-Length", "100"), want: "FromCache",
			check: rangeIs(200, nil, "")},
		{name: "unknown length served whole", req: req("Range", "bytes=0-9"), pairs: p(), want: "FromCache", check: rangeIs(200, nil, "")},
		{name: "bad length served whole", req: req("Range", "bytes=0-9"), pairs: p("Content-Length", "-5"), want: "FromCache", check: rangeIs(200, nil, "")},
		{name: "If-Range strong match", req: req("Range", "bytes=0-9", "If-Range", `"v1"`), pairs: p("Content-Length", "100"), want: "FromCache",
			check: rangeIs(206, &ByteRange{0, 10}, "bytes 0-9/100")},
		{name: "If-Range mismatch", req: req("Range", "bytes=0-9", "If-Range", `"v2"`), pairs: p("Content-Length", "100"), want: "FromCache",
			check: rangeIs(200, nil, "")},
		{name: "If-Range weak never matches", req: req("Range", "bytes=0-9", "If-Range", `W/"v1"`), pairs: p("Content-Length", "100"), want: "FromCache",
			check: rangeIs(200, nil, "")},
		{name: "If-Range date match", req: req("Range", "bytes=0-9", "If-Range", httpDate(t0.Add(-time.Hour))), pairs: p("Content-Length", "100"),
			want: "FromCache", check: rangeIs(206, &ByteRange{0, 10}, "bytes 0-9/100")},
		{name: "If-Range date mismatch", req: req("Range", "bytes=0-9", "If-Range", httpDate(t0)), pairs: p("Content-Length", "100"),
			want: "FromCache", check: rangeIs(200, nil, "")},
		{name: "HEAD ignores Range", req: func() model.Request { r := req("Range", "bytes=0-9"); r.Method = "HEAD"; return r }(),
			pairs: p("Content-Length", "100"), want: "FromCache", check: rangeIs(200, nil, "")},
	})
}

// RFC 9111 §4.1: Vary, and §4: the most recent matching response.
func TestIdleVary(t *testing.T) {
	variant := func(ago time.Duration, vary []string, reqKV []string, kv ...string) model.CompletePair {
		h := hdr(append([]string{"Cache-Control", "max-age=600"}, kv...)...)
		for _, v := range vary {
			h.Add("Vary", v)
		}
		return withReq(stored(ago, h), hdr(reqKV...))
	}
	served := func(want string) func(t *testing.T, s IdleNext) {
		return func(t *testing.T, s IdleNext) {
			if got := s.(*FromCache).Header.Get("X-Variant"); got != want {
				t.Errorf("served variant %q; want %q", got, want)
			}
		}
	}
	langs := []model.CompletePair{
		variant(time.Second, []string{"Accept-Language"}, []string{"Accept-Language", "en"}, "X-Variant", "en"),
		variant(time.Second, []string{"Accept-Language"}, []string{"Accept-Language", "fr"}, "X-Variant", "fr"),
		variant(time.Second, []string{"Accept-Language"}, nil, "X-Variant", "none"),
	}
	req := func(kv ...string) model.Request { return get(hdr(kv...)) }
	runIdle(t, []idleCase{
		{name: "selects en", req: req("Accept-Language", "en"), pairs: langs, want: "FromCache", check: served("en")},
		{name: "selects fr", req: req("Accept-Language", "fr"), pairs: langs, want: "FromCache", check: served("fr")},
		{name: "absent matches absent", pairs: langs, want: "FromCache", check: served("none")},
		{name: "no variant", req: req("Accept-Language", "de"), pairs: langs, want: "CacheMiss"},
		{name: "empty value is not absent", req: req("Accept-Language", ""), pairs: langs, want: "CacheMiss"},
		{name: "star never matches", pairs: []model.CompletePair{variant(time.Second, []string{"*"}, nil)}, want: "CacheMiss"},
		{name: "star anywhere in the list", pairs: []model.CompletePair{variant(time.Second, []string{"Accept, *"}, nil)}, want: "CacheMiss"},
		{name: "star on a second line", pairs: []model.CompletePair{variant(time.Second, []string{"Accept", " * "}, nil)}, want: "CacheMiss"},
		{name: "several Vary lines", req: req("Accept", "text/html", "Accept-Language", "en"),
			pairs: []model.CompletePair{
				variant(time.Second, []string{"Accept", "Accept-Language"}, []string{"Accept", "text/html", "Accept-Language", "fr"}, "X-Variant", "html-fr"),
				variant(time.Second, []string{"Accept", "Accept-Language"}, []string{"Accept", "text/html", "Accept-Language", "en"}, "X-Variant", "html-en"),
			}, want: "FromCache", check: served("html-en")},
		{name: "whitespace and case in Vary", req: req("Accept-Language", "en"),
			pairs: []model.CompletePair{variant(time.Second, []string{" ,  accept-LANGUAGE\t, "}, []string{"Accept-Language", "en"}, "X-Variant", "en")},
			want:  "FromCache", check: served("en")},
		{name: "whitespace and lines in request values", req: req("Accept-Encoding", "gzip", "Accept-Encoding", "br"),
			pairs: []model.CompletePair{variant(time.Second, []string{"Accept-Encoding"}, []string{"Accept-Encoding", " gzip ,br"}, "X-Variant", "gz")},
			want:  "FromCache", check: served("gz")},
		{name: "order of request values matters in a field not normalised", req: req("X-Pref", "br, gzip"),
			pairs: []model.CompletePair{variant(time.Second, []string{"X-Pref"}, []string{"X-Pref", "gzip, br"})},
			want:  "CacheMiss"},
		{name: "§4.1 order does not matter in Accept-Encoding", req: req("Accept-Encoding", "br, gzip"),
			pairs: []model.CompletePair{variant(time.Second, []string{"Accept-Encoding"}, []string{"Accept-Encoding", "gzip, br"})},
			want:  "FromCache"},
		{name: "§4 most recent Date wins", pairs: []model.CompletePair{
			variant(50*time.Second, nil, nil, "X-Variant", "old"),
			variant(10*time.Second, nil, nil, "X-Variant", "new"),
			variant(30*time.Second, nil, nil, "X-Variant", "middle"),
		}, want: "FromCache", check: served("new")},
		{name: "§4 most recent wins even when stale", pairs: []model.CompletePair{
			variant(5*time.Second, nil, nil, "X-Variant", "old", "Cache-Control", "max-age=1000"),
			variant(time.Second, nil, nil, "X-Variant", "new", "Cache-Control", "no-cache", "ETag", `"n"`),
		}, want: "NeedRevalidation"},
	})
}

func TestIdleClientZeroValue(t *testing.T) {
	var s IdleClient
	p := stored(0, hdr("Cache-Control", "max-age=3600"))
	p.Meta.Created, p.Meta.Completed = time.Now(), time.Now()
	p.Response.Header.Set("Date", httpDate(time.Now()))
	if got := s.Next(get(nil), []model.CompletePair{p}); kind(got) != "FromCache" {
		t.Errorf("IdleClient{}.Next = %s (%v); want FromCache", kind(got), got.Why())
	}
	var nilClient *IdleClient
	if got := nilClient.Next(get(nil), nil); kind(got) != "CacheMiss" {
		t.Errorf("(*IdleClient)(nil).Next = %s; want CacheMiss", kind(got))
	}
}
