package hishel_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hishel-go/hishel"
	"github.com/hishel-go/hishel/model"
	"github.com/hishel-go/hishel/statemachine"
)

// The tests of a shared cache on hostile ground: keys nobody can poison,
// private data kept private, an honest Cache-Status and logged failures.

// A KeyFunc sees the whole request: a key on a tenant header keeps the
// tenants' answers apart, and invalidation after an unsafe method calls it
// with the unsafe request's headers.
func TestKeyFuncSeesRequest(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		fmt.Fprint(w, "for "+r.Header.Get("X-Tenant"))
	})
	tenantKey := func(req *http.Request) (string, error) {
		k, err := hishel.DefaultKey(req)
		return k + " tenant=" + req.Header.Get("X-Tenant"), err
	}
	f := newFixture(t, statemachine.Options{Shared: true}, &hishel.Options{Key: tenantKey})
	for _, tenant := range []string{"a", "b", "a", "b"} {
		if _, body, _ := f.get(t, o.URL, "X-Tenant", tenant); body != "for "+tenant {
			t.Errorf("tenant %s got %q", tenant, body)
		}
	}
	if n := o.hits.Load(); n != 2 {
		t.Errorf("origin saw %d requests; want 2 (one per tenant)", n)
	}
	req, _ := http.NewRequest("POST", o.URL, strings.NewReader("x"))
	req.Header.Set("X-Tenant", "a")
	resp, err := f.cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if _, _, cs := f.get(t, o.URL, "X-Tenant", "a"); !strings.Contains(cs, "fwd=") {
		t.Errorf("tenant a after its POST: Cache-Status %q; want it invalidated", cs)
	}
	if _, _, cs := f.get(t, o.URL, "X-Tenant", "b"); !strings.HasPrefix(cs, "hishel; hit") {
		t.Errorf("tenant b after a's POST: Cache-Status %q; want its own pair still a hit", cs)
	}
}

// POST in SupportedMethods: the body joins the key, so one user's answer is
// never served for another body; the origin gets every body unchanged; a
// body over MaxKeyBodySize is not cached.
func TestPOSTKeyedOnBody(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, string(b))
		mu.Unlock()
		w.Header().Set("Cache-Control", "max-age=600")
		fmt.Fprintf(w, "answer to %d bytes: %.20s", len(b), b)
	})
	f := newFixture(t, statemachine.Options{Shared: true, SupportedMethods: []string{"GET", "HEAD", "POST"}},
		&hishel.Options{MaxKeyBodySize: 1000})
	post := func(body string) (string, string) {
		t.Helper()
		resp, err := f.cl.Post(o.URL, "text/plain", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return string(b), resp.Header.Get("Cache-Status")
	}
	big := strings.Repeat("b", 5000)
	for _, tt := range []struct {
		body, wantStatus string
	}{
		{"user=alice", "fwd=uri-miss"},
		{"user=bob", "fwd=uri-miss"},
		{"user=alice", "hit"},
		{"user=bob", "hit"},
		{big, "fwd=bypass"},
		{big, "fwd=bypass"},
	} {
		body, cs := post(tt.body)
		if want := fmt.Sprintf("answer to %d bytes: %.20s", len(tt.body), tt.body); body != want {
			t.Errorf("POST %.20q = %q; want %q", tt.body, body, want)
		}
		if !strings.Contains(cs, tt.wantStatus) || strings.Contains(cs, "detail=body-too-large") != (tt.body == big) {
			t.Errorf("POST %.20q: Cache-Status %q; want %s", tt.body, cs, tt.wantStatus)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"user=alice", "user=bob", big, big}; fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Errorf("origin got bodies %.60q; want %.60q", seen, want)
	}
}

