package hishel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptrace"
	"os"
	"reflect"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hishel-go/hishel/model"
	"github.com/hishel-go/hishel/statemachine"
)

// DefaultCollapseWindow is how many of the latest bytes of a response body
// being fetched the Transport keeps in memory for its clients, when
// Options.CollapseWindow is zero.
const DefaultCollapseWindow = 1 << 20

// storeFirstMax is the largest response body, by its Content-Length, that a
// fetch stores before its clients get the response, so that their
// Cache-Status can say whether it was stored. A larger body, or one of
// unknown length, reaches the clients as it arrives.
const storeFirstMax = 64 << 10

// fetchChunk is the most a fetch reads from the origin at once.
const fetchChunk = 32 << 10

// ErrClosed is returned by RoundTrip after Close, and by the Read of a
// response body whose fetch Close cut short.
var ErrClosed = errors.New("hishel: transport closed")

// errAbandoned ends a fetch whose clients have all gone.
var errAbandoned = errors.New("hishel: every client of the fetch went away")

// A flight is one request to the origin and its response, shared by every
// client of a collapsed miss (and used alone by other requests that store
// what they get).
//
// The flight's goroutine, not a client, sends the request and reads the
// response body: to storage (the pair is stored as the body arrives) and
// into a window of the latest bytes, in memory. Each client (the request
// that started the flight, and the followers that joined it) reads the body
// at its own pace through a flightReader: from the window, or, once it has
// fallen behind the window, from a temporary file that keeps what the slow
// readers still need. No client waits for another, and memory stays bounded
// by the window whatever the clients do.
//
// While the pair is being stored, the goroutine reads the origin to the end
// whatever the clients' pace, so that the pair is stored even if every
// client is slow, or one leaves early. When the response is not being
// stored (it is larger than MaxBodySize, or storage failed), the goroutine
// reads at most a window ahead of the fastest client. When every client has
// gone before the end, the fetch is abandoned: the request is cancelled and
// nothing is stored.
//
// The goroutine's lifetime is the fetch's: it ends with the body, or when
// the fetch is abandoned or the Transport closed.
type flight struct {
	t      *Transport
	key    string
	ctx    context.Context // the fetch's: the leader's values, cancelled by stop
	cancel context.CancelCauseFunc
	guard  *traceGuard
	window int
	sent   time.Time // when fetch sent the request (zero for begin alone)
	// onStored, if not nil, is called by the flight's goroutine once the
	// pair is stored whole (before the flight ends); set before it starts.
	onStored func()

	ready chan struct{} // closed once head is set
	ended chan struct{} // closed once the fetch is over

	mu      sync.Mutex
	origin  io.Closer // the origin's body while the fetch reads it
	head    *flightHead
	leader  *flightReader
	readers []*flightReader // open readers, the leader's first
	chunks  []*chunk        // the window, in order
	memSize int             // bytes held by chunks (their capacity)
	written int64           // bytes received
	spill   *spillFile
	done    bool  // the body ended, or the fetch failed or was cut short
	err     error // why, when not at the end of a whole body
	stored  bool  // the pair was stored completely
	// abandoned is set when the last reader goes before the end: the
	// fetch is being cancelled, and no one may join it.
	abandoned bool
	changed   chan struct{}
	// pacing is set while the goroutine waits for the fastest reader;
	// readers then signal progress.
	pacing   bool
	progress chan struct{}
}

// chunk is a piece of the body at offset off. Its bytes never change while
// it is in the window or a reader holds it (refs, guarded by flight.mu);
// once neither, its buffer goes back to buffers.
type chunk struct {
	off  int64
	b    []byte
	refs int
	gone bool // out of the window
}

// buffers holds fetchChunk buffers for fetches to read into, shared by
// every flight: a miss of a small response reuses the buffer of the last.
var buffers = sync.Pool{New: func() any { b := make([]byte, fetchChunk); return &b }}

func (c chunk) end() int64 { return c.off + int64(len(c.b)) }

