package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hishel-go/hishel/model"
)

// A pair comes back as it went in: heads (every value of a multi-valued
// field, Set-Cookie never joined), options, metadata and bodies; callers'
// header maps are not shared with storage.
func testRoundTrip(t *testing.T, open Opener) {
	ctx := context.Background()
	c := NewClock()
	s := open(t, Options{Now: c.Now})
	const key = "POST:https://example.com/a?b=c"
	reqHeader := http.Header{"X-Multi": {"1", "2", "3"}, "Cookie": {"a=b"}, "X-Empty": {""}}
	respHeader := http.Header{"Set-Cookie": {"a=1; Path=/", "b=2, c=3"}, "Content-Type": {"text/plain"}}
	reqOpts := model.RequestOptions{TTL: 2 * time.Hour, Refresh: model.NoRefresh}
	req := model.Request{
		Method: "POST", URL: "https://example.com/a?b=c", Header: reqHeader.Clone(),
		Body: model.StringBody("request body"), Options: reqOpts,
	}
	resp := model.Response{Status: 201, Header: respHeader.Clone(), Body: model.NewBody(strings.NewReader("response body"))}

	created := c.Now()
	inc, err := s.CreatePair(ctx, req)
	if err != nil {
		t.Fatalf("CreatePair() error = %v", err)
	}
	if inc.ID.IsZero() || !inc.Meta.Created.Equal(created) {
		t.Errorf("CreatePair() = ID %v, Created %v; want a new ID, Created %v", inc.ID, inc.Meta.Created, created)
	}
	req.Header.Set("X-Multi", "changed by the caller") // storage keeps its own copy
	if _, err := io.Copy(io.Discard, inc.Request.Body); err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Second)
	cp, err := s.AddResponse(ctx, inc.ID, resp, key)
	if err != nil {
		t.Fatalf("AddResponse() error = %v", err)
	}
	if cp.ID != inc.ID || cp.Key != key || cp.Request.Method != "POST" || cp.Response.Status != 201 {
		t.Errorf("AddResponse() = %v %q %s %d; want %v %q POST 201", cp.ID, cp.Key, cp.Request.Method, cp.Response.Status, inc.ID, key)
	}
	resp.Header.Del("Set-Cookie")
	if _, err := io.Copy(io.Discard, cp.Response.Body); err != nil {
		t.Fatal(err)
	}

	ps := mustGet(t, s, key)
	if len(ps) != 1 {
		t.Fatalf("GetPairs() = %d pairs; want 1", len(ps))
	}
	one, err := s.GetPair(ctx, inc.ID)
	if err != nil {
		t.Fatalf("GetPair(%v) error = %v", inc.ID, err)
	}
	for name, p := range map[string]model.CompletePair{"GetPairs": ps[0], "GetPair": one} {
		if p.ID != inc.ID || p.Key != key {
			t.Errorf("%s: ID, Key = %v, %q; want %v, %q", name, p.ID, p.Key, inc.ID, key)
		}
		if diff := cmp.Diff(reqHeader, p.Request.Header, equateEmpty); diff != "" {
			t.Errorf("%s: request header mismatch (-want +got):\n%s", name, diff)
		}
		if diff := cmp.Diff(respHeader, p.Response.Header, equateEmpty); diff != "" {
			t.Errorf("%s: response header mismatch (-want +got):\n%s", name, diff)
		}
		if p.Request.Method != "POST" || p.Request.URL != req.URL || p.Response.Status != 201 || p.Request.Options != reqOpts {
			t.Errorf("%s: heads = %s %s %d %+v; want POST %s 201 %+v", name,
				p.Request.Method, p.Request.URL, p.Response.Status, p.Request.Options, req.URL, reqOpts)
		}
		m := p.Meta
		if m.RequestSize != 12 || m.ResponseSize != 13 || !m.Created.Equal(created) || !m.Completed.Equal(created.Add(time.Second)) ||
			!m.Deleted.IsZero() || m.TTL != 2*time.Hour || m.Refresh || !m.Expires.Equal(created.Add(time.Second+2*time.Hour)) {
			t.Errorf("%s: Meta = %+v; want sizes 12, 13, created %v, completed a second later, TTL 2h, no refresh", name, m, created)
		}
		if got, want := bodies(t, []model.CompletePair{p}), []string{"request body|response body"}; !cmp.Equal(got, want) {
			t.Errorf("%s: bodies = %q; want %q", name, got, want)
		}
		p.Response.Header.Set("Set-Cookie", "changed by the reader")
	}
	if got := getBodies(t, s, key); !cmp.Equal(got, []string{"request body|response body"}) {
		t.Errorf("second GetPairs() bodies = %q", got)
	}
	if ps := mustGet(t, s, key); len(ps) != 1 || !cmp.Equal(ps[0].Response.Header, respHeader) {
		t.Errorf("a reader's change to a returned header reached storage: %v", ps)
	} else {
		ps[0].Close()
	}
	wantStats(t, "after one pair", mustStats(t, s), model.Stats{Pairs: 1, Bytes: 25})
}

