package statemachine

import (
	"math"
	"strconv"
	"strings"
)

// ByteRange is a run of bytes of a stored body: Length bytes from offset
// Start.
type ByteRange struct {
	Start, Length int64
}

// RangeAnswer says how to answer a Range request from a complete stored
// representation.
type RangeAnswer struct {
	// Status is 200 (ignore the Range header and send the whole
	// representation), 206 (send Range) or 416 (send no content).
	Status int
	// Range is the part to send when Status is 206.
	Range ByteRange
	// ContentRange is the Content-Range field value for a 206
	// ("bytes 0-99/1000") or a 416 ("bytes */1000"); empty for a 200.
	ContentRange string
}

// ResolveRange decides how to answer the Range field value header for a
// representation of size bytes (RFC 9110 §14). It is a pure function and
// never fails:
//
//   - a single satisfiable byte range gives 206 with the range, clipped to
//     the representation (a last-pos past the end, a suffix longer than it);
//   - a single unsatisfiable range (first-pos at or past the end, a zero
//     suffix, anything on an empty representation) gives 416 with
//     "bytes */size";
//   - everything else gives 200, the whole representation, as a server MAY
//     ignore Range (§14.2): an unknown range unit, a malformed or empty
//     range set, a range whose last-pos precedes its first-pos, and
//     multiple ranges (this package does not generate multipart/byteranges),
//     as well as an unknown size (size < 0).
//
// The unit "bytes" is matched case-insensitively; whitespace is allowed
// only around the commas of the range set. Positions too large for int64
// are read as infinitely large.
func ResolveRange(header string, size int64) RangeAnswer {
	whole := RangeAnswer{Status: 200}
	if size < 0 {
		return whole
	}
	unit, set, ok := strings.Cut(trimOWS(header), "=")
	if !ok || !strings.EqualFold(unit, "bytes") {
		return whole
	}
	var spec string
	n := 0
	for set != "" {
		var elem string
		elem, set, _ = strings.Cut(set, ",")
		if elem = trimOWS(elem); elem != "" {
			spec = elem
			n++
		}
	}
	if n != 1 {
		return whole
	}
	first, last, ok := strings.Cut(spec, "-")
	if !ok {
		return whole
	}
	unsatisfiable := RangeAnswer{Status: 416, ContentRange: "bytes */" + strconv.FormatInt(size, 10)}
	if first == "" {
		// suffix-range = "-" suffix-length
		suffix, ok := parsePos(last)
		if !ok {
			return whole
		}
		if suffix == 0 || size == 0 {
			return unsatisfiable
		}
		return partial(size-min(suffix, size), size-1, size)
	}
	start, ok := parsePos(first)
	if !ok {
		return whole
	}
	end := int64(math.MaxInt64)
	if last != "" {
		if end, ok = parsePos(last); !ok || end < start {
			return whole
		}
	}
	if start >= size {
		return unsatisfiable
	}
	return partial(start, min(end, size-1), size)
}

func partial(start, end, size int64) RangeAnswer {
	return RangeAnswer{
		Status: 206,
		Range:  ByteRange{Start: start, Length: end - start + 1},
		ContentRange: "bytes " + strconv.FormatInt(start, 10) + "-" +
			strconv.FormatInt(end, 10) + "/" + strconv.FormatInt(size, 10),
	}
}

// parsePos parses 1*DIGIT, saturating at math.MaxInt64.
func parsePos(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		d := int64(c - '0')
		if n > (math.MaxInt64-d)/10 {
			n = math.MaxInt64
		} else {
			n = n*10 + d
		}
	}
	return n, true
}
