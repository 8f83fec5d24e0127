package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hishel-go/hishel"
	"github.com/hishel-go/hishel/cache"
	"github.com/hishel-go/hishel/model"
)

// The proxy on hostile ground: timeouts on both sides, origin connections
// reused, keys nobody can poison, credentials never shown, failed stores
// logged.

// testConfig is a proxyConfig for target with the defaults of the flags.
func testConfig(t testing.TB, target string) *proxyConfig {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	return &proxyConfig{target: u, readHeaderTimeout: defaultReadHeaderTimeout, idleTimeout: defaultIdleTimeout,
		maxHeaderBytes: defaultMaxHeaderBytes, dialTimeout: defaultDialTimeout, tlsTimeout: defaultTLSTimeout,
		headerTimeout: defaultHeaderTimeout, idleConns: defaultIdleConns, idleConnTime: defaultIdleConnTime}
}

// lockedBuffer is a bytes.Buffer safe for concurrent use.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// serveInProcess runs runProxy on a free port until the test ends and
// returns its address and its standard error.
func serveInProcess(t *testing.T, cfg *proxyConfig, store hishel.Storage) (string, *lockedBuffer) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveOn(t, cfg, store, ln)
}

// serveOn is serveInProcess on ln.
func serveOn(t *testing.T, cfg *proxyConfig, store hishel.Storage, ln net.Listener) (string, *lockedBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stderr := &lockedBuffer{}
	done := make(chan error, 1)
	go func() { done <- runProxy(ctx, cfg, store, ln, stderr, false) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("runProxy: %v", err)
		}
	})
	return ln.Addr().String(), stderr
}

func openFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}

// 1000 idle client connections are closed after -idle-timeout, a client
// that never finishes its request head after -read-header-timeout, and a
// head over -max-header-bytes gets 431; afterwards the proxy's goroutines
// and file descriptors are back to what they were.
func TestProxyClientTimeouts(t *testing.T) {
	if openFDs() < 0 {
		t.Fatal("this test counts file descriptors in /proc/self/fd, which this system lacks")
	}
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		io.WriteString(w, "cached body")
	}))
	defer origin.Close()
	cfg := testConfig(t, origin.URL)
	cfg.readHeaderTimeout, cfg.idleTimeout, cfg.maxHeaderBytes = 300*time.Millisecond, 500*time.Millisecond, 4<<10
	store, err := cache.OpenMemory(context.Background(), &cache.MemoryOptions{SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	addr, _ := serveInProcess(t, cfg, store)

	request := func(c net.Conn, r *bufio.Reader, hdr string) (*http.Response, error) {
		if _, err := fmt.Fprintf(c, "GET /cached HTTP/1.1\r\nHost: proxy\r\n%s\r\n", hdr); err != nil {
			return nil, err
		}
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			return nil, err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp, err
	}
	// Warm up (the origin connection stays), then take the baseline.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := request(c, bufio.NewReader(c), ""); err != nil {
		t.Fatal(err)
	}
	c.Close()
	time.Sleep(100 * time.Millisecond)
	baseG, baseFD := runtime.NumGoroutine(), openFDs()

	const n = 1000
	conns := make([]net.Conn, n)
	readers := make([]*bufio.Reader, n)
	for i := range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns[i], readers[i] = c, bufio.NewReader(c)
		if resp, err := request(c, readers[i], ""); err != nil || resp.StatusCode != 200 {
			t.Fatalf("connection %d: %v", i, err)
		}
	}
	// Now all idle: the proxy must close every one.
	var closed atomic.Int64
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.SetReadDeadline(time.Now().Add(time.Minute)) // a watchdog, far beyond the idle timeout
			if _, err := readers[i].ReadByte(); err == io.EOF {
				closed.Add(1)
			}
			c.Close()
		}()
	}
	wg.Wait()
	t.Logf("%d of %d idle client connections closed by the proxy after its idle timeout", closed.Load(), n)
	if closed.Load() != n {
		t.Errorf("%d of %d idle connections closed; want all", closed.Load(), n)
	}

	// A client that never ends its request head.
	c, err = net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "GET /cached HTTP/1.1\r\nHost: proxy\r\nX-Slow: ")
	c.SetReadDeadline(time.Now().Add(time.Minute))
	if _, err := io.ReadAll(c); err != nil {
		t.Errorf("a client that never ends its head: %v; want the proxy to close the connection", err)
	}
	c.Close()
	// A head too large.
	c, err = net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := request(c, bufio.NewReader(c), "X-Big: "+strings.Repeat("x", 8<<10)+"\r\n")
	if err != nil || resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("an 8 KiB header with -max-header-bytes 4096: %v, %v; want 431", resp, err)
	}
	c.Close()

	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > baseG || openFDs() > baseFD {
		if time.Now().After(deadline) {
			t.Fatalf("goroutines %d (baseline %d), file descriptors %d (baseline %d): not back to baseline",
				runtime.NumGoroutine(), baseG, openFDs(), baseFD)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A stalled origin: the client gets 504 with a Cache-Status that says why
// within -origin-timeout, or the stale response where
// stale-if-error allows it.
func TestProxyStalledOrigin(t *testing.T) {
	skipWithoutSignals(t)
	release := make(chan struct{})
	var stall atomic.Bool
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if stall.Load() {
			<-release
			return
		}
		w.Header().Set("Cache-Control", "max-age=0, stale-if-error=600")
		w.Header().Set("ETag", `"v"`)
		io.WriteString(w, "stale but fine")
	}))
	defer o.Close()
	defer close(release) // before o.Close, which waits for the handlers
	p := startProxy(t, "-upstream", o.URL, "-db", filepath.Join(t.TempDir(), "stall.db"), "-origin-timeout", "300ms")
	c := &http.Client{Transport: &http.Transport{}}
	base := "http://" + p.addr
	if _, body := do(t, c, "GET", base+"/sie", "", nil); body != "stale but fine" {
		t.Fatalf("first GET = %q", body)
	}
	stall.Store(true)
	// A watchdog far beyond the timeout: the answer must not wait for the
	// origin, which never answers before the test ends.
	c.Timeout = 30 * time.Second
	resp, body := do(t, c, "GET", base+"/never", "", nil)
	if resp.StatusCode != http.StatusGatewayTimeout || resp.Header.Get("Cache-Status") != "hishel; fwd=uri-miss; detail=origin-timeout" {
		t.Errorf("GET of a stalled origin = %d %q, Cache-Status %q; want 504, fwd=uri-miss; detail=origin-timeout",
			resp.StatusCode, body, resp.Header.Get("Cache-Status"))
	}
	resp, body = do(t, c, "GET", base+"/sie", "", nil)
	if cs := resp.Header.Get("Cache-Status"); resp.StatusCode != 200 || body != "stale but fine" || !strings.Contains(cs, "detail=stale-if-error") {
		t.Errorf("GET of a stored stale-if-error response, origin stalled = %d %q, Cache-Status %q; want the stale response",
			resp.StatusCode, body, cs)
	}
	if code := p.stop(t); code != 0 {
		t.Errorf("hishel proxy exited %d\n%s", code, p.Stderr())
	}
}