// Keys are any bytes of any length; each key serves only its own pairs.
func testKeys(t *testing.T, open Opener) {
	s := open(t, Options{})
	long := strings.Repeat("k", 40<<10)
	keys := []string{"", "\x00", "\x00\x00", "\xff\xfe", "a\x00b", "GET https://example.com/", "GET https://example.com/ ",
		long, long + "x", long[:len(long)-1] + "j"}
	for i, k := range keys {
		store(t, s, getReq("u"), okResp(fmt.Sprint(i)), k)
	}
	for i, k := range keys {
		if got, want := getBodies(t, s, k), []string{fmt.Sprint("|", i)}; !cmp.Equal(got, want) {
			t.Errorf("GetPairs(key %d, %d bytes) bodies = %q; want %q", i, len(k), got, want)
		}
	}
	if n := count(t, s, "never stored"); n != 0 {
		t.Errorf("GetPairs(unknown key) = %d pairs; want 0", n)
	}
}

// Bodies of every size around the chunk size read back byte for byte, by
// each of Body's views.
func testBodySizes(t *testing.T, open Opener) {
	const chunk = 1000
	s := open(t, Options{ChunkSize: chunk})
	readers := []struct {
		name string
		read func(*model.Body) ([]byte, error)
	}{
		{"Read", model.ReadAll},
		{"Chunks", func(b *model.Body) ([]byte, error) { return readChunks(context.Background(), b) }},
		{"All", readAll},
	}
	sizes := []int{0, 1, chunk - 1, chunk, chunk + 1, 5*chunk + 17, 64<<10 - 1, 64 << 10, 1<<20 - 1, 1 << 20, 1<<20 + 1, 3<<20 + 17}
	var total int64
	for i, n := range sizes {
		rd := readers[i%len(readers)]
		t.Run(fmt.Sprint(n, "/", rd.name), func(t *testing.T) {
			reqBody, respBody := pattern(n, 1), pattern(n, 2)
			key := fmt.Sprint("k", n)
			req := model.Request{Method: "PUT", URL: "u", Body: model.BytesBody(reqBody)}
			store(t, s, req, model.Response{Status: 200, Body: model.NewBody(bytes.NewReader(respBody))}, key)
			total += int64(2 * n)
			ps := mustGet(t, s, key)
			if len(ps) != 1 {
				t.Fatalf("GetPairs() = %d pairs; want 1", len(ps))
			}
			p := ps[0]
			if p.Meta.RequestSize != int64(n) || p.Meta.ResponseSize != int64(n) {
				t.Errorf("Meta sizes = %d, %d; want %d, %d", p.Meta.RequestSize, p.Meta.ResponseSize, n, n)
			}
			for _, b := range []struct {
				name string
				body *model.Body
				want []byte
			}{{"request", p.Request.Body, reqBody}, {"response", p.Response.Body, respBody}} {
				got, err := rd.read(b.body)
				if err != nil || !bytes.Equal(got, b.want) {
					t.Errorf("%s body read back = %d bytes, %v; want %d identical bytes (first difference at %d)",
						b.name, len(got), err, n, firstDiff(got, b.want))
				}
			}
		})
	}
	wantStats(t, "after every size", mustStats(t, s), model.Stats{Pairs: len(sizes), Bytes: total})
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// Bodies from a plain reader that returns short reads, from bytes and from a
// channel are all stored whole.
func testBodySources(t *testing.T, open Opener) {
	s := open(t, Options{ChunkSize: 4096})
	data := pattern(100_003, 3)
	sources := []struct {
		name string
		body func(ctx context.Context) *model.Body
	}{
		{"HalfReader", func(context.Context) *model.Body { return model.NewBody(iotest.HalfReader(bytes.NewReader(data))) }},
		{"OneByteReader", func(context.Context) *model.Body {
			return model.NewBody(iotest.OneByteReader(bytes.NewReader(data[:5000])))
		}},
		{"BytesBody", func(context.Context) *model.Body { return model.BytesBody(data) }},
		{"ChanBody", func(ctx context.Context) *model.Body { return chanBody(ctx, data, 777) }},
		{"nil", func(context.Context) *model.Body { return nil }},
	}
	for _, src := range sources {
		t.Run(src.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			want := data
			switch src.name {
			case "OneByteReader":
				want = data[:5000]
			case "nil":
				want = nil
			}
			req := model.Request{Method: "POST", URL: "u", Body: src.body(ctx)}
			store(t, s, req, model.Response{Status: 200, Body: src.body(ctx)}, src.name)
			ps := mustGet(t, s, src.name)
			if len(ps) != 1 {
				t.Fatalf("GetPairs() = %d pairs; want 1", len(ps))
			}
			for _, b := range []*model.Body{ps[0].Request.Body, ps[0].Response.Body} {
				if got, err := model.ReadAll(b); err != nil || !bytes.Equal(got, want) {
					t.Errorf("body read back = %d bytes, %v; want %d identical bytes", len(got), err, len(want))
				}
			}
		})
	}
}

