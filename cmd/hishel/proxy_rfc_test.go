package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// rfcOrigin is a test origin with an endpoint per rule of RFC 9111 (and
// RFC 9110, RFC 9213) that the proxy's end-to-end test exercises. It counts
// requests by method and path and records the Range fields it receives.
type rfcOrigin struct {
	*httptest.Server
	mu     sync.Mutex
	counts map[string]int
	ranges []string
}

const rangeContent = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

func newRFCOrigin(t *testing.T) *rfcOrigin {
	o := &rfcOrigin{counts: map[string]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/status/{code}", func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(r.PathValue("code"))
		w.Header().Set("Cache-Control", "max-age=60")
		w.WriteHeader(code)
		fmt.Fprintf(w, "status %d", code)
	})
	mux.HandleFunc("/range", func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		o.ranges = append(o.ranges, r.Header.Get("Range")+" "+r.Header.Get("If-Range"))
		o.mu.Unlock()
		w.Header().Set("ETag", `"r1"`)
		w.Header().Set("Cache-Control", "max-age=60")
		http.ServeContent(w, r, "", time.Time{}, strings.NewReader(rangeContent))
	})
	mux.HandleFunc("/head", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Content-Length", "4")
		io.WriteString(w, "body")
	})
	mux.HandleFunc("/post", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		if r.Method == "POST" {
			b, _ := io.ReadAll(r.Body)
			w.Header().Set("Content-Location", "/post")
			fmt.Fprintf(w, "posted %s", b)
			return
		}
		io.WriteString(w, "got")
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Date", time.Now().UTC().Format(http.TimeFormat))
		time.Sleep(1100 * time.Millisecond)
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, "slow")
	})
	mux.HandleFunc("/cdn", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("CDN-Cache-Control", "max-age=60")
		w.Header().Set("Cache-Control", "no-store")
		io.WriteString(w, "cdn")
	})
	mux.HandleFunc("/targeted", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Hishel-Cache-Control", "no-store")
		w.Header().Set("CDN-Cache-Control", "max-age=60")
		io.WriteString(w, "targeted")
	})
	mux.HandleFunc("/vary", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Vary", "Accept-Encoding, Accept-Language")
		io.WriteString(w, "vary")
	})
	mux.HandleFunc("/date-case", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Expires", strings.ToLower(time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)[:16])+time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)[16:])
		io.WriteString(w, "dated")
	})
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		o.counts[r.Method+" "+r.URL.Path]++
		o.mu.Unlock()
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(o.Close)
	return o
}

func (o *rfcOrigin) count(key string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.counts[key]
}

