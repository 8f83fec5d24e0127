package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hishel-go/hishel/cache"
	"github.com/hishel-go/hishel/model"
)

func TestHumanSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 999: "999 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB",
		10 << 10: "10 KiB", 5 << 20: "5.0 MiB", 3 << 30: "3.0 GiB", 1 << 50: "1.0 PiB", 1 << 62: "4096 PiB"} {
		if got := humanSize(n); got != want {
			t.Errorf("humanSize(%d) = %q; want %q", n, got, want)
		}
	}
	if got := humanSizeExact(1536); got != "1.5 KiB (1536 bytes)" {
		t.Errorf("humanSizeExact(1536) = %q", got)
	}
}

func TestRelTime(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for d, want := range map[time.Duration]string{0: "now", 400 * time.Millisecond: "in <1s", -400 * time.Millisecond: "<1s ago", time.Hour: "in 1h", -3 * time.Second: "3s ago",
		90 * time.Minute: "in 1h30m", 2 * time.Minute: "in 2m", 72 * time.Hour: "in 3d", -(50*time.Hour + time.Second): "2d2h0m1s ago"} {
		if got := relTime(now.Add(d), now); got != want {
			t.Errorf("relTime(now%+v) = %q; want %q", d, got, want)
		}
	}
}

func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"http://example.test/a b":  "http://example.test/a b",
		"héllo":                    "héllo",
		"\x1b]0;pwned\x07":         `\x1b]0;pwned\a`,
		"a\nb\tc":                  `a\nb\tc`,
		"bad \xff utf8":            `bad \xff utf8`,
		"\u202eright-to-left text": `\u202eright-to-left text`,
	} {
		if got := printable(in); got != want {
			t.Errorf("printable(%q) = %q; want %q", in, got, want)
		}
	}
}

func TestIsText(t *testing.T) {
	for in, want := range map[string]bool{"plain\ntext\r\n\ttab": true, "héllo": true, "\x1b[2J": false,
		"nul\x00": false, "\xff\xfe": false, "cut \xc3": true, "\u0085": false} {
		if got := isText([]byte(in)); got != want {
			t.Errorf("isText(%q) = %v; want %v", in, got, want)
		}
	}
}

