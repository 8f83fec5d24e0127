package statemachine

import (
	"cmp"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hishel-go/hishel/model"
)

// Part is a run of bytes of a stored partial response's body: Range is
// relative to Pair's body, which starts at the first byte of its
// Content-Range.
type Part struct {
	Pair  model.CompletePair
	Range ByteRange
}

// PartialUpdate says that stored partial responses (206) of one
// representation can be combined into one (RFC 9111 §3.4): store a new
// pair for Request whose response is Response with, as its body, the
// bytes of Parts one after the other; then remove the pairs of Replaces
// and call Next with the new pair, as GetPairs returns it. When the
// combined pair cannot be stored, call Skip instead. Either says how to
// answer the request; the bodies of the pairs given to IdleClient.Next are
// the caller's to close, as usual.
type PartialUpdate struct {
	// Parts are the stored pairs the combined body is read from, in
	// order: their Ranges follow each other without gap or overlap.
	Parts []Part
	// Request is the request to store the combined response for: that of
	// the part with the most recent header.
	Request model.Request
	// Response has the combined response's status and header (Body is
	// nil): a 200 when the parts cover the whole representation, with its
	// complete Content-Length; otherwise a 206 with the Content-Range of
	// the union. Its fields are those of the most recent part, whose
	// request and response times it records (see the package
	// documentation on times).
	Response model.Response
	// Replaces are the pairs the combined one replaces: every part, and
	// any stored part the others cover.
	Replaces []model.PairID
	Reason   Reason

	opts  *Options
	req   model.Request
	pairs []model.CompletePair
}

// PartialNext is a state that can follow PartialUpdate: *CacheMiss,
// *FromCache, *NeedRevalidation or *GatewayTimeout.
type PartialNext interface {
	IdleNext
	isPartialNext()
}

func (s *PartialUpdate) Why() Reason { return s.Reason }
func (*PartialUpdate) isState()      {}
func (*PartialUpdate) isIdleNext()   {}

func (*CacheMiss) isPartialNext()        {}
func (*FromCache) isPartialNext()        {}
func (*NeedRevalidation) isPartialNext() {}
func (*GatewayTimeout) isPartialNext()   {}

// Next says how to answer the request now that combined, the stored pair
// of Request and Response, replaces the pairs of Replaces.
func (s *PartialUpdate) Next(combined model.CompletePair) PartialNext {
	pairs := make([]model.CompletePair, 0, len(s.pairs)+1)
	for _, p := range s.pairs {
		if !slices.Contains(s.Replaces, p.ID) {
			pairs = append(pairs, p)
		}
	}
	pairs = append(pairs, combined)
	return s.opts.idle(s.req, pairs, s.opts.now(), false).(PartialNext)
}

// Skip says how to answer the request from the pairs as they are, without
// combining them.
func (s *PartialUpdate) Skip() PartialNext {
	return s.opts.idle(s.req, s.pairs, s.opts.now(), false).(PartialNext)
}

// PartialMiss describes a CacheMiss that asks the origin for only the part
// of the requested range that no stored partial response holds.
type PartialMiss struct {
	// Range is the part of the representation the caller asked for and
	// Missing the part CacheMiss.Request asks the origin for, both as
	// offsets in the representation; Size is its complete length.
	Range, Missing ByteRange
	Size           int64
	// Before and After are the stored bytes that go before and after the
	// origin's; either may be nil.
	Before, After *Part

	tag string // the strong entity-tag the origin's answer must have
}

// Joined is the response to send when the origin's answer to a partial
// miss joins the stored bytes: Status 206, with Header the origin's fields
// (RFC 9111 §3.4: the new response's) with the Content-Range and
// Content-Length of the whole range asked for. Its content is Before's
// bytes, the origin's body, then After's bytes.
type Joined struct {
	Status int
	Header http.Header
}

