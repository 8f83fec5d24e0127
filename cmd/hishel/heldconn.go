package main

import (
	"context"
	"io"
	"net"
	"sync"
)

// heldListener wraps the proxy's client connections in heldConns.
type heldListener struct{ net.Listener }

func (l heldListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &heldConn{Conn: c}, nil
}

// heldConnKey is the context key under which the proxy's server
// (proxyConfig.server, through http.Server.ConnContext) puts a request's
// *heldConn.
type heldConnKey struct{}

// withHeldConn is the proxy server's ConnContext: it puts c, if it is a
// heldConn, in the contexts of the requests read from it.
func withHeldConn(ctx context.Context, c net.Conn) context.Context {
	if hc, ok := c.(*heldConn); ok {
		return context.WithValue(ctx, heldConnKey{}, hc)
	}
	return ctx
}

// heldConn is a client connection whose writes a handler may hold back
// and send together (hold, then release), so that a response goes out in
// one system call.
//
// net/http writes a response in pieces: its 4 KiB buffer, with the head,
// then the rest of a large Write straight to the connection. A hit of
// 16 KiB went out in two writes, each a system call for the proxy and
// often a wake-up for the client; held, it goes out in one, as nginx sends
// its hits. A heldConn holds at most the bytes hold asked for, rounded up
// to heldStep (at most maxHeld): a Write that would hold more goes out
// with what is held in one writev, and the writes after it go out as they
// come, so that a large body streams as before (its first chunk with the
// head).
//
// hold and release are called by the handler, in the goroutine that serves
// the connection, which is the one net/http writes responses from (HTTP/1:
// one goroutine reads a connection's requests and runs its handlers): a
// heldConn needs no lock. Held bytes are copies (a Write must not keep
// its argument), in a buffer from heldBufs, of the size hold was told,
// taken at the first held Write and given back by release.
type heldConn struct {
	net.Conn
	holding bool
	want    int     // the size of buffer to take, from hold
	held    *[]byte // held bytes, once a Write is held
	err     error   // the error of a held write: every later Write returns it
}

const (
	// maxHeld is the most bytes a heldConn holds: above it, a response
	// streams.
	maxHeld = 64 << 10
	// heldStep is the size step of held buffers: a response needs a
	// buffer about its size, not maxHeld (a client that does not read
	// keeps its response's buffer until its write times out).
	heldStep = 4 << 10
)

// heldBufs holds the buffers of held bytes by size: heldBufs[i] those of
// (i+1)*heldStep bytes.
var heldBufs [maxHeld / heldStep]sync.Pool

// hold starts holding writes back, until release, in a buffer of about
// n bytes (at most maxHeld).
func (c *heldConn) hold(n int) {
	c.holding, c.want = true, n
}

// release sends what is held, in one write, and stops holding writes. It
// returns the write's error, which later writes return too. release
// without hold does nothing.
func (c *heldConn) release() error {
	c.holding = false
	if b := c.held; b != nil {
		c.held = nil
		if len(*b) > 0 && c.err == nil {
			_, c.err = c.Conn.Write(*b)
		}
		putHeld(b)
	}
	return c.err
}

// getHeld returns an empty buffer of at least n bytes (at most maxHeld).
func getHeld(n int) *[]byte {
	i := min(max(n-1, 0)/heldStep, len(heldBufs)-1)
	if b, ok := heldBufs[i].Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, 0, (i+1)*heldStep)
	return &b
}

func putHeld(b *[]byte) {
	*b = (*b)[:0]
	if i := cap(*b)/heldStep - 1; i >= 0 && i < len(heldBufs) && cap(*b)%heldStep == 0 {
		heldBufs[i].Put(b)
	}
}

// Write holds p while the handler holds writes and p fits in the held
// buffer; otherwise it writes what is held and p, in one writev when
// both are there.
func (c *heldConn) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if !c.holding {
		return c.Conn.Write(p)
	}
	if c.held == nil {
		c.held = getHeld(c.want)
	}
	if b := *c.held; len(b)+len(p) <= cap(b) {
		*c.held = append(b, p...)
		return len(p), nil
	}
	// Over the bound: what is held goes with p, and the rest of the
	// response streams.
	b := c.held
	c.holding, c.held = false, nil
	defer putHeld(b)
	if len(*b) == 0 {
		return c.Conn.Write(p)
	}
	bufs := net.Buffers{*b, p}
	n, err := bufs.WriteTo(c.Conn)
	if err != nil {
		c.err = err
	}
	return int(max(0, n-int64(len(*b)))), err
}

// ReadFrom sends what is held, then copies r to the connection with its
// own ReadFrom (a TCP connection's sendfile or splice), so that
// net/http's ReadFrom, which writes a body straight to the connection
// after flushing its buffers, writes after the held bytes.
func (c *heldConn) ReadFrom(r io.Reader) (int64, error) {
	if err := c.release(); err != nil {
		return 0, err
	}
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

// CloseWrite shuts down the writing side of the connection, as net/http
// does before closing one (a TCP connection's CloseWrite).
func (c *heldConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
