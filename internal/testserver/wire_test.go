package testserver

import (
	"bufio"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseEnv(t *testing.T) {
	for _, tt := range []struct {
		in   string
		got  func(string) (any, error)
		want any // nil: an error
	}{
		{"127.0.0.1:6379", redisEnv, RedisServer{Addr: "127.0.0.1:6379"}},
		{"redis://u:p%40ss@h:1/3", redisEnv, RedisServer{Addr: "h:1", Username: "u", Password: "p@ss", DB: 3}},
		{"redis://:pw@h:1", redisEnv, RedisServer{Addr: "h:1", Password: "pw"}},
		{"rediss://h:1", redisEnv, nil},
		{"redis://h:1/x", redisEnv, nil},
		{"localhost", redisEnv, nil},
		{"postgres://u:pw@h:5433/db?sslmode=disable", pgEnv, PostgresServer{Addr: "h:5433", User: "u", Password: "pw", Database: "db"}},
		{"postgresql://u@h", pgEnv, PostgresServer{Addr: "h:5432", User: "u", Database: "postgres"}},
		{"postgres://h:1/db", pgEnv, nil},
		{"host=h user=u", pgEnv, nil},
		{"http://AK:SK@127.0.0.1:7070", s3Env, S3Server{Endpoint: "http://127.0.0.1:7070", Region: "us-east-1", AccessKey: "AK", SecretKey: "SK"}},
		{"https://AK:SK@s3.local?region=eu-west-1", s3Env, S3Server{Endpoint: "https://s3.local", Region: "eu-west-1", AccessKey: "AK", SecretKey: "SK"}},
		{"http://127.0.0.1:7070", s3Env, nil},
		{"s3://b", s3Env, nil},
		{"http://127.0.0.1:8000", dynamoEnv, DynamoDBServer{Endpoint: "http://127.0.0.1:8000", Region: "us-east-1", AccessKey: "hishel-test", SecretKey: "hishel-test-secret"}},
		{"http://a:b@h:1?region=r", dynamoEnv, DynamoDBServer{Endpoint: "http://h:1", Region: "r", AccessKey: "a", SecretKey: "b"}},
		{"dynamodb://t", dynamoEnv, nil},
		{"mongodb://h:1/", mongoEnv, "h:1"},
		{"mongodb://u:p@h1:1,h2:2/db?replicaSet=r", mongoEnv, "h1:1"},
		{"mongodb://h", mongoEnv, "h:27017"},
		{"mongodb://[::1]?x=1", mongoEnv, "[::1]:27017"},
		{"mongodb+srv://h", mongoEnv, nil},
	} {
		got, err := tt.got(tt.in)
		if tt.want == nil {
			if err == nil {
				t.Errorf("parse(%q) = %+v; want an error", tt.in, got)
			}
			continue
		}
		if err != nil {
			t.Errorf("parse(%q): %v", tt.in, err)
			continue
		}
		if d := cmp.Diff(tt.want, got); d != "" {
			t.Errorf("parse(%q) (-want +got):\n%s", tt.in, d)
		}
	}
}

func redisEnv(s string) (any, error)  { return parseRedisEnv(s) }
func pgEnv(s string) (any, error)     { return parsePostgresEnv(s) }
func s3Env(s string) (any, error)     { return parseS3Env(s) }
func dynamoEnv(s string) (any, error) { return parseDynamoEnv(s) }
func mongoEnv(s string) (any, error)  { return mongoAddr(s) }

func TestURLs(t *testing.T) {
	for _, tt := range []struct{ got, want string }{
		{RedisServer{Addr: "h:1", DB: 2}.URL(), "redis://h:1/2"},
		{RedisServer{Addr: "h:1", Password: "p w"}.URL(), "redis://:p%20w@h:1/0"},
		{PostgresServer{Addr: "h:1", User: "u", Password: "p@", Database: "d"}.DSN(), "postgres://u:p%40@h:1/d?sslmode=disable"},
	} {
		if tt.got != tt.want {
			t.Errorf("URL = %q; want %q", tt.got, tt.want)
		}
	}
}

func TestBSONRoundTrip(t *testing.T) {
	doc := bsonDoc{
		{"s", "héllo\x01"}, {"i", int32(-7)}, {"l", int64(1) << 62}, {"f", 2.5},
		{"t", true}, {"n", nil}, {"b", []byte{0, 1, 2}}, {"o", [12]byte{1, 2, 3}},
		{"d", bsonDoc{{"x", "y"}}}, {"a", []any{"p", int32(1), bsonDoc{{"e", bsonDoc(nil)}}}},
	}
	b, err := doc.marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := unmarshalBSON(b)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(doc, got); d != "" {
		t.Fatalf("round trip (-want +got):\n%s", d)
	}
	if _, err := (bsonDoc{{"k\x00", "v"}}).marshal(); err == nil {
		t.Error("a key with a NUL encoded")
	}
	if _, err := (bsonDoc{{"k", uint8(1)}}).marshal(); err == nil {
		t.Error("a uint8 encoded")
	}
}

func TestBSONBad(t *testing.T) {
	good, _ := bsonDoc{{"s", "v"}, {"d", bsonDoc{{"i", int32(1)}}}}.marshal()
	for i := range good {
		// Every truncation is an error, never a panic.
		if _, err := unmarshalBSON(good[:i]); err == nil {
			t.Errorf("unmarshalBSON(good[:%d]) succeeded", i)
		}
	}
	nested := bsonDoc{}
	for range maxBSONDepth + 2 {
		nested = bsonDoc{{"k", nested}}
	}
	b, _ := nested.marshal()
	if _, err := unmarshalBSON(b); err == nil || !strings.Contains(err.Error(), "too deep") {
		t.Errorf("documents nested %d deep: err = %v; want too deep", maxBSONDepth+2, err)
	}
}

func FuzzBSON(f *testing.F) {
	for _, d := range []bsonDoc{
		{{"hello", int32(1)}, {"$db", "admin"}},
		{{"ok", 1.0}, {"cursor", bsonDoc{{"firstBatch", []any{bsonDoc{{"_id", "a"}, {"b", []byte("x")}}}}}}},
		{{"n", nil}, {"t", false}, {"l", int64(5)}, {"o", [12]byte{}}},
	} {
		b, _ := d.marshal()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := unmarshalBSON(b)
		if err != nil {
			return
		}
		// What decodes re-encodes to the same bytes, unless it holds a
		// type only skipped.
		if strings.Contains(fmt.Sprintf("%#v", d), "bsonRaw") {
			return
		}
		again, err := d.marshal()
		if err != nil {
			return // a key with a NUL cannot come from a decode; other types can
		}
		d2, err := unmarshalBSON(again)
		if err != nil {
			t.Fatalf("re-encoded document does not decode: %v", err)
		}
		if fmt.Sprintf("%#v", d) != fmt.Sprintf("%#v", d2) {
			t.Fatalf("round trip changed %#v into %#v", d, d2)
		}
	})
}