// The proxy does not forward a client-chosen host unless told to, and then
// keys on it: an origin that reflects X-Forwarded-Host cannot be made to
// serve an attacker's host to every visitor.
func TestProxyForwardedHost(t *testing.T) {
	skipWithoutSignals(t)
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		fmt.Fprintf(w, `<script src="https://%s/app.js">`, cmpOr(r.Header.Get("X-Forwarded-Host"), "origin.example"))
	}))
	defer o.Close()
	for _, forward := range []bool{false, true} {
		t.Run(fmt.Sprint("forward-host=", forward), func(t *testing.T) {
			args := []string{"-upstream", o.URL, "-db", filepath.Join(t.TempDir(), "host.db"), "-shared"}
			if forward {
				args = append(args, "-forward-host")
			}
			p := startProxy(t, args...)
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr}
			get := func(host string) string {
				req, _ := http.NewRequest("GET", "http://"+p.addr+"/page", nil)
				req.Host = host
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return string(b)
			}
			attacker := get("evil.example")
			victim := get("shop.example")
			if strings.Contains(victim, "evil.example") {
				t.Errorf("after an attacker's Host, the victim got %q", victim)
			}
			if want := map[bool]string{false: "origin.example", true: "shop.example"}[forward]; !strings.Contains(victim, want) {
				t.Errorf("victim got %q; want %s in it", victim, want)
			}
			if forward != strings.Contains(attacker, "evil.example") {
				t.Errorf("attacker got %q; the origin must see its Host only with -forward-host", attacker)
			}
			if code := p.stop(t); code != 0 {
				t.Errorf("hishel proxy exited %d\n%s", code, p.Stderr())
			}
		})
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// 1000 misses from 32 clients reuse the origin connections: no more than
// two per client are opened (http.DefaultTransport's two idle connections
// per host opened one for most misses).
func TestProxyOriginConnReuse(t *testing.T) {
	skipWithoutSignals(t)
	var conns atomic.Int64
	o := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, "body "+r.URL.Path)
	}))
	o.Config.ConnState = func(c net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	o.Start()
	defer o.Close()
	p := startProxy(t, "-upstream", o.URL, "-db", filepath.Join(t.TempDir(), "reuse.db"))
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	const clients, misses = 32, 1000
	var wg sync.WaitGroup
	var next atomic.Int64
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= misses; i = next.Add(1) {
				resp, err := c.Get(fmt.Sprintf("http://%s/p%d", p.addr, i))
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	t.Logf("%d misses from %d clients: %d new origin connections", misses, clients, conns.Load())
	if n := conns.Load(); n > 2*clients {
		t.Errorf("%d misses from %d clients opened %d origin connections; want at most %d", misses, clients, n, 2*clients)
	}
	if code := p.stop(t); code != 0 {
		t.Errorf("hishel proxy exited %d\n%s", code, p.Stderr())
	}
}

// Credentials reach the origin but are stored only as keyed hashes:
// "hishel show" cannot print them, nor the client's address.
func TestProxyCredentialsNotStored(t *testing.T) {
	skipWithoutSignals(t)
	secrets := []string{"Bearer alice-token-123", "session=alice-session-456"}
	var seen atomic.Value
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Store(r.Header.Get("Authorization") + "|" + r.Header.Get("Cookie"))
		w.Header().Set("Cache-Control", "public, max-age=600")
		w.Header().Set("Vary", "Cookie")
		io.WriteString(w, "account page")
	}))
	defer o.Close()
	db := filepath.Join(t.TempDir(), "cred.db")
	p := startProxy(t, "-upstream", o.URL, "-db", db, "-shared")
	tr := &http.Transport{}
	c := &http.Client{Transport: tr}
	h := http.Header{"Authorization": {secrets[0]}, "Cookie": {secrets[1]}}
	for i, want := range []string{"fwd=uri-miss", "hit"} {
		resp, body := do(t, c, "GET", "http://"+p.addr+"/account", "", h)
		if body != "account page" || !strings.Contains(resp.Header.Get("Cache-Status"), want) {
			t.Errorf("GET %d = %q, Cache-Status %q; want %s", i, body, resp.Header.Get("Cache-Status"), want)
		}
	}
	if got := seen.Load(); got != secrets[0]+"|"+secrets[1] {
		t.Errorf("origin got %q; want the client's credentials", got)
	}
	tr.CloseIdleConnections()
	if code := p.stop(t); code != 0 {
		t.Fatalf("hishel proxy exited %d\n%s", code, p.Stderr())
	}
	id := pairID(t, runHishel(t, "ls", "-db", db), o.URL+"/account")
	show := runHishel(t, "show", "-db", db, id)
	if show.code != 0 || !strings.Contains(show.stdout, "> Authorization: hishel-hmac-sha256:") {
		t.Fatalf("hishel show = %v; want the hashed Authorization", show)
	}
	for _, s := range append(secrets, "alice", "X-Forwarded-For") {
		if strings.Contains(show.stdout, s) {
			t.Errorf("hishel show prints %q:\n%s", s, show.stdout)
		}
	}
}

