package statemachine

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func d(s int64) Delta { return Delta{Present: true, Valid: true, Seconds: s} }

var badDelta = Delta{Present: true}

// RFC 9111 §5.2 (syntax, case-insensitive names, both argument forms),
// §1.2.2 (delta-seconds), §4.2.1 (duplicates and conflicts).
func TestParseCacheControl(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		want CacheControl
	}{
		{"empty", nil, CacheControl{}},
		{"max-age", []string{"max-age=60"}, CacheControl{MaxAge: d(60)}},
		{"case-insensitive names §5.2", []string{"MAX-AGE=60, No-Store, PUBLIC"}, CacheControl{MaxAge: d(60), NoStore: true, Public: true}},
		{"quoted argument §5.2", []string{`max-age="60"`}, CacheControl{MaxAge: d(60)}},
		{"stray commas", []string{",, max-age=5 ,,, no-cache,"}, CacheControl{MaxAge: d(5), NoCache: true}},
		{"several lines", []string{"max-age=5", "must-revalidate"}, CacheControl{MaxAge: d(5), MustRevalidate: true}},
		{"huge value clamps to 2^31 §1.2.2", []string{"max-age=99999999999999999999999"}, CacheControl{MaxAge: d(MaxDelta)}},
		{"negative is invalid", []string{"max-age=-1"}, CacheControl{MaxAge: badDelta}},
		{"non-numeric is invalid", []string{"max-age=abc"}, CacheControl{MaxAge: badDelta}},
		{"fraction is invalid", []string{"max-age=1.5"}, CacheControl{MaxAge: badDelta}},
		{"missing argument is invalid", []string{"max-age"}, CacheControl{MaxAge: badDelta}},
		{"empty argument is invalid", []string{"max-age="}, CacheControl{MaxAge: badDelta}},
		{"space around = is invalid", []string{"max-age = 5"}, CacheControl{MaxAge: badDelta}},
		{"unterminated quote is invalid", []string{`max-age="5, no-store`}, CacheControl{MaxAge: badDelta}},
		{"duplicate equal values §4.2.1", []string{"max-age=5, max-age=5"}, CacheControl{MaxAge: d(5)}},
		{"duplicate conflicting values §4.2.1", []string{"max-age=5", "max-age=10"}, CacheControl{MaxAge: badDelta}},
		{"duplicate with invalid §4.2.1", []string{"max-age=5, max-age=x"}, CacheControl{MaxAge: badDelta}},
		{"conflicting directives both kept", []string{"public, private, max-age=5, no-cache"},
			CacheControl{Public: true, Private: true, MaxAge: d(5), NoCache: true}},
		{"max-stale without value §5.2.1.2", []string{"max-stale"}, CacheControl{MaxStale: d(MaxDelta)}},
		{"max-stale with value", []string{"max-stale=30"}, CacheControl{MaxStale: d(30)}},
		{"request directives §5.2.1", []string{"min-fresh=10, only-if-cached, no-transform"},
			CacheControl{MinFresh: d(10), OnlyIfCached: true, NoTransform: true}},
		{"RFC 5861 extensions", []string{"stale-while-revalidate=30, stale-if-error=600"},
			CacheControl{StaleWhileRevalidate: d(30), StaleIfError: d(600)}},
		{"s-maxage proxy-revalidate must-understand immutable", []string{"s-maxage=7, proxy-revalidate, must-understand, immutable"},
			CacheControl{SMaxAge: d(7), ProxyRevalidate: true, MustUnderstand: true, Immutable: true}},
		{"qualified no-cache §5.2.2.4", []string{`no-cache="set-cookie, x-foo"`}, CacheControl{NoCacheFields: []string{"Set-Cookie", "X-Foo"}}},
		{"qualified no-cache token form", []string{`no-cache=set-cookie`}, CacheControl{NoCacheFields: []string{"Set-Cookie"}}},
		{"qualified private §5.2.2.7", []string{`private="Authorization-Info"`}, CacheControl{PrivateFields: []string{"Authorization-Info"}}},
		{"empty qualified no-cache is unqualified", []string{`no-cache=""`}, CacheControl{NoCache: true}},
		{"malformed qualified private is unqualified", []string{`private="a b"`}, CacheControl{Private: true}},
		{"escaped quote in argument", []string{`no-cache="x\-y"`}, CacheControl{NoCacheFields: []string{"X-Y"}}},
		{"unknown directives ignored", []string{`foo, bar="baz, qux", max-age=3`}, CacheControl{MaxAge: d(3)}},
		{"bare quotes and junk", []string{`"", =, =5, "max-age=5"`}, CacheControl{}},
		{"whitespace and tabs", []string{"\tno-store \t,  public"}, CacheControl{NoStore: true, Public: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ParseCacheControl(tt.in)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseCacheControl(%q) mismatch (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func FuzzParseCacheControl(f *testing.F) {
	for _, s := range []string{
		"max-age=60", `max-age="60"`, "no-cache, no-store", `no-cache="a, b"`, `private="x\"y"`,
		",,,", `"`, `=`, "max-age=99999999999999999999", "max-age=-1", "max-stale", `s-maxage="`,
		"MUST-REVALIDATE", "stale-if-error=1, stale-while-revalidate=2", "a=b=c", "\x00\xff",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cc := ParseCacheControl(strings.Split(s, "\n"))
		for _, dl := range []Delta{cc.MaxAge, cc.SMaxAge, cc.MaxStale, cc.MinFresh, cc.StaleWhileRevalidate, cc.StaleIfError} {
			if dl.Valid && !dl.Present {
				t.Fatalf("ParseCacheControl(%q): valid delta not present: %+v", s, dl)
			}
			if dl.Valid && (dl.Seconds < 0 || dl.Seconds > MaxDelta) {
				t.Fatalf("ParseCacheControl(%q): delta out of range: %+v", s, dl)
			}
		}
		for _, f := range append(cc.NoCacheFields, cc.PrivateFields...) {
			if !isToken(f) {
				t.Fatalf("ParseCacheControl(%q): field name %q is not a token", s, f)
			}
		}
		again := ParseCacheControl(strings.Split(s, "\n"))
		if !cmp.Equal(cc, again) {
			t.Fatalf("ParseCacheControl(%q) is not deterministic", s)
		}
	})
}

// TestParseCacheControlNameCase checks that every directive name is
// recognised in any case, with and without an argument, as in lower case
// (RFC 9111 §5.2), and that an unknown name in upper case records nothing.
func TestParseCacheControlNameCase(t *testing.T) {
	for _, name := range directiveNames {
		for _, arg := range []string{"", "=5", `="X-A"`} {
			want := ParseCacheControl([]string{name + arg})
			for _, in := range []string{strings.ToUpper(name), strings.ToUpper(name[:1]) + name[1:], name[:len(name)-1] + strings.ToUpper(name[len(name)-1:])} {
				if got := ParseCacheControl([]string{in + arg}); !cmp.Equal(got, want) {
					t.Errorf("ParseCacheControl(%q) = %+v; want %+v", in+arg, got, want)
				}
			}
		}
	}
	if got := ParseCacheControl([]string{"X-MAX-AGE=5, PUBLICS, Max-Agee=1"}); !cmp.Equal(got, CacheControl{}) {
		t.Errorf("ParseCacheControl of unknown names = %+v; want none recorded", got)
	}
}