// Join reports whether resp, the origin's answer to a CacheMiss with
// Partial, is the missing part of the same representation (a 206 of
// exactly Missing with the stored parts' strong entity-tag), and if so the
// response that joins it with the stored bytes. Otherwise the caller
// passes resp on only if it is a full response (not a 206 or 416, which
// answer a range the caller did not ask for) and otherwise discards it and
// sends Fallback's request. Next still says whether to store resp.
func (s *CacheMiss) Join(resp model.Response) (Joined, bool) {
	pm := s.Partial
	if pm == nil || resp.Status != http.StatusPartialContent {
		return Joined{}, false
	}
	pr, ok := rangeOf(resp.Header)
	if !ok || pr.first != pm.Missing.Start || pr.last != pm.Missing.Start+pm.Missing.Length-1 || pr.size != pm.Size {
		return Joined{}, false
	}
	if tag, ok := etag(resp.Header); !ok || !strongMatch(tag, pm.tag) {
		return Joined{}, false
	}
	h, _ := cleanHeader(resp.Header, nil, 0)
	h["Content-Range"] = []string{contentRange(pm.Range.Start, pm.Range.Start+pm.Range.Length-1, pm.Size)}
	h["Content-Length"] = []string{strconv.FormatInt(pm.Range.Length, 10)}
	return Joined{Status: http.StatusPartialContent, Header: h}, true
}

// Fallback returns the CacheMiss for the caller's request as it is, for
// when the origin's answer to a partial miss cannot be joined.
func (s *CacheMiss) Fallback() *CacheMiss {
	if s.Partial == nil {
		return s
	}
	return s.opts.miss(s.original, why("the origin's answer does not complete the stored range; ask for the whole", "RFC 9111 §3.4"))
}

// partialRange is a stored or received partial response's single byte
// range.
type partialRange struct {
	first, last, size int64
}

// parseContentRange parses a 206's Content-Range (RFC 9110 §14.4): one field
// line "bytes first-last/complete" with a known complete length and
// first <= last < complete. The unit is case-insensitive; nothing else is
// lenient.
func parseContentRange(v string) (partialRange, bool) {
	unit, rest, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(unit, "bytes") {
		return partialRange{}, false
	}
	rng, size, ok := strings.Cut(rest, "/")
	if !ok {
		return partialRange{}, false
	}
	first, last, ok := strings.Cut(rng, "-")
	if !ok {
		return partialRange{}, false
	}
	f, ok1 := parsePos(first)
	l, ok2 := parsePos(last)
	n, ok3 := parsePos(size)
	if !ok1 || !ok2 || !ok3 || n >= 1<<62 || f > l || l >= n {
		return partialRange{}, false
	}
	return partialRange{f, l, n}, true
}

// rangeOf returns the byte range of a 206 whose header h is one this
// package stores and serves from (RFC 9111 §3.3, §3.4): a single
// Content-Range of known complete length, a Content-Length (if any) equal
// to the range's, not multipart/byteranges, and a strong entity-tag to
// combine and validate by.
func rangeOf(h http.Header) (partialRange, bool) {
	cr := h["Content-Range"]
	if len(cr) != 1 {
		return partialRange{}, false
	}
	pr, ok := parseContentRange(trimOWS(cr[0]))
	if !ok {
		return partialRange{}, false
	}
	if cl := h["Content-Length"]; len(cl) > 0 {
		if n, ok := parsePos(trimOWS(cl[0])); !ok || len(cl) > 1 || n != pr.last-pr.first+1 {
			return partialRange{}, false
		}
	}
	if ct := h["Content-Type"]; len(ct) > 0 {
		if mt, _, err := mime.ParseMediaType(ct[0]); err == nil && mt == "multipart/byteranges" {
			return partialRange{}, false
		}
	}
	if tag, ok := etag(h); !ok || isWeak(tag) {
		return partialRange{}, false
	}
	return pr, true
}

// ParseContentRange parses the Content-Range field value of a single-part
// 206 (RFC 9110 §14.4), "bytes first-last/complete", strictly: the unit is
// case-insensitive, surrounding whitespace is ignored, the complete length
// must be known and first <= last < complete. It returns the range and the
// complete length.
func ParseContentRange(v string) (r ByteRange, size int64, ok bool) {
	pr, ok := parseContentRange(trimOWS(v))
	if !ok {
		return ByteRange{}, 0, false
	}
	return ByteRange{pr.first, pr.last - pr.first + 1}, pr.size, true
}

func contentRange(first, last, size int64) string {
	return "bytes " + strconv.FormatInt(first, 10) + "-" + strconv.FormatInt(last, 10) + "/" + strconv.FormatInt(size, 10)
}

