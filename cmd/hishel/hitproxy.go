package main

import (
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"net/url"
	"reflect"
	"strings"
	"sync"
)

// hitter answers a request from the cache, with the response's header
// fields in h, or returns nil (hishel.Transport.HitHeader).
type hitter interface {
	HitHeader(req *http.Request, h http.Header) *http.Response
}

// hitProxy is the proxy's handler: hits are written from the cache
// directly, everything else goes through the reverse proxy rp.
//
// A hit needs none of the reverse proxy's work (cloning the request,
// 1xx forwarding, protocol upgrades, flushing, trailers, a copy buffer):
// served through it, a 1 KiB hit cost about twice what the Go server
// writing the same bytes does. The request looked up is the one rp would
// send to the Transport (built by ServeHTTP with rp's own Rewrite), so a
// hit is the answer RoundTrip would give rp, and the response is written
// as rp writes one: its header (which holds no hop-by-hop field: the
// state machine serves none), the status, then the body; a body that
// fails midway aborts the response (http.ErrAbortHandler), as rp does,
// so that the client never takes a short body for a whole one.
type hitProxy struct {
	rp *httputil.ReverseProxy
	// target and forwardHost are those of rp's Rewrite (newProxy's):
	// outgoing does what it does.
	target      *url.URL
	forwardHost bool
	tr          hitter
}

func (p *hitProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if out := p.outgoing(r); out != nil {
		if resp := p.tr.HitHeader(out, w.Header()); resp != nil {
			writeHit(w, r, resp)
			return
		}
	}
	p.rp.ServeHTTP(w, r)
}

// outgoing returns the request rp would send to the Transport for r, when
// r may be a hit: a GET or HEAD without a body whose head rp forwards
// without re-encoding its query or switching protocols; otherwise nil.
// It shares r's context and the values of its header fields, which
// nothing changes.
func (p *hitProxy) outgoing(r *http.Request) *http.Request {
	if r.Method != http.MethodGet && r.Method != http.MethodHead || r.ContentLength != 0 ||
		r.Body != nil && r.Body != http.NoBody || r.URL == nil || !plainQuery(r.URL.RawQuery) {
		return nil
	}
	if _, ok := r.Header["Upgrade"]; ok {
		return nil // rp forwards the upgrade
	}
	if _, ok := r.Header["Te"]; ok {
		return nil // rp forwards "Te: trailers"
	}
	o := &outgoingReq{req: *r, url: *r.URL}
	out := &o.req
	out.URL = &o.url
	out.Body, out.GetBody, out.Close = nil, nil, false
	// The header without the hop-by-hop fields and those the rewrite
	// sets, as rp removes them (removeHopByHopHeaders and Rewrite's doc).
	h := make(http.Header, len(r.Header)+3)
	for k, v := range r.Header {
		switch k {
		case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
			"Trailer", "Transfer-Encoding", "Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto":
			continue
		}
		h[k] = v
	}
	if len(h) > 0 {
		for _, f := range r.Header["Connection"] {
			for sf := range strings.SplitSeq(f, ",") {
				if sf = textproto.TrimString(sf); sf != "" {
					delete(h, textproto.CanonicalMIMEHeaderKey(sf))
				}
			}
		}
	}
	out.Header = h
	// newProxy's Rewrite: SetURL, then SetXForwarded's fields set
	// directly, in one allocation (the client's own X-Forwarded-For is
	// gone, so the client's address is the whole field), and
	// X-Forwarded-Host only with forwardHost.
	pr := httputil.ProxyRequest{In: r, Out: out}
	pr.SetURL(p.target)
	vals := o.vals[:0]
	add := func(k, v string) {
		vals = append(vals, v)
		h[k] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		add("X-Forwarded-For", ip)
	}
	if p.forwardHost {
		add("X-Forwarded-Host", r.Host)
	}
	if r.TLS == nil {
		add("X-Forwarded-Proto", "http")
	} else {
		add("X-Forwarded-Proto", "https")
	}
	if _, ok := h["User-Agent"]; !ok {
		add("User-Agent", "") // as rp: no Go default
	}
	return out
}

