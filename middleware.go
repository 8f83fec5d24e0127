package hishel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
)

// CacheHandler is an http.Handler that answers from a shared cache in front
// of another handler; see Middleware.
type CacheHandler struct {
	t *Transport
}

// Middleware returns next behind a server-side cache: requests are answered
// from storage where RFC 9111 allows, and next's responses are stored while
// they stream to the client. It is a shared cache (Options.Cache.Shared is
// set): it serves many users, so it honours private, s-maxage and the
// Authorization rules of RFC 9111 §3.5. opts means what it means for
// NewTransport; Options.Transport is not used. Close the CacheHandler to
// release a storage it opened.
//
// For each request that reaches next, next runs in a goroutine of its own
// that ends when next returns; the client's response streams from it as
// next writes.
func Middleware(next http.Handler, opts *Options) (*CacheHandler, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	o.Cache.Shared = true
	o.Transport = handlerTransport{next}
	t, err := NewTransport(&o)
	if err != nil {
		return nil, err
	}
	return &CacheHandler{t: t}, nil
}

// Close waits for background work and closes the storage if the middleware
// opened it.
func (h *CacheHandler) Close() error { return h.t.Close() }

// ServeHTTP implements http.Handler.
func (h *CacheHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	out := r.Clone(r.Context())
	out.RequestURI = ""
	u := *r.URL
	u.Host = r.Host
	u.Scheme = "http"
	if r.TLS != nil {
		u.Scheme = "https"
	}
	out.URL = &u
	resp, err := h.t.RoundTrip(out)
	if err != nil {
		ServeError(w, r, err)
		return
	}
	defer resp.Body.Close()
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	if r.Method == http.MethodHead {
		return
	}
	buf := make([]byte, 32<<10)
	fl, _ := w.(http.Flusher)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return // the client went away; closing the body aborts the store
			}
			if fl != nil {
				fl.Flush()
			}
		}
		if err == io.EOF {
			return
		}
		if err != nil {
			// The body failed part-way (next panicked, storage closed):
			// abort the connection so the client cannot take the cut
			// body for a whole one.
			panic(http.ErrAbortHandler)
		}
	}
}

// ServeError answers a request the cache could not answer: 504 Gateway
// Timeout when the origin did not answer in time (a dial, TLS or response
// head timeout), 503 after Close, 502 Bad Gateway otherwise, with a
// Cache-Status (RFC 9211) that says why the request went forward (see
// ForwardError) and, as its detail, what went wrong. The body is the status
// text alone: the error, which may name the origin, is not sent. It fits
// httputil.ReverseProxy's ErrorHandler.
func ServeError(w http.ResponseWriter, r *http.Request, err error) {
	fwd := "miss"
	var fe *ForwardError
	if errors.As(err, &fe) {
		fwd = fe.Fwd
	}
	code, detail := http.StatusBadGateway, "origin-error"
	var ne net.Error
	switch {
	case errors.Is(err, ErrClosed):
		code, detail = http.StatusServiceUnavailable, "closed"
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		code, detail = http.StatusGatewayTimeout, "origin-timeout"
	}
	w.Header().Set("Cache-Status", "hishel; fwd="+fwd+"; detail="+detail)
	http.Error(w, http.StatusText(code), code)
}

// handlerTransport is an http.RoundTripper that runs a handler in-process,
// streaming its response.
type handlerTransport struct{ h http.Handler }

// errHandlerPanicked is the body error after the handler panicked.
var errHandlerPanicked = errors.New("hishel: handler panicked")

func (ht handlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	sreq := req.Clone(req.Context())
	u := *req.URL
	sreq.RequestURI = u.RequestURI()
	sreq.Host = u.Host
	u.Scheme, u.Host = "", ""
	sreq.URL = &u
	if sreq.Body == nil {
		sreq.Body = http.NoBody
	}
	pr, pw := io.Pipe()
	rw := &pipeWriter{header: http.Header{}, pw: pw, head: make(chan *http.Response, 1), req: req}
	go func() {
		defer func() {
			if p := recover(); p != nil {
				if rw.sendHead(http.StatusInternalServerError) {
					pw.Close() // nothing was sent yet: a plain, empty 500
				} else {
					pw.CloseWithError(fmt.Errorf("%w: %v", errHandlerPanicked, p))
				}
				return
			}
			rw.sendHead(http.StatusOK)
			pw.Close()
		}()
		ht.h.ServeHTTP(rw, sreq)
	}()
	select {
	case resp := <-rw.head:
		resp.Body = pr
		return resp, nil
	case <-req.Context().Done():
		pr.CloseWithError(req.Context().Err())
		return nil, req.Context().Err()
	}
}

// pipeWriter is the handler's ResponseWriter: the head goes out once, on
// the first WriteHeader or Write (or when the handler returns), and the body
// through a pipe, at the reader's pace.
type pipeWriter struct {
	header http.Header
	pw     *io.PipeWriter
	req    *http.Request
	once   sync.Once
	head   chan *http.Response
}

func (w *pipeWriter) Header() http.Header { return w.header }

func (w *pipeWriter) WriteHeader(code int) {
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		return // interim responses are not relayed by the in-process transport
	}
	w.sendHead(code)
}

// sendHead sends the head once; it reports whether this call sent it.
func (w *pipeWriter) sendHead(code int) (sent bool) {
	w.once.Do(func() {
		sent = true
		h := w.header.Clone()
		cl := int64(-1)
		if v, err := strconv.ParseInt(h.Get("Content-Length"), 10, 64); err == nil && v >= 0 {
			cl = v
		}
		w.head <- &http.Response{
			Status: statusLine(code), StatusCode: code,
			Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: h, ContentLength: cl, Request: w.req,
		}
	})
	return sent
}

func (w *pipeWriter) Write(p []byte) (int, error) {
	w.sendHead(http.StatusOK)
	return w.pw.Write(p)
}

// Flush implements http.Flusher; writes already reach the reader at once.
func (w *pipeWriter) Flush() {}
