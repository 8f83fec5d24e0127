package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// origin is a test origin server that counts its requests by path.
type origin struct {
	*httptest.Server
	mu     sync.Mutex
	counts map[string]int
	hops   []string // hop-by-hop fields that reached the origin
}

func newOrigin(t *testing.T) *origin {
	o := &origin{counts: map[string]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/cached", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, "cached body")
	})
	mux.HandleFunc("/echo/", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Cache-Control", "no-store")
		fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.Path, body)
	})
	mux.HandleFunc("/early", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload; as=style")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Set("Cache-Control", "no-store")
		io.WriteString(w, "after the hints")
	})
	mux.HandleFunc("/hop", func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		for _, f := range []string{"Connection", "X-Req-Hop", "Keep-Alive", "Proxy-Connection"} {
			if r.Header.Get(f) != "" {
				o.hops = append(o.hops, f)
			}
		}
		o.mu.Unlock()
		w.Header().Set("Connection", "X-Resp-Hop")
		w.Header().Set("X-Resp-Hop", "secret")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("X-End-To-End", "kept")
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, "hop body")
	})
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		o.counts[r.URL.Path]++
		o.mu.Unlock()
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(o.Close)
	return o
}

func (o *origin) count(path string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.counts[path]
}

// do sends one request to the proxy and returns the response with its body
// read.
func do(t *testing.T, c *http.Client, method, url, body string, header http.Header) (*http.Response, string) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, url, err)
	}
	return resp, string(b)
}

