package model

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestFilterMatch(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	pair := func(state PairState, key, url string, created, expires time.Time) PairInfo {
		pi := PairInfo{State: state, Key: key, Request: Request{Method: "GET", URL: url},
			Meta: PairMeta{Created: created, Expires: expires}}
		if key != "" {
			pi.Response.Status = 200
		}
		return pi
	}
	hourAgo, dayAgo := now.Add(-time.Hour), now.Add(-25*time.Hour)
	live := pair(StateComplete, "GET https://example.com/a", "https://Example.COM:443/a#frag", hourAgo, now.Add(time.Hour))
	expired := pair(StateComplete, "GET https://example.com/b", "https://example.com/b?x=1", dayAgo, now)
	noExpiry := pair(StateComplete, "GET http://example.com/", "http://example.com", dayAgo, time.Time{})
	incomplete := pair(StateIncomplete, "", "https://example.com/a", hourAgo, time.Time{})
	deleted := pair(StateDeleted, "GET https://example.com/a", "https://example.com/a", dayAgo, time.Time{})
	odd := pair(StateComplete, "k", "%zz not a url", hourAgo, time.Time{})
	all := []PairInfo{live, expired, noExpiry, incomplete, deleted, odd}
	names := []string{"live", "expired", "noExpiry", "incomplete", "deleted", "odd"}

	tests := []struct {
		name string
		f    Filter
		want []string
	}{
		{"zero matches all", Filter{}, names},
		{"keys: complete pairs", Filter{Keys: []string{"GET https://example.com/a", "k"}}, []string{"live", "odd"}},
		{"keys and another state", Filter{Keys: []string{"GET https://example.com/a"}, State: StateDeleted}, nil},
		{"empty key matches no incomplete pair", Filter{Keys: []string{""}}, nil},
		{"key prefix", Filter{KeyPrefix: "GET https://"}, []string{"live", "expired", "deleted"}},
		{"url normalised", Filter{URL: "HTTPS://example.com/a"}, []string{"live", "incomplete", "deleted"}},
		{"url default port and empty path", Filter{URL: "http://EXAMPLE.com:80"}, []string{"noExpiry"}},
		{"url keeps the query", Filter{URL: "https://example.com/b"}, nil},
		{"url that does not parse compared as written", Filter{URL: "k"}, nil},
		{"url prefix", Filter{URLPrefix: "https://example.com/"}, []string{"live", "expired", "incomplete", "deleted"}},
		{"state", Filter{State: StateIncomplete}, []string{"incomplete"}},
		{"expired", Filter{Expired: true}, []string{"expired"}},
		{"older than", Filter{OlderThan: 24 * time.Hour}, []string{"expired", "noExpiry", "deleted"}},
		{"older than, exactly the age", Filter{OlderThan: time.Hour}, []string{"expired", "noExpiry", "deleted"}},
		{"criteria combine", Filter{URLPrefix: "https://example.com", State: StateComplete, OlderThan: time.Minute}, []string{"live", "expired"}},
		{"func last", Filter{State: StateComplete, Func: func(pi PairInfo) bool { return pi.Meta.Expires.IsZero() }}, []string{"noExpiry", "odd"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := tt.f.Matcher(now)
			if err != nil {
				t.Fatalf("Matcher() error = %v", err)
			}
			var got []string
			for i, pi := range all {
				if m.Match(pi) {
					got = append(got, names[i])
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("%+v matches %v; want %v", tt.f, got, tt.want)
			}
		})
	}
}

func TestFilterInvalid(t *testing.T) {
	for _, f := range []Filter{
		{State: 9},
		{OlderThan: -time.Second},
		{URL: "http://a b/%zz"},
		{URLPrefix: "://"},
	} {
		if _, err := f.Matcher(time.Now()); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v.Matcher() error = %v; want ErrInvalid", f, err)
		}
	}
}

func TestFilterIsZero(t *testing.T) {
	if !(Filter{}).IsZero() {
		t.Error("Filter{}.IsZero() = false")
	}
	for _, f := range []Filter{{Keys: []string{""}}, {Expired: true}, {State: StateDeleted}, {Func: func(PairInfo) bool { return true }}} {
		if f.IsZero() {
			t.Errorf("%+v.IsZero() = true", f)
		}
	}
}

func TestNormalURL(t *testing.T) {
	for in, want := range map[string]string{
		"HTTP://Example.com:80":            "http://example.com/",
		"https://example.com:443/a?b#c":    "https://example.com/a?b",
		"https://example.com:8443/A":       "https://example.com:8443/A",
		"http://example.com:443/":          "http://example.com:443/",
		"http://[::1]:80/x":                "http://[::1]:80/x",
		"u":                                "u",
		"%zz":                              "%zz",
		"mailto:someone@example.com":       "mailto:someone@example.com",
		"https://example.com/%7Ea?q=1&r=2": "https://example.com/%7Ea?q=1&r=2",
	} {
		if got := normalURL(in); got != want {
			t.Errorf("normalURL(%q) = %q; want %q", in, got, want)
		}
	}
}

func TestLooksNormal(t *testing.T) {
	for in, want := range map[string]bool{
		"https://example.com/a?b=c&d": true,
		"http://example.com:8080/":    true,
		"http://example.com:80/":      false,
		"https://example.com":         false,
		"https://Example.com/":        false,
		"https://example.com/a#f":     false,
		"https://example.com/%7E":     false,
		"https://u@example.com/":      false,
		"ftp://example.com/":          false,
		"u":                           false,
	} {
		if got := looksNormal(in); got != want {
			t.Errorf("looksNormal(%q) = %v; want %v", in, got, want)
		}
		if looksNormal(in) && normalURL(in) != in {
			t.Errorf("looksNormal(%q), but normalURL gives %q", in, normalURL(in))
		}
	}
}

// FuzzLooksNormal checks that a URL looksNormal accepts is one normalURL
// leaves as it is: the fast path of URL filters never changes a match.
func FuzzLooksNormal(f *testing.F) {
	for _, s := range []string{"https://example.com/a?b=c", "http://a:80/", "https://A/", "http://a/b;c=d/../e", "https://a/?q=%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if looksNormal(s) && normalURL(s) != s {
			t.Fatalf("looksNormal(%q), but normalURL gives %q", s, normalURL(s))
		}
	})
}
