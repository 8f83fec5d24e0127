package statemachine

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hishel-go/hishel/model"
)

// piece206 is a stored 206 for bytes first-last of a representation of
// size bytes, entity-tag "r", received ago before t0; more header fields
// may be given (an empty value removes a field).
func piece206(ago time.Duration, first, last, size int64, kv ...string) model.CompletePair {
	h := hdr(":status", "206", "Cache-Control", "max-age=600", "ETag", `"r"`,
		"Content-Range", contentRange(first, last, size), "Content-Length", strconv.FormatInt(last-first+1, 10))
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			delete(h, http.CanonicalHeaderKey(kv[i]))
			continue
		}
		h.Set(kv[i], kv[i+1])
	}
	p := stored(ago, h)
	p.Request.Header = hdr("Range", "bytes="+strconv.FormatInt(first, 10)+"-"+strconv.FormatInt(last, 10))
	p.Meta.ResponseSize = last - first + 1
	return p
}

func rangeReq(spec string, kv ...string) model.Request {
	return get(hdr(append([]string{"Range", spec}, kv...)...))
}

// RFC 9110 §14.4: Content-Range of a single part, strictly.
func TestParseContentRange(t *testing.T) {
	tests := []struct {
		in   string
		want partialRange
		ok   bool
	}{
		{"bytes 0-499/1000", partialRange{0, 499, 1000}, true},
		{"bytes 999-999/1000", partialRange{999, 999, 1000}, true},
		{"BYTES 0-0/1", partialRange{0, 0, 1}, true},
		{"bytes 0-999/1000", partialRange{0, 999, 1000}, true},
		{"bytes 0-1000/1000", partialRange{}, false},
		{"bytes 5-4/10", partialRange{}, false},
		{"bytes 0-9/*", partialRange{}, false},
		{"bytes */1000", partialRange{}, false},
		{"bytes 0-9", partialRange{}, false},
		{"bytes  0-9/10", partialRange{}, false},
		{"bytes 0 -9/10", partialRange{}, false},
		{"bytes -1-9/10", partialRange{}, false},
		{"items 0-9/10", partialRange{}, false},
		{"bytes 0-9/99999999999999999999", partialRange{}, false},
		{"", partialRange{}, false},
	}
	for _, tt := range tests {
		got, ok := parseContentRange(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("parseContentRange(%q) = %+v, %v; want %+v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func FuzzParseContentRange(f *testing.F) {
	f.Add("bytes 0-499/1000")
	f.Add("bytes 9223372036854775807-9223372036854775807/9223372036854775808")
	f.Add("bytes */5")
	f.Fuzz(func(t *testing.T, s string) {
		pr, ok := parseContentRange(s)
		if ok && (pr.first < 0 || pr.first > pr.last || pr.last >= pr.size || pr.size >= 1<<62) {
			t.Fatalf("parseContentRange(%q) = %+v", s, pr)
		}
	})
}

// RFC 9111 §3.3: which 206 responses are stored.
func TestStorePartial(t *testing.T) {
	ok := hdr("Cache-Control", "max-age=60", "ETag", `"r"`, "Content-Range", "bytes 0-9/100", "Content-Length", "10")
	with := func(kv ...string) http.Header {
		h := ok.Clone()
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == "" {
				h.Del(kv[i])
			} else {
				h.Set(kv[i], kv[i+1])
			}
		}
		return h
	}
	tests := []struct {
		name   string
		opts   Options
		method string
		resp   http.Header
		want   string
	}{
		{name: "§3.3 one range, known length, strong validator", resp: ok, want: "StoreAndUse"},
		{name: "§3.3 without Content-Length", resp: with("Content-Length", ""), want: "StoreAndUse"},
		{name: "§3.3 heuristic freshness", resp: with("Cache-Control", "", "Last-Modified", httpDate(t0.Add(-time.Hour))), want: "StoreAndUse"},
		{name: "§3.4 no entity-tag", resp: with("ETag", ""), want: "CouldNotBeStored"},
		{name: "§3.4 weak entity-tag", resp: with("ETag", `W/"r"`), want: "CouldNotBeStored"},
		{name: "§3.3 unknown complete length", resp: with("Content-Range", "bytes 0-9/*"), want: "CouldNotBeStored"},
		{name: "§3.3 malformed Content-Range", resp: with("Content-Range", "bytes 9-0/100"), want: "CouldNotBeStored"},
		{name: "§3.3 no Content-Range", resp: with("Content-Range", ""), want: "CouldNotBeStored"},
		{name: "§3.3 Content-Length disagrees", resp: with("Content-Length", "11"), want: "CouldNotBeStored"},
		{name: "§3.3 multipart/byteranges", resp: with("Content-Range", "", "Content-Type", "multipart/byteranges; boundary=x"), want: "CouldNotBeStored"},
		{name: "§3.3 a 206 to HEAD", method: "HEAD", resp: ok, want: "CouldNotBeStored"},
		{name: "§5.2.2.5 no-store", resp: with("Cache-Control", "no-store"), want: "CouldNotBeStored"},
		{name: "§3 CacheableStatusCodes without 206", opts: Options{CacheableStatusCodes: []int{200}}, resp: ok, want: "CouldNotBeStored"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			modes(t, func(t *testing.T, shared bool) {
				now := t0
				o := tt.opts
				o.Shared, o.Now = shared, clock(&now)
				req := rangeReq("bytes=0-9")
				if tt.method != "" {
					req.Method = tt.method
				}
				miss := (&IdleClient{Options: &o}).Next(req, nil).(*CacheMiss)
				got := miss.Next(model.Response{Status: 206, Header: tt.resp})
				if kind(got) != tt.want {
					t.Errorf("CacheMiss.Next(206 %v) = %s (%v); want %s", tt.resp, kind(got), got.Why(), tt.want)
				}
			})
		})
	}
}

// RFC 9111 §3.3: a Range request answered from a stored partial response
// that holds the whole range, validated, or sent on.
func TestServeFromPartial(t *testing.T) {
	lm := t0.Add(-48 * time.Hour)
	served := func(status int, rng *ByteRange, contentRange string) func(t *testing.T, s IdleNext) {
		return func(t *testing.T, s IdleNext) {
			fc := s.(*FromCache)
			if fc.Status != status || !cmp.Equal(fc.Range, rng) || fc.Header.Get("Content-Range") != contentRange {
				t.Errorf("served %d, range %+v, Content-Range %q; want %d, %+v, %q", fc.Status, fc.Range, fc.Header.Get("Content-Range"), status, rng, contentRange)
			}
			if rng != nil && fc.Header.Get("Content-Length") != strconv.FormatInt(rng.Length, 10) {
				t.Errorf("served Content-Length %q; want %d", fc.Header.Get("Content-Length"), rng.Length)
			}
		}
	}
	runIdle(t, []idleCase{
		{name: "§3.3 range within a stored part", req: rangeReq("bytes=100-199"), pairs: []model.CompletePair{piece206(time.Minute, 0, 499, 1000)},
			want: "FromCache", section: "RFC 9111 §4.2", check: served(206, &ByteRange{100, 100}, "bytes 100-199/1000")},
		{name: "§3.3 suffix range within a stored part", req: rangeReq("bytes=-100"), pairs: []model.CompletePair{piece206(time.Minute, 500, 999, 1000)},
			want: "FromCache", check: served(206, &ByteRange{400, 100}, "bytes 900-999/1000")},
		{name: "§3.3 open range clipped to the representation", req: rangeReq("bytes=900-"), pairs: []model.CompletePair{piece206(time.Minute, 500, 999, 1000)},
			want: "FromCache", check: served(206, &ByteRange{400, 100}, "bytes 900-999/1000")},
		{name: "§3.3 the whole stored part", req: rangeReq("bytes=0-499"), pairs: []model.CompletePair{piece206(time.Minute, 0, 499, 1000)},
			want: "FromCache", check: served(206, &ByteRange{0, 500}, "bytes 0-499/1000")},
		{name: "§3.3 a part never answers a request without Range", pairs: []model.CompletePair{piece206(time.Minute, 0, 499, 1000)},
			want: "CacheMiss"},
		{name: "§3.3 a part never answers HEAD", req: head(hdr("Range", "bytes=0-9")), pairs: []model.CompletePair{piece206(time.Minute, 0, 499, 1000)},
			want: "CacheMiss"},
		{name: "§3.3 several ranges are sent on", req: rangeReq("bytes=0-9,20-29"), pairs: []model.CompletePair{piece206(time.Minute, 0, 499, 1000)},
			want: "CacheMiss"},
		{name: "§3.3 range outside the part", req: rangeReq("bytes=600-699"), pairs: []model.CompletePair{piece206(time.Minute, 0, 499, 1000)},
			want: "CacheMiss", check: func(t *testing.T, s IdleNext) {
				if cm := s.(*CacheMiss); cm.Partial != nil || cm.Request.Header.Get("Range") != "bytes=600-699" {
					t.Errorf("CacheMiss partial %v, Range %q; want the request as it is", cm.Partial, cm.Request.Header.Get("Range"))
				}
			}},
		{name: "§3.3 stored size differs from the range", req: rangeReq("bytes=0-9"),
			pairs: []model.CompletePair{func() model.CompletePair {
				p := piece206(time.Minute, 0, 499, 1000)
				p.Meta.ResponseSize = 499
				return p
			}()},
			want: "CacheMiss"},
		{name: "§4.1 Vary still selects", req: rangeReq("bytes=0-9", "Accept-Language", "fr"),
			pairs: []model.CompletePair{withReq(piece206(time.Minute, 0, 499, 1000, "Vary", "Accept-Language"), hdr("Accept-Language", "en"))},
			want:  "CacheMiss"},
		{name: "§4.3.1 stale part is validated with its entity-tag and the range", req: rangeReq("bytes=0-9"),
			pairs: []model.CompletePair{piece206(time.Hour, 0, 499, 1000)},
			want:  "NeedRevalidation", check: func(t *testing.T, s IdleNext) {
				nr := s.(*NeedRevalidation)
				if nr.Request.Header.Get("If-None-Match") != `"r"` || nr.Request.Header.Get("Range") != "bytes=0-9" || len(nr.Pairs) != 1 {
					t.Errorf("revalidation %v with %d pairs; want If-None-Match \"r\", the range, one pair", nr.Request.Header, len(nr.Pairs))
				}
			}},
		{name: "§4.3.2 If-None-Match matching the part: 304", req: rangeReq("bytes=0-9", "If-None-Match", `"r"`),
			pairs: []model.CompletePair{piece206(time.Minute, 0, 499, 1000)}, want: "FromCache", check: served(304, nil, "")},
		{name: "RFC 9110 §13.1.5 If-Range with the strong entity-tag", req: rangeReq("bytes=0-9", "If-Range", `"r"`),
			pairs: []model.CompletePair{piece206(time.Minute, 0, 499, 1000)}, want: "FromCache", check: served(206, &ByteRange{0, 10}, "bytes 0-9/1000")},
		{name: "RFC 9110 §13.1.5 If-Range with another entity-tag needs the whole", req: rangeReq("bytes=0-9", "If-Range", `"other"`),
			pairs: []model.CompletePair{piece206(time.Minute, 0, 499, 1000)}, want: "CacheMiss"},
		{name: "RFC 9110 §13.1.5 If-Range with a weak entity-tag never matches", req: rangeReq("bytes=0-9", "If-Range", `W/"r"`),
			pairs: []model.CompletePair{piece206(time.Minute, 0, 499, 1000)}, want: "CacheMiss"},
		{name: "RFC 9110 §13.1.5 If-Range with a strong Last-Modified", req: rangeReq("bytes=0-9", "If-Range", httpDate(lm)),
			pairs: []model.CompletePair{piece206(time.Minute, 0, 499, 1000, "Last-Modified", httpDate(lm))},
			want:  "FromCache", check: served(206, &ByteRange{0, 10}, "bytes 0-9/1000")},
		{name: "RFC 9110 §8.8.2.2 If-Range with a weak Last-Modified (Date too close)", req: rangeReq("bytes=0-9", "If-Range", httpDate(lm)),
			pairs: []model.CompletePair{piece206(time.Minute, 0, 499, 1000, "Last-Modified", httpDate(lm), "Date", httpDate(lm), "Cache-Control", "max-age=999999")},
			want:  "CacheMiss"},
		{name: "RFC 9110 §13.1.5 If-Range with another date", req: rangeReq("bytes=0-9", "If-Range", httpDate(lm.Add(time.Second))),
			pairs: []model.CompletePair{piece206(time.Minute, 0, 499, 1000, "Last-Modified", httpDate(lm))}, want: "CacheMiss"},
		{name: "§5.2.1.7 only-if-cached and a part holding the range", req: rangeReq("bytes=0-9", "Cache-Control", "only-if-cached"),
			pairs: []model.CompletePair{piece206(time.Minute, 0, 499, 1000)}, want: "FromCache"},
		{name: "§5.2.1.7 only-if-cached and a part holding some of it", req: rangeReq("bytes=400-599", "Cache-Control", "only-if-cached"),
			pairs: []model.CompletePair{piece206(time.Minute, 0, 499, 1000)}, want: "GatewayTimeout"},
		{name: "§4 the most recent representation", req: rangeReq("bytes=0-9"),
			pairs: []model.CompletePair{piece206(time.Minute, 0, 499, 1000, "ETag", `"old"`), piece206(30*time.Second, 600, 999, 1000, "ETag", `"new"`)},
			want:  "CacheMiss"},
		{name: "§4 a complete response wins over parts", req: rangeReq("bytes=0-9"),
			pairs: []model.CompletePair{piece206(time.Minute, 0, 499, 1000), stored(time.Minute, hdr("Cache-Control", "max-age=600", "Content-Length", "1000"))},
			want:  "FromCache", check: func(t *testing.T, s IdleNext) {
				if fc := s.(*FromCache); fc.Pair.Response.Status != 200 {
					t.Errorf("served from the stored %d; want the complete 200", fc.Pair.Response.Status)
				}
			}},
	})
}

// RFC 9111 §3.3: parts holding the start or the end of the range: the
// origin is asked for the rest only.
func TestPartialMiss(t *testing.T) {
	tests := []struct {
		name          string
		req           string
		pairs         []model.CompletePair
		missing       string // the Range sent
		before, after *ByteRange
	}{
		{name: "§3.3 start stored", req: "bytes=400-599", pairs: []model.CompletePair{piece206(time.Minute, 0, 499, 1000)},
			missing: "bytes=500-599", before: &ByteRange{400, 100}},
		{name: "§3.3 end stored", req: "bytes=400-599", pairs: []model.CompletePair{piece206(time.Minute, 500, 999, 1000)},
			missing: "bytes=400-499", after: &ByteRange{0, 100}},
		{name: "§3.3 both ends stored", req: "bytes=400-599", pairs: []model.CompletePair{piece206(time.Minute, 0, 449, 1000), piece206(time.Minute, 550, 999, 1000)},
			missing: "bytes=450-549", before: &ByteRange{400, 50}, after: &ByteRange{0, 50}},
		{name: "§3.3 a stale part still gives its bytes (If-Range validates them)", req: "bytes=400-599", pairs: []model.CompletePair{piece206(time.Hour, 0, 499, 1000)},
			missing: "bytes=500-599", before: &ByteRange{400, 100}},
		{name: "§3.3 open range", req: "bytes=400-", pairs: []model.CompletePair{piece206(time.Minute, 0, 499, 1000)},
			missing: "bytes=500-999", before: &ByteRange{400, 100}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			modes(t, func(t *testing.T, shared bool) {
				now := t0
				o := &Options{Shared: shared, Now: clock(&now)}
				req := rangeReq(tt.req, "X-Client", "1")
				cm, ok := (&IdleClient{Options: o}).Next(req, tt.pairs).(*CacheMiss)
				if !ok || cm.Partial == nil {
					t.Fatalf("IdleClient.Next = %v; want a CacheMiss with Partial", cm)
				}
				if cm.Why().Section != "RFC 9111 §3.3" {
					t.Errorf("reason %v; want RFC 9111 §3.3", cm.Why())
				}
				h := cm.Request.Header
				if h.Get("Range") != tt.missing || h.Get("If-Range") != `"r"` || h.Get("X-Client") != "1" {
					t.Errorf("request header %v; want Range %s, If-Range \"r\" and the caller's fields", h, tt.missing)
				}
				if req.Header.Get("Range") != tt.req || req.Header.Get("If-Range") != "" {
					t.Errorf("the caller's header was modified: %v", req.Header)
				}
				rng := func(p *Part) *ByteRange {
					if p == nil {
						return nil
					}
					return &p.Range
				}
				if !cmp.Equal(rng(cm.Partial.Before), tt.before) || !cmp.Equal(rng(cm.Partial.After), tt.after) {
					t.Errorf("Before %+v, After %+v; want %+v, %+v", rng(cm.Partial.Before), rng(cm.Partial.After), tt.before, tt.after)
				}
				if fb := cm.Fallback(); fb.Partial != nil || fb.Request.Header.Get("Range") != tt.req || fb.Request.Header.Get("If-Range") != "" {
					t.Errorf("Fallback request %v; want the caller's", fb.Request.Header)
				}
			})
		})
	}
}