// A negative MaxKeyBodySize keeps every request with a body out of the
// cache; one without a body is cached as usual.
func TestMaxKeyBodySizeNegative(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Cache-Control", "max-age=600")
		fmt.Fprintf(w, "answer to %q", b)
	})
	f := newFixture(t, statemachine.Options{SupportedMethods: []string{"GET", "HEAD", "POST"}}, &hishel.Options{MaxKeyBodySize: -1})
	for i, tt := range []struct{ body, want, status string }{
		{"a", `answer to "a"`, "fwd=bypass"},
		{"b", `answer to "b"`, "fwd=bypass"},
		{"", `answer to ""`, "fwd=uri-miss"},
		{"", `answer to ""`, "hit"},
	} {
		resp, err := f.cl.Post(o.URL, "text/plain", strings.NewReader(tt.body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != tt.want || !strings.Contains(resp.Header.Get("Cache-Status"), tt.status) {
			t.Errorf("POST %d %q = %q, Cache-Status %q; want %q, %s", i, tt.body, b, resp.Header.Get("Cache-Status"), tt.want, tt.status)
		}
	}
}

// DefaultKey keys on method, URL and body.
func TestDefaultKey(t *testing.T) {
	mk := func(method, url, body string) *http.Request {
		var r io.Reader
		if body != "" {
			r = strings.NewReader(body)
		}
		req, err := http.NewRequest(method, url, r)
		if err != nil {
			t.Fatal(err)
		}
		return req
	}
	tests := []struct {
		name string
		a, b *http.Request
		same bool
	}{
		{"default port and case", mk("GET", "HTTP://Example.COM:80", ""), mk("GET", "http://example.com/", ""), true},
		{"fragment", mk("GET", "https://example.com/a#x", ""), mk("GET", "https://example.com/a", ""), true},
		{"method", mk("GET", "https://example.com/a", ""), mk("HEAD", "https://example.com/a", ""), false},
		{"query order", mk("GET", "https://example.com/?a=1&b=2", ""), mk("GET", "https://example.com/?b=2&a=1", ""), false},
		{"bodies", mk("POST", "https://example.com/", "a"), mk("POST", "https://example.com/", "b"), false},
		{"same body", mk("POST", "https://example.com/", "a"), mk("POST", "https://example.com/", "a"), true},
		{"empty body", mk("POST", "https://example.com/", ""), mk("POST", "https://example.com/", ""), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ka, err := hishel.DefaultKey(tt.a)
			if err != nil {
				t.Fatal(err)
			}
			kb, err := hishel.DefaultKey(tt.b)
			if err != nil {
				t.Fatal(err)
			}
			if (ka == kb) != tt.same {
				t.Errorf("DefaultKey = %q and %q; want same %v", ka, kb, tt.same)
			}
		})
	}
	noReplay := mk("POST", "https://example.com/", "a")
	noReplay.GetBody = nil
	if _, err := hishel.DefaultKey(noReplay); !errors.Is(err, hishel.ErrUncacheable) {
		t.Errorf("DefaultKey(body without GetBody) = %v; want ErrUncacheable", err)
	}
	if _, err := hishel.DefaultKey(mk("GET", "ftp://example.com/", "")); !errors.Is(err, hishel.ErrUncacheable) {
		t.Errorf("DefaultKey(ftp) = %v; want ErrUncacheable", err)
	}
}

// A shared cache never stores Set-Cookie on heuristic freshness: user B
// does not get user A's session from a response with only Last-Modified.
func TestSetCookieHeuristicShared(t *testing.T) {
	var n atomic.Int64
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Last-Modified", time.Now().Add(-48*time.Hour).UTC().Format(http.TimeFormat))
		w.Header().Set("Set-Cookie", fmt.Sprintf("session=user%d", n.Add(1)))
		fmt.Fprint(w, "page")
	})
	f := newFixture(t, statemachine.Options{Shared: true}, nil)
	for i := 1; i <= 2; i++ {
		resp, err := f.cl.Get(o.URL)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if got, want := resp.Header.Get("Set-Cookie"), fmt.Sprintf("session=user%d", i); got != want {
			t.Errorf("user %d got Set-Cookie %q; want %q (its own)", i, got, want)
		}
	}
}