// flightHead is what the fetch learned from the origin's response head.
type flightHead struct {
	err   error          // the request failed: no response
	resp  *http.Response // the response, for the leader alone (not shared); taken by the leader
	share bool           // the response is stored or storable: followers may use it
	fwd   string         // why the leader's request went forward (Cache-Status fwd)
	code  int
	// detail is the Cache-Status detail, if any ("too-large").
	detail string
	// template is the leader's response without header and body.
	template http.Response
	// leaderHeader is the leader's response header; storedHeader is the
	// stored one, which followers are served from (never changed).
	leaderHeader, storedHeader http.Header
	// storedReq is the request as stored, for matching followers (Vary).
	storedReq        model.Request
	sentAt, received time.Time
}

// spillFile keeps the bytes [from, end) of a body, at offset minus from.
type spillFile struct {
	file      *os.File
	name      string // to remove at close; empty when already unlinked
	from, end int64
	err       error
}

// flightReader is one client's view of a flight's body. The client's
// request context ends it as Close does: Read then returns the context's
// error, as net/http's response bodies do.
type flightReader struct {
	f      *flight
	ctx    context.Context // the client's request's
	stop   func() bool     // stops the context's callback
	off    int64
	buf    []byte        // for SharedChunk's reads of the spill file
	held   *chunk        // the window chunk SharedChunk last handed out
	closed bool          // guarded by f.mu
	done   chan struct{} // closed by Close: ends a Read that waits
}

// startFlight creates a flight for key that no follower joins (joinFlight
// makes the ones they join), and the leader's reader of it. It fails with
// ErrClosed once Close has begun cancelling fetches.
func (t *Transport) startFlight(key string, req *http.Request) (*flight, *flightReader, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.startFlightLocked(key, req)
}

func (t *Transport) startFlightLocked(key string, req *http.Request) (*flight, *flightReader, error) {
	if t.stopping {
		return nil, nil, ErrClosed
	}
	leader := req.Context()
	guard := &traceGuard{active: true}
	var base context.Context = context.WithoutCancel(leader)
	if tr := httptrace.ContextClientTrace(leader); tr != nil {
		base = &traceContext{Context: base, leader: tr, guarded: guard.wrap(tr)}
	}
	ctx, cancel := context.WithCancelCause(base)
	f := &flight{
		t: t, key: key, ctx: ctx, cancel: cancel, guard: guard, window: t.window(),
		ready: make(chan struct{}), ended: make(chan struct{}),
		changed: make(chan struct{}), progress: make(chan struct{}, 1),
	}
	f.leader = f.newReaderLocked(leader)
	t.flights[f] = struct{}{}
	t.fetches.Add(1)
	return f, f.leader, nil
}

// joinFlight returns the flight in progress for key and a reader of it for
// the caller, or starts one that the caller leads (lead). A follower gets a
// nil reader when the flight's body can no longer be read from its start:
// it waits for the flight to end and then looks in storage.
func (t *Transport) joinFlight(key string, req *http.Request) (f *flight, r *flightReader, lead bool, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if f := t.inflight[key]; f != nil {
		return f, f.join(req.Context()), false, nil
	}
	f, r, err = t.startFlightLocked(key, req)
	if err != nil {
		return nil, nil, false, err
	}
	t.inflight[key] = f
	return f, r, true, nil
}

// unregister forgets f: no request joins it any more.
func (t *Transport) unregister(f *flight) {
	t.mu.Lock()
	if t.inflight[f.key] == f {
		delete(t.inflight, f.key)
	}
	delete(t.flights, f)
	t.mu.Unlock()
}

func (t *Transport) window() int {
	if t.opts.CollapseWindow > 0 {
		return t.opts.CollapseWindow
	}
	return DefaultCollapseWindow
}

// join returns a new reader at the start of the body, or nil when the start
// is gone (neither in the window nor in the spill file).
func (f *flight) join(ctx context.Context) *flightReader {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.abandoned || f.done && f.err != nil {
		return nil
	}
	if f.start() > 0 && (f.spill == nil || f.spill.from != 0 || f.spill.err != nil) {
		return nil
	}
	return f.newReaderLocked(ctx)
}

// start is the offset of the window's first byte. The caller holds f.mu.
func (f *flight) start() int64 {
	if len(f.chunks) == 0 {
		return f.written
	}
	return f.chunks[0].off
}