// outputFixture writes a cache file with a text pair, a binary pair and a
// pair whose URL and header carry escape sequences.
func outputFixture(t *testing.T) (db string, text, binary, hostile model.PairID) {
	t.Helper()
	db = filepath.Join(t.TempDir(), "out.db")
	ctx := t.Context()
	s, err := cache.OpenBolt(ctx, &cache.BoltOptions{Path: db, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	add := func(url string, h http.Header, body []byte) model.PairID {
		inc, err := s.CreatePair(ctx, model.Request{Method: "GET", URL: url})
		if err != nil {
			t.Fatal(err)
		}
		cp, err := s.AddResponse(ctx, inc.ID, model.Response{Status: 200, Header: h, Body: model.BytesBody(body)}, "GET "+url)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, cp.Response.Body)
		return inc.ID
	}
	text = add("http://example.test/text", http.Header{"Content-Type": {"text/plain"}}, []byte("just text\n"))
	binary = add("http://example.test/bin", nil, append([]byte("\x1b[2J\x00\x01binary"), bytes.Repeat([]byte{0xff}, 20)...))
	hostile = add("http://example.test/\x1b[31mred", http.Header{"X-Evil": {"a\x1b]0;title\x07b"}}, []byte("ok"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return db, text, binary, hostile
}

// inProcess runs hishel in this process, with stdout taken for a terminal
// when tty is set.
func inProcess(t *testing.T, tty bool, args ...string) (int, string, string) {
	t.Helper()
	old := isTerminal
	isTerminal = func(io.Writer) bool { return tty }
	defer func() { isTerminal = old }()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// show never writes binary or escape sequences to a terminal: a binary
// body is a hex dump, heads are escaped; -raw and a pipe get the bytes.
func TestShowTerminal(t *testing.T) {
	db, text, binary, hostile := outputFixture(t)
	hasControl := func(s string) bool {
		return strings.IndexFunc(s, func(r rune) bool { return r < ' ' && r != '\n' && r != '\t' || r == 0x7f }) >= 0
	}
	code, out, errOut := inProcess(t, true, "show", "-db", db, binary.String())
	if code != 0 || hasControl(out) || !strings.Contains(out, "hex dump") || !strings.Contains(out, "1b 5b 32 4a 00 01") {
		t.Errorf("show of a binary body to a terminal = %d, %q, %q; want a hex dump and no control character", code, out, errOut)
	}
	code, out, _ = inProcess(t, true, "show", "-db", db, hostile.String())
	if code != 0 || hasControl(out) || !strings.Contains(out, `X-Evil: a\x1b]0;title\ab`) || !strings.Contains(out, `/\x1b[31mred`) {
		t.Errorf("show of escape sequences in heads to a terminal = %d, %q; want them escaped", code, out)
	}
	code, out, _ = inProcess(t, false, "ls", "-db", db)
	if code != 0 || hasControl(out) {
		t.Errorf("ls = %d, %q; want no control character", code, out)
	}
	code, out, _ = inProcess(t, true, "show", "-db", db, text.String())
	if code != 0 || !strings.HasSuffix(out, "\njust text\n") {
		t.Errorf("show of a text body to a terminal = %d, %q; want the text", code, out)
	}
	for _, tc := range []struct {
		tty  bool
		args []string
	}{{true, []string{"-raw"}}, {false, nil}} {
		code, out, _ = inProcess(t, tc.tty, append([]string{"show", "-db", db, binary.String()}, tc.args...)...)
		if code != 0 || !strings.Contains(out, "\x1b[2J\x00\x01binary") {
			t.Errorf("show %v (terminal %v) = %d, %q; want the body as stored", tc.args, tc.tty, code, out)
		}
	}
}

// ls, show and stats -json print one JSON object per line.
func TestInspectJSON(t *testing.T) {
	db, live, incomplete, expired := fixture(t)
	code, out, errOut := inProcess(t, false, "ls", "-db", db, "-json")
	if code != 0 {
		t.Fatalf("ls -json = %d, %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	byID := map[string]pairJSON{}
	for _, line := range lines {
		var p pairJSON
		if err := json.Unmarshal([]byte(line), &p); err != nil {
			t.Fatalf("ls -json line %q: %v", line, err)
		}
		byID[p.ID] = p
	}
	if len(byID) != 3 {
		t.Fatalf("ls -json printed %d pairs; want 3:\n%s", len(byID), out)
	}
	p := byID[live.String()]
	if p.State != "complete" || p.Status != 200 || p.URL != "http://example.test/live" || p.ResponseSize != 9 ||
		p.TTL != 3600 || p.Expires.IsZero() || p.Created.IsZero() || p.RequestHeader != nil {
		t.Errorf("ls -json of the live pair = %+v", p)
	}
	if p := byID[incomplete.String()]; p.State != "incomplete" || p.Status != 0 || !p.Expires.IsZero() {
		t.Errorf("ls -json of the incomplete pair = %+v", p)
	}
	if strings.Contains(lines[0], `"expires":"0001`) || !strings.Contains(out, `"state":"incomplete"`) {
		t.Errorf("ls -json writes unset times: %s", out)
	}

	code, out, _ = inProcess(t, false, "show", "-db", db, "-json", live.String())
	var s pairJSON
	if err := json.Unmarshal([]byte(out), &s); code != 0 || err != nil || strings.Count(out, "\n") != 1 {
		t.Fatalf("show -json = %d, %q, %v; want one JSON line", code, out, err)
	}
	if string(s.Body) != "live body" || s.BodyAvailable == nil || !*s.BodyAvailable ||
		s.ResponseHeader.Get("Content-Type") != "text/plain" || s.RequestHeader.Get("Accept") != "text/plain" {
		t.Errorf("show -json = %+v", s)
	}
	_, out, _ = inProcess(t, false, "show", "-db", db, "-json", "-n", "4", live.String())
	if err := json.Unmarshal([]byte(out), &s); err != nil || string(s.Body) != "live" {
		t.Errorf("show -json -n 4: body %q, %v; want %q", s.Body, err, "live")
	}
	_, out, _ = inProcess(t, false, "show", "-db", db, "-json", expired.String())
	s = pairJSON{}
	if err := json.Unmarshal([]byte(out), &s); err != nil || s.Body != nil || s.BodyAvailable == nil || *s.BodyAvailable {
		t.Errorf("show -json of an expired pair = %+v, %v; want body_available false", s, err)
	}

	code, out, _ = inProcess(t, false, "stats", "-db", db, "-json")
	var st struct {
		Pairs, Incomplete, Deleted int
		Bytes                      int64
		FileBytes                  *int64 `json:"file_bytes"`
	}
	if err := json.Unmarshal([]byte(out), &st); code != 0 || err != nil || st.Pairs != 2 || st.Incomplete != 1 ||
		st.FileBytes == nil || *st.FileBytes <= 0 || st.Bytes < 21 {
		t.Errorf("stats -json = %d, %q, %v; want 2 pairs, 1 incomplete, the file's size", code, out, err)
	}
	code, out, _ = inProcess(t, false, "stats", "-db", db)
	if code != 0 || !strings.Contains(out, "file bytes: ") || !strings.Contains(out, "KiB (") {
		t.Errorf("stats = %d, %q; want human sizes", code, out)
	}
}

// Every command, and help itself, prints its usage for -h, -help and
// "hishel help COMMAND", on stdout, with exit status 0.
func TestHelpEverywhere(t *testing.T) {
	for _, c := range commands {
		for _, args := range [][]string{{c.name, "-h"}, {c.name, "-help"}, {"help", c.name}} {
			code, out, errOut := inProcess(t, false, args...)
			want := "Usage: hishel " + c.name
			if c.name == "help" {
				want = "Usage:\n\n  hishel demo"
			}
			if code != exitOK || !strings.Contains(out, want) || errOut != "" {
				t.Errorf("hishel %s = %d, stdout %q, stderr %q; want 0 and %q", strings.Join(args, " "), code, out, errOut, want)
			}
		}
	}
	for _, args := range [][]string{{"help", "-h"}, {"help", "--help"}, {"help", "help"}, {"-h"}, {"help"}} {
		code, out, errOut := inProcess(t, false, args...)
		if code != exitOK || !strings.Contains(out, "Run 'hishel COMMAND -h'") || errOut != "" {
			t.Errorf("hishel %s = %d, %q, %q; want hishel's usage", strings.Join(args, " "), code, out, errOut)
		}
	}
}