// TestProxy runs a proxy against a test origin, checks what it forwards
// and caches, that the cache file is reported in use while it runs, and
// then inspects and maintains the file it leaves.
func TestProxy(t *testing.T) {
	skipWithoutSignals(t)
	o := newOrigin(t)
	db := filepath.Join(t.TempDir(), "proxy.db")
	p := startProxy(t, "-upstream", o.URL, "-db", db, "-shared")
	base := "http://" + p.addr
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr}

	t.Run("GET cached", func(t *testing.T) {
		resp1, body1 := do(t, c, "GET", base+"/cached", "", nil)
		resp2, body2 := do(t, c, "GET", base+"/cached", "", nil)
		if resp1.StatusCode != 200 || body1 != "cached body" || resp2.StatusCode != 200 || body2 != "cached body" {
			t.Errorf("GET /cached twice = %d %q, %d %q; want 200 %q twice",
				resp1.StatusCode, body1, resp2.StatusCode, body2, "cached body")
		}
		if n := o.count("/cached"); n != 1 {
			t.Errorf("origin requests for /cached = %d; want 1", n)
		}
		if cs := resp2.Header.Get("Cache-Status"); !strings.HasPrefix(cs, "hishel; hit") {
			t.Errorf("second GET Cache-Status = %q; want a hishel hit", cs)
		}
	})

	t.Run("methods forwarded", func(t *testing.T) {
		for _, m := range []string{"POST", "PUT", "DELETE", "PATCH", "OPTIONS", "PURGE", "MKCOL"} {
			path := "/echo/" + strings.ToLower(m)
			before := o.count(path)
			resp, body := do(t, c, m, base+path, "payload-"+m, nil)
			want := m + " " + path + " payload-" + m
			if resp.StatusCode != 200 || body != want {
				t.Errorf("%s %s = %d %q; want 200 %q", m, path, resp.StatusCode, body, want)
			}
			if n := o.count(path) - before; n != 1 {
				t.Errorf("%s %s reached the origin %d times; want 1", m, path, n)
			}
		}
	})

	t.Run("103 Early Hints", func(t *testing.T) {
		var mu sync.Mutex
		var hints []int
		var link string
		trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			mu.Lock()
			defer mu.Unlock()
			hints = append(hints, code)
			link = h.Get("Link")
			return nil
		}}
		ctx := httptrace.WithClientTrace(t.Context(), trace)
		req, err := http.NewRequestWithContext(ctx, "GET", base+"/early", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		mu.Lock()
		defer mu.Unlock()
		if len(hints) != 1 || hints[0] != http.StatusEarlyHints || !strings.Contains(link, "rel=preload") {
			t.Errorf("1xx responses through the proxy = %v, Link %q; want one 103 with the origin's Link", hints, link)
		}
		if resp.StatusCode != 200 || string(body) != "after the hints" {
			t.Errorf("GET /early = %d %q; want 200 %q", resp.StatusCode, body, "after the hints")
		}
	})

	t.Run("hop-by-hop fields stripped", func(t *testing.T) {
		h := http.Header{"Connection": {"X-Req-Hop"}, "X-Req-Hop": {"1"}, "Proxy-Connection": {"keep-alive"}}
		// Without the proxy, the fields pass both ways: the test tests something.
		resp, _ := do(t, c, "GET", o.URL+"/hop", "", h)
		o.mu.Lock()
		direct := o.hops
		o.hops = nil
		o.mu.Unlock()
		if resp.Header.Get("X-Resp-Hop") == "" || !slices.Contains(direct, "X-Req-Hop") {
			t.Fatalf("directly from the origin: X-Resp-Hop %q, fields received %v; want the hop-by-hop fields to pass",
				resp.Header.Get("X-Resp-Hop"), direct)
		}
		for i, want := range []string{"fwd=uri-miss", "hit"} {
			resp, body := do(t, c, "GET", base+"/hop", "", h)
			if resp.StatusCode != 200 || body != "hop body" {
				t.Fatalf("GET /hop #%d = %d %q; want 200 %q", i+1, resp.StatusCode, body, "hop body")
			}
			for _, f := range []string{"X-Resp-Hop", "Keep-Alive"} {
				if v := resp.Header.Get(f); v != "" {
					t.Errorf("GET /hop #%d: response field %s = %q; want it stripped", i+1, f, v)
				}
			}
			if v := resp.Header.Get("X-End-To-End"); v != "kept" {
				t.Errorf("GET /hop #%d: X-End-To-End = %q; want %q", i+1, v, "kept")
			}
			if cs := resp.Header.Get("Cache-Status"); !strings.Contains(cs, want) {
				t.Errorf("GET /hop #%d: Cache-Status = %q; want %q", i+1, cs, want)
			}
		}
		o.mu.Lock()
		defer o.mu.Unlock()
		if len(o.hops) != 0 {
			t.Errorf("hop-by-hop request fields reached the origin: %v", o.hops)
		}
	})

	t.Run("file in use", func(t *testing.T) {
		r := runHishel(t, "ls", "-db", db)
		want := "hishel: " + db + " is in use by another process (a running proxy?); stop it or copy the file"
		if r.code != exitInUse || !strings.Contains(r.stderr, want) {
			t.Errorf("hishel ls -db on the proxy's file = %v; want exit %d and %q", r, exitInUse, want)
		}
		// It gives up rather than waiting for the proxy to end. (Not a
		// tighter bound: starting a process on a loaded machine once took
		// more than 2 s.)
		if r.took > 20*time.Second {
			t.Errorf("hishel ls -db on the proxy's file took %v; want it to give up at once", r.took)
		}
		// A second proxy on the same file gives up after its open timeout.
		r = runHishel(t, "proxy", "-listen", "127.0.0.1:0", "-upstream", o.URL, "-db", db)
		if r.code != exitInUse || !strings.Contains(r.stderr, "is in use by another process") {
			t.Errorf("a second hishel proxy on the same file = %v; want exit %d", r, exitInUse)
		}
	})

	tr.CloseIdleConnections()
	if code := p.stop(t); code != 0 {
		t.Fatalf("hishel proxy exited %d after SIGTERM; want 0\n%s", code, p.Stderr())
	}
	if !strings.Contains(p.Stderr(), "hishel proxy: stopped") {
		t.Errorf("hishel proxy stderr lacks the stop message:\n%s", p.Stderr())
	}

	// The file the proxy left.
	ls := runHishel(t, "ls", "-db", db)
	id := pairID(t, ls, o.URL+"/cached")
	if !strings.Contains(ls.stdout, o.URL+"/hop") {
		t.Errorf("hishel ls = %v; want the /hop pair listed", ls)
	}
	for _, m := range []string{"POST", "PUT", "PURGE"} {
		if strings.Contains(ls.stdout, " "+m+" ") {
			t.Errorf("hishel ls lists a %s pair; unsafe requests are not stored:\n%s", m, ls.stdout)
		}
	}

	show := runHishel(t, "show", "-db", db, id)
	for _, want := range []string{"id:            " + id, "state:         complete", "> GET " + o.URL + "/cached",
		"< 200 OK", "< Cache-Control: max-age=60", "response size: 11", "\ncached body"} {
		if !strings.Contains(show.stdout, want) {
			t.Errorf("hishel show = %v\nwant %q in stdout", show, want)
		}
	}
	show = runHishel(t, "show", id, "-n", "6", "-db", db)
	if show.code != 0 || !strings.HasSuffix(show.stdout, "\ncached") {
		t.Errorf("hishel show -n 6 = %v; want stdout ending in the first 6 bytes of the body", show)
	}

	rm := runHishel(t, "rm", "-db", db, id)
	if rm.code != 0 || !strings.Contains(rm.stdout, "removed "+id) {
		t.Errorf("hishel rm = %v; want exit 0 and %q", rm, "removed "+id)
	}
	ls = runHishel(t, "ls", "-db", db)
	if line := lineWith(ls.stdout, id); !strings.Contains(line, " deleted ") {
		t.Errorf("after rm, hishel ls line of %s = %q; want state deleted", id, line)
	}
	show = runHishel(t, "show", "-db", db, id)
	if show.code != 0 || !strings.Contains(show.stdout, "(no response body available: the pair is deleted)") {
		t.Errorf("hishel show of a deleted pair = %v; want its heads and no body", show)
	}
	rm = runHishel(t, "rm", "-db", db, id)
	if rm.code != 0 || !strings.Contains(rm.stdout, "already deleted") {
		t.Errorf("hishel rm again = %v; want exit 0 and %q", rm, "already deleted")
	}

	stats := runHishel(t, "stats", "-db", db)
	if stats.code != 0 || !strings.Contains(stats.stdout, "pairs: 1\n") || !strings.Contains(stats.stdout, "deleted: 1\n") {
		t.Errorf("hishel stats = %v; want pairs: 1, deleted: 1", stats)
	}
	gc := runHishel(t, "gc", "-db", db)
	if gc.code != 0 || !strings.Contains(gc.stdout, "purged: 0\n") {
		t.Errorf("hishel gc = %v; want the deleted pair kept for its retention", gc)
	}
	gc = runHishel(t, "gc", "-db", db, "-retention", "1ns")
	if gc.code != 0 || !strings.Contains(gc.stdout, "purged: 1\n") {
		t.Errorf("hishel gc -retention 1ns = %v; want purged: 1", gc)
	}
	show = runHishel(t, "show", "-db", db, id)
	if show.code != exitError || !strings.Contains(show.stderr, "no pair "+id) {
		t.Errorf("hishel show of a purged pair = %v; want exit 1 and %q", show, "no pair "+id)
	}
	stats = runHishel(t, "stats", "-db", db)
	if stats.code != 0 || !strings.Contains(stats.stdout, "pairs: 1\n") || !strings.Contains(stats.stdout, "deleted: 0\n") {
		t.Errorf("hishel stats after gc = %v; want pairs: 1, deleted: 0", stats)
	}
}