func (f *flight) newReaderLocked(ctx context.Context) *flightReader {
	r := &flightReader{f: f, ctx: ctx, done: make(chan struct{})}
	f.readers = append(f.readers, r)
	r.stop = context.AfterFunc(ctx, func() { _ = r.Close() })
	return r
}

// fetch sends the request of a miss and goes on as begin does. It runs in
// the flight's goroutine.
func (f *flight) fetch(req *http.Request, mreq model.Request, st *statemachine.CacheMiss, fwd string) {
	defer f.t.fetches.Done()
	f.sent = f.t.now()
	resp, err := f.t.send(outgoing(f.ctx, req, st.Request))
	if err != nil {
		if cause := context.Cause(f.ctx); cause != nil {
			err = cause
		}
		ferr := &ForwardError{Fwd: fwd, Err: err}
		f.finish(ferr, false) // first: the leader's going must not look like abandoning
		f.publish(&flightHead{err: ferr})
		return
	}
	sn := st.Next(modelResponse(resp))
	f.t.decide(req, f.key, sn)
	f.begin(req, mreq, sn, resp, fwd)
}

// begin acts on the state machine's decision sn about resp, the origin's
// response: a response that may not be stored goes to the leader alone;
// one that may is stored as its body is read and shared with the flight's
// readers. It runs in the flight's goroutine and returns at the end of the
// body.
func (f *flight) begin(req *http.Request, mreq model.Request, sn statemachine.StoreNext, resp *http.Response, fwd string) {
	t := f.t
	st, ok := sn.(*statemachine.StoreAndUse)
	var detail string
	switch {
	case ok && t.opts.SetCookie == SetCookieBypass && len(st.Response.Header["Set-Cookie"]) > 0:
		ok, detail = false, "set-cookie"
	case ok && t.filtered(req, resp):
		ok, detail = false, "filtered"
	}
	if !ok {
		f.setOrigin(resp.Body) // the leader's alone; stop closes it
		// The fetch is over before the leader sees the head: its reader's
		// Close must not abandon the fetch, which would close the body it
		// is about to read.
		f.finish(nil, false)
		f.publish(&flightHead{resp: resp, fwd: fwd, code: resp.StatusCode, detail: detail})
		return
	}
	defer resp.Body.Close()
	// Closing the origin's body ends a read blocked in it, whatever the
	// origin transport does with the cancelled context (see stop).
	f.setOrigin(resp.Body)

	h := &flightHead{share: true, fwd: fwd, code: resp.StatusCode, template: *resp,
		leaderHeader: st.Response.Header, sentAt: f.sent, received: t.now()}
	h.template.Header, h.template.Body = nil, nil
	if h.sentAt.IsZero() {
		h.sentAt = h.received
	}
	h.storedHeader = h.leaderHeader.Clone()
	if t.opts.SetCookie == SetCookieStrip {
		delete(h.storedHeader, "Set-Cookie")
	}
	missHeader(h.leaderHeader, st) // the stored header keeps what later ages are computed from
	// What a follower is matched on: the fields the response varies on,
	// and Authorization (RFC 9111 §3.5), copied.
	h.storedReq = model.Request{Method: mreq.Method, URL: mreq.URL, Header: matchFields(mreq.Header, h.storedHeader)}
	expectPartLength(resp)
	origin := &originBody{r: resp.Body, size: resp.ContentLength, limit: t.opts.MaxBodySize}
	var saver *model.Body
	if t.opts.MaxBodySize > 0 && resp.ContentLength > t.opts.MaxBodySize {
		h.detail = "too-large"
	} else {
		sreq := mreq // the storage copies its header
		sreq.Body = nil
		sreq.URL = t.storedURL(req, mreq)
		if st.TTL != 0 {
			sreq.Options.TTL = st.TTL
		}
		if m := st.MaxTTL; m > 0 && (sreq.Options.MaxTTL <= 0 || m < sreq.Options.MaxTTL) {
			sreq.Options.MaxTTL = m // a response of no use after m is reclaimed then
		}
		saver = f.startStoring(req, sreq, h, origin)
	}
	if saver != nil {
		defer saver.Close() // before its end, this aborts the pair
	}
	if saver == nil || resp.ContentLength < 0 || resp.ContentLength > min(storeFirstMax, int64(f.window)) {
		f.publish(h)
	}
	f.pump(req, h, origin, saver)
}

