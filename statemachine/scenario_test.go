package statemachine

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hishel-go/hishel/model"
)

// harness is a minimal cache around the state machine: an in-memory store
// keyed by method and URL, a scripted origin and a stopped clock. It does
// the I/O the states ask for, as the Transport will.
type harness struct {
	t      *testing.T
	now    time.Time
	idle   IdleClient
	pairs  map[string][]model.CompletePair
	bodies map[model.PairID]string
	origin func(req model.Request) (model.Response, string, error)
	calls  []http.Header // headers of the requests the origin saw
}

type answer struct {
	status int
	header http.Header
	body   string
	trace  []string
}

func newHarness(t *testing.T, shared bool, origin func(req model.Request) (model.Response, string, error)) *harness {
	h := &harness{t: t, now: t0, pairs: map[string][]model.CompletePair{}, bodies: map[model.PairID]string{}, origin: origin}
	h.idle = IdleClient{Options: &Options{Shared: shared, Now: func() time.Time { return h.now }}}
	return h
}

func key(method, url string) string { return method + " " + url }

func (h *harness) send(req model.Request) (model.Response, string, error) {
	h.calls = append(h.calls, req.Header.Clone())
	resp, body, err := h.origin(req)
	if err == nil && resp.Header.Get("Date") == "" {
		resp.Header.Set("Date", httpDate(h.now)) // origins send Date (RFC 9110 §6.6.1)
	}
	return resp, body, err
}

func (h *harness) do(req model.Request) answer {
	var a answer
	k := key(req.Method, req.URL)
	if req.Method == "HEAD" {
		k = key("GET", req.URL) // HEAD is keyed like GET, as the Transport does
	}
	state := h.idle.Next(req, h.pairs[k])
	return h.act(a, req, state, h.now)
}

// act carries out an IdleNext state.
func (h *harness) act(a answer, req model.Request, state IdleNext, sentAt time.Time) answer {
	a.trace = append(a.trace, kind(state))
	switch s := state.(type) {
	case *PartialUpdate:
		// Combine the parts' bytes into one new pair, then go on.
		var body string
		for _, p := range s.Parts {
			b := h.bodies[p.Pair.ID]
			body += b[p.Range.Start : p.Range.Start+p.Range.Length]
		}
		k := key("GET", req.URL)
		p := model.CompletePair{ID: model.NewPairID(), Request: s.Request, Response: s.Response, Key: k,
			Meta: model.PairMeta{Created: h.now, Completed: h.now}}
		h.pairs[k] = slices.DeleteFunc(h.pairs[k], func(q model.CompletePair) bool { return slices.Contains(s.Replaces, q.ID) })
		h.pairs[k] = append(h.pairs[k], p)
		h.bodies[p.ID] = body
		return h.act(a, req, s.Next(p), sentAt)
	case *CacheMiss:
		if s.Partial == nil {
			break
		}
		resp, body, err := h.send(s.Request)
		if err != nil {
			a.status = 502
			return a
		}
		j, ok := s.Join(resp)
		if !ok {
			if resp.Status == 206 || resp.Status == 416 {
				return h.act(a, req, s.Fallback(), sentAt)
			}
			return h.store(a, req, s.Next(resp), body, sentAt)
		}
		a = h.store(a, req, s.Next(resp), body, sentAt)
		part := func(p *Part) string {
			if p == nil {
				return ""
			}
			b := h.bodies[p.Pair.ID]
			return b[p.Range.Start : p.Range.Start+p.Range.Length]
		}
		a.status, a.header, a.body = j.Status, j.Header, part(s.Partial.Before)+body+part(s.Partial.After)
		return a
	}
	switch s := state.(type) {
	case *FromCache:
		if s.Revalidate != nil {
			h.background(s.Revalidate)
		}
		return h.served(a, s.Served)
	case *GatewayTimeout:
		a.status = s.Status
		return a
	case *CacheMiss:
		resp, body, err := h.send(s.Request)
		if err != nil {
			a.status = 502
			return a
		}
		return h.store(a, req, s.Next(resp), body, sentAt)
	case *WriteThrough:
		resp, body, err := h.send(s.Request)
		if err != nil {
			a.status = 502
			return a
		}
		next := s.Next(resp)
		a.trace = append(a.trace, kind(next))
		if inv, ok := next.(*InvalidateURIs); ok {
			for _, tg := range inv.Targets {
				delete(h.pairs, key(tg.Method, tg.URL))
			}
		}
		a.status, a.header, a.body = resp.Status, resp.Header, body
		return a
	case *NeedRevalidation:
		resp, body, err := h.send(s.Request)
		if err != nil {
			next := s.OnError(err)
			a.trace = append(a.trace, kind(next))
			switch n := next.(type) {
			case *ServeStale:
				return h.served(a, n.Served)
			case *GatewayTimeout:
				a.status = n.Status
			}
			return a
		}
		return h.revalidated(a, req, s.Next(resp), body, sentAt)
	}
	h.t.Fatalf("unexpected state %T", state)
	return a
}

