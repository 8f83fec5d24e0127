package statemachine

import "strings"

// weightedMember is one member of an Accept-Encoding or Accept-Language
// field: its value, compared case-insensitively, and its weight in
// thousandths (RFC 9110 §12.4.2; 1000 when absent).
type weightedMember struct {
	value string
	q     int
}

// maxWeighted is the most members weightedListsMatch normalises; longer
// fields are compared as they are. Requests list a handful.
const maxWeighted = 16

// weightedListsMatch compares two Accept-Encoding or Accept-Language
// fields by their meaning (RFC 9111 §4.1: normalising in a way known to
// have identical semantics): as lists whose members are case-insensitive
// (content-codings, RFC 9110 §8.4.1; language ranges, RFC 4647 §2) and
// whose order and whitespace do not matter, while each member's weight
// still counts ("gzip" and "gzip;q=1.0" match, "gzip;q=0.5" does not).
// ok is false when either field does not follow the grammar (RFC 9110
// §12.5.3, §12.5.4) or has more than maxWeighted members; the caller then
// compares the fields as they are. It does not allocate.
func weightedListsMatch(a, b []string) (match, ok bool) {
	if (len(a) == 0) != (len(b) == 0) {
		// Absent and empty differ: an empty Accept-Encoding refuses every
		// content coding, an absent one accepts any (RFC 9110 §12.5.3).
		return false, true
	}
	if la, wa := bareLength(a); !wa {
		if lb, wb := bareLength(b); !wb && la != lb {
			// Without weights, lists of the same members have the same
			// characters but for whitespace and commas: the usual other
			// variant is told apart without parsing.
			return false, true
		}
	}
	var am, bm [maxWeighted]weightedMember
	na, ok := parseWeighted(a, &am)
	if !ok {
		return false, false
	}
	nb, ok := parseWeighted(b, &bm)
	if !ok {
		return false, false
	}
	if na != nb {
		return false, true
	}
	var used [maxWeighted]bool
	for i := range na {
		found := false
		for j := range nb {
			if !used[j] && am[i].q == bm[j].q && strings.EqualFold(am[i].value, bm[j].value) {
				used[j], found = true, true
				break
			}
		}
		if !found {
			return false, true
		}
	}
	return true, true
}

// bareLength counts the characters of lines other than whitespace and
// commas, and reports whether any is a ";" (a weight, most likely).
func bareLength(lines []string) (n int, weighted bool) {
	for _, l := range lines {
		for i := 0; i < len(l); i++ {
			switch l[i] {
			case ' ', '\t', ',':
			case ';':
				return n, true
			default:
				n++
			}
		}
	}
	return n, false
}

// parseWeighted parses the lines of a field whose members are a token (or
// language range) with an optional weight, 1#( value [ weight ] ), into
// out, and returns how many there are.
func parseWeighted(lines []string, out *[maxWeighted]weightedMember) (int, bool) {
	n := 0
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
			if !isToken(value) || n == maxWeighted {
				return 0, false
			}
			m := weightedMember{value: value, q: 1000}
			if hasParam {
				name, qv, ok := strings.Cut(trimOWS(param), "=")
				if !ok || (name != "q" && name != "Q") {
					return 0, false
				}
				if m.q, ok = parseQValue(qv); !ok {
					return 0, false
				}
			}
			out[n] = m
			n++
		}
	}
	return n, true
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