// matchFields returns the fields of h, a request header, that a stored
// response with header resp is matched on: those its Vary names, and
// Authorization. Every value is copied.
func matchFields(h, resp http.Header) http.Header {
	out := http.Header{}
	add := func(name string) {
		if vs, ok := h[name]; ok {
			out[name] = slices.Clone(vs)
		}
	}
	add("Authorization")
	for _, v := range resp["Vary"] {
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				add(http.CanonicalHeaderKey(f))
			}
		}
	}
	return out
}

// startStoring creates the pair and returns the body that stores the
// response as it is read, or nil when storage failed (logged).
func (f *flight) startStoring(req *http.Request, sreq model.Request, h *flightHead, origin *originBody) *model.Body {
	t := f.t
	inc, err := t.store.CreatePair(f.ctx, sreq)
	if err != nil {
		t.storeFailed(req, f.key, "create pair", err)
		return nil
	}
	// The storage keeps a copy of storedHeader (see Storage).
	cp, err := t.store.AddResponse(f.ctx, inc.ID, model.Response{Status: h.code, Header: h.storedHeader, Body: model.NewBody(origin)}, f.key)
	if err != nil {
		t.storeFailed(req, f.key, "add response", err)
		return nil
	}
	return cp.Response.Body
}

// pump reads the body: through saver, which stores it, while storing works,
// and from the origin once it does not (or when saver is nil). It publishes
// h if begin has not, and ends the flight.
func (f *flight) pump(req *http.Request, h *flightHead, origin *originBody, saver *model.Body) {
	t := f.t
	storing := saver != nil
	for {
		var n int
		var err error
		buf := f.buffer(origin.size)
		if storing {
			n, err = saver.Read(buf)
		} else {
			f.publish(h)
			if err := f.pace(); err != nil {
				f.finish(err, false)
				return
			}
			n, err = origin.r.Read(buf)
		}
		if n > 0 {
			f.append(buf[:n])
		} else {
			f.recycle(buf)
		}
		switch {
		case err == nil:
			continue
		case err == io.EOF:
			if storing {
				t.debug(req, f.key, "hishel stored", slog.Int64("bytes", f.size()))
				if f.onStored != nil {
					f.onStored()
				}
			}
			f.finish(nil, storing)
			f.publish(h)
			return
		case f.ctx.Err() != nil:
			f.finish(context.Cause(f.ctx), false)
			f.publish(h)
			return
		case storing && origin.err == nil:
			// Storage failed, or the body outgrew MaxBodySize: the pair
			// is not stored, and the clients read on from the origin.
			if !errors.Is(err, errTooLarge) {
				t.storeFailed(req, f.key, "store body", err)
			}
			storing = false
			continue
		}
		if origin.err != nil {
			err = origin.err // the origin failed: the clients see its error
		}
		f.finish(err, false)
		f.publish(h)
		return
	}
}

// stop cancels the fetch with cause: its context, and a read blocked in the
// origin's body.
func (f *flight) stop(cause error) {
	f.cancel(cause)
	f.mu.Lock()
	origin := f.origin
	f.mu.Unlock()
	if origin != nil {
		_ = origin.Close()
	}
}

// setOrigin records the origin's body that stop closes; when the fetch is
// already cancelled, it closes it at once.
func (f *flight) setOrigin(body io.Closer) {
	f.mu.Lock()
	f.origin = body
	f.mu.Unlock()
	if f.ctx.Err() != nil {
		_ = body.Close()
	}
}

// publish sets the flight's head once, and lets its clients go on.
func (f *flight) publish(h *flightHead) {
	f.mu.Lock()
	if f.head != nil {
		f.mu.Unlock()
		return
	}
	f.head = h
	var orphan *http.Response
	if h.resp != nil && f.leader.closed {
		orphan, h.resp = h.resp, nil
	}
	f.mu.Unlock()
	if orphan != nil {
		_ = orphan.Body.Close()
	}
	if !h.share {
		f.t.unregister(f) // followers go their own way; later requests too
	}
	close(f.ready)
}