// A pair is served only once both of its bodies are stored, whichever is
// read first; until then it is incomplete.
func testVisibility(t *testing.T, open Opener) {
	ctx := context.Background()
	for _, order := range []string{"response first", "request first", "nil bodies"} {
		t.Run(order, func(t *testing.T) {
			s := open(t, Options{})
			req := model.Request{Method: "GET", URL: "u", Body: model.StringBody("req")}
			resp := okResp("resp")
			want := []string{"req|resp"}
			if order == "nil bodies" {
				req.Body, resp.Body, want = nil, nil, []string{"|"}
			}
			inc, err := s.CreatePair(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			wantStats(t, "after CreatePair", syncedStats(t, s), model.Stats{Incomplete: 1})
			if order == "request first" {
				if _, err := io.ReadAll(inc.Request.Body); err != nil {
					t.Fatal(err)
				}
				if n := count(t, s, "k"); n != 0 {
					t.Fatalf("GetPairs() = %d pairs before AddResponse; want 0", n)
				}
			}
			cp, err := s.AddResponse(ctx, inc.ID, resp, "k")
			if err != nil {
				t.Fatal(err)
			}
			if order != "nil bodies" {
				if n := count(t, s, "k"); n != 0 {
					t.Fatalf("GetPairs() = %d pairs before the bodies are stored; want 0", n)
				}
				if _, err := s.GetPair(ctx, inc.ID); !errors.Is(err, model.ErrNotFound) {
					t.Errorf("GetPair(incomplete) error = %v; want ErrNotFound", err)
				}
				if _, err := s.UpdatePair(ctx, inc.ID, cp); !errors.Is(err, model.ErrNotFound) {
					t.Errorf("UpdatePair(incomplete) error = %v; want ErrNotFound", err)
				}
				first, second := cp.Response.Body, inc.Request.Body
				if order == "request first" {
					second = nil // already stored
				}
				if _, err := io.ReadAll(first); err != nil {
					t.Fatal(err)
				}
				if second != nil {
					if n := count(t, s, "k"); n != 0 {
						t.Fatalf("GetPairs() = %d pairs with one body stored; want 0", n)
					}
					if _, err := io.ReadAll(second); err != nil {
						t.Fatal(err)
					}
				}
			}
			if got := getBodies(t, s, "k"); !cmp.Equal(got, want) {
				t.Fatalf("GetPairs() bodies = %q; want %q", got, want)
			}
			if p, err := s.GetPair(ctx, inc.ID); err != nil {
				t.Errorf("GetPair(complete) error = %v", err)
			} else {
				p.Close()
			}
			var size int64
			if order != "nil bodies" {
				size = 7
			}
			wantStats(t, "once complete", mustStats(t, s), model.Stats{Pairs: 1, Bytes: size})
		})
	}
}

// A caller-chosen ID is honoured and unique for as long as the pair is
// stored, soft-deleted ones included; once purged, it may be used again.
func testWithID(t *testing.T, open Opener) {
	ctx := context.Background()
	c := NewClock()
	s := open(t, Options{Now: c.Now})
	id := model.PairID{1, 2, 3}
	cp := store(t, s, getReq("u"), okResp("x"), "k", model.WithID(id))
	if cp.ID != id {
		t.Fatalf("CreatePair(WithID(%v)) ID = %v", id, cp.ID)
	}
	p, err := s.GetPair(ctx, id)
	if err != nil || p.ID != id {
		t.Fatalf("GetPair(%v) = %v, %v; want the pair", id, p.ID, err)
	}
	p.Close()
	dup := func(when string, want error) {
		t.Helper()
		_, err := s.CreatePair(ctx, getReq("u"), model.WithID(id))
		if !errIs(err, want) {
			t.Errorf("CreatePair(WithID) %s: error = %v; want %v", when, err, want)
		}
	}
	dup("while stored", model.ErrDuplicateID)
	if err := s.Remove(ctx, id); err != nil {
		t.Fatal(err)
	}
	dup("while soft-deleted", model.ErrDuplicateID)
	c.Advance(8 * 24 * time.Hour)
	if res := mustSweep(t, s); res != (model.SweepResult{Purged: 1}) {
		t.Errorf("Cleanup() = %+v; want 1 purged", res)
	}
	store(t, s, getReq("again"), okResp("y"), "k", model.WithID(id))
	if got := getBodies(t, s, "k"); !cmp.Equal(got, []string{"|y"}) {
		t.Errorf("after reusing a purged ID, bodies = %q; want [|y]", got)
	}
}

// UpdatePair replaces heads, key and TTL metadata atomically, in its value
// and its function form; bodies, sizes and the other metadata stay.
func testUpdatePair(t *testing.T, open Opener) {
	ctx := context.Background()
	c := NewClock()
	s := open(t, Options{Now: c.Now})
	completed := c.Now()
	cp := store(t, s, getReq("u"), okResp("body"), "old")
	other := store(t, s, getReq("u"), okResp("other"), "new")
	c.Advance(time.Minute)

	next := cp
	next.Key = "new"
	next.Request.URL = "u2"
	next.Response.Status = 203
	next.Response.Header = http.Header{"X-Updated": {"1"}, "Set-Cookie": {"a=1", "b=2"}}
	next.Meta.TTL = time.Hour
	next.Meta.Expires = c.Now().Add(time.Hour)
	next.Meta.ResponseSize = 999 // ignored: bodies never change
	got, err := s.UpdatePair(ctx, cp.ID, next)
	if err != nil {
		t.Fatalf("UpdatePair() error = %v", err)
	}
	if got.ID != cp.ID || got.Key != "new" || got.Request.URL != "u2" || got.Response.Status != 203 ||
		got.Meta.TTL != time.Hour || !got.Meta.Expires.Equal(next.Meta.Expires) || got.Meta.ResponseSize != 4 ||
		!got.Meta.Completed.Equal(completed) {
		t.Errorf("UpdatePair() = key %q url %q status %d meta %+v; want the update with body size 4 and completion kept",
			got.Key, got.Request.URL, got.Response.Status, got.Meta)
	}
	if b, err := model.ReadAll(got.Response.Body); err != nil || string(b) != "body" {
		t.Errorf("UpdatePair() body = %q, %v; want %q", b, err, "body")
	}
	got.Request.Body.Close()
	if n := count(t, s, "old"); n != 0 {
		t.Errorf("GetPairs(old key) = %d pairs after the move; want 0", n)
	}
	ps := mustGet(t, s, "new")
	if len(ps) != 2 {
		t.Fatalf("GetPairs(new key) = %d pairs; want the moved pair and the one there", len(ps))
	}
	i := slices.IndexFunc(ps, func(p model.CompletePair) bool { return p.ID == cp.ID })
	if i < 0 || !cmp.Equal(ps[i].Response.Header, next.Response.Header) {
		t.Errorf("GetPairs(new key) does not hold the updated pair: %v", ps)
	}
	bodies(t, ps)

	var seen model.CompletePair
	got, err = s.UpdatePairFunc(ctx, cp.ID, func(p model.CompletePair) (model.CompletePair, error) {
		seen = p
		p.Response.Header = p.Response.Header.Clone()
		p.Response.Header.Add("Set-Cookie", "c=3")
		p.Key = "old"
		return p, nil
	})
	if err != nil {
		t.Fatalf("UpdatePairFunc() error = %v", err)
	}
	if seen.Request.Body != nil || seen.Response.Body != nil {
		t.Errorf("UpdatePairFunc's function got bodies; want nil bodies")
	}
	if seen.Key != "new" || seen.Response.Status != 203 {
		t.Errorf("UpdatePairFunc's function saw key %q status %d; want the stored pair (new, 203)", seen.Key, seen.Response.Status)
	}
	if want := []string{"a=1", "b=2", "c=3"}; !cmp.Equal(got.Response.Header["Set-Cookie"], want) {
		t.Errorf("UpdatePairFunc() Set-Cookie = %q; want %q", got.Response.Header["Set-Cookie"], want)
	}
	got.Close()
	if got := getBodies(t, s, "old"); !cmp.Equal(got, []string{"|body"}) {
		t.Errorf("after moving back, GetPairs(old) bodies = %q; want [|body]", got)
	}
	if got := getBodies(t, s, "new"); !cmp.Equal(got, []string{"|other"}) {
		t.Errorf("after moving back, GetPairs(new) bodies = %q; want [|other]", got)
	}

	// An expiry set by an update is kept to.
	expire := other
	expire.Meta.TTL = time.Minute
	expire.Meta.Expires = c.Now().Add(time.Minute)
	if p, err := s.UpdatePair(ctx, other.ID, expire); err != nil {
		t.Fatalf("UpdatePair(expiry) error = %v", err)
	} else {
		p.Close()
	}
	c.Advance(2 * time.Minute)
	if n := count(t, s, "new"); n != 0 {
		t.Errorf("GetPairs() = %d pairs after the updated expiry; want 0", n)
	}
	if res := mustSweep(t, s); res != (model.SweepResult{Expired: 1}) {
		t.Errorf("Cleanup() = %+v; want the updated pair expired", res)
	}
	wantStats(t, "after the updates", mustStats(t, s), model.Stats{Pairs: 1, Deleted: 1, Bytes: 9})
}

// Remove hides a pair at once, keeps its bytes until a sweep, and is a
// no-op for an unknown or removed pair; a removed pair is gone for every
// operation that needs a live one.
func testRemove(t *testing.T, open Opener) {
	ctx := context.Background()
	c := NewClock()
	s := open(t, Options{Now: c.Now})
	a := store(t, s, getReq("u"), okResp("a"), "k")
	store(t, s, getReq("u"), okResp("b"), "k")
	inc, err := s.CreatePair(ctx, getReq("u"))
	if err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Second)
	for _, id := range []model.PairID{a.ID, a.ID, inc.ID, model.NewPairID()} {
		if err := s.Remove(ctx, id); err != nil {
			t.Errorf("Remove(%v) = %v; want nil", id, err)
		}
	}
	if got := getBodies(t, s, "k"); !cmp.Equal(got, []string{"|b"}) {
		t.Errorf("after Remove, bodies = %q; want [|b]", got)
	}
	wantStats(t, "after Remove", mustStats(t, s), model.Stats{Pairs: 1, Deleted: 2, Bytes: 2})
	if _, err := s.GetPair(ctx, a.ID); !errors.Is(err, model.ErrNotFound) {
		t.Errorf("GetPair(removed) error = %v; want ErrNotFound", err)
	}
	if _, err := s.UpdatePair(ctx, a.ID, a); !errors.Is(err, model.ErrNotFound) {
		t.Errorf("UpdatePair(removed) error = %v; want ErrNotFound", err)
	}
	if _, err := s.AddResponse(ctx, a.ID, okResp("x"), "k"); !errors.Is(err, model.ErrNotFound) {
		t.Errorf("AddResponse(removed complete pair) error = %v; want ErrNotFound", err)
	}
	if _, err := s.AddResponse(ctx, inc.ID, okResp("x"), "k"); !errors.Is(err, model.ErrNotFound) {
		t.Errorf("AddResponse(removed incomplete pair) error = %v; want ErrNotFound", err)
	}
	for _, p := range infos(t, s) {
		if p.ID == a.ID && (p.State != model.StateDeleted || !p.Meta.Deleted.Equal(c.Now())) {
			t.Errorf("Pairs() lists the removed pair as %v deleted at %v; want deleted at %v", p.State, p.Meta.Deleted, c.Now())
		}
	}
}