// RFC 9111 §3.4: joining the origin's part with the stored ones.
func TestPartialJoin(t *testing.T) {
	now := t0
	o := &Options{Now: clock(&now)}
	cm := (&IdleClient{Options: o}).Next(rangeReq("bytes=400-599"), []model.CompletePair{piece206(time.Minute, 0, 499, 1000, "X-Old", "1")}).(*CacheMiss)
	good := hdr("Content-Range", "bytes 500-599/1000", "Content-Length", "100", "ETag", `"r"`, "Cache-Control", "max-age=60", "X-New", "2", "Connection", "close")
	j, ok := cm.Join(model.Response{Status: 206, Header: good})
	if !ok {
		t.Fatalf("Join of the missing part failed")
	}
	want := hdr("Content-Range", "bytes 400-599/1000", "Content-Length", "200", "ETag", `"r"`, "Cache-Control", "max-age=60", "X-New", "2")
	if diff := cmp.Diff(want, j.Header); diff != "" || j.Status != 206 {
		t.Errorf("Joined %d mismatch (-want +got):\n%s", j.Status, diff)
	}
	if good.Get("Content-Range") != "bytes 500-599/1000" {
		t.Errorf("Join modified the origin's header")
	}
	if got := cm.Next(model.Response{Status: 206, Header: good}); kind(got) != "StoreAndUse" {
		t.Errorf("Next(the missing part) = %s; want StoreAndUse: it is stored as a part", kind(got))
	}
	for name, h := range map[string]http.Header{
		"another entity-tag":    hdr("Content-Range", "bytes 500-599/1000", "ETag", `"s"`),
		"a weak entity-tag":     hdr("Content-Range", "bytes 500-599/1000", "ETag", `W/"r"`),
		"another range":         hdr("Content-Range", "bytes 500-598/1000", "ETag", `"r"`),
		"another complete size": hdr("Content-Range", "bytes 500-599/1001", "ETag", `"r"`),
		"a bad Content-Length":  hdr("Content-Range", "bytes 500-599/1000", "ETag", `"r"`, "Content-Length", "99"),
	} {
		if _, ok := cm.Join(model.Response{Status: 206, Header: h}); ok {
			t.Errorf("Join(206 with %s) succeeded", name)
		}
	}
	for _, st := range []int{200, 304, 416, 500} {
		if _, ok := cm.Join(model.Response{Status: st, Header: good}); ok {
			t.Errorf("Join(%d) succeeded", st)
		}
	}
}

