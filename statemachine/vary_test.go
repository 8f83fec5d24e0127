package statemachine

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hishel-go/hishel/model"
)

// RFC 9111 §4.1: Accept-Encoding and Accept-Language selecting fields match
// after normalisation with identical semantics (RFC 9110 §12.5.3, §12.5.4):
// case, member order and whitespace do not matter; weights do.
func TestVaryNormalised(t *testing.T) {
	variant := func(field, storedValue string) model.CompletePair {
		h := http.Header{}
		if storedValue != "\x00" {
			h[field] = []string{storedValue}
		}
		return withReq(stored(time.Minute, hdr("Cache-Control", "max-age=600", "Vary", field)), h)
	}
	type tc struct {
		field, stored string
		req           []string // request field lines; nil: absent
		want          string
	}
	tests := []tc{
		{"Accept-Encoding", "gzip, br", []string{"br, gzip"}, "FromCache"},
		{"Accept-Encoding", "gzip, br", []string{"GZIP,BR"}, "FromCache"},
		{"Accept-Encoding", "gzip, br", []string{"br", "gzip"}, "FromCache"},
		{"Accept-Encoding", "gzip;q=1.0, br;q=0.5", []string{"br; q=0.50 , gzip"}, "FromCache"},
		{"Accept-Encoding", "gzip;q=0.5", []string{"gzip;Q=0.500"}, "FromCache"},
		{"Accept-Encoding", "gzip;q=0.5", []string{"gzip;q=0.6"}, "CacheMiss"},
		{"Accept-Encoding", "gzip, br", []string{"gzip"}, "CacheMiss"},
		{"Accept-Encoding", "gzip", []string{"gzip, gzip"}, "CacheMiss"},
		{"Accept-Encoding", "gzip;q=0", []string{"gzip"}, "CacheMiss"},
		{"Accept-Encoding", "", nil, "CacheMiss"},              // empty refuses codings; absent accepts any
		{"Accept-Encoding", "\x00", []string{""}, "CacheMiss"}, // and the other way round
		{"Accept-Encoding", "gzip, , br", []string{"br,gzip,"}, "FromCache"},
		{"Accept-Encoding", "gzip;q=2", []string{"gzip;q=2"}, "FromCache"}, // malformed: compared as it is
		{"Accept-Encoding", "gzip;q=2", []string{"GZIP;q=2"}, "CacheMiss"},
		{"Accept-Encoding", "gzip;level=1", []string{"GZIP;level=1"}, "CacheMiss"},
		{"Accept-Language", "en-US, fr;q=0.8", []string{"fr;q=0.8, EN-us"}, "FromCache"},
		{"Accept-Language", "da, en-gb;q=0.8, en;q=0.7", []string{"en;q=0.7,da,en-GB;q=0.8"}, "FromCache"},
		{"Accept-Language", "da, en;q=0.7", []string{"da, en;q=0.8"}, "CacheMiss"},
		{"Accept-Language", "*", []string{"*;q=1.000"}, "FromCache"},
		// Other fields are compared as they are, but for whitespace.
		{"Accept", "text/html, application/json", []string{"application/json, text/html"}, "CacheMiss"},
		{"Accept", "text/html,  application/json", []string{"text/html,application/json"}, "FromCache"},
	}
	var cases []idleCase
	for _, tt := range tests {
		h := http.Header{}
		if tt.req != nil {
			h[tt.field] = tt.req
		}
		cases = append(cases, idleCase{
			name:  "§4.1 " + tt.field + ": " + tt.stored + " against " + stringsOr(tt.req),
			req:   get(h),
			pairs: []model.CompletePair{variant(tt.field, tt.stored)},
			want:  tt.want,
		})
	}
	runIdle(t, cases)
}

func stringsOr(lines []string) string {
	if lines == nil {
		return "(absent)"
	}
	s := ""
	for i, l := range lines {
		if i > 0 {
			s += " | "
		}
		s += l
	}
	return s
}

func TestParseQValue(t *testing.T) {
	for in, want := range map[string]int{"0": 0, "1": 1000, "0.5": 500, "0.05": 50, "0.005": 5, "1.0": 1000, "1.000": 1000, "0.": 0, "1.": 1000} {
		if got, ok := parseQValue(in); !ok || got != want {
			t.Errorf("parseQValue(%q) = %d, %v; want %d", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "2", "1.5", "1.001", "0.0001", ".5", "-0", "0,5", "01", "0.5 "} {
		if got, ok := parseQValue(in); ok {
			t.Errorf("parseQValue(%q) = %d; want an error", in, got)
		}
	}
}

func FuzzWeightedListsMatch(f *testing.F) {
	f.Add("gzip, br;q=0.5", "BR;q=0.500,gzip")
	f.Add("en-US;q=1.000", "en-us")
	f.Add(";q=", ",,")
	f.Fuzz(func(t *testing.T, a, b string) {
		m1, ok1 := weightedListsMatch([]string{a}, []string{b})
		m2, ok2 := weightedListsMatch([]string{b}, []string{a})
		if m1 != m2 || ok1 != ok2 {
			t.Fatalf("weightedListsMatch(%q, %q) = %v, %v; reversed %v, %v", a, b, m1, ok1, m2, ok2)
		}
		if m, ok := weightedListsMatch([]string{a}, []string{a}); ok && !m {
			t.Fatalf("weightedListsMatch(%q, itself) = false", a)
		}
	})
}

// Comparing two weighted lists allocates nothing: it runs for every stored
// variant a request does not match exactly.
func TestWeightedListsMatchAllocs(t *testing.T) {
	a, b := []string{"gzip, br;q=0.5, DEFLATE"}, []string{"deflate,BR;q=0.500", "gzip"}
	if allocs := testing.AllocsPerRun(100, func() { weightedListsMatch(a, b) }); allocs != 0 {
		t.Errorf("weightedListsMatch allocates %v times; want 0", allocs)
	}
	if m, ok := weightedListsMatch(a, b); !m || !ok {
		t.Errorf("weightedListsMatch(%q, %q) = %v, %v; want a match", a, b, m, ok)
	}
	long := []string{strings.Repeat("a, ", maxWeighted) + "b"}
	if _, ok := weightedListsMatch(long, long); ok {
		t.Errorf("weightedListsMatch of %d members normalised; want them compared as they are", maxWeighted+1)
	}
}