// GetPairs serves every variant under a key, newest first.
func testNewestFirst(t *testing.T, open Opener) {
	c := NewClock()
	s := open(t, Options{Now: c.Now})
	for _, b := range []string{"1", "2", "3"} {
		store(t, s, getReq("u"), okResp(b), "k")
		c.Advance(time.Second)
	}
	if got, want := getBodies(t, s, "k"), []string{"|3", "|2", "|1"}; !cmp.Equal(got, want) {
		t.Errorf("GetPairs() bodies = %q; want %q (newest first)", got, want)
	}
	// Completion, not creation, orders them.
	c.Advance(time.Second)
	inc, err := s.CreatePair(context.Background(), getReq("u"))
	if err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Second)
	store(t, s, getReq("u"), okResp("5"), "k")
	c.Advance(time.Second)
	cp, err := s.AddResponse(context.Background(), inc.ID, okResp("4"), "k")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, cp.Response.Body); err != nil {
		t.Fatal(err)
	}
	if got, want := getBodies(t, s, "k"), []string{"|4", "|5", "|3", "|2", "|1"}; !cmp.Equal(got, want) {
		t.Errorf("GetPairs() bodies = %q; want %q (latest completed first)", got, want)
	}
}

// Pairs lists every pair once, in ID order, whatever its state, with heads
// and no bodies; the loop body may call the storage, and a loop that stops
// early stops the listing.
func testPairs(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t, Options{NoSync: true})
	const n = 300 // more than one page of Bolt's listing
	want := map[model.PairID]model.PairState{}
	keys := map[model.PairID]string{}
	for i := range n {
		cp := store(t, s, getReq("u"), okResp("x"), fmt.Sprint(i))
		want[cp.ID], keys[cp.ID] = model.StateComplete, cp.Key
	}
	inc, err := s.CreatePair(ctx, getReq("u"))
	if err != nil {
		t.Fatal(err)
	}
	want[inc.ID] = model.StateIncomplete
	var removed model.PairID
	for id := range want {
		if want[id] == model.StateComplete {
			removed = id
			break
		}
	}
	if err := s.Remove(ctx, removed); err != nil {
		t.Fatal(err)
	}
	want[removed] = model.StateDeleted
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}

	got := map[model.PairID]model.PairState{}
	var order []model.PairID
	for p, err := range s.Pairs(ctx, model.Filter{}) {
		if err != nil {
			t.Fatalf("Pairs() error = %v", err)
		}
		if _, dup := got[p.ID]; dup {
			t.Fatalf("pair %v listed twice", p.ID)
		}
		got[p.ID] = p.State
		order = append(order, p.ID)
		if p.Request.Body != nil || p.Response.Body != nil {
			t.Fatalf("pair %v listed with bodies", p.ID)
		}
		if p.Request.Method != "GET" || p.Key != keys[p.ID] {
			t.Fatalf("pair %v listed as %s %q; want GET %q", p.ID, p.Request.Method, p.Key, keys[p.ID])
		}
		if p.State == model.StateComplete && p.Response.Status != 200 {
			t.Fatalf("complete pair %v listed with status %d", p.ID, p.Response.Status)
		}
		if len(order) == 1 { // the loop may call the storage
			if _, err := s.Stats(ctx); err != nil {
				t.Fatalf("Stats() inside the Pairs loop: %v", err)
			}
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Pairs() states mismatch (-want +got):\n%s", diff)
	}
	if !slices.IsSortedFunc(order, func(a, b model.PairID) int { return bytes.Compare(a[:], b[:]) }) {
		t.Errorf("Pairs() did not list in ID order")
	}
	calls := 0
	for _, err := range s.Pairs(ctx, model.Filter{}) {
		calls++
		if err != nil {
			t.Fatalf("Pairs() error = %v", err)
		}
		break
	}
	if calls != 1 {
		t.Errorf("Pairs() loop that breaks at once ran %d times; want 1", calls)
	}
	// Stopping early releases what the listing holds: the store still
	// works, and lists everything again.
	if got := len(infos(t, s)); got != len(want) {
		t.Errorf("Pairs() after an early stop lists %d pairs; want %d", got, len(want))
	}
	// A context cancelled during the listing ends it with its error.
	cctx, cancel := context.WithCancel(ctx)
	seen := 0
	var last error
	for _, err := range s.Pairs(cctx, model.Filter{}) {
		if err != nil {
			last = err
			break
		}
		if seen++; seen == 10 {
			cancel()
		}
	}
	cancel()
	if !errors.Is(last, context.Canceled) || seen >= len(want) {
		t.Errorf("Pairs() with its context cancelled after 10 pairs: %d pairs, then %v; want fewer than %d, then context.Canceled", seen, last, len(want))
	}
}

