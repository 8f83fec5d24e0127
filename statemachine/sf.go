package statemachine

import (
	"encoding/base64"
	"errors"
	"strings"
)

// This file is a strict parser of RFC 8941 Structured Field Dictionaries,
// the syntax of targeted cache-control fields (RFC 9213 §2.1). It follows
// the parsing algorithms of RFC 8941 §4.2 step by step: anything they
// reject is an error, and the caller then ignores the whole field. Dates
// (@) and Display Strings (%), added by RFC 9651, are not RFC 8941 types
// and fail.

// errSF is the error for every malformed Structured Field value; the
// caller only needs to know that the field is to be ignored.
var errSF = errors.New("statemachine: malformed structured field")

// sfKind is the type of a Structured Field value.
type sfKind uint8

const (
	sfInteger sfKind = iota + 1
	sfDecimal
	sfString
	sfToken
	sfBytes
	sfBoolean
	sfInnerList
)

// sfValue is a bare item or an inner list (RFC 8941 §3.1.1, §3.3).
type sfValue struct {
	kind sfKind
	// num is an Integer, or a Decimal in thousandths (a Decimal has at
	// most three fractional digits, so this is exact).
	num int64
	// str is a String's or Token's characters, or a Byte Sequence's
	// decoded bytes.
	str  string
	bool bool
	// list and params: the items of an inner list and the parameters of
	// an item or inner list.
	list   []sfItem
	params []sfParam
}

// sfItem is an item of an inner list: a bare item with parameters.
type sfItem = sfValue

// sfPair is a key with a value: a member of a Dictionary (RFC 8941
// §3.2), or a parameter (§3.1.2), whose value is a bare item.
type sfPair struct {
	key   string
	value sfValue
}

type (
	sfMember = sfPair
	sfParam  = sfPair
)

// Limits of RFC 8941 §3.3.1 and §3.3.2.
const (
	sfMaxIntegerDigits = 15
	sfMaxDecimalDigits = 12 // before the point
)

// parseSFDictionary parses the field lines of a Dictionary Structured
// Field: the lines joined with ", ", as RFC 8941 §4.2 says, and parsed
// with its algorithm. Members come back in order, a repeated key keeping
// its first position and its last value (§4.2.2). It fails on any
// deviation from the grammar, non-ASCII bytes included.
func parseSFDictionary(lines []string) ([]sfMember, error) {
	var d []sfMember
	var index map[string]int // once the dictionary grows: key → position
	err := eachSFMember(lines, func(key string, v sfValue) {
		d, index = sfPut(d, index, key, v)
	})
	if err != nil {
		return nil, err
	}
	return d, nil
}

// eachSFMember parses a Dictionary as parseSFDictionary does and calls fn
// for each member in the order of the input, repeated keys included (the
// last call for a key has its value), without building the dictionary.
// When it returns an error, the calls made so far are to be discarded.
func eachSFMember(lines []string, fn func(key string, v sfValue)) error {
	input := strings.Join(lines, ", ")
	for i := 0; i < len(input); i++ {
		if input[i] > 0x7f {
			return errSF
		}
	}
	p := sfParser{s: input}
	p.skipSP()
	if err := p.dictionary(fn); err != nil {
		return err
	}
	p.skipSP()
	if p.s != "" {
		return errSF
	}
	return nil
}

// sfParser holds what is left of the input.
type sfParser struct{ s string }

func (p *sfParser) skipSP() {
	for p.s != "" && p.s[0] == ' ' {
		p.s = p.s[1:]
	}
}

func (p *sfParser) skipOWS() {
	for p.s != "" && (p.s[0] == ' ' || p.s[0] == '\t') {
		p.s = p.s[1:]
	}
}

// peek returns the next character, or 0 at the end (0 is not ASCII text
// the grammar accepts anywhere).
func (p *sfParser) peek() byte {
	if p.s == "" {
		return 0
	}
	return p.s[0]
}