// RFC 9111 §3.4: stored parts of one representation are combined.
func TestPartialUpdate(t *testing.T) {
	type part struct {
		pair int
		rng  ByteRange
	}
	tests := []struct {
		name         string
		req          model.Request
		pairs        []model.CompletePair
		want         string // kind of IdleClient.Next
		parts        []part
		status       int
		contentRange string
		length       string
		replaces     int
		next         string // kind of PartialUpdate.Next
	}{
		{name: "§3.4 two halves make the whole", pairs: []model.CompletePair{piece206(2*time.Minute, 0, 499, 1000), piece206(time.Minute, 500, 999, 1000, "X-Which", "newest")},
			want: "PartialUpdate", parts: []part{{0, ByteRange{0, 500}}, {1, ByteRange{0, 500}}}, status: 200, length: "1000", replaces: 2, next: "FromCache"},
		{name: "§3.4 overlapping parts", req: rangeReq("bytes=0-9"),
			pairs: []model.CompletePair{piece206(time.Minute, 400, 999, 1000, "X-Which", "newest"), piece206(2*time.Minute, 0, 599, 1000)},
			want:  "PartialUpdate", parts: []part{{1, ByteRange{0, 600}}, {0, ByteRange{200, 400}}}, status: 200, length: "1000", replaces: 2, next: "FromCache"},
		{name: "§3.4 a part inside another adds nothing", pairs: []model.CompletePair{piece206(2*time.Minute, 0, 999, 1000), piece206(time.Minute, 100, 199, 1000, "X-Which", "newest")},
			want: "PartialUpdate", parts: []part{{0, ByteRange{0, 1000}}}, status: 200, length: "1000", replaces: 2, next: "FromCache"},
		{name: "§3.4 one part holding it all", pairs: []model.CompletePair{piece206(time.Minute, 0, 999, 1000, "X-Which", "newest")},
			want: "PartialUpdate", parts: []part{{0, ByteRange{0, 1000}}}, status: 200, length: "1000", replaces: 1, next: "FromCache"},
		{name: "§3.4 abutting parts of some of it", req: rangeReq("bytes=0-9"),
			pairs: []model.CompletePair{piece206(2*time.Minute, 0, 299, 1000), piece206(time.Minute, 300, 499, 1000, "X-Which", "newest")},
			want:  "PartialUpdate", parts: []part{{0, ByteRange{0, 300}}, {1, ByteRange{0, 200}}}, status: 206, contentRange: "bytes 0-499/1000", length: "500", replaces: 2,
			next: "FromCache"},
		{name: "§3.4 the run the range meets", req: rangeReq("bytes=700-709"),
			pairs: []model.CompletePair{piece206(time.Minute, 0, 99, 1000), piece206(time.Minute, 100, 199, 1000),
				piece206(2*time.Minute, 600, 699, 1000), piece206(time.Minute, 700, 799, 1000, "X-Which", "newest")},
			want: "PartialUpdate", parts: []part{{2, ByteRange{0, 100}}, {3, ByteRange{0, 100}}}, status: 206, contentRange: "bytes 600-799/1000", length: "200", replaces: 2,
			next: "FromCache"},
		{name: "§3.4 parts that leave a gap are not combined", req: rangeReq("bytes=0-9"),
			pairs: []model.CompletePair{piece206(time.Minute, 0, 299, 1000), piece206(time.Minute, 301, 999, 1000)}, want: "FromCache"},
		{name: "§3.4 parts of other representations are not combined", req: rangeReq("bytes=0-9"),
			pairs: []model.CompletePair{piece206(2*time.Minute, 0, 499, 1000, "ETag", `"old"`), piece206(time.Minute, 500, 999, 1000)}, want: "CacheMiss"},
		{name: "§3.4 parts of other lengths are not combined", req: rangeReq("bytes=0-9"),
			pairs: []model.CompletePair{piece206(2*time.Minute, 0, 499, 1001), piece206(time.Minute, 500, 999, 1000)}, want: "CacheMiss"},
		{name: "§3.4 parts with a weak entity-tag are not stored parts", req: rangeReq("bytes=0-9"),
			pairs: []model.CompletePair{piece206(2*time.Minute, 0, 499, 1000, "ETag", `W/"r"`), piece206(time.Minute, 500, 999, 1000, "ETag", `W/"r"`)}, want: "CacheMiss"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			modes(t, func(t *testing.T, shared bool) {
				now := t0
				o := &Options{Shared: shared, Now: clock(&now)}
				req := tt.req
				if req.Method == "" {
					req = get(nil)
				}
				pairs := clonePairs(tt.pairs)
				got := (&IdleClient{Options: o}).Next(req, pairs)
				if kind(got) != tt.want {
					t.Fatalf("IdleClient.Next = %s (%v); want %s", kind(got), got.Why(), tt.want)
				}
				pu, ok := got.(*PartialUpdate)
				if !ok {
					return
				}
				if pu.Why().Section != "RFC 9111 §3.4" {
					t.Errorf("reason %v; want RFC 9111 §3.4", pu.Why())
				}
				var parts []part
				for _, p := range pu.Parts {
					for i := range pairs {
						if pairs[i].ID == p.Pair.ID {
							parts = append(parts, part{i, p.Range})
						}
					}
				}
				if diff := cmp.Diff(tt.parts, parts, cmp.AllowUnexported(part{})); diff != "" {
					t.Errorf("parts mismatch (-want +got):\n%s", diff)
				}
				h := pu.Response.Header
				if pu.Response.Status != tt.status || h.Get("Content-Range") != tt.contentRange || h.Get("Content-Length") != tt.length {
					t.Errorf("combined %d, Content-Range %q, Content-Length %q; want %d, %q, %q",
						pu.Response.Status, h.Get("Content-Range"), h.Get("Content-Length"), tt.status, tt.contentRange, tt.length)
				}
				if h.Get("X-Which") != "newest" || h.Get(HeaderResponseTime) == "" {
					t.Errorf("combined header %v; want the newest part's fields and its times", h)
				}
				if len(pu.Replaces) != tt.replaces {
					t.Errorf("Replaces %d pairs; want %d", len(pu.Replaces), tt.replaces)
				}
				// Storage stores the combined pair now; its age is the
				// newest part's.
				now = now.Add(time.Second)
				combined := model.CompletePair{ID: model.NewPairID(), Request: pu.Request, Response: pu.Response,
					Meta: model.PairMeta{Created: now, Completed: now}}
				next := pu.Next(combined)
				if kind(next) != tt.next {
					t.Fatalf("PartialUpdate.Next = %s (%v); want %s", kind(next), next.Why(), tt.next)
				}
				if fc, ok := next.(*FromCache); ok {
					if fc.Pair.ID != combined.ID {
						t.Errorf("served from %v; want the combined pair", fc.Pair.ID)
					}
					if fc.Age != 61*time.Second {
						t.Errorf("combined pair's age %v; want the newest part's 61s", fc.Age)
					}
				}
				if skip := pu.Skip(); kind(skip) == "PartialUpdate" {
					t.Errorf("Skip() = PartialUpdate")
				}
			})
		})
	}
}

