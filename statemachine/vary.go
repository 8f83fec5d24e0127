package statemachine

import (
	"slices"
	"strings"
)

// weightedMember is one member of an Accept-Encoding or Accept-Language
// field: its value, lower-cased, and its weight in thousandths (RFC 9110
// §12.4.2; 1000 when absent).
type weightedMember struct {
	value string
	q     int
}

// weightedListsMatch compares two Accept-Encoding or Accept-Language
// fields by their meaning (RFC 9111 §4.1: normalising in a way known to
// have identical semantics): as lists whose members are case-insensitive
// (content-codings, RFC 9110 §8.4.1; language ranges, RFC 4647 §2) and
// whose order and whitespace do not matter, while each member's weight
// still counts ("gzip" and "gzip;q=1.0" match, "gzip;q=0.5" does not).
// ok is false when either field does not follow the grammar (RFC 9110
// §12.5.3, §12.5.4); the caller then compares the fields as they are.
func weightedListsMatch(a, b []string) (match, ok bool) {
	if (len(a) == 0) != (len(b) == 0) {
		// Absent and empty differ: an empty Accept-Encoding refuses every
		// content coding, an absent one accepts any (RFC 9110 §12.5.3).
		return false, true
	}
	am, ok := parseWeighted(a)
	if !ok {
		return false, false
	}
	bm, ok := parseWeighted(b)
	if !ok {
		return false, false
	}
	if len(am) != len(bm) {
		return false, true
	}
	cmp := func(x, y weightedMember) int {
		if c := strings.Compare(x.value, y.value); c != 0 {
			return c
		}
		return x.q - y.q
	}
	slices.SortFunc(am, cmp)
	slices.SortFunc(bm, cmp)
	return slices.Equal(am, bm), true
}

// parseWeighted parses the lines of a field whose members are a token (or
// language range) with an optional weight: 1#( value [ weight ] ).
func parseWeighted(lines []string) ([]weightedMember, bool) {
	var out []weightedMember
	for _, line := range lines {
		for line != "" {
			var elem string
			elem, line, _ = strings.Cut(line, ",")
			elem = trimOWS(elem)
			if elem == "" {
				continue // empty list elements are allowed and ignored (RFC 9110 §5.6.1)
			}
			value, param, hasParam := strings.Cut(elem, ";")
			value = trimOWS(value)
			if !isToken(value) {
				return nil, false
			}
			m := weightedMember{value: strings.ToLower(value), q: 1000}
			if hasParam {
				name, qv, ok := strings.Cut(trimOWS(param), "=")
				if !ok || (name != "q" && name != "Q") {
					return nil, false
				}
				if m.q, ok = parseQValue(qv); !ok {
					return nil, false
				}
			}
			out = append(out, m)
		}
	}
	return out, true
}

// parseQValue parses qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
// (RFC 9110 §12.4.2) into thousandths.
func parseQValue(s string) (int, bool) {
	if s == "" || len(s) > 5 || (s[0] != '0' && s[0] != '1') {
		return 0, false
	}
	q := int(s[0]-'0') * 1000
	if len(s) == 1 {
		return q, true
	}
	if s[1] != '.' {
		return 0, false
	}
	scale := 100
	for i := 2; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' || (q == 1000 && c != '0') {
			return 0, false
		}
		q += int(c-'0') * scale
		scale /= 10
	}
	return q, true
}