// Options.SetCookie under explicit freshness: store serves the cookie from
// the cache, strip stores the response without it (only the client of the
// miss gets it, also after a 304 that brings a new one), bypass does not
// store it.
func TestSetCookiePolicy(t *testing.T) {
	for _, tt := range []struct {
		policy    hishel.SetCookiePolicy
		hits      int64 // origin requests for three GETs
		hitCookie bool  // the second GET (a hit, if stored) has Set-Cookie
	}{
		{hishel.SetCookieStore, 1, true},
		{hishel.SetCookieStrip, 1, false},
		{hishel.SetCookieBypass, 3, true},
	} {
		t.Run(tt.policy.String(), func(t *testing.T) {
			o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Cache-Control", "max-age=600")
				w.Header().Set("Set-Cookie", "session=first")
				fmt.Fprint(w, "page")
			})
			f := newFixture(t, statemachine.Options{Shared: true}, &hishel.Options{SetCookie: tt.policy})
			var cookies []string
			for range 3 {
				resp, err := f.cl.Get(o.URL)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				cookies = append(cookies, resp.Header.Get("Set-Cookie"))
			}
			if cookies[0] != "session=first" {
				t.Errorf("the client of the miss got Set-Cookie %q; want it", cookies[0])
			}
			if (cookies[1] != "") != tt.hitCookie {
				t.Errorf("second GET got Set-Cookie %q; want it %v", cookies[1], tt.hitCookie)
			}
			if n := o.hits.Load(); n != tt.hits {
				t.Errorf("origin saw %d requests; want %d", n, tt.hits)
			}
		})
	}
	t.Run("strip after 304", func(t *testing.T) {
		f := newFixture(t, statemachine.Options{Shared: true}, &hishel.Options{SetCookie: hishel.SetCookieStrip})
		o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Date", f.clock.Now().UTC().Format(http.TimeFormat))
			w.Header().Set("Cache-Control", "max-age=10")
			w.Header().Set("ETag", `"v"`)
			w.Header().Set("Set-Cookie", "session="+r.Header.Get("X-User"))
			if r.Header.Get("If-None-Match") == `"v"` {
				w.WriteHeader(http.StatusNotModified)
				return
			}
			fmt.Fprint(w, "page")
		})
		f.get(t, o.URL, "X-User", "a")
		f.clock.Advance(time.Minute)
		resp, err := f.cl.Do(mustReq(t, "GET", o.URL, "X-User", "b"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("Set-Cookie"); got != "session=b" {
			t.Errorf("the client of the 304 got Set-Cookie %q; want its own", got)
		}
		resp, err = f.cl.Do(mustReq(t, "GET", o.URL, "X-User", "c"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("Set-Cookie"); got != "" || !strings.HasPrefix(resp.Header.Get("Cache-Status"), "hishel; hit") {
			t.Errorf("the hit after the 304 has Set-Cookie %q (Cache-Status %q); want none, a hit", got, resp.Header.Get("Cache-Status"))
		}
	})
}

func mustReq(t *testing.T, method, url string, hdr ...string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return req
}

// Stored request heads keep credentials only as a keyed hash, which still
// matches for Vary (in every Transport with the same CredentialKey, and
// never wrongly in one with another), and client addresses not at all; the
// origin gets what the client sent.
func TestCredentialsStoredHashed(t *testing.T) {
	secrets := map[string]string{
		"Authorization":       "Bearer alice-token",
		"Proxy-Authorization": "Basic cHJveHk6c2VjcmV0",
		"Cookie":              "session=alice-session",
		"X-Forwarded-For":     "203.0.113.7",
		"Forwarded":           "for=203.0.113.7",
	}
	var got sync.Map
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		for k := range secrets {
			got.Store(k, r.Header.Get(k))
		}
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Vary", "Cookie, Authorization")
		fmt.Fprint(w, "for "+r.Header.Get("Cookie"))
	})
	key := bytes.Repeat([]byte{7}, 32)
	f := newFixture(t, statemachine.Options{}, &hishel.Options{CredentialKey: key})
	var hdr []string
	for k, v := range secrets {
		hdr = append(hdr, k, v)
	}
	if _, body, _ := f.get(t, o.URL, hdr...); body != "for session=alice-session" {
		t.Fatalf("body %q", body)
	}
	for k, v := range secrets {
		if g, _ := got.Load(k); g != v {
			t.Errorf("origin got %s %q; want %q", k, g, v)
		}
	}
	for p, err := range f.store.Pairs(context.Background(), model.Filter{}) {
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range p.Request.Header {
			for _, s := range secrets {
				if strings.Contains(strings.Join(v, ","), s) || strings.Contains(strings.Join(v, ","), strings.Fields(s)[len(strings.Fields(s))-1]) {
					t.Errorf("stored request field %s = %q holds a secret in clear", k, v)
				}
			}
		}
		for _, k := range []string{"Authorization", "Proxy-Authorization", "Cookie"} {
			if v := p.Request.Header.Get(k); !strings.HasPrefix(v, "hishel-hmac-sha256:") {
				t.Errorf("stored %s = %q; want a keyed hash", k, v)
			}
		}
		for _, k := range []string{"X-Forwarded-For", "Forwarded"} {
			if v, ok := p.Request.Header[k]; ok {
				t.Errorf("stored %s = %q; want it not stored", k, v)
			}
		}
	}
	// Vary matches on the hashes: the same credentials hit, others miss.
	if _, _, cs := f.get(t, o.URL, hdr...); !strings.HasPrefix(cs, "hishel; hit") {
		t.Errorf("same credentials: Cache-Status %q; want a hit", cs)
	}
	other := append([]string(nil), hdr...)
	for i := 0; i < len(other); i += 2 {
		if other[i] == "Cookie" {
			other[i+1] = "session=bob-session"
		}
	}
	if _, body, _ := f.get(t, o.URL, other...); body != "for session=bob-session" {
		t.Errorf("another cookie got %q; want its own answer", body)
	}
	// Another Transport on the same store: same key, a hit; another key,
	// a miss, never a wrong hit.
	for _, tt := range []struct {
		key []byte
		hit bool
	}{{key, true}, {bytes.Repeat([]byte{8}, 32), false}, {nil, false}} {
		tr, err := hishel.NewTransport(&hishel.Options{Storage: f.store, CredentialKey: tt.key, Cache: statemachine.Options{Now: f.clock.Now}})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := tr.RoundTrip(mustReq(t, "GET", o.URL, hdr...))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		tr.Close()
		if cs := resp.Header.Get("Cache-Status"); strings.HasPrefix(cs, "hishel; hit") != tt.hit || string(b) != "for session=alice-session" {
			t.Errorf("Transport with key %x: %q, Cache-Status %q; want hit %v", tt.key, b, cs, tt.hit)
		}
	}
}