func (h *harness) revalidated(a answer, req model.Request, next RevalidationNext, body string, sentAt time.Time) answer {
	a.trace = append(a.trace, kind(next))
	switch n := next.(type) {
	case *NeedToBeUpdated:
		for _, p := range n.Updates {
			k := p.Key
			i := slices.IndexFunc(h.pairs[k], func(q model.CompletePair) bool { return q.ID == p.ID })
			h.pairs[k][i] = p
		}
		k := key("GET", req.URL)
		h.pairs[k] = slices.DeleteFunc(h.pairs[k], func(q model.CompletePair) bool { return slices.Contains(n.Invalidate, q.ID) })
		return h.served(a, n.Next().Served)
	case *InvalidatePairs:
		k := key("GET", req.URL)
		h.pairs[k] = slices.DeleteFunc(h.pairs[k], func(q model.CompletePair) bool { return slices.Contains(n.PairIDs, q.ID) })
		return h.store(a, req, n.Next(), body, sentAt)
	case *ServeStale:
		return h.served(a, n.Served)
	case *CacheMiss:
		resp, body, err := h.send(n.Request)
		if err != nil {
			a.status = 502
			return a
		}
		return h.store(a, req, n.Next(resp), body, sentAt)
	case StoreNext:
		return h.store(a, req, n, body, sentAt)
	}
	h.t.Fatalf("unexpected state %T", next)
	return a
}

func (h *harness) background(nr *NeedRevalidation) {
	resp, body, err := h.send(nr.Request)
	if err != nil {
		return
	}
	h.revalidated(answer{}, nr.Request, nr.Next(resp), body, h.now)
}

func (h *harness) store(a answer, req model.Request, next StoreNext, body string, sentAt time.Time) answer {
	if len(a.trace) == 0 || a.trace[len(a.trace)-1] != kind(next) {
		a.trace = append(a.trace, kind(next))
	}
	switch n := next.(type) {
	case *StoreAndUse:
		k := key("GET", req.URL)
		p := model.CompletePair{ID: model.NewPairID(), Request: req, Response: n.Response, Key: k,
			Meta: model.PairMeta{Created: sentAt, Completed: h.now}}
		p.Request.Header = req.Header.Clone()
		h.pairs[k] = append(h.pairs[k], p)
		h.bodies[p.ID] = body
		a.status, a.header = n.Response.Status, n.Response.Header
	case *CouldNotBeStored:
		a.status, a.header = n.Response.Status, n.Response.Header
	}
	a.body = body
	return a
}

func (h *harness) served(a answer, s Served) answer {
	a.status, a.header = s.Status, s.Header
	body := h.bodies[s.Pair.ID]
	if s.Range != nil {
		body = body[s.Range.Start : s.Range.Start+s.Range.Length]
	} else if s.Status == 304 || s.Status == 416 {
		body = ""
	}
	a.body = body
	return a
}

// step is one request of a scenario and what must come of it.
type step struct {
	at     time.Duration // time since t0
	req    model.Request
	trace  string // kinds of the states walked, joined by " → "
	status int
	body   string
	age    string // the Age field, when checked
}

func walk(t *testing.T, h *harness, steps []step) {
	t.Helper()
	for i, st := range steps {
		h.now = t0.Add(st.at)
		req := st.req
		if req.Method == "" {
			req = get(nil)
		}
		a := h.do(req)
		trace := strings.Join(a.trace, " → ")
		if trace != st.trace || a.status != st.status || a.body != st.body {
			t.Fatalf("step %d at %v: %s %v = %s, %d %q; want %s, %d %q", i, st.at, req.Method, req.Header, trace, a.status, a.body, st.trace, st.status, st.body)
		}
		if st.age != "" && a.header.Get("Age") != st.age {
			t.Errorf("step %d: Age = %q; want %q", i, a.header.Get("Age"), st.age)
		}
	}
}