// A reader owns the chunks a stored body hands out (model.ChunkSource): it
// may change them without changing what is stored.
func testReaderOwnsChunks(t *testing.T, open Opener) {
	s := open(t, Options{ChunkSize: 1000})
	body := pattern(10_000, 8)
	store(t, s, model.Request{Method: "PUT", URL: "u", Body: model.BytesBody(body)},
		model.Response{Status: 200, Body: model.BytesBody(body)}, "k")
	ps := mustGet(t, s, "k")
	for c, err := range ps[0].Request.Body.All() {
		if err != nil {
			t.Fatalf("reading a stored body with All: %v", err)
		}
		for i := range c {
			c[i] = 'X'
		}
	}
	for c := range ps[0].Response.Body.Chunks(context.Background()) {
		if c.Err != nil {
			t.Fatalf("reading a stored body with Chunks: %v", c.Err)
		}
		for i := range c.Data {
			c.Data[i] = 'X'
		}
	}
	p, err := s.GetPair(context.Background(), ps[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string]*model.Body{"request": p.Request.Body, "response": p.Response.Body} {
		if got, err := model.ReadAll(b); err != nil || !bytes.Equal(got, body) {
			t.Errorf("%s body after a reader changed its chunks = %d bytes, %v; want the bytes stored (first difference at %d)",
				name, len(got), err, firstDiff(got, body))
		}
	}
}