// outgoingReq is what outgoing allocates for a request, in one
// allocation: the request, its URL, and the values of the fields the
// rewrite sets (X-Forwarded-For, X-Forwarded-Host, X-Forwarded-Proto and
// an empty User-Agent), each a slice of vals of length and capacity one.
type outgoingReq struct {
	req  http.Request
	url  url.URL
	vals [4]string
}

// plainQuery reports whether rp forwards the query q as it is: no ";",
// every "%" followed by two hex digits, and not too many parameters
// (httputil's cleanQueryParams re-encodes others).
func plainQuery(q string) bool {
	if strings.Count(q, "&") >= 1000 {
		return false
	}
	for i := 0; i < len(q); i++ {
		switch q[i] {
		case ';':
			return false
		case '%':
			if i+2 >= len(q) || !isHex(q[i+1]) || !isHex(q[i+2]) {
				return false
			}
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// writeHit writes a stored response to w, the writer of r. Its header
// fields are those of w.Header() (hishel.Transport.HitHeader put them
// there), or else go to it as they are: the response's header map is the
// Transport's to give (a new map for every hit).
//
// On a heldConn (the proxy's server), the writes of a response with a body
// of more than smallHit bytes (not a HEAD's: net/http writes a head in one
// write) are held and go out together when the body
// is written: a response of up to maxHeld bytes in one write. A response
// with a Content-Length is flushed before that, so that what net/http
// buffered goes with the rest; without one, net/http would have to chunk
// a flushed body, so its last bytes go as they would have.
func writeHit(w http.ResponseWriter, r *http.Request, resp *http.Response) {
	defer resp.Body.Close()
	h := w.Header()
	into := reflect.ValueOf(h).UnsafePointer() == reflect.ValueOf(resp.Header).UnsafePointer()
	head := headSlack
	for k, v := range resp.Header {
		if !into {
			h[k] = v
		}
		for _, s := range v {
			head += len(k) + len(s) + 4 // "K: V\r\n"
		}
	}
	var c *heldConn
	if r.Method != http.MethodHead && (resp.ContentLength < 0 || resp.ContentLength > smallHit) {
		c, _ = r.Context().Value(heldConnKey{}).(*heldConn)
	}
	if c != nil {
		n := maxHeld
		if resp.ContentLength >= 0 && resp.ContentLength < maxHeld {
			n = head + int(resp.ContentLength)
		}
		c.hold(n)
		defer c.release() // after a panic; it does nothing once released
	}
	w.WriteHeader(resp.StatusCode)
	_, err := io.Copy(w, resp.Body)
	if c != nil {
		if _, ok := h["Content-Length"]; ok && err == nil {
			if f, ok := w.(interface{ FlushError() error }); ok {
				err = f.FlushError()
			}
		}
		// The body's buffers go back before a write that may wait for
		// the client.
		_ = resp.Body.Close()
		if rerr := c.release(); err == nil {
			err = rerr
		}
	}
	if err != nil {
		panic(http.ErrAbortHandler)
	}
}

// smallHit is the largest body that writeHit does not hold: net/http
// writes it with its head in one write by itself, after the handler (its
// response buffer holds 2 KiB, the connection's 4 KiB).
const smallHit = 1536

// headSlack is what net/http adds to a response's header fields: the
// status line, Date, and the blank line.
const headSlack = 128

// copyBuffers lends the reverse proxy its copy buffers, which it would
// otherwise allocate (32 KiB) for every response.
type copyBuffers struct{}

var copyBufferPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (copyBuffers) Get() []byte  { return *copyBufferPool.Get().(*[]byte) }
func (copyBuffers) Put(b []byte) { copyBufferPool.Put(&b) }