// pairID returns the ID of the pair for url in the output of hishel ls.
func pairID(t *testing.T, ls result, url string) string {
	t.Helper()
	if ls.code != 0 {
		t.Fatalf("hishel ls = %v; want exit 0", ls)
	}
	line := lineWith(ls.stdout, " "+url+" ")
	if line == "" {
		t.Fatalf("hishel ls = %v; want a line for %s", ls, url)
	}
	id, _, _ := strings.Cut(line, " ")
	return id
}

func lineWith(s, sub string) string {
	for line := range strings.Lines(s) {
		if strings.Contains(line, sub) {
			return strings.TrimSuffix(line, "\n")
		}
	}
	return ""
}

// TestProxyInterrupt checks that SIGINT stops an idle proxy
// cleanly and that the file is free afterwards.
func TestProxyInterrupt(t *testing.T) {
	skipWithoutSignals(t)
	o := newOrigin(t)
	db := filepath.Join(t.TempDir(), "idle.db")
	p := startProxy(t, "-upstream", o.URL, "-db", db)
	if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t); code != 0 {
		t.Fatalf("hishel proxy exited %d after SIGINT; want 0\n%s", code, p.Stderr())
	}
	if r := runHishel(t, "stats", "-db", db); r.code != 0 || !strings.Contains(r.stdout, "pairs: 0\n") {
		t.Errorf("hishel stats after the proxy stopped = %v; want exit 0, pairs: 0", r)
	}
}

// TestProxyUpstreamDown checks the proxy's answer when the origin cannot be
// reached.
func TestProxyUpstreamDown(t *testing.T) {
	skipWithoutSignals(t)
	o := newOrigin(t)
	url := o.URL
	o.Close()
	p := startProxy(t, "-upstream", url, "-db", filepath.Join(t.TempDir(), "down.db"))
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+p.addr+"/cached", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("GET through a proxy whose origin is down = %d; want 502", resp.StatusCode)
	}
	if code := p.stop(t); code != 0 {
		t.Errorf("hishel proxy exited %d; want 0\n%s", code, p.Stderr())
	}
}