// failingStore is a Storage whose stores fail like a full disk: CreatePair
// at once, or the body at its end.
type failingStore struct {
	hishel.Storage
	create, body bool
}

var errDiskFull = errors.New("no space left on device")

func (s *failingStore) CreatePair(ctx context.Context, req model.Request, opts ...model.CreateOption) (model.IncompletePair, error) {
	if s.create {
		return model.IncompletePair{}, errDiskFull
	}
	return s.Storage.CreatePair(ctx, req, opts...)
}

func (s *failingStore) AddResponse(ctx context.Context, id model.PairID, resp model.Response, key string) (model.CompletePair, error) {
	if s.body {
		resp.Body = model.NewBody(&failAtEnd{r: resp.Body})
	}
	return s.Storage.AddResponse(ctx, id, resp, key)
}

// failAtEnd passes its body on and fails where it ends.
type failAtEnd struct{ r io.Reader }

func (f *failAtEnd) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		if n > 0 {
			return n, nil
		}
		return 0, errDiskFull
	}
	return n, err
}

// records is a slog.Handler that keeps what it is given.
type records struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *records) Enabled(context.Context, slog.Level) bool { return true }
func (h *records) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.recs = append(h.recs, r.Clone())
	h.mu.Unlock()
	return nil
}
func (h *records) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *records) WithGroup(string) slog.Handler      { return h }

// warnings returns the Warn records, as "message key=... err=...".
func (h *records) warnings() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, r := range h.recs {
		if r.Level != slog.LevelWarn {
			continue
		}
		s := r.Message
		r.Attrs(func(a slog.Attr) bool {
			s += " " + a.Key + "=" + a.Value.String()
			return true
		})
		out = append(out, s)
	}
	return out
}

