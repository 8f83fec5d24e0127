package statemachine

import (
	"net/http"
	"testing"
	"time"
)

// RFC 9110 §5.6.7: the three HTTP-date formats, strictly, except for the
// case of day and month names (RFC 9111 §4.2: recipients are lenient).
func TestParseHTTPDate(t *testing.T) {
	want := time.Date(1994, 11, 6, 8, 49, 37, 0, time.UTC)
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		in     string
		want   time.Time
		wantOK bool
	}{
		{"Sun, 06 Nov 1994 08:49:37 GMT", want, true},
		{"Sunday, 06-Nov-94 08:49:37 GMT", want, true},
		{"Sun Nov  6 08:49:37 1994", want, true},
		{"Sun Nov 06 08:49:37 1994", want, true},
		{"  Sun, 06 Nov 1994 08:49:37 GMT\t", want, true},
		{"Wednesday, 01-Jan-75 00:00:00 GMT", time.Date(2075, 1, 1, 0, 0, 0, 0, time.UTC), true},
		{"Wednesday, 01-Jan-76 00:00:00 GMT", time.Date(1976, 1, 1, 0, 0, 0, 0, time.UTC), true},
		{"Sat, 29 Feb 2020 23:59:60 GMT", time.Date(2020, 3, 1, 0, 0, 0, 0, time.UTC), true},
		{"0", time.Time{}, false},
		{"-1", time.Time{}, false},
		{"", time.Time{}, false},
		{"Sun, 06 Nov 1994 08:49:37 UTC", time.Time{}, false},
		{"Sun, 06 Nov 1994 08:49:37 gmt", time.Time{}, false},
		{"sun, 06 Nov 1994 08:49:37 GMT", want, true},
		{"SUN, 06 NOV 1994 08:49:37 GMT", want, true},
		{"Sun, 06 nov 1994 08:49:37 GMT", want, true},
		{"sUNDAY, 06-nOV-94 08:49:37 GMT", want, true},
		{"sun nov  6 08:49:37 1994", want, true},
		{"Sun, 06 Nov 1994 08:49:37 Gmt", time.Time{}, false},
		{"Sxn, 06 Nov 1994 08:49:37 GMT", time.Time{}, false},
		{"Sun, 06 Nxv 1994 08:49:37 GMT", time.Time{}, false},
		{"Sun, 6 Nov 1994 08:49:37 GMT", time.Time{}, false},
		{"Sun, 31 Nov 1994 08:49:37 GMT", time.Time{}, false},
		{"Sun, 29 Feb 1900 08:49:37 GMT", time.Time{}, false},
		{"Sun, 06 Nov 1994 24:00:00 GMT", time.Time{}, false},
		{"Sun, 06 Nov 1994 08:60:00 GMT", time.Time{}, false},
		{"Sun, 06 Nov 1994 08:49:61 GMT", time.Time{}, false},
		{"Sun, 06 Nov 1994 08:49:3x GMT", time.Time{}, false},
		{"Sun, 06 Nov 1994 08-49-37 GMT", time.Time{}, false},
		{"Sun, 06 Nov 1994 08:49:37 GMT ", want, true},
		{"Sun, 06 Nov 1994 08:49:37 GMTX", time.Time{}, false},
		{"Sunday, 06-Nov-1994 08:49:37 GMT", time.Time{}, false},
		{"Sun, 06-Nov-94 08:49:37 GMT", time.Time{}, false},
		{"Funday, 06-Nov-94 08:49:37 GMT", time.Time{}, false},
		{"Sun Nov  6 08:49:37 94", time.Time{}, false},
		{"Sun Nov 6  08:49:37 1994", time.Time{}, false},
		{"1994-11-06T08:49:37Z", time.Time{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, ok := ParseHTTPDate(tt.in, now)
			if ok != tt.wantOK || !got.Equal(tt.want) {
				t.Errorf("ParseHTTPDate(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func FuzzParseHTTPDate(f *testing.F) {
	for _, s := range []string{
		"Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994",
		"0", "", "Wednesday, 31-Dec-99 23:59:60 GMT", "Mon, 00 Jan 0000 00:00:00 GMT",
	} {
		f.Add(s)
	}
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := ParseHTTPDate(s, now)
		if !ok {
			if !got.IsZero() {
				t.Fatalf("ParseHTTPDate(%q) = %v, false; want zero time", s, got)
			}
			return
		}
		if got.Location() != time.UTC {
			t.Fatalf("ParseHTTPDate(%q) = %v; want UTC", s, got)
		}
		// Every valid date formats to an IMF-fixdate that parses back to
		// the same instant (for four-digit years).
		if got.Year() < 0 || got.Year() > 9999 {
			return
		}
		imf := got.Format(http.TimeFormat)
		back, ok := ParseHTTPDate(imf, now)
		if !ok || !back.Equal(got) {
			t.Fatalf("ParseHTTPDate(%q) = %v; reparsing %q = %v, %v", s, got, imf, back, ok)
		}
	})
}

func TestDaysIn(t *testing.T) {
	for year := 1582; year <= 2500; year++ {
		for m := time.January; m <= time.December; m++ {
			want := time.Date(year, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
			if got := daysIn(m, year); got != want {
				t.Fatalf("daysIn(%v, %d) = %d; want %d", m, year, got, want)
			}
		}
	}
}