// failingStore stores nothing: every CreatePair fails as a full disk does.
type failingStore struct{ hishel.Storage }

func (failingStore) CreatePair(context.Context, model.Request, ...model.CreateOption) (model.IncompletePair, error) {
	return model.IncompletePair{}, errors.New("write /var/cache/hishel.db: no space left on device")
}

// A failed store is logged at Warn with the key and the error, without -v.
func TestProxyLogsFailedStore(t *testing.T) {
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		io.WriteString(w, "body")
	}))
	defer o.Close()
	mem, err := cache.OpenMemory(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	addr, stderr := serveInProcess(t, testConfig(t, o.URL), failingStore{mem})
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, body := do(t, &http.Client{Transport: tr}, "GET", "http://"+addr+"/page", "", nil)
	if resp.StatusCode != 200 || body != "body" || strings.Contains(resp.Header.Get("Cache-Status"), "stored") {
		t.Errorf("GET with a failing store = %d %q, Cache-Status %q; want the body, not stored", resp.StatusCode, body, resp.Header.Get("Cache-Status"))
	}
	key, _ := hishel.URLKey("GET", o.URL+"/page")
	log := stderr.String()
	if !strings.Contains(log, "level=WARN") || !strings.Contains(log, "key=\""+key+"\"") || !strings.Contains(log, "no space left on device") {
		t.Errorf("proxy log:\n%s\nwant a WARN record with key=%q and the error", log, key)
	}
}

// The new flags are checked.
func TestProxyFlagErrors(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "short.key")
	if err := os.WriteFile(keyFile, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		args   []string
		stderr string
	}{
		{[]string{"-idle-timeout", "0s"}, "-idle-timeout must be positive"},
		{[]string{"-origin-timeout", "-1s"}, "-origin-timeout must not be negative"},
		{[]string{"-max-header-bytes", "0"}, "-max-header-bytes must be positive"},
		{[]string{"-set-cookie", "keep"}, "bad -set-cookie"},
		{[]string{"-credential-key-file", keyFile}, "want 16 or more"},
	} {
		r := runHishel(t, append([]string{"proxy", "-upstream", "http://127.0.0.1:9"}, tt.args...)...)
		if r.code != exitUsage || !strings.Contains(r.stderr, tt.stderr) {
			t.Errorf("hishel proxy %v = %v; want exit %d and %q", tt.args, r, exitUsage, tt.stderr)
		}
	}
	help := runHishel(t, "proxy", "-h")
	for _, f := range []string{"-read-header-timeout", "-idle-timeout", "-max-header-bytes", "-upstream-dial-timeout",
		"-upstream-tls-timeout", "-origin-timeout", "-upstream-idle-conns", "-forward-host", "-set-cookie", "-credential-key-file"} {
		if !strings.Contains(help.stdout, f) {
			t.Errorf("hishel proxy -h lacks %s:\n%s", f, help.stdout)
		}
	}
}