// A store that fails: the client gets the whole response all the same, its
// Cache-Status does not say stored, nothing is stored, and a Warn record
// names the key and the error.
func TestStoreFailureHonest(t *testing.T) {
	for _, tt := range []struct {
		name         string
		create, body bool
		size         int
	}{
		{"create fails", true, false, 100},
		{"small body fails at its end", false, true, 100},
		{"large body fails at its end", false, true, 1 << 20},
	} {
		t.Run(tt.name, func(t *testing.T) {
			body := bytes.Repeat([]byte("z"), tt.size)
			o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Cache-Control", "max-age=600")
				w.Header().Set("Content-Length", fmt.Sprint(len(body)))
				w.Write(body)
			})
			h := &records{}
			mem := memStore(t)
			tr, err := hishel.NewTransport(&hishel.Options{Storage: &failingStore{Storage: mem, create: tt.create, body: tt.body},
				Logger: slog.New(h)})
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			cl := &http.Client{Transport: tr}
			_, got, cs := getBody(t, cl, o.URL)
			if !bytes.Equal(got, body) {
				t.Errorf("client got %d bytes; want the %d of the body", len(got), len(body))
			}
			if strings.Contains(cs, "stored") {
				t.Errorf("Cache-Status %q says stored; the store failed", cs)
			}
			if n := pairsUnder(t, mem, o.URL); n != 0 {
				t.Errorf("%d pairs stored; want 0", n)
			}
			key, _ := hishel.URLKey("GET", o.URL)
			deadline := time.Now().Add(5 * time.Second)
			for {
				w := h.warnings()
				if len(w) == 1 && strings.Contains(w[0], "key="+key) && strings.Contains(w[0], errDiskFull.Error()) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("warnings %q; want one with the key %q and the error", w, key)
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
}

// Cache-Status per RFC 9211: a 304 revalidation went forward and is no hit;
// stale-if-error says so; a miss with stored but unusable variants is
// fwd=miss; a stored small miss says stored.
func TestCacheStatusRFC9211(t *testing.T) {
	var fail atomic.Int64 // 0: ok, 1: 503, 2: connection refused
	f := newFixture(t, statemachine.Options{}, nil)
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Date", f.clock.Now().UTC().Format(http.TimeFormat))
		w.Header().Set("Cache-Control", "max-age=10, stale-if-error=6000")
		w.Header().Set("ETag", `"v"`)
		w.Header().Set("Vary", "Accept-Language")
		if fail.Load() == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if r.Header.Get("If-None-Match") == `"v"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		fmt.Fprint(w, "page")
	})
	url := o.URL
	check := func(step, cs string, want []string, not ...string) {
		t.Helper()
		for _, w := range want {
			if !strings.Contains(cs, w) {
				t.Errorf("%s: Cache-Status %q; want %q in it", step, cs, w)
			}
		}
		for _, n := range not {
			if strings.Contains(cs, n) {
				t.Errorf("%s: Cache-Status %q; want no %q", step, cs, n)
			}
		}
	}
	_, _, cs := f.get(t, url, "Accept-Language", "en")
	check("miss", cs, []string{"hishel; fwd=uri-miss", "fwd-status=200", "stored"}, "hit")
	_, _, cs = f.get(t, url, "Accept-Language", "fr")
	check("other variant", cs, []string{"hishel; fwd=miss", "fwd-status=200"}, "hit")
	_, _, cs = f.get(t, url, "Accept-Language", "en")
	check("hit", cs, []string{"hishel; hit"}, "fwd")
	f.clock.Advance(time.Minute)
	_, _, cs = f.get(t, url, "Accept-Language", "en")
	check("304", cs, []string{"hishel; fwd=stale; fwd-status=304"}, "hit")
	f.clock.Advance(time.Minute)
	fail.Store(1)
	_, _, cs = f.get(t, url, "Accept-Language", "en")
	check("stale-if-error 503", cs, []string{"fwd=stale", "fwd-status=503", "detail=stale-if-error"}, "hit")
	o.Close()
	_, _, cs = f.get(t, url, "Accept-Language", "en")
	check("stale-if-error refused", cs, []string{"fwd=stale", "detail=stale-if-error"}, "hit", "fwd-status")
}
