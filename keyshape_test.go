package hishel

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hishel-go/hishel/model"
)

func TestGlob(t *testing.T) {
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{"utm_*", "utm_source", true},
		{"utm_*", "utm_", true},
		{"utm_*", "xutm_source", false},
		{"api_key", "api_key", true},
		{"api_key", "api_keys", false},
		{"*", "", true},
		{"", "", true},
		{"", "a", false},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"*.example.com/*", "cdn.example.com/a/b", true},
		{"*.example.com/*", "example.com/a", false},
		{"example.com/*.json*", "example.com/a/b.json?x=1", true},
		{"example.com/*.json*", "example.com/a/b.jsonp", true},
		{"a*b*c", "aXXbYYc", true},
		{"a*b*c", "aXXbYY", false},
		{"**", "anything/at/all", true},
		{"é?", "éa", true},
		{"?", "é", true},
		{"*ü", "grün-ü", true},
	}
	for _, tt := range tests {
		if got := glob(tt.pattern, tt.s); got != tt.want {
			t.Errorf("glob(%q, %q) = %v; want %v", tt.pattern, tt.s, got, tt.want)
		}
	}
}

func FuzzGlob(f *testing.F) {
	for _, s := range []string{"utm_*", "a?c", "*.example.com/*", "**", "é?"} {
		f.Add(s, "utm_source.example.com/é")
	}
	f.Fuzz(func(t *testing.T, pattern, s string) {
		got := glob(pattern, s)
		// A pattern without wildcards matches itself alone; a star
		// appended matches every extension of what it matched.
		if !strings.ContainsAny(pattern, "*?") && got != (pattern == s) {
			t.Fatalf("glob(%q, %q) = %v for a literal pattern", pattern, s, got)
		}
		if got && !glob(pattern+"*", s+"tail") {
			t.Fatalf("glob(%q, %q) but not glob(%q, %q)", pattern, s, pattern+"*", s+"tail")
		}
	})
}

func TestStrip(t *testing.T) {
	k, err := newKeyShape(&Options{IgnoreParams: []string{"utm_*", "api_key"}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		in, want string
	}{
		{"https://x/a", "https://x/a"},
		{"https://x/a?id=1", "https://x/a?id=1"},
		{"https://x/a?utm_source=n&id=1&utm_medium=m", "https://x/a?id=1"},
		{"https://x/a?b=2&a=1&api_key=s3cret", "https://x/a?b=2&a=1"},
		{"https://x/a?utm%5Fsource=n", "https://x/a"},
		{"https://x/a?api_key", "https://x/a"},
		{"https://x/a?api_key=1&&b=%zz", "https://x/a?&b=%zz"},
		{"https://x/a?id=1&api_keys=2", "https://x/a?id=1&api_keys=2"},
		{"https://x/a?utm_source=n#frag", "https://x/a#frag"},
	}
	for _, tt := range tests {
		u, err := url.Parse(tt.in)
		if err != nil {
			t.Fatal(err)
		}
		got := k.strip(u)
		if got.String() != tt.want {
			t.Errorf("strip(%s) = %s; want %s", tt.in, got, tt.want)
		}
		if (got == u) != (tt.in == tt.want) {
			t.Errorf("strip(%s): a copy = %v; want a copy only when something goes", tt.in, got != u)
		}
		if u.String() != tt.in {
			t.Errorf("strip(%s) changed its argument to %s", tt.in, u)
		}
	}
	u, _ := url.Parse("https://x/a?utm_source=1")
	u.ForceQuery = true
	if got := k.strip(u).String(); got != "https://x/a" {
		t.Errorf("strip of a URL whose query all goes = %s; want no ?", got)
	}
}

func TestSuffix(t *testing.T) {
	k, err := newKeyShape(&Options{MatchHeaders: []string{"x-tenant", "Accept-Language", "X-Tenant"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := k.headers; len(got) != 2 || got[0] != "Accept-Language" || got[1] != "X-Tenant" {
		t.Fatalf("MatchHeaders became %v; want [Accept-Language X-Tenant]", got)
	}
	h := func(kv ...string) http.Header {
		out := http.Header{}
		for i := 0; i+1 < len(kv); i += 2 {
			out.Add(kv[i], kv[i+1])
		}
		return out
	}
	a := k.suffix(h("X-Tenant", "alpha", "Accept-Language", "en", "Other", "x"))
	same := []http.Header{
		h("Accept-Language", "en", "X-Tenant", "alpha"),
		h("X-Tenant", "alpha", "Accept-Language", "en", "Other", "y"),
	}
	for _, hd := range same {
		if got := k.suffix(hd); got != a {
			t.Errorf("suffix(%v) = %s; want %s, as for the same values", hd, got, a)
		}
	}
	differ := []http.Header{
		h("X-Tenant", "beta", "Accept-Language", "en"),
		h("X-Tenant", "alpha"),
		h("X-Tenant", "alpha", "Accept-Language", ""),
		h("X-Tenant", "alpha", "Accept-Language", "en", "Accept-Language", "fr"),
		h("X-Tenant", "alphaen"),
		h("X-Tenant", "alpha:", "Accept-Language", "en"),
		{},
	}
	seen := map[string]bool{a: true}
	for _, hd := range differ {
		got := k.suffix(hd)
		if seen[got] {
			t.Errorf("suffix(%v) = %s, as for other values", hd, got)
		}
		seen[got] = true
	}
	if !strings.HasPrefix(a, matchSep) || strings.Contains(a, "alpha") {
		t.Errorf("suffix = %q; want %q and a hash, no value", a, matchSep)
	}
	if got := (&keyShape{}).suffix(h("X-Tenant", "a")); got != "" {
		t.Errorf("suffix without MatchHeaders = %q; want empty", got)
	}
}

func TestURLRules(t *testing.T) {
	rules, err := newURLRules([]URLRule{
		{Pattern: "https://API.example.com/live", NoCache: true},
		{Pattern: "*.example.com/static/", TTL: model.NoExpiry},
		{Pattern: "example.com/*.json", TTL: time.Minute},
		{Pattern: "example.com", TTL: time.Hour},
		{Pattern: "example.org:8080/a?x=*", TTL: 2 * time.Hour},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		url  string
		want string // the rule's pattern, or "" for none
	}{
		{"https://api.example.com/live/feed", "https://API.example.com/live"},
		{"http://api.example.com:80/live", "https://API.example.com/live"},
		{"https://cdn.example.com/static/app.js", "*.example.com/static/"},
		{"https://example.com/static/app.js", "example.com"},
		{"https://EXAMPLE.com:443/data/x.json?v=2", "example.com/*.json"},
		{"https://example.com", "example.com"},
		{"https://example.com.evil/", ""},
		{"https://example.com:8443/", ""},
		{"https://example.org:8080/a?x=1&y=2", "example.org:8080/a?x=*"},
		{"https://example.org:8080/a?y=2", ""},
	}
	for _, tt := range tests {
		u, err := url.Parse(tt.url)
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		if r := rules.match(u); r != nil {
			got = r.Pattern
		}
		if got != tt.want {
			t.Errorf("rule for %s = %q; want %q", tt.url, got, tt.want)
		}
	}
}