// TestProxyRFC runs a shared caching proxy (-shared, with
// Hishel-Cache-Control as a targeted field) and checks each rule of issue
// 19 end to end: any final status, partial content, HEAD, POST with
// Content-Location, the Age of a slow miss, targeted cache control, Vary
// normalisation and lenient HTTP-date names.
func TestProxyRFC(t *testing.T) {
	skipWithoutSignals(t)
	o := newRFCOrigin(t)
	p := startProxy(t, "-upstream", o.URL, "-db", filepath.Join(t.TempDir(), "rfc.db"), "-shared", "-targeted-fields", "Hishel-Cache-Control")
	base := "http://" + p.addr
	tr := &http.Transport{DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr}
	hit := func(resp *http.Response) bool {
		return strings.HasPrefix(resp.Header.Get("Cache-Status"), "hishel; hit")
	}

	t.Run("RFC 9111 §3 any final status with max-age", func(t *testing.T) {
		for _, code := range []int{299, 400, 500, 503} {
			path := fmt.Sprintf("/status/%d", code)
			do(t, c, "GET", base+path, "", nil)
			resp, body := do(t, c, "GET", base+path, "", nil)
			if resp.StatusCode != code || body != fmt.Sprintf("status %d", code) || !hit(resp) || o.count("GET "+path) != 1 {
				t.Errorf("GET %s twice: %d %q %q, origin %d; want the stored %d, a hit", path, resp.StatusCode, body, resp.Header.Get("Cache-Status"), o.count("GET "+path), code)
			}
		}
	})

	t.Run("RFC 9111 §3.3 §3.4 partial content", func(t *testing.T) {
		n := len(rangeContent)
		steps := []struct {
			rng, want, cs, origin string
		}{
			{"bytes=0-9", rangeContent[:10], "hishel; fwd=uri-miss; fwd-status=206; stored", "bytes=0-9 "},
			{"bytes=2-5", rangeContent[2:6], "hishel; hit", ""},
			{"bytes=5-29", rangeContent[5:30], "hishel; fwd=partial; fwd-status=206; stored", `bytes=10-29 "r1"`},
			{"bytes=42-", rangeContent[42:], "hishel; fwd=miss; fwd-status=206; stored", "bytes=42- "}, // a part stored, none usable (RFC 9211)
			{"bytes=25-49", rangeContent[25:50], "hishel; fwd=partial; fwd-status=206; stored", `bytes=30-41 "r1"`},
			{"bytes=-" + strconv.Itoa(n-2), rangeContent[2:], "hishel; hit", ""},
			{"", rangeContent, "hishel; hit", ""},
			{"bytes=20-24", rangeContent[20:25], "hishel; hit", ""},
		}
		for i, st := range steps {
			o.mu.Lock()
			before := len(o.ranges)
			o.mu.Unlock()
			h := http.Header{}
			if st.rng != "" {
				h.Set("Range", st.rng)
			}
			resp, body := do(t, c, "GET", base+"/range", "", h)
			if body != st.want || !strings.HasPrefix(resp.Header.Get("Cache-Status"), st.cs) {
				t.Errorf("step %d GET Range %q = %d %q %q; want %q, %q", i, st.rng, resp.StatusCode, body, resp.Header.Get("Cache-Status"), st.want, st.cs)
			}
			o.mu.Lock()
			seen := o.ranges[before:]
			o.mu.Unlock()
			if st.origin == "" && len(seen) != 0 || st.origin != "" && (len(seen) != 1 || seen[0] != st.origin) {
				t.Errorf("step %d GET Range %q: the origin saw %q; want %q", i, st.rng, seen, st.origin)
			}
		}
	})

	t.Run("RFC 9111 §4 HEAD from a stored GET", func(t *testing.T) {
		do(t, c, "GET", base+"/head", "", nil)
		resp, body := do(t, c, "HEAD", base+"/head", "", nil)
		if resp.StatusCode != 200 || body != "" || resp.ContentLength != 4 || !hit(resp) || o.count("HEAD /head") != 0 {
			t.Errorf("HEAD after GET = %d %q, length %d, %q, %d HEADs at the origin; want a hit", resp.StatusCode, body, resp.ContentLength, resp.Header.Get("Cache-Status"), o.count("HEAD /head"))
		}
	})

	t.Run("RFC 9110 §9.3.3 POST with Content-Location", func(t *testing.T) {
		do(t, c, "POST", base+"/post", "fresh", nil)
		resp, body := do(t, c, "GET", base+"/post", "", nil)
		if body != "posted fresh" || !hit(resp) || o.count("GET /post") != 0 {
			t.Errorf("GET after POST = %q %q, %d GETs at the origin; want the POST's response, a hit", body, resp.Header.Get("Cache-Status"), o.count("GET /post"))
		}
	})

	t.Run("RFC 9111 §4.2.3 Age of a slow miss", func(t *testing.T) {
		resp, _ := do(t, c, "GET", base+"/slow", "", nil)
		if age, _ := strconv.Atoi(resp.Header.Get("Age")); age < 1 {
			t.Errorf("slow miss Age = %q; want at least 1", resp.Header.Get("Age"))
		}
	})

	t.Run("RFC 9213 targeted cache control", func(t *testing.T) {
		do(t, c, "GET", base+"/cdn", "", nil)
		resp, _ := do(t, c, "GET", base+"/cdn", "", nil)
		if !hit(resp) || resp.Header.Get("Cdn-Cache-Control") != "max-age=60" || resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("GET /cdn twice: %q, %v; want a hit with both fields passed on", resp.Header.Get("Cache-Status"), resp.Header)
		}
		do(t, c, "GET", base+"/targeted", "", nil)
		do(t, c, "GET", base+"/targeted", "", nil)
		if n := o.count("GET /targeted"); n != 2 {
			t.Errorf("GET /targeted twice reached the origin %d times; want 2 (Hishel-Cache-Control: no-store wins)", n)
		}
	})

	t.Run("RFC 9111 §4.1 Vary normalised", func(t *testing.T) {
		do(t, c, "GET", base+"/vary", "", http.Header{"Accept-Encoding": {"gzip, br"}, "Accept-Language": {"en-US, fr;q=0.5"}})
		resp, _ := do(t, c, "GET", base+"/vary", "", http.Header{"Accept-Encoding": {"BR,gzip"}, "Accept-Language": {"fr;q=0.50,en-us"}})
		if !hit(resp) {
			t.Errorf("GET /vary with reordered fields: %q; want a hit", resp.Header.Get("Cache-Status"))
		}
		do(t, c, "GET", base+"/vary", "", http.Header{"Accept-Encoding": {"gzip, br"}, "Accept-Language": {"en-US, fr;q=0.6"}})
		if n := o.count("GET /vary"); n != 2 {
			t.Errorf("GET /vary reached the origin %d times; want 2 (another weight is another variant)", n)
		}
	})

	t.Run("RFC 9110 §5.6.7 day and month names in any case", func(t *testing.T) {
		do(t, c, "GET", base+"/date-case", "", nil)
		resp, _ := do(t, c, "GET", base+"/date-case", "", nil)
		if !hit(resp) {
			t.Errorf("GET with Expires in lower case: %q; want a hit", resp.Header.Get("Cache-Status"))
		}
	})

	tr.CloseIdleConnections()
	if code := p.stop(t); code != 0 {
		t.Fatalf("hishel proxy exited %d; want 0\n%s", code, p.Stderr())
	}
}