// piece is a usable stored partial response.
type piece struct {
	i int // index in the pairs
	partialRange
	tag  string
	date time.Time
}

// storedPiece reports whether the stored pair p is a partial response this
// package serves from, and its range. A body whose stored size is known
// and differs from the range's length is not.
func storedPiece(p *model.CompletePair) (partialRange, string, bool) {
	if p.Response.Status != http.StatusPartialContent || p.Request.Method != "GET" {
		return partialRange{}, "", false
	}
	pr, ok := rangeOf(p.Response.Header)
	if !ok || p.Meta.ResponseSize != 0 && p.Meta.ResponseSize != pr.last-pr.first+1 {
		return partialRange{}, "", false
	}
	tag, _ := etag(p.Response.Header)
	return pr, tag, true
}

// partials decides what stored partial responses can do for a GET that no
// stored complete response answers (RFC 9111 §3.3, §3.4). It returns
//
//   - a *PartialUpdate when, combine being set, pieces of the chosen
//     representation overlap or abut (or one covers it whole);
//   - a *CacheMiss with Partial when stored pieces hold the start or the
//     end of the requested range, but not all of it: the origin is asked
//     for the rest only, one contiguous range;
//   - or the index of a stored piece that holds the whole requested range,
//     which the caller then treats as any selected stored response;
//   - or nil and -1 when they cannot help.
//
// The chosen representation is that of the most recent usable piece (by
// Date); its pieces share its strong entity-tag and complete length.
func (o *Options) partials(req *model.Request, pairs []model.CompletePair, now time.Time, combine, force, onlyIfCached bool) (IdleNext, int) {
	var ps []piece
	newest := -1
	for i := range pairs {
		p := &pairs[i]
		pr, tag, ok := storedPiece(p)
		if !ok || !o.selectable(p, req, force) {
			continue
		}
		ps = append(ps, piece{i: i, partialRange: pr, tag: tag, date: pairDate(p, now)})
		if newest < 0 || ps[len(ps)-1].date.After(ps[newest].date) {
			newest = len(ps) - 1
		}
	}
	if len(ps) == 0 {
		return nil, -1
	}
	lead := ps[newest]
	group := ps[:0:0]
	for _, pc := range ps {
		if pc.tag == lead.tag && pc.size == lead.size {
			group = append(group, pc)
		}
	}
	slices.SortFunc(group, func(a, b piece) int { return cmp.Compare(a.first, b.first) })

	// The range asked for; the whole representation for a GET without
	// one, or with one that is not a single satisfiable range, or whose
	// If-Range fails (RFC 9110 §13.1.5).
	want := ByteRange{0, lead.size}
	ranged := false
	if rv := req.Header["Range"]; len(rv) == 1 && ifRangeMatches(req.Header, pairs[lead.i].Response.Header) {
		if ans := ResolveRange(rv[0], lead.size); ans.Status == http.StatusPartialContent {
			want, ranged = ans.Range, true
		}
	}
	wantLast := want.Start + want.Length - 1

	if combine {
		if pu := o.combine(req, pairs, group, want, ranged); pu != nil {
			return pu, -1
		}
	}
	if !ranged {
		return nil, -1
	}
	var before, after *piece
	for k := range group {
		pc := &group[k]
		if pc.first <= want.Start && pc.last >= wantLast {
			return nil, pc.i // holds it all
		}
		if pc.first <= want.Start && pc.last >= want.Start && (before == nil || pc.last > before.last) {
			before = pc
		}
		if pc.first <= wantLast && pc.last >= wantLast && (after == nil || pc.first < after.first) {
			after = pc
		}
	}
	if before == nil && after == nil {
		return nil, -1
	}
	if onlyIfCached {
		return gatewayTimeout(nil, why("only-if-cached, but the stored partial responses lack part of the range", "RFC 9111 §5.2.1.7")), -1
	}
	pm := &PartialMiss{Range: want, Size: lead.size, tag: lead.tag}
	missFirst, missLast := want.Start, wantLast
	if before != nil {
		pm.Before = &Part{Pair: pairs[before.i], Range: ByteRange{want.Start - before.first, before.last - want.Start + 1}}
		missFirst = before.last + 1
	}
	if after != nil {
		pm.After = &Part{Pair: pairs[after.i], Range: ByteRange{0, wantLast - after.first + 1}}
		missLast = after.first - 1
	}
	pm.Missing = ByteRange{missFirst, missLast - missFirst + 1}
	h := req.Header.Clone()
	h["Range"] = []string{"bytes=" + strconv.FormatInt(missFirst, 10) + "-" + strconv.FormatInt(missLast, 10)}
	h["If-Range"] = []string{lead.tag}
	out := *req
	out.Header = h
	m := o.miss(out, why("stored partial responses hold part of the range; ask the origin for the rest", "RFC 9111 §3.3"))
	m.Partial, m.original = pm, *req
	return m, -1
}

