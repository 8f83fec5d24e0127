package template

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/model"
)

// bodyServer serves the response bodies of s's pairs over TCP, by key
// (the path without its slash), as a server of stored responses does:
// Content-Length, then io.Copy from the body, and an aborted response
// (http.ErrAbortHandler) when the copy fails, so that the client never
// takes a short body for a whole one. The copy's errors go to errs.
type bodyServer struct {
	*httptest.Server
	errs chan error
}

func newBodyServer(t *testing.T, s *Bolt, sndbuf int) *bodyServer {
	t.Helper()
	bs := &bodyServer{errs: make(chan error, 16)}
	bs.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ps, err := s.GetPairs(r.Context(), r.URL.Path[1:])
		if err != nil || len(ps) != 1 {
			bs.errs <- fmt.Errorf("GetPairs = %d pairs, %v", len(ps), err)
			http.NotFound(w, r)
			return
		}
		p := ps[0]
		_ = p.Request.Body.Close()
		defer p.Response.Body.Close()
		w.Header().Set("Content-Length", strconv.FormatInt(p.Meta.ResponseSize, 10))
		_, err = io.Copy(w, p.Response.Body)
		bs.errs <- err
		if err != nil {
			panic(http.ErrAbortHandler)
		}
	}))
	if sndbuf > 0 {
		bs.Config.ConnState = func(c net.Conn, st http.ConnState) {
			if st == http.StateNew {
				_ = c.(*net.TCPConn).SetWriteBuffer(sndbuf)
			}
		}
	}
	bs.Config.ErrorLog = nil
	bs.Start()
	t.Cleanup(bs.Close)
	return bs
}

// get fetches key's body, and the server's copy error.
func (bs *bodyServer) get(t *testing.T, key string) ([]byte, error, error) {
	t.Helper()
	resp, err := bs.Client().Get(bs.URL + "/" + key)
	if err != nil {
		t.Fatal(err)
	}
	got, rerr := io.ReadAll(resp.Body)
	resp.Body.Close()
	return got, rerr, <-bs.errs
}