// append adds c, the next bytes of the body, to the window, and moves the
// oldest bytes out of it: to the spill file when a reader still needs them.
func (f *flight) append(c []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(c) < fetchChunk/4 && cap(c) == fetchChunk {
		// A short read: keep its bytes, not the whole buffer.
		small := bytes.Clone(c)
		f.recycle(c)
		c = small
	}
	f.chunks = append(f.chunks, &chunk{off: f.written, b: c})
	f.written += int64(len(c))
	f.memSize += cap(c)
	for f.memSize > f.window && len(f.chunks) > 0 {
		old := f.chunks[0]
		if f.spill != nil || f.needed(old.end()) {
			f.spillChunk(old)
		}
		f.chunks[0] = nil
		f.chunks = f.chunks[1:]
		f.memSize -= cap(old.b)
		old.gone = true
		if old.refs == 0 {
			f.recycle(old.b)
		}
	}
	f.broadcast()
}

// buffer returns a buffer to read the origin into: fetchChunk bytes, or,
// when the body has a known length of which fewer bytes are left, a buffer
// of that size (at least 512 bytes, to see the end), so that a small
// response costs its own size.
func (f *flight) buffer(length int64) []byte {
	if left := length - f.written; length >= 0 && left < fetchChunk {
		return make([]byte, max(left, 512))
	}
	return *buffers.Get().(*[]byte)
}

// recycle gives b back to buffers, if it is a whole buffer. No chunk of the
// window and no reader may still refer to it.
func (f *flight) recycle(b []byte) {
	if cap(b) == fetchChunk {
		b = b[:fetchChunk]
		buffers.Put(&b)
	}
}

// needed reports whether a reader has not read up to end. The caller holds
// f.mu.
func (f *flight) needed(end int64) bool {
	for _, r := range f.readers {
		if r.off < end {
			return true
		}
	}
	return false
}

// spillChunk writes c to the spill file, creating it at the first chunk. A
// failure is kept: the readers that need what is lost get it as their
// error. The caller holds f.mu; the write is short (page cache).
func (f *flight) spillChunk(c *chunk) {
	if f.spill == nil {
		f.spill = &spillFile{from: c.off, end: c.off}
		file, err := os.CreateTemp(f.t.opts.SpillDir, "hishel-fetch-*")
		if err != nil {
			f.spill.err = err
			f.t.warn(f.ctx, "hishel: cannot keep a slow reader's bytes", f.key, err)
			return
		}
		f.spill.file, f.spill.name = file, file.Name()
		if runtime.GOOS != "windows" && os.Remove(file.Name()) == nil {
			f.spill.name = "" // gone with the last descriptor, even after a crash
		}
	}
	sp := f.spill
	if sp.err != nil {
		return
	}
	if _, err := sp.file.WriteAt(c.b, c.off-sp.from); err != nil {
		sp.err = err
		f.t.warn(f.ctx, "hishel: cannot keep a slow reader's bytes", f.key, err)
		return
	}
	sp.end = c.end()
}

func (f *flight) size() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.written
}

// broadcast wakes the readers waiting for bytes. The caller holds f.mu.
func (f *flight) broadcast() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// pace waits until the fastest reader is less than a window behind, or the
// fetch is cancelled (its cause is returned).
func (f *flight) pace() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for {
		if f.ctx.Err() != nil {
			return context.Cause(f.ctx)
		}
		var fastest int64
		for _, r := range f.readers {
			fastest = max(fastest, r.off)
		}
		if f.written-fastest < int64(f.window) {
			f.pacing = false
			return nil
		}
		f.pacing = true
		f.mu.Unlock()
		select {
		case <-f.progress:
		case <-f.ctx.Done():
		}
		f.mu.Lock()
	}
}

// finish ends the flight: err is nil at the end of a whole body, and stored
// says whether its pair was stored.
func (f *flight) finish(err error, stored bool) {
	f.mu.Lock()
	if f.done {
		f.mu.Unlock()
		return
	}
	f.done, f.err, f.stored = true, err, stored
	f.broadcast()
	sp := f.releaseSpill()
	f.mu.Unlock()
	sp.close()
	f.t.unregister(f)
	close(f.ended)
}