// RFC 9111 §3.3, §3.4 end to end: parts stored from misses, a range served
// from a part, the rest asked for and joined, the parts combined into the
// whole, and a later request without Range served from it.
func TestScenarioPartial(t *testing.T) {
	const size = 1000
	content := strings.Repeat("0123456789", size/10)
	modes(t, func(t *testing.T, shared bool) {
		var ranges []string
		h := newHarness(t, shared, func(req model.Request) (model.Response, string, error) {
			rv := req.Header.Get("Range")
			ranges = append(ranges, rv)
			base := hdr("ETag", `"r"`, "Cache-Control", "max-age=600")
			if ir := req.Header.Get("If-Range"); ir != "" && ir != `"r"` {
				rv = ""
			}
			ans := ResolveRange(rv, size)
			if ans.Status != 206 {
				base.Set("Content-Length", strconv.Itoa(size))
				return model.Response{Status: 200, Header: base}, content, nil
			}
			base.Set("Content-Range", ans.ContentRange)
			base.Set("Content-Length", strconv.FormatInt(ans.Range.Length, 10))
			return model.Response{Status: 206, Header: base}, content[ans.Range.Start : ans.Range.Start+ans.Range.Length], nil
		})
		walk(t, h, []step{
			{at: 0, req: rangeReq("bytes=0-299"), trace: "CacheMiss → StoreAndUse", status: 206, body: content[0:300]},
			{at: time.Second, req: rangeReq("bytes=100-199"), trace: "FromCache", status: 206, body: content[100:200], age: "1"},
			{at: 2 * time.Second, req: rangeReq("bytes=200-499"), trace: "CacheMiss → StoreAndUse", status: 206, body: content[200:500]},
			{at: 3 * time.Second, req: rangeReq("bytes=800-999"), trace: "CacheMiss → StoreAndUse", status: 206, body: content[800:1000]},
			// The two abutting parts combine, then serve the range.
			{at: 4 * time.Second, req: rangeReq("bytes=250-349"), trace: "PartialUpdate → FromCache", status: 206, body: content[250:350]},
			// The gap 500-799 is asked for, joined with both stored ends.
			{at: 5 * time.Second, req: rangeReq("bytes=450-849"), trace: "CacheMiss → StoreAndUse", status: 206, body: content[450:850]},
			// Everything is stored: one complete pair answers any request.
			{at: 6 * time.Second, trace: "PartialUpdate → FromCache", status: 200, body: content},
			{at: 7 * time.Second, req: rangeReq("bytes=-5"), trace: "FromCache", status: 206, body: content[995:]},
		})
		want := []string{"bytes=0-299", "bytes=300-499", "bytes=800-999", "bytes=500-799"}
		if !cmp.Equal(ranges, want) {
			t.Errorf("ranges asked of the origin = %q; want %q", ranges, want)
		}
		ps := h.pairs[key("GET", testURL)]
		if len(ps) != 1 || ps[0].Response.Status != 200 || h.bodies[ps[0].ID] != content {
			t.Errorf("stored %d pairs; want the one complete response", len(ps))
		}
	})
}