// dictionary is RFC 8941 §4.2.2, calling fn for each member.
func (p *sfParser) dictionary(fn func(key string, v sfValue)) error {
	for p.s != "" {
		key, err := p.key()
		if err != nil {
			return err
		}
		var v sfValue
		if p.peek() == '=' {
			p.s = p.s[1:]
			if v, err = p.itemOrInnerList(); err != nil {
				return err
			}
		} else {
			v = sfValue{kind: sfBoolean, bool: true}
			if v.params, err = p.parameters(); err != nil {
				return err
			}
		}
		fn(key, v)
		p.skipOWS()
		if p.s == "" {
			return nil
		}
		if p.s[0] != ',' {
			return errSF
		}
		p.s = p.s[1:]
		p.skipOWS()
		if p.s == "" {
			return errSF // trailing comma
		}
	}
	return nil
}

// sfPut sets key to v in the ordered map d, keeping the position of an
// existing key. Past a few entries, an index keeps it linear.
func sfPut(d []sfPair, index map[string]int, key string, v sfValue) ([]sfPair, map[string]int) {
	if index == nil && len(d) < 16 {
		for i := range d {
			if d[i].key == key {
				d[i].value = v
				return d, nil
			}
		}
		return append(d, sfPair{key, v}), nil
	}
	if index == nil {
		index = make(map[string]int, 2*len(d))
		for i := range d {
			index[d[i].key] = i
		}
	}
	if i, ok := index[key]; ok {
		d[i].value = v
		return d, index
	}
	index[key] = len(d)
	return append(d, sfPair{key, v}), index
}

// itemOrInnerList is RFC 8941 §4.2.1.1.
func (p *sfParser) itemOrInnerList() (sfValue, error) {
	if p.peek() == '(' {
		return p.innerList()
	}
	return p.item()
}

// innerList is RFC 8941 §4.2.1.2.
func (p *sfParser) innerList() (sfValue, error) {
	if p.peek() != '(' {
		return sfValue{}, errSF
	}
	p.s = p.s[1:]
	v := sfValue{kind: sfInnerList}
	for p.s != "" {
		p.skipSP()
		if p.peek() == ')' {
			p.s = p.s[1:]
			var err error
			v.params, err = p.parameters()
			return v, err
		}
		it, err := p.item()
		if err != nil {
			return sfValue{}, err
		}
		v.list = append(v.list, it)
		if c := p.peek(); c != ' ' && c != ')' {
			return sfValue{}, errSF
		}
	}
	return sfValue{}, errSF // no closing parenthesis
}

// item is RFC 8941 §4.2.3.
func (p *sfParser) item() (sfValue, error) {
	v, err := p.bareItem()
	if err != nil {
		return sfValue{}, err
	}
	v.params, err = p.parameters()
	return v, err
}

// bareItem is RFC 8941 §4.2.3.1.
func (p *sfParser) bareItem() (sfValue, error) {
	switch c := p.peek(); {
	case c == '-' || isDigit(c):
		return p.number()
	case c == '"':
		return p.str()
	case isAlpha(c) || c == '*':
		return p.token(), nil
	case c == ':':
		return p.byteSequence()
	case c == '?':
		return p.boolean()
	}
	return sfValue{}, errSF
}

// parameters is RFC 8941 §4.2.3.2.
func (p *sfParser) parameters() ([]sfParam, error) {
	var ps []sfParam
	var index map[string]int
	for p.peek() == ';' {
		p.s = p.s[1:]
		p.skipSP()
		key, err := p.key()
		if err != nil {
			return nil, err
		}
		v := sfValue{kind: sfBoolean, bool: true}
		if p.peek() == '=' {
			p.s = p.s[1:]
			if v, err = p.bareItem(); err != nil {
				return nil, err
			}
		}
		ps, index = sfPut(ps, index, key, v)
	}
	return ps, nil
}

// key is RFC 8941 §4.2.3.3.
func (p *sfParser) key() (string, error) {
	if c := p.peek(); !isLCAlpha(c) && c != '*' {
		return "", errSF
	}
	i := 1
	for i < len(p.s) {
		c := p.s[i]
		if !isLCAlpha(c) && !isDigit(c) && c != '_' && c != '-' && c != '.' && c != '*' {
			break
		}
		i++
	}
	k := p.s[:i]
	p.s = p.s[i:]
	return k, nil
}