// fileChunks returns the keys and sizes of the chunks of pair id's
// response body file.
func fileChunks(t *testing.T, s *Bolt, id model.PairID) (keys [][]byte, sizes []int) {
	t.Helper()
	nonce := nonceOf(t, s, id)
	kind := bolt.KindResponse | bolt.KindFile
	err := s.view(func(rt *readTx) error {
		c := rt.chunksC
		for k, v := c.Seek(bolt.ChunkSeek(nonce, kind, 0)); isChunkOf(k, nonce, kind); k, v = c.Next() {
			if _, _, seq, _ := bolt.ParseChunkKey(k); seq == bolt.MarkerSeq {
				break
			}
			n, err := bolt.DecodeFileChunk(v, 1<<30)
			if err != nil {
				return err
			}
			keys, sizes = append(keys, bytes.Clone(k)), append(sizes, n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys, sizes
}

// TestBoltWriteToFile serves bodies kept in files through a real TCP
// server, io.Copy into net/http's ResponseWriter: the client gets the
// stored bytes whichever way they went. A chunk goes from the file with
// the writer's ReadFrom (sendfile) only once it was checked: none on the
// first read, every chunk of at least minVerifyOnce bytes on the next,
// the others read and checked; with VerifyEveryRead none ever. "mixed"
// forgets some chunks' checks, so that sections sent from the file and
// chunks read and checked alternate.
func TestBoltWriteToFile(t *testing.T) {
	for _, tt := range []struct {
		name   string
		opts   BoltOptions
		size   int
		forget func(seq uint64) bool // chunks whose check is forgotten after the first read
	}{
		{name: "1MiB", size: 1 << 20},
		{name: "several groups, short last chunk", size: 3<<20 + 7},
		{name: "16KiB chunks", opts: BoltOptions{ChunkSize: 16 << 10}, size: 2<<20 + 5000},
		{name: "mixed", size: 3 << 20, forget: func(seq uint64) bool { return seq%3 == 1 || seq >= 40 && seq < 44 }},
		{name: "VerifyEveryRead", opts: BoltOptions{VerifyEveryRead: true}, size: 1<<20 + 100},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.opts
			o.Path = filepath.Join(t.TempDir(), "c.db")
			s := openBolt(t, &o)
			body := randomBody(9, tt.size)
			cp := store(t, s, getReq("https://example.com/a"), okResp(string(body)), "k")
			keys, sizes := fileChunks(t, s, cp.ID)
			if len(keys) < 2 {
				t.Fatalf("%d bytes stored in %d file chunks; want a body file of several", tt.size, len(keys))
			}
			bs := newBodyServer(t, s, 0)
			fetch := func(wantSent int64) {
				t.Helper()
				sent := s.verified.sent.Load()
				got, rerr, werr := bs.get(t, "k")
				if rerr != nil || werr != nil || !bytes.Equal(got, body) {
					t.Fatalf("GET = %d bytes (equal: %v), %v; server: %v; want the %d stored", len(got), bytes.Equal(got, body), rerr, werr, len(body))
				}
				if d := s.verified.sent.Load() - sent; d != wantSent {
					t.Errorf("bytes sent from the file = %d; want %d", d, wantSent)
				}
			}
			checked := func(skip func(seq uint64) bool) int64 {
				var n int64
				for i, size := range sizes {
					if !tt.opts.VerifyEveryRead && size >= minVerifyOnce && (skip == nil || !skip(uint64(i))) {
						n += int64(size)
					}
				}
				return n
			}
			fetch(0)
			if tt.forget != nil {
				for i, k := range keys {
					if tt.forget(uint64(i)) {
						s.verified.seen.Delete(verifiedChunk{n: sizes[i], key: [bolt.ChunkKeyLen]byte(k)})
					}
				}
				fetch(checked(tt.forget))
			}
			fetch(checked(nil))
			fetch(checked(nil))
		})
	}
}

// TestBoltWriteToDamaged damages a body file: a chunk that was never
// checked, or whose check VerifyEveryRead repeats, fails its check and the
// client gets an aborted response holding only bytes before the damage;
// a file that ends early gives the same, however its chunks were sent.
func TestBoltWriteToDamaged(t *testing.T) {
	const size, at = 3 << 20, 1<<20 + 12345
	flip := func(file string) error {
		f, err := os.OpenFile(file, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		var b [1]byte
		if _, err := f.ReadAt(b[:], at); err != nil {
			return err
		}
		b[0] ^= 0x20
		_, err = f.WriteAt(b[:], at)
		return err
	}
	truncate := func(file string) error { return os.Truncate(file, at) }
	for _, tt := range []struct {
		name      string
		every     bool
		readFirst bool // a whole read before the damage
		damage    func(file string) error
	}{
		{name: "flipped before the first read", damage: flip},
		{name: "flipped, VerifyEveryRead", every: true, readFirst: true, damage: flip},
		{name: "truncated before the first read", damage: truncate},
		{name: "truncated after a read", readFirst: true, damage: truncate},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.db")
			s := openBolt(t, &BoltOptions{Path: path, VerifyEveryRead: tt.every})
			body := randomBody(10, size)
			cp := store(t, s, getReq("https://example.com/a"), okResp(string(body)), "k")
			file := filepath.Join(path+".bodies", bolt.BodyFileName(nonceOf(t, s, cp.ID), bolt.KindResponse))
			bs := newBodyServer(t, s, 0)
			if tt.readFirst {
				if got, rerr, werr := bs.get(t, "k"); rerr != nil || werr != nil || !bytes.Equal(got, body) {
					t.Fatalf("GET before the damage = %d bytes, %v, %v; want the body", len(got), rerr, werr)
				}
			}
			if err := tt.damage(file); err != nil {
				t.Fatal(err)
			}
			got, rerr, werr := bs.get(t, "k")
			if rerr == nil || !bytes.HasPrefix(body, got) || len(got) > at {
				t.Errorf("GET of the damaged body = %d bytes (a prefix of the body: %v), %v; want an aborted response of at most the %d bytes before the damage",
					len(got), bytes.HasPrefix(body, got), rerr, at)
			}
			if !errors.Is(werr, model.ErrCorrupt) {
				t.Errorf("server's copy: %v; want an error wrapping model.ErrCorrupt", werr)
			}
		})
	}
}

// TestBoltWriteToRemoved removes a pair while its body is being sent
// (Remove, then a sweep past DeletedRetention purges it and its file): the
// client gets an aborted response, never a short body taken for a whole
// one, whether the chunks were read or sent from the file. The connection
// has small buffers, so that the server is still sending when the client
// has read a quarter of the body.
func TestBoltWriteToRemoved(t *testing.T) {
	const size = 8 << 20
	for _, verified := range []bool{false, true} {
		t.Run(fmt.Sprintf("verified=%v", verified), func(t *testing.T) {
			ctx := context.Background()
			s := openBolt(t, &BoltOptions{NoSync: true, DeletedRetention: time.Nanosecond})
			body := randomBody(11, size)
			cp := store(t, s, getReq("https://example.com/a"), okResp(string(body)), "k")
			bs := newBodyServer(t, s, 64<<10)
			if verified {
				if got, rerr, werr := bs.get(t, "k"); rerr != nil || werr != nil || !bytes.Equal(got, body) {
					t.Fatalf("first GET = %d bytes, %v, %v; want the body", len(got), rerr, werr)
				}
			}
			sent := s.verified.sent.Load()
			tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
				if err == nil {
					_ = c.(*net.TCPConn).SetReadBuffer(32 << 10)
				}
				return c, err
			}}
			t.Cleanup(tr.CloseIdleConnections)
			resp, err := (&http.Client{Transport: tr}).Get(bs.URL + "/k")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			got := make([]byte, size/4)
			if _, err := io.ReadFull(resp.Body, got); err != nil {
				t.Fatal(err)
			}
			if err := s.Remove(ctx, cp.ID); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Cleanup(ctx); err != nil {
				t.Fatal(err)
			}
			rest, rerr := io.ReadAll(resp.Body)
			got = append(got, rest...)
			if rerr == nil || !bytes.HasPrefix(body, got) || len(got) == size {
				t.Errorf("GET while the pair was removed = %d bytes (a prefix of the body: %v), %v; want an aborted response",
					len(got), bytes.HasPrefix(body, got), rerr)
			}
			if werr := <-bs.errs; !errors.Is(werr, model.ErrRemoved) {
				t.Errorf("server's copy: %v; want an error wrapping model.ErrRemoved", werr)
			}
			if d := s.verified.sent.Load() - sent; verified != (d > 0) {
				t.Errorf("bytes sent from the file = %d; want some: %v", d, verified)
			}
		})
	}
}

