package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hishel-go/hishel/cache"
)

// countingListener counts the writes to the connections it accepts.
type countingListener struct {
	net.Listener
	writes atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, writes: &l.writes}, nil
}

type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// A hit goes to the client in one write when it fits in maxHeld (net/http
// alone writes a 16 KiB response in two: its buffer with the head, then
// the rest); a larger one streams; HEAD, 304 and range hits are whole and
// exact; and a miss is written as before.
func TestProxyHitHeldWrites(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/"))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=600")
		w.Header().Set("Etag", `"e"`)
		if r.URL.Query().Has("chunked") {
			w.(http.Flusher).Flush() // no length: chunked
		} else {
			w.Header().Set("Content-Length", strconv.Itoa(n))
		}
		if r.Method != http.MethodHead {
			w.Write(body(n))
		}
	}))
	t.Cleanup(origin.Close)
	store, err := cache.OpenBolt(context.Background(), &cache.BoltOptions{Path: filepath.Join(t.TempDir(), "cache.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	cfg := testConfig(t, origin.URL)
	cfg.shared = true
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &countingListener{Listener: inner}
	addr, _ := serveOn(t, cfg, store, ln)
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	t.Cleanup(client.CloseIdleConnections)

	for _, tc := range []struct {
		name, path, method string
		header             map[string]string
		status             int
		want               []byte
		writes             int64 // 0: not checked
	}{
		{name: "1KiB", path: "/1024", status: 200, want: body(1024), writes: 1},
		{name: "2000B", path: "/2000", status: 200, want: body(2000), writes: 1},
		{name: "5KiB", path: "/5000", status: 200, want: body(5000), writes: 1},
		{name: "16KiB", path: "/16384", status: 200, want: body(16384), writes: 1},
		{name: "60KiB", path: "/61440", status: 200, want: body(61440), writes: 1},
		{name: "chunked", path: "/16384?chunked=1", status: 200, want: body(16384)},
		{name: "1MiB", path: "/1048576", status: 200, want: body(1 << 20)},
		{name: "HEAD", path: "/16384", method: http.MethodHead, status: 200, want: nil, writes: 1},
		{name: "304", path: "/16384", header: map[string]string{"If-None-Match": `"e"`}, status: 304, writes: 1},
		{name: "range", path: "/16384", header: map[string]string{"Range": "bytes=100-9099"}, status: 206, want: body(16384)[100:9100]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			get := func() (*http.Response, []byte, int64) {
				t.Helper()
				method := cmpOr(tc.method, http.MethodGet)
				req, err := http.NewRequest(method, "http://"+addr+tc.path, nil)
				if err != nil {
					t.Fatal(err)
				}
				for k, v := range tc.header {
					req.Header.Set(k, v)
				}
				w0 := ln.writes.Load()
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					t.Fatal(err)
				}
				return resp, b, ln.writes.Load() - w0
			}
			// Stored by a GET without conditions.
			if resp, err := client.Get("http://" + addr + tc.path); err != nil {
				t.Fatal(err)
			} else {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			resp, b, writes := get()
			if cs := resp.Header.Get("Cache-Status"); !strings.Contains(cs, "hit") {
				t.Fatalf("Cache-Status = %q; want a hit", cs)
			}
			if resp.StatusCode != tc.status || !bytes.Equal(b, tc.want) {
				t.Errorf("%s %s = %d, %d bytes; want %d, %d bytes (equal: %v)", cmpOr(tc.method, "GET"), tc.path,
					resp.StatusCode, len(b), tc.status, len(tc.want), bytes.Equal(b[:min(len(b), len(tc.want))], tc.want[:min(len(b), len(tc.want))]))
			}
			if tc.writes != 0 && writes != tc.writes {
				t.Errorf("%s %s took %d writes; want %d", cmpOr(tc.method, "GET"), tc.path, writes, tc.writes)
			}
		})
	}
}

// body is n bytes of a repeating pattern that a shifted copy would not match.
func body(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}

// recordingConn records each write to it; writes fail once fail is set.
type recordingConn struct {
	net.Conn
	writes [][]byte
	fail   error
}

func (c *recordingConn) Write(p []byte) (int, error) {
	if c.fail != nil {
		return 0, c.fail
	}
	c.writes = append(c.writes, bytes.Clone(p))
	return len(p), nil
}

// heldConn: held writes go out as one at release, in order; past maxHeld,
// what is held goes out with the write that overflows, and later writes
// go straight; ReadFrom sends what is held first; a failed held write is
// returned by every later call.
func TestHeldConn(t *testing.T) {
	big := body(maxHeld + 100)
	for _, tc := range []struct {
		name   string
		run    func(c *heldConn) error
		writes []int // lengths of the writes that reach the connection
	}{
		{"not held", func(c *heldConn) error {
			c.Write(big[:10])
			_, err := c.Write(big[10:30])
			return err
		}, []int{10, 20}},
		{"held", func(c *heldConn) error {
			c.hold(maxHeld)
			c.Write(big[:10])
			c.Write(big[10:30])
			if err := c.release(); err != nil {
				return err
			}
			_, err := c.Write(big[30:35])
			return err
		}, []int{30, 5}},
		{"release without writes", func(c *heldConn) error {
			c.hold(maxHeld)
			return c.release()
		}, nil},
		{"over maxHeld", func(c *heldConn) error {
			c.hold(maxHeld)
			c.Write(big[:100])
			c.Write(big[100 : maxHeld+1])       // overflows: out with the 100 held (writev; two writes here)
			c.Write(big[maxHeld+1 : maxHeld+8]) // straight
			return c.release()                  // nothing held
		}, []int{100, maxHeld - 99, 7}},
		{"over the size held", func(c *heldConn) error {
			c.hold(3000) // a buffer of heldStep bytes
			c.Write(big[:heldStep-10])
			if got := cap(*c.held); got != heldStep {
				t.Errorf("held in a buffer of %d bytes; want %d", got, heldStep)
			}
			c.Write(big[heldStep-10 : heldStep+10]) // overflows
			c.Write(big[heldStep+10 : heldStep+20])
			return c.release()
		}, []int{heldStep - 10, 20, 10}},
		{"ReadFrom", func(c *heldConn) error {
			c.hold(maxHeld)
			c.Write(big[:10])
			_, err := c.ReadFrom(bytes.NewReader(big[10:20]))
			return err
		}, []int{10, 10}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := &recordingConn{}
			c := &heldConn{Conn: rc}
			if err := tc.run(c); err != nil {
				t.Fatal(err)
			}
			var lens []int
			var all []byte
			for _, w := range rc.writes {
				lens = append(lens, len(w))
				all = append(all, w...)
			}
			if !slices.Equal(lens, tc.writes) {
				t.Errorf("writes of %v bytes; want %v", lens, tc.writes)
			}
			if n := len(all); n > 0 && !bytes.Equal(all, big[:n]) {
				t.Errorf("bytes written are not the bytes given, in order")
			}
		})
	}
	t.Run("error", func(t *testing.T) {
		rc := &recordingConn{fail: io.ErrClosedPipe}
		c := &heldConn{Conn: rc}
		c.hold(maxHeld)
		if _, err := c.Write(big[:10]); err != nil {
			t.Fatalf("held Write = %v; want nil", err)
		}
		if err := c.release(); err != io.ErrClosedPipe {
			t.Errorf("release = %v; want %v", err, io.ErrClosedPipe)
		}
		rc.fail = nil
		if _, err := c.Write(big[:10]); err != io.ErrClosedPipe {
			t.Errorf("Write after a failed release = %v; want %v", err, io.ErrClosedPipe)
		}
		if len(rc.writes) != 0 {
			t.Errorf("%d writes after a failed one", len(rc.writes))
		}
	})
}