// RFC 9111 §3, §4.2, §4.3: miss → store → hit → stale → revalidate → 304 →
// freshened hit → stale → changed → replaced.
func TestScenarioRevalidation(t *testing.T) {
	modes(t, func(t *testing.T, shared bool) {
		version := "v1"
		h := newHarness(t, shared, func(req model.Request) (model.Response, string, error) {
			tag := `"` + version + `"`
			if req.Header.Get("If-None-Match") == tag {
				return model.Response{Status: 304, Header: hdr("Etag", tag, "Cache-Control", "max-age=60")}, "", nil
			}
			return model.Response{Status: 200, Header: hdr("Etag", tag, "Cache-Control", "max-age=60", "Content-Length", "5")}, "body" + version[1:], nil
		})
		walk(t, h, []step{
			{at: 0, trace: "CacheMiss → StoreAndUse", status: 200, body: "body1"},
			{at: 30 * time.Second, trace: "FromCache", status: 200, body: "body1", age: "30"},
			{at: 90 * time.Second, trace: "NeedRevalidation → NeedToBeUpdated", status: 200, body: "body1", age: "0"},
			{at: 120 * time.Second, trace: "FromCache", status: 200, body: "body1", age: "30"},
		})
		if got := h.calls[1].Get("If-None-Match"); got != `"v1"` {
			t.Errorf("revalidation sent If-None-Match %q; want \"v1\"", got)
		}
		version = "v2"
		walk(t, h, []step{
			{at: 200 * time.Second, trace: "NeedRevalidation → InvalidatePairs>StoreAndUse → StoreAndUse", status: 200, body: "body2"},
			{at: 210 * time.Second, trace: "FromCache", status: 200, body: "body2", age: "10"},
			{at: 211 * time.Second, req: get(hdr("Range", "bytes=1-2")), trace: "FromCache", status: 206, body: "od"},
			{at: 212 * time.Second, req: get(hdr("If-None-Match", `"v2"`)), trace: "FromCache", status: 304, body: ""},
		})
		if n := len(h.pairs[key("GET", testURL)]); n != 1 {
			t.Errorf("%d pairs stored; want the replaced one only", n)
		}
		if len(h.calls) != 3 {
			t.Errorf("origin saw %d requests; want 3", len(h.calls))
		}
	})
}

// RFC 9111 §4.1: several Vary variants under one key.
func TestScenarioVary(t *testing.T) {
	modes(t, func(t *testing.T, shared bool) {
		h := newHarness(t, shared, func(req model.Request) (model.Response, string, error) {
			return model.Response{Status: 200, Header: hdr("Cache-Control", "max-age=600", "Vary", "Accept-Language")}, "hello-" + req.Header.Get("Accept-Language"), nil
		})
		en, fr := get(hdr("Accept-Language", "en")), get(hdr("Accept-Language", "fr"))
		walk(t, h, []step{
			{at: 0, req: en, trace: "CacheMiss → StoreAndUse", status: 200, body: "hello-en"},
			{at: time.Second, req: fr, trace: "CacheMiss → StoreAndUse", status: 200, body: "hello-fr"},
			{at: 2 * time.Second, req: en, trace: "FromCache", status: 200, body: "hello-en", age: "2"},
			{at: 3 * time.Second, req: fr, trace: "FromCache", status: 200, body: "hello-fr", age: "2"},
			{at: 4 * time.Second, trace: "CacheMiss → StoreAndUse", status: 200, body: "hello-"},
			{at: 5 * time.Second, trace: "FromCache", status: 200, body: "hello-"},
		})
		if n := len(h.pairs[key("GET", testURL)]); n != 3 {
			t.Errorf("%d variants stored; want 3", n)
		}
	})
}

