package statemachine

import (
	"net/http"
	"strings"
	"time"
)

// ParseHTTPDate parses an HTTP-date (RFC 9110 §5.6.7) in any of its three
// formats, and nothing else:
//
//	IMF-fixdate  Sun, 06 Nov 1994 08:49:37 GMT
//	rfc850-date  Sunday, 06-Nov-94 08:49:37 GMT
//	asctime-date Sun Nov  6 08:49:37 1994
//
// Day and month names are matched case-insensitively, as recipients should
// be lenient with them (RFC 9110 §5.6.7; RFC 9111 §4.2); everything else is
// strict, "GMT" included. The day name must be a valid one but is not
// checked against the date. The day must
// exist in its month, hours run 00-23, minutes 00-59 and seconds 00-60 (a
// leap second). A two-digit rfc850 year is read as the most recent year
// with those digits that is not more than 50 years after now (RFC 9110
// §5.6.7), with now taken from the clock passed in; a zero now uses the
// current time. Surrounding spaces and tabs are ignored. ok is false for
// anything else, such as "0", "-1" or a time zone other than GMT.
func ParseHTTPDate(s string, now time.Time) (t time.Time, ok bool) {
	s = trimOWS(s)
	switch {
	case len(s) == 29 && s[3] == ',':
		return parseIMFFixdate(s)
	case len(s) == 24 && s[3] == ' ':
		return parseASCTime(s)
	case len(s) >= 30:
		return parseRFC850(s, now)
	}
	return time.Time{}, false
}

var shortDays = [...]string{"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"}
var longDays = [...]string{"Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"}
var months = [...]string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}

// "Sun, 06 Nov 1994 08:49:37 GMT"
func parseIMFFixdate(s string) (time.Time, bool) {
	if !isShortDay(s[0:3]) || s[4] != ' ' || s[7] != ' ' || s[11] != ' ' ||
		s[16] != ' ' || s[25:] != " GMT" {
		return time.Time{}, false
	}
	day, ok1 := digits(s[5:7])
	mon, ok2 := month(s[8:11])
	year, ok3 := digits(s[12:16])
	if !ok1 || !ok2 || !ok3 {
		return time.Time{}, false
	}
	return makeDate(year, mon, day, s[17:25])
}

// "Sun Nov  6 08:49:37 1994"
func parseASCTime(s string) (time.Time, bool) {
	if !isShortDay(s[0:3]) || s[7] != ' ' || s[10] != ' ' || s[19] != ' ' {
		return time.Time{}, false
	}
	mon, ok1 := month(s[4:7])
	var day int
	var ok2 bool
	if s[8] == ' ' {
		day, ok2 = digits(s[9:10])
	} else {
		day, ok2 = digits(s[8:10])
	}
	year, ok3 := digits(s[20:24])
	if !ok1 || !ok2 || !ok3 {
		return time.Time{}, false
	}
	return makeDate(year, mon, day, s[11:19])
}

// "Sunday, 06-Nov-94 08:49:37 GMT"
func parseRFC850(s string, now time.Time) (time.Time, bool) {
	comma := -1
	for i := 6; i <= 9 && i < len(s); i++ {
		if s[i] == ',' {
			comma = i
			break
		}
	}
	if comma < 0 || !isLongDay(s[:comma]) {
		return time.Time{}, false
	}
	r := s[comma:]
	// ", 06-Nov-94 08:49:37 GMT"
	if len(r) != 24 || r[1] != ' ' || r[4] != '-' || r[8] != '-' || r[11] != ' ' || r[20:] != " GMT" {
		return time.Time{}, false
	}
	day, ok1 := digits(r[2:4])
	mon, ok2 := month(r[5:8])
	yy, ok3 := digits(r[9:11])
	if !ok1 || !ok2 || !ok3 {
		return time.Time{}, false
	}
	if now.IsZero() {
		now = time.Now()
	}
	cur := now.UTC().Year()
	year := cur - cur%100 + yy
	if year > cur+50 {
		year -= 100
	}
	return makeDate(year, mon, day, r[12:20])
}

// makeDate validates the fields and the "HH:MM:SS" clock.
func makeDate(year int, mon time.Month, day int, clock string) (time.Time, bool) {
	if clock[2] != ':' || clock[5] != ':' {
		return time.Time{}, false
	}
	h, ok1 := digits(clock[0:2])
	m, ok2 := digits(clock[3:5])
	sec, ok3 := digits(clock[6:8])
	if !ok1 || !ok2 || !ok3 || h > 23 || m > 59 || sec > 60 {
		return time.Time{}, false
	}
	if day < 1 || day > daysIn(mon, year) {
		return time.Time{}, false
	}
	return time.Date(year, mon, day, h, m, sec, 0, time.UTC), true
}

// daysIn is the number of days in month m of year (proleptic Gregorian).
func daysIn(m time.Month, year int) int {
	switch m {
	case time.February:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case time.April, time.June, time.September, time.November:
		return 30
	}
	return 31
}

// digits parses a fixed-width run of ASCII digits.
func digits(s string) (int, bool) {
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, s != ""
}

func month(s string) (time.Month, bool) {
	switch s { // as written by nearly every sender
	case "Jan":
		return time.January, true
	case "Feb":
		return time.February, true
	case "Mar":
		return time.March, true
	case "Apr":
		return time.April, true
	case "May":
		return time.May, true
	case "Jun":
		return time.June, true
	case "Jul":
		return time.July, true
	case "Aug":
		return time.August, true
	case "Sep":
		return time.September, true
	case "Oct":
		return time.October, true
	case "Nov":
		return time.November, true
	case "Dec":
		return time.December, true
	}
	for i, m := range months {
		if strings.EqualFold(s, m) {
			return time.Month(i + 1), true
		}
	}
	return 0, false
}

func isShortDay(s string) bool {
	switch s { // as written by nearly every sender
	case "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun":
		return true
	}
	for _, d := range shortDays {
		if strings.EqualFold(s, d) {
			return true
		}
	}
	return false
}

func isLongDay(s string) bool {
	for _, d := range longDays {
		if strings.EqualFold(s, d) {
			return true
		}
	}
	return false
}

// headerDate parses the first line of a date field in h. present reports
// that the field exists; ok that its first line is a valid HTTP-date.
func headerDate(h http.Header, name string, now time.Time) (t time.Time, present, ok bool) {
	vs := h[name]
	if len(vs) == 0 {
		return time.Time{}, false, false
	}
	t, ok = ParseHTTPDate(vs[0], now)
	return t, true, ok
}
