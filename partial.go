package hishel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/hishel-go/hishel/model"
	"github.com/hishel-go/hishel/statemachine"
)

// Partial content (RFC 9111 §3.3, §3.4). The state machine decides; this
// file does the I/O: a 206 is stored as an ordinary pair (status 206 and its
// Content-Range) through the Storage interface, parts are combined into an
// ordinary pair streamed from the stored parts' bodies, and a range the
// stored parts hold only in part is completed with the origin's answer for
// the rest.

// combiner keeps one combination per key at a time: two requests that find
// the same parts would otherwise both copy them.
type combiner struct {
	busy map[string]bool // by key; guarded by Transport.mu
}

// combine carries out a PartialUpdate: it copies the parts' bytes, read
// from a second GetPairs so that pairs stays untouched, into a new pair,
// removes the parts it replaces, and returns the state that follows with
// the pairs the caller now holds. When the combination cannot be made it
// returns pu.Skip() and pairs as they are.
func (t *Transport) combine(req *http.Request, key string, pu *statemachine.PartialUpdate, pairs []model.CompletePair) (statemachine.IdleNext, []model.CompletePair) {
	if cl, err := strconv.ParseInt(pu.Response.Header.Get("Content-Length"), 10, 64); err != nil ||
		t.opts.MaxBodySize > 0 && cl > t.opts.MaxBodySize {
		return pu.Skip(), pairs
	}
	t.mu.Lock()
	if t.combining.busy == nil {
		t.combining.busy = map[string]bool{}
	}
	if t.combining.busy[key] {
		t.mu.Unlock()
		return pu.Skip(), pairs
	}
	t.combining.busy[key] = true
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		delete(t.combining.busy, key)
		t.mu.Unlock()
	}()

	ctx := req.Context()
	id, err := t.storeCombined(ctx, key, pu)
	if err != nil {
		t.storeFailed(req, key, "combine partial responses", err)
		return pu.Skip(), pairs
	}
	for _, rid := range pu.Replaces {
		if err := t.store.Remove(ctx, rid); err != nil {
			t.storeFailed(req, key, "remove a combined part", err)
		}
	}
	after, err := t.store.GetPairs(ctx, key)
	if err != nil {
		t.storeFailed(req, key, "get pairs", err)
	}
	var combined *model.CompletePair
	for i := range after {
		if after[i].ID == id {
			combined = &after[i]
		} else {
			_ = after[i].Close()
		}
	}
	kept := pairs[:0:0]
	for _, p := range pairs {
		if slicesContains(pu.Replaces, p.ID) {
			_ = p.Close()
		} else {
			kept = append(kept, p)
		}
	}
	if combined == nil {
		// Gone already (evicted, or removed by another request): decide
		// again from what is left.
		closeOthers(kept, model.PairID{})
		fresh, _ := t.store.GetPairs(ctx, key)
		next := t.machine.Next(t.lookupRequest(req), fresh)
		if again, ok := next.(*statemachine.PartialUpdate); ok {
			next = again.Skip()
		}
		return next, fresh
	}
	return pu.Next(*combined), append(kept, *combined)
}

// storeCombined stores the combined pair of pu, its body streamed from the
// parts' stored bodies, and returns its ID once it is complete.
func (t *Transport) storeCombined(ctx context.Context, key string, pu *statemachine.PartialUpdate) (model.PairID, error) {
	src, err := t.store.GetPairs(ctx, key)
	if err != nil {
		return model.PairID{}, err
	}
	defer closeOthers(src, model.PairID{})
	byID := make(map[model.PairID]*model.Body, len(src))
	for i := range src {
		byID[src[i].ID] = src[i].Response.Body
	}
	parts := make([]io.Reader, 0, len(pu.Parts))
	for _, p := range pu.Parts {
		b, ok := byID[p.Pair.ID]
		if !ok {
			return model.PairID{}, errPartGone
		}
		parts = append(parts, &rangeBody{body: b, skip: p.Range.Start, left: p.Range.Length})
	}
	mreq := pu.Request
	mreq.Body = nil
	inc, err := t.store.CreatePair(ctx, mreq)
	if err != nil {
		return model.PairID{}, err
	}
	cp, err := t.store.AddResponse(ctx, inc.ID, model.Response{Status: pu.Response.Status, Header: pu.Response.Header,
		Body: model.NewBody(io.MultiReader(parts...))}, key)
	if err != nil {
		return model.PairID{}, err
	}
	// Reading the stored stream stores it.
	_, err = io.Copy(io.Discard, cp.Response.Body)
	_ = cp.Response.Body.Close()
	if err != nil {
		return model.PairID{}, fmt.Errorf("hishel: copying the parts: %w", err)
	}
	return cp.ID, nil
}

