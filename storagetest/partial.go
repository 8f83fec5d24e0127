package storagetest

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/hishel-go/hishel/model"
)

// Partial content (a 206 with its Content-Range) is an ordinary pair: its
// status, Content-Range and body come back as they were stored, beside the
// other pairs of its key; and a pair whose response body streams from
// stored pairs' bodies, as combining parts does (RFC 9111 §3.4), stores
// like any other. No backend needs a path of its own for either.
func testPartialContent(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t, Options{})
	const key = "GET https://example.com/video"
	content := strings.Repeat("0123456789", 1000)
	part := func(first, last int, tag string) model.Response {
		return model.Response{Status: http.StatusPartialContent, Header: http.Header{
			"Content-Range":  {"bytes " + strconv.Itoa(first) + "-" + strconv.Itoa(last) + "/" + strconv.Itoa(len(content))},
			"Content-Length": {strconv.Itoa(last - first + 1)},
			"Etag":           {tag},
		}, Body: model.StringBody(content[first : last+1])}
	}
	a := store(t, s, getReq("https://example.com/video"), part(0, 4999, `"v"`), key)
	b := store(t, s, getReq("https://example.com/video"), part(5000, 9999, `"v"`), key)
	ps := mustGet(t, s, key)
	if len(ps) != 2 {
		t.Fatalf("GetPairs() = %d pairs; want the 2 parts", len(ps))
	}
	bodyOf := map[model.PairID]*model.Body{}
	for _, p := range ps {
		want := map[model.PairID]string{a.ID: "bytes 0-4999/10000", b.ID: "bytes 5000-9999/10000"}[p.ID]
		if p.Response.Status != http.StatusPartialContent || p.Response.Header.Get("Content-Range") != want || p.Meta.ResponseSize != 5000 {
			t.Errorf("part %v = %d, Content-Range %q, size %d; want 206, %q, 5000", p.ID, p.Response.Status,
				p.Response.Header.Get("Content-Range"), p.Meta.ResponseSize, want)
		}
		bodyOf[p.ID] = p.Response.Body
	}
	// Combine: the new pair's body is the parts' bodies, read as it is
	// stored.
	inc, err := s.CreatePair(ctx, getReq("https://example.com/video"))
	if err != nil {
		t.Fatal(err)
	}
	whole := model.Response{Status: 200, Header: http.Header{"Content-Length": {strconv.Itoa(len(content))}, "Etag": {`"v"`}},
		Body: model.NewBody(io.MultiReader(bodyOf[a.ID], bodyOf[b.ID]))}
	cp, err := s.AddResponse(ctx, inc.ID, whole, key)
	if err != nil {
		t.Fatalf("AddResponse(combined) error = %v", err)
	}
	if _, err := io.Copy(io.Discard, cp.Response.Body); err != nil {
		t.Fatalf("storing the combined body: %v", err)
	}
	for _, p := range ps {
		p.Close()
	}
	for _, id := range []model.PairID{a.ID, b.ID} {
		if err := s.Remove(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if got := getBodies(t, s, key); len(got) != 1 || got[0] != "|"+content {
		t.Errorf("after combining, GetPairs() bodies = %d, first %.30q; want the one whole body", len(got), got)
	}
}