// number is RFC 8941 §4.2.4.
func (p *sfParser) number() (sfValue, error) {
	neg := false
	if p.peek() == '-' {
		neg = true
		p.s = p.s[1:]
	}
	if !isDigit(p.peek()) {
		return sfValue{}, errSF
	}
	decimal := false
	var n, frac int64
	intDigits, fracDigits := 0, 0
	for p.s != "" {
		c := p.s[0]
		switch {
		case isDigit(c) && !decimal:
			intDigits++
			n = n*10 + int64(c-'0')
		case isDigit(c):
			fracDigits++
			frac = frac*10 + int64(c-'0')
		case c == '.' && !decimal:
			if intDigits > sfMaxDecimalDigits {
				return sfValue{}, errSF
			}
			decimal = true
		default:
			goto done
		}
		p.s = p.s[1:]
		if !decimal && intDigits > sfMaxIntegerDigits || decimal && intDigits+1+fracDigits > 16 {
			return sfValue{}, errSF
		}
	}
done:
	sign := int64(1)
	if neg {
		sign = -1
	}
	if !decimal {
		return sfValue{kind: sfInteger, num: sign * n}, nil
	}
	if fracDigits == 0 || fracDigits > 3 {
		return sfValue{}, errSF
	}
	for i := fracDigits; i < 3; i++ {
		frac *= 10
	}
	return sfValue{kind: sfDecimal, num: sign * (n*1000 + frac)}, nil
}

// str is RFC 8941 §4.2.5.
func (p *sfParser) str() (sfValue, error) {
	if p.peek() != '"' {
		return sfValue{}, errSF
	}
	s := p.s[1:]
	var b strings.Builder
	escaped := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\':
			if i+1 == len(s) {
				return sfValue{}, errSF
			}
			if n := s[i+1]; n != '"' && n != '\\' {
				return sfValue{}, errSF
			}
			if !escaped {
				escaped = true
				b.WriteString(s[:i])
			}
			i++
			b.WriteByte(s[i])
		case c == '"':
			p.s = s[i+1:]
			if !escaped {
				return sfValue{kind: sfString, str: s[:i]}, nil
			}
			return sfValue{kind: sfString, str: b.String()}, nil
		case c < 0x20 || c > 0x7e:
			return sfValue{}, errSF
		case escaped:
			b.WriteByte(c)
		}
	}
	return sfValue{}, errSF // no closing quote
}

// token is RFC 8941 §4.2.6; the caller checked the first character.
func (p *sfParser) token() sfValue {
	i := 1
	for i < len(p.s) {
		c := p.s[i]
		if !isTchar(c) && c != ':' && c != '/' {
			break
		}
		i++
	}
	v := sfValue{kind: sfToken, str: p.s[:i]}
	p.s = p.s[i:]
	return v
}

// byteSequence is RFC 8941 §4.2.7. Missing "=" padding and non-zero pad
// bits are accepted, as the RFC asks of parsers; any other deviation from
// base64 fails.
func (p *sfParser) byteSequence() (sfValue, error) {
	if p.peek() != ':' {
		return sfValue{}, errSF
	}
	content, rest, ok := strings.Cut(p.s[1:], ":")
	if !ok {
		return sfValue{}, errSF
	}
	p.s = rest
	data := strings.TrimRight(content, "=")
	if len(content)-len(data) > 2 {
		return sfValue{}, errSF
	}
	for i := 0; i < len(data); i++ {
		if c := data[i]; !isAlpha(c) && !isDigit(c) && c != '+' && c != '/' {
			return sfValue{}, errSF
		}
	}
	b, err := base64.RawStdEncoding.DecodeString(data)
	if err != nil {
		return sfValue{}, errSF
	}
	return sfValue{kind: sfBytes, str: string(b)}, nil
}

// boolean is RFC 8941 §4.2.8.
func (p *sfParser) boolean() (sfValue, error) {
	if len(p.s) < 2 || p.s[0] != '?' || (p.s[1] != '0' && p.s[1] != '1') {
		return sfValue{}, errSF
	}
	v := sfValue{kind: sfBoolean, bool: p.s[1] == '1'}
	p.s = p.s[2:]
	return v, nil
}

func isDigit(c byte) bool   { return c >= '0' && c <= '9' }
func isLCAlpha(c byte) bool { return c >= 'a' && c <= 'z' }
func isAlpha(c byte) bool   { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