var errPartGone = errors.New("hishel: a stored part is gone")

func slicesContains(ids []model.PairID, id model.PairID) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// partialMiss carries out a CacheMiss with Partial: it asks the origin for
// the missing run and, when the answer completes the stored bytes, sends
// the caller the stored bytes before it, the origin's (stored as a new
// part while the caller reads them) and the stored bytes after it.
// Otherwise a full response is passed on as a miss's, and anything else
// is discarded for the caller's own request.
func (t *Transport) partialMiss(req *http.Request, key string, st *statemachine.CacheMiss, pairs []model.CompletePair) (*http.Response, error) {
	pm := st.Partial
	keep := func(p model.CompletePair) bool {
		return pm.Before != nil && p.ID == pm.Before.Pair.ID || pm.After != nil && p.ID == pm.After.Pair.ID
	}
	for _, p := range pairs {
		if !keep(p) {
			_ = p.Close()
		}
	}
	release := func() {
		for _, p := range pairs {
			if keep(p) {
				_ = p.Close()
			}
		}
	}
	resp, err := t.send(outgoing(req.Context(), req, st.Request))
	if err != nil {
		release()
		return nil, err
	}
	mresp := modelResponse(resp)
	j, ok := st.Join(mresp)
	if !ok {
		release()
		if resp.StatusCode == http.StatusPartialContent || resp.StatusCode == http.StatusRequestedRangeNotSatisfiable {
			drain(resp)
			fb := st.Fallback()
			t.decide(req, key, fb)
			return t.miss(req, key, t.modelRequest(req), fb, "partial")
		}
		return t.store1(req, key, t.modelRequest(req), st.Next(mresp), resp, "partial")
	}
	out, err := t.store1(req, key, t.modelRequest(req), st.Next(mresp), resp, "partial")
	if err != nil {
		release()
		return nil, err
	}
	status := "fwd=partial; fwd-status=206"
	if cs := out.Header["Cache-Status"]; len(cs) > 0 && strings.Contains(cs[len(cs)-1], "; stored") {
		status += "; stored"
	}
	h := j.Header
	setCacheStatus(h, status)
	var readers []io.Reader
	var closers []io.Closer
	stored := func(p *statemachine.Part) {
		rb := &rangeBody{body: p.Pair.Response.Body, skip: p.Range.Start, left: p.Range.Length}
		readers, closers = append(readers, rb), append(closers, rb)
		_ = p.Pair.Request.Body.Close()
	}
	if pm.Before != nil {
		stored(pm.Before)
	}
	readers, closers = append(readers, out.Body), append(closers, out.Body)
	if pm.After != nil {
		stored(pm.After)
	}
	joined := &http.Response{
		Status: statusLine(j.Status), StatusCode: j.Status,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Request: req, ContentLength: pm.Range.Length,
		Body: &joinedBody{r: io.MultiReader(readers...), closers: closers},
	}
	return joined, nil
}

// joinedBody reads stored and origin bytes in turn and closes them all.
type joinedBody struct {
	r       io.Reader
	closers []io.Closer
}

func (b *joinedBody) Read(p []byte) (int, error) { return b.r.Read(p) }

func (b *joinedBody) Close() error {
	var first error
	for _, c := range b.closers {
		if err := c.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// exactBody fails a 206's body that is not exactly the length its
// Content-Range gives, so that a short or long part is never stored
// (RFC 9111 §3.3). The origin's transport checks Content-Length; this also
// covers a chunked part and a handler behind Middleware.
type exactBody struct {
	r    io.ReadCloser
	left int64
}

var errPartLength = errors.New("hishel: partial content body does not match its Content-Range")

func (b *exactBody) Read(p []byte) (int, error) {
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.r.Read(p)
	if int64(n) > b.left {
		return int(b.left), errPartLength
	}
	b.left -= int64(n)
	if err == io.EOF && b.left > 0 {
		return n, errPartLength
	}
	return n, err
}

func (b *exactBody) Close() error { return b.r.Close() }

// expectPartLength wraps the body of a 206 about to be stored in an
// exactBody of its Content-Range's length.
func expectPartLength(resp *http.Response) {
	if resp.StatusCode != http.StatusPartialContent {
		return
	}
	if cr := resp.Header["Content-Range"]; len(cr) == 1 {
		if r, _, ok := statemachine.ParseContentRange(cr[0]); ok {
			resp.Body = &exactBody{r: resp.Body, left: r.Length}
		}
	}
}