func TestRESP(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want any
		err  string
	}{
		{"+OK\r\n", "OK", ""},
		{"-ERR bad\r\n", nil, "ERR bad"},
		{":-3\r\n", int64(-3), ""},
		{"$3\r\na\r\n\r\n", "a\r\n", ""},
		{"$-1\r\n", nil, ""},
		{"*2\r\n$1\r\nx\r\n*1\r\n-E\r\n", []any{"x", []any{redisError("E")}}, ""},
		{"*-1\r\n", nil, ""},
		{"$5\r\nab\r\n", nil, "EOF"},
		{"$2\r\nabcd\r\n", nil, "CRLF"},
		{"$99999999999\r\n", nil, "bulk length"},
		{"*2\r\n+a\r\n", nil, "EOF"},
		{"?\r\n", nil, "unknown reply type"},
		{"\r\n", nil, "malformed"},
		{"!x\r\n", nil, "unknown reply type"},
		{"+OK\n", nil, "malformed"},
		{strings.Repeat("*1\r\n", maxRESPDepth+1) + "+x\r\n", nil, "too deep"},
	} {
		got, err := readRESP(bufio.NewReader(strings.NewReader(tt.in)), 0)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("readRESP(%q) = %v, %v; want an error with %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || !cmp.Equal(got, tt.want) {
			t.Errorf("readRESP(%q) = %#v, %v; want %#v", tt.in, got, err, tt.want)
		}
	}
}

func FuzzRESP(f *testing.F) {
	for _, s := range []string{"+OK\r\n", "*2\r\n$1\r\nx\r\n:1\r\n", "-ERR x\r\n", "$-1\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		readRESP(bufio.NewReader(strings.NewReader(string(b))), 0) // no panic, no huge allocation
	})
}

func TestPGParse(t *testing.T) {
	row, err := parseDataRow([]byte{0, 3, 0, 0, 0, 1, 'a', 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	if err != nil || !cmp.Equal(row, []string{"a", "", ""}) {
		t.Fatalf("parseDataRow = %q, %v; want [a  ]", row, err)
	}
	for _, bad := range [][]byte{{0}, {0, 1, 0, 0}, {0, 1, 0, 0, 0, 5, 'a'}} {
		if _, err := parseDataRow(bad); err == nil {
			t.Errorf("parseDataRow(%v) succeeded", bad)
		}
	}
	err = parsePGError([]byte("SERROR\x00C42P01\x00Mno such table\x00\x00"))
	want := &pgError{Severity: "ERROR", Code: "42P01", Message: "no such table"}
	if !cmp.Equal(err, error(want)) {
		t.Fatalf("parsePGError = %#v; want %#v", err, want)
	}
	parsePGError([]byte("Sunterminated")) // no panic
}