// combine returns the PartialUpdate for a run of pieces in group (sorted
// by first byte) that overlap or abut and that would serve the request: a
// run that holds the whole representation, or, for a Range request
// (ranged), one of two or more pieces that meets the requested range. It
// returns nil when there is none: runs that would not serve this request
// are left for one they would.
func (o *Options) combine(req *model.Request, pairs []model.CompletePair, group []piece, want ByteRange, ranged bool) *PartialUpdate {
	var runs [][]piece
	for k := 0; k < len(group); {
		end := group[k].last
		j := k + 1
		for j < len(group) && group[j].first <= end+1 {
			end = max(end, group[j].last)
			j++
		}
		runs = append(runs, group[k:j])
		k = j
	}
	var chosen []piece
	wantLast := want.Start + want.Length - 1
	for _, run := range runs {
		first, last := run[0].first, run[0].last
		for _, pc := range run[1:] {
			last = max(last, pc.last)
		}
		whole := first == 0 && last == run[0].size-1
		meets := ranged && len(run) > 1 && first <= wantLast && last >= want.Start
		if whole || meets {
			chosen = run
			break
		}
	}
	if chosen == nil {
		return nil
	}
	pu := &PartialUpdate{opts: o, req: *req, pairs: pairs,
		Reason: why("stored partial responses with one strong validator combine", "RFC 9111 §3.4")}
	newest := chosen[0]
	covered := chosen[0].first - 1
	for _, pc := range chosen {
		pu.Replaces = append(pu.Replaces, pairs[pc.i].ID)
		if pc.date.After(newest.date) {
			newest = pc
		}
		if pc.last <= covered {
			continue
		}
		start := max(pc.first, covered+1)
		pu.Parts = append(pu.Parts, Part{Pair: pairs[pc.i], Range: ByteRange{start - pc.first, pc.last - start + 1}})
		covered = pc.last
	}
	first, size := chosen[0].first, chosen[0].size
	np := &pairs[newest.i]
	h := np.Response.Header.Clone()
	delete(h, "Content-Range")
	reqT, respT := pairTimes(reqRespTimes{np.Meta.Created, np.Meta.Completed}, h)
	h[HeaderRequestTime] = []string{reqT.UTC().Format(time.RFC3339Nano)}
	h[HeaderResponseTime] = []string{respT.UTC().Format(time.RFC3339Nano)}
	h["Content-Length"] = []string{strconv.FormatInt(covered-first+1, 10)}
	status := http.StatusOK
	if first != 0 || covered != size-1 {
		status = http.StatusPartialContent
		h["Content-Range"] = []string{contentRange(first, covered, size)}
	}
	pu.Request = np.Request
	pu.Response = model.Response{Status: status, Header: h}
	return pu
}

// servePartial sets the range of a stored partial response to send for
// req, a GET with one Range field that the stored range holds (as
// partials checked): status 206 with the Content-Range and
// Content-Length of the requested part, and Range relative to the stored
// body.
func servePartial(s *Served, req *model.Request, h http.Header) {
	pr, ok := rangeOf(s.Pair.Response.Header)
	rv := req.Header["Range"]
	if !ok || len(rv) != 1 {
		return
	}
	ans := ResolveRange(rv[0], pr.size)
	if ans.Status != http.StatusPartialContent || ans.Range.Start < pr.first || ans.Range.Start+ans.Range.Length-1 > pr.last {
		return
	}
	s.Range = &ByteRange{ans.Range.Start - pr.first, ans.Range.Length}
	h["Content-Range"] = []string{ans.ContentRange}
	h["Content-Length"] = []string{strconv.FormatInt(ans.Range.Length, 10)}
}
