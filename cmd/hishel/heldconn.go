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
// its hits. At most maxHeld bytes are held: a Write that would hold more
// goes out with what is held in one writev, and the writes after it go out
// as they come, so that a large body streams as before (its first chunk
// with the head).
//
// hold and release are called by the handler, in the goroutine that serves
// the connection, which is the one net/http writes responses from (HTTP/1:
// one goroutine reads a connection's requests and runs its handlers): a
// heldConn needs no lock. Held bytes are copies (a Write must not keep
// its argument), in a buffer from heldBufs while held.
type heldConn struct {
	net.Conn
	holding bool
	held    *[]byte // held bytes, from heldBufs once a Write is held
	err     error   // the error of a held write: every later Write returns it
}

// maxHeld is the most bytes a heldConn holds: above it, a response streams.
const maxHeld = 64 << 10

var heldBufs = sync.Pool{New: func() any { b := make([]byte, 0, maxHeld); return &b }}

// hold starts holding writes back, until release.
func (c *heldConn) hold() { c.holding = true }

// release sends what is held, in one write, and stops holding writes. It
// returns the write's error, which later writes return too. release
// without hold does nothing.
func (c *heldConn) release() error {
	c.holding = false
	b := c.held
	if b == nil {
		return c.err
	}
	c.held = nil
	if len(*b) > 0 && c.err == nil {
		_, c.err = c.Conn.Write(*b)
	}
	*b = (*b)[:0]
	heldBufs.Put(b)
	return c.err
}

// Write holds p while the handler holds writes and p fits under
// maxHeld; otherwise it writes what is held and p, in one writev when
// both are there.
func (c *heldConn) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if !c.holding {
		return c.Conn.Write(p)
	}
	if c.held == nil {
		c.held = heldBufs.Get().(*[]byte)
	}
	if b := *c.held; len(b)+len(p) <= cap(b) {
		*c.held = append(b, p...)
		return len(p), nil
	}
	// Over the bound: what is held goes with p, and the rest of the
	// response streams.
	b := c.held
	c.holding, c.held = false, nil
	defer func() { *b = (*b)[:0]; heldBufs.Put(b) }()
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