// releaseSpill hands the spill file over for closing once the body has
// ended and no reader is left, and recycles the window's buffers. The
// caller holds f.mu.
func (f *flight) releaseSpill() *spillFile {
	if !f.done || len(f.readers) > 0 {
		return nil
	}
	for i, c := range f.chunks {
		if c.refs == 0 {
			f.recycle(c.b)
		}
		f.chunks[i] = nil
	}
	f.chunks, f.memSize = nil, 0
	if f.spill == nil {
		return nil
	}
	sp := f.spill
	f.spill = &spillFile{err: errSpillClosed}
	return sp
}

var errSpillClosed = errors.New("hishel: fetch over")

func (sp *spillFile) close() {
	if sp == nil || sp.file == nil {
		return
	}
	_ = sp.file.Close()
	if sp.name != "" {
		_ = os.Remove(sp.name)
	}
}

// isStored reports whether the flight's pair has been stored completely.
func (f *flight) isStored() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stored
}

// leaderResponse waits for the head and returns the response of the
// request that started the flight.
func (f *flight) leaderResponse(req *http.Request, r *flightReader) (*http.Response, error) {
	select {
	case <-f.ready:
	case <-req.Context().Done():
		f.guard.off()
		_ = r.Close()
		return nil, req.Context().Err()
	}
	f.guard.off()
	h := f.head
	switch {
	case h.err != nil:
		_ = r.Close()
		return nil, h.err
	case !h.share:
		f.mu.Lock()
		resp := h.resp
		h.resp = nil
		f.mu.Unlock()
		_ = r.Close()
		if resp == nil {
			return nil, fmt.Errorf("hishel: the response went to another request")
		}
		setCacheStatus(resp.Header, cacheStatus(h.fwd, h.code, false, false, h.detail))
		// The response is the leader's alone: its context governs the
		// rest of the request, the body, as a plain transport's does.
		ctx := req.Context()
		stop := context.AfterFunc(ctx, func() { f.stop(ctx.Err()) })
		resp.Body = &stopCloser{ReadCloser: resp.Body, ctx: ctx, stop: stop}
		return resp, nil
	}
	out := h.template
	out.Header = h.leaderHeader // ours: the storage keeps copies
	setCacheStatus(out.Header, cacheStatus(h.fwd, h.code, false, f.isStored(), h.detail))
	out.Body = model.NewBody(r) // io.Copy takes the window's chunks as they are (SharedChunk)
	return &out, nil
}

// followerResponse waits for the head and serves the follower req from the
// flight, if the response fits it (Vary, its directives: the state machine
// decides as for a stored pair); otherwise the follower goes to the origin
// on its own.
func (f *flight) followerResponse(req *http.Request, key string, mreq model.Request, fwd string, r *flightReader) (*http.Response, error) {
	t := f.t
	if r == nil { // the start of the body is gone: wait, then find the pair
		select {
		case <-f.ended:
		case <-req.Context().Done():
			closeBody(req)
			return nil, req.Context().Err()
		}
		return t.roundTrip(req, key, false)
	}
	select {
	case <-f.ready:
	case <-req.Context().Done():
		_ = r.Close()
		closeBody(req)
		return nil, req.Context().Err()
	}
	h := f.head
	if h.err != nil || !h.share {
		_ = r.Close()
		return t.roundTrip(req, key, false)
	}
	pair := model.CompletePair{
		Request:  h.storedReq,
		Response: model.Response{Status: h.code, Header: h.storedHeader.Clone()},
		Key:      key,
		Meta:     model.PairMeta{Created: h.sentAt, Completed: h.received},
	}
	fc, ok := t.machine.Next(mreq, []model.CompletePair{pair}).(*statemachine.FromCache)
	if !ok || fc.Revalidate != nil {
		_ = r.Close()
		return t.roundTrip(req, key, false)
	}
	closeBody(req)
	fc.Served.Pair.Response.Body = model.NewBody(r)
	return t.served(req, fc.Served, cacheStatus(fwd, h.code, true, f.isStored(), h.detail)), nil
}

// stopCloser is the body of a response that is not shared: its context's
// end stops the fetch, which cuts the body; a read then reports the
// context's error. Close also stops the context's callback.
type stopCloser struct {
	io.ReadCloser
	ctx  context.Context
	stop func() bool
}