// sendWriter is a writer whose ReadFrom sends files (fileSender takes it
// for an http.ResponseWriter): onSend runs at the start of each ReadFrom.
type sendWriter struct {
	bytes.Buffer
	onSend func()
}

func (w *sendWriter) WriteHeader(int) {}

func (w *sendWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.onSend != nil {
		w.onSend()
	}
	return w.Buffer.ReadFrom(r)
}

// A Close from another goroutine while WriteTo sends a section of the
// file returns at once and leaves the file open to the send, which ends
// whole; WriteTo then fails with ErrBodyClosed, and the file is closed.
func TestBoltWriteToCloseDuringSend(t *testing.T) {
	s := openBolt(t, nil)
	body := randomBody(12, 2<<20)
	store(t, s, getReq("https://example.com/a"), okResp(string(body)), "k")
	if got, err := readResponse(t, s, "k"); err != nil || !bytes.Equal(got, body) {
		t.Fatalf("first read = %d bytes, %v", len(got), err)
	}
	ps, err := s.GetPairs(context.Background(), "k")
	if err != nil || len(ps) != 1 {
		t.Fatalf("GetPairs = %d pairs, %v", len(ps), err)
	}
	b := ps[0].Response.Body
	var once sync.Once
	w := &sendWriter{onSend: func() {
		once.Do(func() {
			done := make(chan error)
			go func() { done <- b.Close() }()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Close: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("Close waited for the send")
			}
		})
	}}
	n, err := io.Copy(w, b)
	if !errors.Is(err, model.ErrBodyClosed) {
		t.Errorf("io.Copy of a body closed during a send = %d, %v; want ErrBodyClosed", n, err)
	}
	if n == 0 || n != int64(w.Len()) || !bytes.HasPrefix(body, w.Bytes()) {
		t.Errorf("io.Copy = %d, %d bytes written (a prefix of the body: %v); want the sections sent whole", n, w.Len(), bytes.HasPrefix(body, w.Bytes()))
	}
}

// fileSender takes the writers whose ReadFrom sends files without copying
// them, and no other.
func TestFileSender(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, tt := range []struct {
		w    io.Writer
		want bool
	}{
		{c, true},
		{f, true},
		{&sendWriter{}, true},
		{new(bytes.Buffer), false},
		{io.Discard, false},
		{httptest.NewRecorder(), false},
		{struct{ io.Writer }{c}, false},
	} {
		if got := fileSender(tt.w) != nil; got != tt.want {
			t.Errorf("fileSender(%T) = %v; want %v", tt.w, got, tt.want)
		}
	}
}
