package main

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hishel-go/hishel/model"
)

// What the inspection commands print: tables and heads for people (sizes
// and times made readable, control characters escaped), and with -json one
// JSON object per line for scripts (sizes in bytes, times in RFC 3339).

// humanSize formats n bytes with a binary unit: 999 B, 1.5 KiB, 12 MiB.
func humanSize(n int64) string {
	const unit = 1024
	if n < unit && n > -unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	f := float64(n)
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB", "PiB"} {
		f /= unit
		if f < unit && f > -unit || u == "PiB" {
			if f < 10 && f > -10 {
				return strconv.FormatFloat(f, 'f', 1, 64) + " " + u
			}
			return strconv.FormatFloat(f, 'f', 0, 64) + " " + u
		}
	}
	return "" // not reached
}

// humanSizeExact is humanSize with the exact count when they differ.
func humanSizeExact(n int64) string {
	h := humanSize(n)
	if strings.HasSuffix(h, " B") {
		return h
	}
	return fmt.Sprintf("%s (%d bytes)", h, n)
}

// relTime says when t is from now: "in 59m0s", "3s ago", "now".
func relTime(t, now time.Time) string {
	exact := t.Sub(now)
	d := exact.Round(time.Second)
	switch {
	case d > 0:
		return "in " + shortDuration(d)
	case d < 0:
		return shortDuration(-d) + " ago"
	case exact > 0: // under half a second: still a future time
		return "in <1s"
	case exact < 0: // and a past one (an expiry that has passed)
		return "<1s ago"
	}
	return "now"
}

// shortDuration drops the zero units time.Duration.String keeps: 1h0m0s
// is 1h, 2m0s is 2m; days are counted above 48 hours.
func shortDuration(d time.Duration) string {
	var days int64
	if d >= 48*time.Hour {
		days = int64(d / (24 * time.Hour))
		d -= time.Duration(days) * 24 * time.Hour
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	if days > 0 {
		if s == "0s" {
			return strconv.FormatInt(days, 10) + "d"
		}
		return strconv.FormatInt(days, 10) + "d" + s
	}
	return s
}

// humanExpiry is a pair's expiry for a table: "never", "in 59m", "3s ago".
func humanExpiry(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return relTime(t, now)
}

// humanTime is a time for show: RFC 3339 and how long from now.
func humanTime(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339Nano) + " (" + relTime(t, now) + ")"
}

// printable escapes what a terminal would act on in s (control characters,
// escape sequences, invalid UTF-8) as Go escapes, so that a stored URL or
// field cannot move the cursor or retitle the window.
func printable(s string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || !unicode.IsPrint(r) && r != ' ' {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	q := strconv.QuoteToGraphic(s)
	return q[1 : len(q)-1]
}

// isText reports whether p is text a terminal shows as it is: UTF-8 with no
// control characters but tab, newline and carriage return. A rune cut at
// the end of p (a body read in part) does not count against it.
func isText(p []byte) bool {
	for i := 0; i < len(p); {
		r, size := utf8.DecodeRune(p[i:])
		if r == utf8.RuneError && size <= 1 {
			if !utf8.FullRune(p[i:]) {
				return true // cut at the end
			}
			return false
		}
		if r < ' ' && r != '\t' && r != '\n' && r != '\r' || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return false
		}
		i += size
	}
	return true
}

// isTerminal reports whether w is a terminal. Tests replace it.
var isTerminal = func(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// textPeek is how much of a body show reads to decide whether it is text.
const textPeek = 8 << 10

// writeBody writes r, a response body, to w. To a terminal, unless raw, a
// body that is not text (judged by its first 8 KiB, then chunk by chunk) is
// written as a hex dump, so that no binary or escape sequence reaches the
// terminal; elsewhere (a pipe, a file) the bytes are written as stored.
func writeBody(w io.Writer, r io.Reader, raw bool) error {
	if raw || !isTerminal(w) {
		_, err := io.Copy(w, r)
		return err
	}
	buf := make([]byte, textPeek)
	var dump io.WriteCloser
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			if dump == nil && !isText(buf[:n]) {
				fmt.Fprintln(w, "(binary body, shown as a hex dump; -raw writes it as stored)")
				dump = hex.Dumper(w)
			}
			var werr error
			if dump != nil {
				_, werr = dump.Write(buf[:n])
			} else {
				_, werr = w.Write(buf[:n])
			}
			if werr != nil {
				return werr
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if dump != nil {
		return dump.Close()
	}
	return nil
}

// pairJSON is a pair as ls -json and show -json print it.
type pairJSON struct {
	ID           string    `json:"id"`
	State        string    `json:"state"`
	Key          string    `json:"key"`
	Method       string    `json:"method"`
	URL          string    `json:"url"`
	Status       int       `json:"status,omitempty"`
	RequestSize  int64     `json:"request_size"`
	ResponseSize int64     `json:"response_size"`
	Created      time.Time `json:"created,omitzero"`
	Completed    time.Time `json:"completed,omitzero"`
	LastAccess   time.Time `json:"last_access,omitzero"`
	Expires      time.Time `json:"expires,omitzero"`
	Deleted      time.Time `json:"deleted,omitzero"`
	// TTL is in seconds; zero: no expiry.
	TTL     float64 `json:"ttl_seconds"`
	Refresh bool    `json:"refresh_on_access"`
	// Heads, for show -json only.
	RequestHeader  http.Header `json:"request_header,omitempty"`
	ResponseHeader http.Header `json:"response_header,omitempty"`
	// Body is the response body (up to -n bytes) for show -json, base64
	// as encoding/json writes bytes; BodyAvailable says whether it was.
	Body          []byte `json:"body,omitempty"`
	BodyAvailable *bool  `json:"body_available,omitempty"`
}

func newPairJSON(pi model.PairInfo, heads bool) pairJSON {
	m := pi.Meta
	utc := func(t time.Time) time.Time {
		if t.IsZero() {
			return t
		}
		return t.UTC()
	}
	p := pairJSON{ID: pi.ID.String(), State: pi.State.String(), Key: pi.Key, Method: pi.Request.Method,
		URL: pi.Request.URL, Status: pi.Response.Status, RequestSize: m.RequestSize, ResponseSize: m.ResponseSize,
		Created: utc(m.Created), Completed: utc(m.Completed), LastAccess: utc(m.LastAccess), Expires: utc(m.Expires),
		Deleted: utc(m.Deleted), TTL: m.TTL.Seconds(), Refresh: m.Refresh}
	if heads {
		p.RequestHeader, p.ResponseHeader = pi.Request.Header, pi.Response.Header
	}
	return p
}

// writeJSON writes v as one line of JSON.
func writeJSON(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