func (s *stopCloser) Read(p []byte) (int, error) {
	n, err := s.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		if cerr := s.ctx.Err(); cerr != nil {
			err = cerr
		}
	}
	return n, err
}

func (s *stopCloser) Close() error {
	s.stop()
	return s.ReadCloser.Close()
}

// cacheStatus returns the parameters of a forwarded request's Cache-Status
// entry (RFC 9211).
func cacheStatus(fwd string, code int, collapsed, stored bool, detail string) string {
	s := "fwd=" + fwd + "; fwd-status=" + strconv.Itoa(code)
	if collapsed {
		s += "; collapsed"
	}
	if stored {
		s += "; stored"
	}
	if detail != "" {
		s += "; detail=" + detail
	}
	return s
}

// Read reads the body at the reader's own pace: from the window, or from
// the spill file once the window has moved on.
func (r *flightReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	b, c, err := r.view(p)
	n := copy(p, b) // b is p itself when it came from the spill file
	r.advance(n, c)
	return n, err
}

// SharedChunk implements model.SharedSource: the reader's next bytes,
// read-only, without a copy when they are in the window. The reader holds
// the chunk until its next call (or Close), so that its buffer is not
// reused while the caller has it. A model.Body over the reader hands the
// chunks to an io.Writer as they are (Body.WriteTo).
func (r *flightReader) SharedChunk() ([]byte, error) {
	r.release()
	b, c, err := r.view(nil)
	r.advance(len(b), nil)
	r.held = c
	if len(b) > 0 {
		return b, nil
	}
	return nil, err
}

// NextChunk implements model.ChunkSource: the next bytes, the caller's own.
func (r *flightReader) NextChunk() ([]byte, error) {
	b, err := r.SharedChunk()
	b = bytes.Clone(b)
	r.release()
	return b, err
}

// release gives back the chunk SharedChunk handed out last.
func (r *flightReader) release() {
	if r.held != nil {
		r.f.mu.Lock()
		r.f.unref(r.held)
		r.f.mu.Unlock()
		r.held = nil
	}
}

// unref drops a reader's hold on c. The caller holds f.mu.
func (f *flight) unref(c *chunk) {
	c.refs--
	if c.refs == 0 && c.gone {
		f.recycle(c.b)
	}
}

// view returns the reader's next bytes, at most len(buf) of them (any
// number when buf is nil), without moving on: a piece of a window chunk c,
// which the reader then holds (see advance), or bytes read from the spill
// file into buf (r.buf when buf is nil). It waits for bytes when there are
// none yet, and returns io.EOF at the end of a whole body, or the body's
// error.
func (r *flightReader) view(buf []byte) (_ []byte, c *chunk, _ error) {
	f := r.f
	f.mu.Lock()
	for {
		if r.closed {
			f.mu.Unlock()
			if err := r.ctx.Err(); err != nil {
				return nil, nil, err
			}
			return nil, nil, errReadClosed
		}
		if r.off < f.written {
			if start := f.start(); r.off >= start {
				i := sort.Search(len(f.chunks), func(i int) bool { return f.chunks[i].end() > r.off })
				c := f.chunks[i]
				c.refs++
				f.mu.Unlock()
				b := c.b[r.off-c.off:] // unchanged while held
				if buf != nil {
					b = b[:min(len(b), len(buf))]
				}
				return b, c, nil
			}
			sp := f.spill
			if sp == nil || sp.err != nil || r.off < sp.from || r.off >= sp.end {
				err := errors.New("hishel: the bytes of a slow reader were not kept")
				if sp != nil && sp.err != nil {
					err = fmt.Errorf("hishel: the bytes of a slow reader were not kept: %w", sp.err)
				}
				f.mu.Unlock()
				return nil, nil, err
			}
			if buf == nil {
				if r.buf == nil {
					r.buf = make([]byte, fetchChunk)
				}
				buf = r.buf
			}
			want := min(int64(len(buf)), sp.end-r.off)
			f.mu.Unlock()
			n, err := sp.file.ReadAt(buf[:want], r.off-sp.from)
			if n > 0 {
				return buf[:n], nil, nil
			}
			return nil, nil, fmt.Errorf("hishel: reading a slow reader's bytes: %w", err)
		}
		if f.done {
			err := f.err
			f.mu.Unlock()
			if err == nil {
				return nil, nil, io.EOF
			}
			return nil, nil, err
		}
		ch := f.changed
		f.mu.Unlock()
		select {
		case <-ch:
		case <-r.done:
		}
		f.mu.Lock()
	}
}