// RFC 9111 §4.4: a POST invalidates the stored GET, and the Location.
func TestScenarioInvalidation(t *testing.T) {
	modes(t, func(t *testing.T, shared bool) {
		const other = "https://example.com/other"
		h := newHarness(t, shared, func(req model.Request) (model.Response, string, error) {
			if req.Method == "POST" {
				return model.Response{Status: 201, Header: hdr("Location", "/other")}, "created", nil
			}
			return model.Response{Status: 200, Header: hdr("Cache-Control", "max-age=600")}, "get " + req.URL, nil
		})
		post := model.Request{Method: "POST", URL: testURL, Header: make(http.Header)}
		getOther := model.Request{Method: "GET", URL: other, Header: make(http.Header)}
		walk(t, h, []step{
			{at: 0, trace: "CacheMiss → StoreAndUse", status: 200, body: "get " + testURL},
			{at: 0, req: getOther, trace: "CacheMiss → StoreAndUse", status: 200, body: "get " + other},
			{at: time.Second, trace: "FromCache", status: 200, body: "get " + testURL},
			{at: 2 * time.Second, req: post, trace: "WriteThrough → InvalidateURIs", status: 201, body: "created"},
			{at: 3 * time.Second, trace: "CacheMiss → StoreAndUse", status: 200, body: "get " + testURL},
			{at: 3 * time.Second, req: getOther, trace: "CacheMiss → StoreAndUse", status: 200, body: "get " + other},
		})
	})
}

// RFC 5861: stale-while-revalidate refreshes in the background;
// stale-if-error answers from the cache when the origin fails.
func TestScenarioStale(t *testing.T) {
	modes(t, func(t *testing.T, shared bool) {
		fail := error(nil)
		status := 200
		n := 0
		h := newHarness(t, shared, func(req model.Request) (model.Response, string, error) {
			if fail != nil {
				return model.Response{}, "", fail
			}
			if status != 200 {
				return model.Response{Status: status, Header: hdr()}, "oops", nil
			}
			n++
			if req.Header.Get("If-None-Match") != "" {
				return model.Response{Status: 304, Header: hdr("Etag", `"x"`)}, "", nil
			}
			return model.Response{Status: 200, Header: hdr("Etag", `"x"`,
				"Cache-Control", "max-age=10, stale-while-revalidate=10, stale-if-error=100")}, "data", nil
		})
		walk(t, h, []step{
			{at: 0, trace: "CacheMiss → StoreAndUse", status: 200, body: "data"},
			{at: 15 * time.Second, trace: "FromCache+revalidate", status: 200, body: "data", age: "15"},
			{at: 16 * time.Second, trace: "FromCache", status: 200, body: "data", age: "1"},
		})
		if n != 2 {
			t.Errorf("origin answered %d times; want 2 (one background revalidation)", n)
		}
		fail = errors.New("network down")
		walk(t, h, []step{
			{at: 40 * time.Second, trace: "NeedRevalidation → ServeStale", status: 200, body: "data", age: "25"},
			{at: 200 * time.Second, trace: "NeedRevalidation → GatewayTimeout", status: 504, body: ""},
		})
		fail, status = nil, 503
		walk(t, h, []step{
			{at: 50 * time.Second, trace: "NeedRevalidation → ServeStale", status: 200, body: "data"},
			{at: 200 * time.Second, trace: "NeedRevalidation → CouldNotBeStored", status: 503, body: "oops"},
		})
	})
}

// RFC 9111 §4.3.4: after a 304, the stored pair carries the validation's
// times, so its age restarts even though its Meta does not change.
func TestScenarioFreshenedTimes(t *testing.T) {
	now := t0
	o := &Options{Now: clock(&now)}
	p := stored(2*time.Minute, hdr("Cache-Control", "max-age=60", "ETag", `"a"`, "Date", httpDate(t0.Add(-2*time.Minute))))
	nr := revalidation(t, o, get(nil), p)
	now = now.Add(time.Second) // the origin takes a second
	up := nr.Next(model.Response{Status: 304, Header: hdr("ETag", `"a"`, "Date", httpDate(now))}).(*NeedToBeUpdated)
	fresh := up.Updates[0]
	if !cmp.Equal(fresh.Meta, p.Meta) {
		t.Errorf("freshening changed Meta")
	}
	now = now.Add(30 * time.Second)
	fc, ok := (&IdleClient{Options: o}).Next(get(nil), []model.CompletePair{fresh}).(*FromCache)
	if !ok || fc.Header.Get("Age") != "31" {
		t.Fatalf("after freshening: %v; want FromCache with Age 31 (1s response delay + 30s resident)", fc)
	}
}
