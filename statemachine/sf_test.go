package statemachine

import (
	"encoding/base64"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// RFC 8941 §4.2.2 (Dictionary) and the algorithms it calls: what parses,
// and what fails as a whole.
func TestParseSFDictionary(t *testing.T) {
	b := func(v bool) sfValue { return sfValue{kind: sfBoolean, bool: v} }
	i := func(n int64) sfValue { return sfValue{kind: sfInteger, num: n} }
	tok := func(s string) sfValue { return sfValue{kind: sfToken, str: s} }
	str := func(s string) sfValue { return sfValue{kind: sfString, str: s} }
	tests := []struct {
		name  string
		lines []string
		want  []sfMember // nil with fail
		fail  bool
	}{
		{name: "§3.2 cache directives", lines: []string{"max-age=60, no-store, private"},
			want: []sfMember{{"max-age", i(60)}, {"no-store", b(true)}, {"private", b(true)}}},
		{name: "§3.2 several lines", lines: []string{"max-age=60", "no-cache"},
			want: []sfMember{{"max-age", i(60)}, {"no-cache", b(true)}}},
		{name: "§4.2.2 repeated key keeps its place, takes the last value", lines: []string{"a=1, b=2, a=3"},
			want: []sfMember{{"a", i(3)}, {"b", i(2)}}},
		{name: "§4.2.2 tabs and spaces around commas", lines: []string{"a=1 \t,\t b=2"},
			want: []sfMember{{"a", i(1)}, {"b", i(2)}}},
		{name: "§4.2 leading and trailing spaces", lines: []string{"  a=1  "}, want: []sfMember{{"a", i(1)}}},
		{name: "§3.3.3 string with escapes", lines: []string{`no-cache="set-cookie, x-\"q\\"`},
			want: []sfMember{{"no-cache", str(`set-cookie, x-"q\`)}}},
		{name: "§3.3.4 token", lines: []string{"a=foo/bar:baz*"}, want: []sfMember{{"a", tok("foo/bar:baz*")}}},
		{name: "§3.3.2 decimal", lines: []string{"a=-1.5"}, want: []sfMember{{"a", sfValue{kind: sfDecimal, num: -1500}}}},
		{name: "§3.3.5 byte sequence", lines: []string{"a=:aGk=:"}, want: []sfMember{{"a", sfValue{kind: sfBytes, str: "hi"}}}},
		{name: "§3.3.5 byte sequence without padding", lines: []string{"a=:aGk:"}, want: []sfMember{{"a", sfValue{kind: sfBytes, str: "hi"}}}},
		{name: "§3.3.6 booleans", lines: []string{"a=?0, b=?1"}, want: []sfMember{{"a", b(false)}, {"b", b(true)}}},
		{name: "§3.1.2 parameters", lines: []string{"a=1;x;y=2, b;z=?0"},
			want: []sfMember{
				{"a", sfValue{kind: sfInteger, num: 1, params: []sfParam{{"x", b(true)}, {"y", i(2)}}}},
				{"b", sfValue{kind: sfBoolean, bool: true, params: []sfParam{{"z", b(false)}}}},
			}},
		{name: "§3.1.1 inner list", lines: []string{"a=(1 foo \"s\");p"},
			want: []sfMember{{"a", sfValue{kind: sfInnerList, list: []sfItem{i(1), tok("foo"), str("s")}, params: []sfParam{{"p", b(true)}}}}}},
		{name: "§3.3.1 fifteen digits", lines: []string{"a=999999999999999"}, want: []sfMember{{"a", i(999999999999999)}}},
		{name: "§3.2 empty", lines: []string{""}, want: nil},
		{name: "§3.2 trailing comma", lines: []string{"a=1,"}, fail: true},
		{name: "§3.2 leading comma", lines: []string{",a=1"}, fail: true},
		{name: "§3.2 empty member", lines: []string{"a=1,,b=2"}, fail: true},
		{name: "§3.2 empty line among others", lines: []string{"a=1", ""}, fail: true},
		{name: "§3.1.2 key in capitals", lines: []string{"MAX-AGE=60"}, fail: true},
		{name: "§3.1.2 key starting with a digit", lines: []string{"1a=1"}, fail: true},
		{name: "§4.2 leading tab", lines: []string{"\ta=1"}, fail: true},
		{name: "§4.2 non-ASCII", lines: []string{"a=\"\u00e9\""}, fail: true},
		{name: "§4.2.2 space before =", lines: []string{"a =1"}, fail: true},
		{name: "§4.2.2 space after =", lines: []string{"a= 1"}, fail: true},
		{name: "§3.3.1 sixteen digits", lines: []string{"a=1000000000000000"}, fail: true},
		{name: "§3.3.2 four decimal places", lines: []string{"a=1.0001"}, fail: true},
		{name: "§3.3.2 thirteen integer digits", lines: []string{"a=1000000000000.1"}, fail: true},
		{name: "§3.3.2 trailing point", lines: []string{"a=1."}, fail: true},
		{name: "§3.3.1 lone minus", lines: []string{"a=-"}, fail: true},
		{name: "§3.3.3 unterminated string", lines: []string{`a="abc`}, fail: true},
		{name: "§3.3.3 bad escape", lines: []string{`a="\n"`}, fail: true},
		{name: "§3.3.3 control character", lines: []string{"a=\"\x01\""}, fail: true},
		{name: "§3.3.5 bad base64", lines: []string{"a=:a*b:"}, fail: true},
		{name: "§3.3.5 unterminated bytes", lines: []string{"a=:aGk="}, fail: true},
		{name: "§3.3.6 bad boolean", lines: []string{"a=?2"}, fail: true},
		{name: "§3.1.1 unterminated inner list", lines: []string{"a=(1 2"}, fail: true},
		{name: "§3.1.1 items without space", lines: []string{`a=(1"x")`}, fail: true},
		{name: "§3.3 cache-control quoted argument is fine, a bare one is not", lines: []string{"a=b c"}, fail: true},
		{name: "RFC 9651 date is not an RFC 8941 type", lines: []string{"a=@1659578233"}, fail: true},
		{name: "RFC 9651 display string is not an RFC 8941 type", lines: []string{`a=%"x"`}, fail: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseSFDictionary(tt.lines)
			if tt.fail {
				if err == nil {
					t.Fatalf("parseSFDictionary(%q) = %v; want an error", tt.lines, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseSFDictionary(%q): %v", tt.lines, err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(sfMember{}, sfValue{}, sfParam{})); diff != "" {
				t.Errorf("parseSFDictionary(%q) mismatch (-want +got):\n%s", tt.lines, diff)
			}
		})
	}
}

// A dictionary with many members, or many parameters, parses in time
// linear in its size (repeated keys are looked up in an index).
func TestParseSFDictionaryLarge(t *testing.T) {
	var sb strings.Builder
	for n := range 20000 {
		if n > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString("k" + strconv.Itoa(n%5000) + "=" + strconv.Itoa(n))
	}
	d, err := parseSFDictionary([]string{sb.String()})
	if err != nil || len(d) != 5000 || d[0].key != "k0" || d[0].value.num != 15000 {
		t.Fatalf("parseSFDictionary(20000 members, 5000 keys) = %d members, first %+v, %v; want 5000, k0=15000", len(d), d[0], err)
	}
	sb.Reset()
	sb.WriteString("a")
	for n := range 20000 {
		sb.WriteString(";p" + strconv.Itoa(n%3000))
	}
	d, err = parseSFDictionary([]string{sb.String()})
	if err != nil || len(d) != 1 || len(d[0].value.params) != 3000 {
		t.Fatalf("parseSFDictionary(one member, 20000 parameters) = %v; want 3000 parameters", err)
	}
}

// FuzzParseSFDictionary checks that nothing panics and that whatever
// parses serializes (RFC 8941 §4.1) to a field that parses back to the same
// dictionary.
func FuzzParseSFDictionary(f *testing.F) {
	for _, s := range []string{
		"max-age=60, no-store", `no-cache="a, b"`, "a=(1 2.5 \"x\" :aGk=: ?0 tok);p=1, b;q", "a=1,", "", " ", "a=-999999999999.999",
		"a=:=:", `a="\\\""`, "*a=*b", "a=(", "a=1;", "a=1;b=", "a=((1))",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseSFDictionary([]string{s})
		if err != nil {
			if d != nil {
				t.Fatalf("parseSFDictionary(%q) = %v with error %v", s, d, err)
			}
			return
		}
		out := serializeSFDictionary(d)
		back, err := parseSFDictionary([]string{out})
		if err != nil {
			t.Fatalf("parseSFDictionary(%q) = %v; its serialization %q fails: %v", s, d, out, err)
		}
		opt := cmp.AllowUnexported(sfMember{}, sfValue{}, sfParam{})
		if !cmp.Equal(d, back, opt, cmpEmpty) {
			t.Fatalf("parseSFDictionary(%q) then %q: %s", s, out, cmp.Diff(d, back, opt, cmpEmpty))
		}
		targetedCC([]string{s}) // and reading it as directives never panics
	})
}

var cmpEmpty = cmp.FilterValues(func(a, b []sfParam) bool { return len(a) == 0 && len(b) == 0 }, cmp.Ignore())

// serializeSFDictionary is RFC 8941 §4.1.2, for the round trip of the
// fuzz test.
func serializeSFDictionary(d []sfMember) string {
	var b strings.Builder
	for i, m := range d {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(m.key)
		if m.value.kind == sfBoolean && m.value.bool {
			writeSFParams(&b, m.value.params)
			continue
		}
		b.WriteByte('=')
		if m.value.kind == sfInnerList {
			b.WriteByte('(')
			for j, it := range m.value.list {
				if j > 0 {
					b.WriteByte(' ')
				}
				writeSFBare(&b, it)
				writeSFParams(&b, it.params)
			}
			b.WriteByte(')')
		} else {
			writeSFBare(&b, m.value)
		}
		writeSFParams(&b, m.value.params)
	}
	return b.String()
}

func writeSFParams(b *strings.Builder, ps []sfParam) {
	for _, p := range ps {
		b.WriteByte(';')
		b.WriteString(p.key)
		if p.value.kind == sfBoolean && p.value.bool {
			continue
		}
		b.WriteByte('=')
		writeSFBare(b, p.value)
	}
}

func writeSFBare(b *strings.Builder, v sfValue) {
	switch v.kind {
	case sfInteger:
		b.WriteString(strconv.FormatInt(v.num, 10))
	case sfDecimal:
		n := v.num
		if n < 0 {
			b.WriteByte('-')
			n = -n
		}
		b.WriteString(strconv.FormatInt(n/1000, 10) + "." + strconv.FormatInt(n%1000+1000, 10)[1:])
	case sfString:
		b.WriteByte('"')
		for i := 0; i < len(v.str); i++ {
			if c := v.str[i]; c == '"' || c == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(v.str[i])
		}
		b.WriteByte('"')
	case sfToken:
		b.WriteString(v.str)
	case sfBytes:
		b.WriteString(":" + base64.StdEncoding.EncodeToString([]byte(v.str)) + ":")
	case sfBoolean:
		if v.bool {
			b.WriteString("?1")
		} else {
			b.WriteString("?0")
		}
	}
}