var errReadClosed = errors.New("hishel: read on closed response body")

// advance moves the reader n bytes on, and drops its hold on c, if not
// nil.
func (r *flightReader) advance(n int, c *chunk) {
	if n == 0 && c == nil {
		return
	}
	f := r.f
	f.mu.Lock()
	r.off += int64(n)
	if c != nil {
		f.unref(c)
	}
	pacing := f.pacing
	f.mu.Unlock()
	if pacing {
		select {
		case f.progress <- struct{}{}:
		default:
		}
	}
}

// Close ends the reader. The last reader to go before the end of the body
// abandons the fetch.
func (r *flightReader) Close() error {
	f := r.f
	f.mu.Lock()
	if r.closed {
		f.mu.Unlock()
		return nil
	}
	r.closed = true
	close(r.done)
	r.stop()
	if r.held != nil {
		f.unref(r.held)
		r.held = nil
	}
	f.readers = slices.DeleteFunc(f.readers, func(x *flightReader) bool { return x == r })
	abandon := len(f.readers) == 0 && !f.done
	f.abandoned = f.abandoned || abandon
	var orphan *http.Response
	if r == f.leader && f.head != nil && f.head.resp != nil {
		orphan, f.head.resp = f.head.resp, nil
	}
	if f.pacing {
		select {
		case f.progress <- struct{}{}:
		default:
		}
	}
	sp := f.releaseSpill()
	f.mu.Unlock()
	sp.close()
	if orphan != nil {
		_ = orphan.Body.Close()
	}
	if abandon {
		f.t.unregister(f) // the next request starts a new fetch
		f.stop(errAbandoned)
	}
	return nil
}

// traceGuard passes a leader's httptrace hooks on only while the leader
// waits for its response head: after that the leader may be gone (a
// ReverseProxy's handler returned, say), and its hooks must not run.
type traceGuard struct {
	mu     sync.Mutex
	active bool
}

func (g *traceGuard) off() {
	g.mu.Lock()
	g.active = false
	g.mu.Unlock()
}

// wrap returns a trace whose hooks call tr's while g is active.
func (g *traceGuard) wrap(tr *httptrace.ClientTrace) *httptrace.ClientTrace {
	out := &httptrace.ClientTrace{}
	src, dst := reflect.ValueOf(tr).Elem(), reflect.ValueOf(out).Elem()
	for i := range src.NumField() {
		fn := src.Field(i)
		if fn.Kind() != reflect.Func || fn.IsNil() || !dst.Field(i).CanSet() {
			continue
		}
		ft := fn.Type()
		dst.Field(i).Set(reflect.MakeFunc(ft, func(args []reflect.Value) []reflect.Value {
			g.mu.Lock()
			defer g.mu.Unlock()
			if g.active {
				return fn.Call(args)
			}
			res := make([]reflect.Value, ft.NumOut())
			for j := range res {
				res[j] = reflect.Zero(ft.Out(j))
			}
			return res
		}))
	}
	return out
}

// traceContext is a fetch's context: it carries the leader's values, with
// the leader's httptrace hooks guarded.
type traceContext struct {
	context.Context
	leader, guarded *httptrace.ClientTrace
}

func (c *traceContext) Value(key any) any {
	v := c.Context.Value(key)
	if tr, ok := v.(*httptrace.ClientTrace); ok && tr == c.leader {
		return c.guarded
	}
	return v
}

// ForwardError is the error RoundTrip returns when the origin could not be
// reached, or did not answer in time, and the cache had nothing it could
// serve instead. Fwd is why the request went forward, as Cache-Status (RFC
// 9211) says it: "uri-miss", "miss", "stale", "method", "bypass".
type ForwardError struct {
	Fwd string
	Err error
}

func (e *ForwardError) Error() string { return "hishel: forwarded (" + e.Fwd + "): " + e.Err.Error() }

func (e *ForwardError) Unwrap() error { return e.Err }