// TestProxyStaleIfDisconnected checks RFC 9111 §4.2.4 through the proxy:
// by default it answers from a stale response when the origin refuses or
// resets the connection or does not answer within -origin-timeout, unless
// a directive forbids it; -stale-if-disconnected=false answers 502, or 504
// when the origin did not answer in time.
func TestProxyStaleIfDisconnected(t *testing.T) {
	skipWithoutSignals(t)
	var mode atomic.Value // "", "reset" or "hang"
	mode.Store("")
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch mode.Load().(string) {
		case "reset":
			if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
				conn.(*net.TCPConn).SetLinger(0)
				conn.Close()
			}
			return
		case "hang":
			select {
			case <-stop:
			case <-r.Context().Done():
			}
			return
		}
		// The path is the Cache-Control: stale at once, stored for its
		// validator.
		w.Header().Set("Cache-Control", strings.TrimPrefix(r.URL.Path, "/"))
		w.Header().Set("ETag", `"s"`)
		io.WriteString(w, "stale body")
	}))
	defer srv.Close()
	defer close(stop)
	paths := map[string]bool{ // Cache-Control → served stale (shared cache)
		"/max-age=0":                   true,
		"/max-age=0, must-revalidate":  false,
		"/max-age=0, proxy-revalidate": false,
		"/s-maxage=0":                  false,
		"/no-cache":                    false,
	}
	run := func(t *testing.T, args []string, failure string, allowed func(path string) bool) {
		mode.Store("")
		p := startProxy(t, append([]string{"-upstream", srv.URL, "-db", filepath.Join(t.TempDir(), "stale.db"), "-shared", "-origin-timeout", "300ms"}, args...)...)
		base := "http://" + p.addr
		tr := &http.Transport{}
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr}
		for path := range paths {
			do(t, c, "GET", base+path, "", nil)
		}
		mode.Store(failure)
		for path := range paths {
			resp, body := do(t, c, "GET", base+path, "", nil)
			if allowed(path) {
				if resp.StatusCode != 200 || body != "stale body" || !strings.HasPrefix(resp.Header.Get("Cache-Status"), "hishel; fwd=stale; detail=stale-if-disconnected") {
					t.Errorf("%s, origin %s: %d %q %q; want the stale response, detail=stale-if-disconnected", path, failure, resp.StatusCode, body, resp.Header.Get("Cache-Status"))
				}
			} else if want := map[bool]int{false: http.StatusBadGateway, true: http.StatusGatewayTimeout}[failure == "hang"]; resp.StatusCode != want {
				// An origin that does not answer in time is a 504, one that
				// fails a 502 (hishel.ServeError).
				t.Errorf("%s, origin %s: %d %q; want %d", path, failure, resp.StatusCode, body, want)
			}
		}
		tr.CloseIdleConnections()
		if code := p.stop(t); code != 0 {
			t.Errorf("hishel proxy exited %d; want 0\n%s", code, p.Stderr())
		}
	}
	for _, failure := range []string{"reset", "hang"} {
		t.Run(failure, func(t *testing.T) { run(t, nil, failure, func(path string) bool { return paths[path] }) })
		t.Run(failure+" with -stale-if-disconnected=false", func(t *testing.T) {
			run(t, []string{"-stale-if-disconnected=false"}, failure, func(string) bool { return false })
		})
	}
	t.Run("refused", func(t *testing.T) {
		// A second origin, closed once the responses are stored.
		refused := httptest.NewServer(srv.Config.Handler)
		p := startProxy(t, "-upstream", refused.URL, "-db", filepath.Join(t.TempDir(), "refused.db"), "-shared")
		base := "http://" + p.addr
		mode.Store("")
		for path := range paths {
			do(t, http.DefaultClient, "GET", base+path, "", nil)
		}
		refused.Close()
		for path, allowed := range paths {
			resp, body := do(t, http.DefaultClient, "GET", base+path, "", nil)
			if allowed != (resp.StatusCode == 200 && body == "stale body") {
				t.Errorf("%s, origin refusing: %d %q %q; want stale served: %v", path, resp.StatusCode, body, resp.Header.Get("Cache-Status"), allowed)
			}
		}
		if code := p.stop(t); code != 0 {
			t.Errorf("hishel proxy exited %d; want 0\n%s", code, p.Stderr())
		}
	})
}
