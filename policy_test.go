package hishel_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hishel-go/hishel"
	"github.com/hishel-go/hishel/cache"
	"github.com/hishel-go/hishel/model"
	"github.com/hishel-go/hishel/statemachine"
)

// send sends req through f's client and returns status, body and
// Cache-Status.
func (f *fixture) send(t testing.TB, req *http.Request) (int, string, string) {
	t.Helper()
	resp, err := f.cl.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", req.Method, req.URL, err)
	}
	return resp.StatusCode, string(b), resp.Header.Get("Cache-Status")
}

// find lists the pairs of f's store that f matches.
func (f *fixture) find(t testing.TB, mf model.Filter) []model.PairInfo {
	t.Helper()
	var out []model.PairInfo
	for p, err := range f.store.Pairs(context.Background(), mf) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

// minimalStorage is a Storage with nothing beyond the interface: no Delete.
type minimalStorage struct{ hishel.Storage }

func TestNewTransportBadPolicies(t *testing.T) {
	mem, err := cache.OpenMemory(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	for name, o := range map[string]hishel.Options{
		"empty ignored parameter":   {IgnoreParams: []string{"utm_*", ""}},
		"bad header name":           {MatchHeaders: []string{"X Tenant"}},
		"empty header name":         {MatchHeaders: []string{" "}},
		"empty URL pattern":         {URLRules: []hishel.URLRule{{Pattern: "https://"}}},
		"negative TTL":              {URLRules: []hishel.URLRule{{Pattern: "example.com", TTL: -time.Second}}},
		"MatchHeaders, no Delete":   {MatchHeaders: []string{"X-Tenant"}, Storage: minimalStorage{mem}},
		"MatchHeaders, bad pattern": {MatchHeaders: []string{"X-Tenant:"}},
	} {
		if o.Storage == nil {
			o.Storage = mem
		}
		if _, err := hishel.NewTransport(&o); !errors.Is(err, model.ErrInvalid) {
			t.Errorf("NewTransport(%s) error = %v; want ErrInvalid", name, err)
		}
	}
	o := hishel.Options{Storage: mem, URLRules: []hishel.URLRule{{Pattern: "example.com", TTL: model.NoExpiry}}}
	tr, err := hishel.NewTransport(&o)
	if err != nil {
		t.Fatalf("NewTransport(a NoExpiry rule) error = %v", err)
	}
	tr.Close()
}

// Ignored parameters are kept out of keys and stored URLs, not out of the
// requests the origin gets.
func TestTransportIgnoreParams(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.URL.RawQuery)
		mu.Unlock()
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprint(w, "id ", r.URL.Query().Get("id"))
	})
	f := newFixture(t, statemachine.Options{}, &hishel.Options{IgnoreParams: []string{"utm_*", "api_key"}})
	steps := []struct {
		query, body, status string
	}{
		{"utm_source=news&id=1&api_key=s3cret", "id 1", "fwd=uri-miss"},
		{"id=1&utm_medium=mail", "id 1", "hit"},
		{"id=1", "id 1", "hit"},
		{"id=2&api_key=other", "id 2", "fwd=uri-miss"},
		{"api_key=x&id=2", "id 2", "hit"},
		{"b=1&id=2", "id 2", "fwd=uri-miss"},
		{"id=2&b=1", "id 2", "fwd=uri-miss"}, // the order of the others counts
	}
	for _, st := range steps {
		_, body, cs := f.get(t, o.URL+"/a?"+st.query)
		if body != st.body || !strings.Contains(cs, st.status) {
			t.Errorf("GET /a?%s = %q, %q; want %q, %s", st.query, body, cs, st.body, st.status)
		}
	}
	if want := "[utm_source=news&id=1&api_key=s3cret id=2&api_key=other b=1&id=2 id=2&b=1]"; fmt.Sprint(seen) != want {
		t.Errorf("origin saw queries %v; want %s", seen, want)
	}
	for _, p := range f.find(t, model.Filter{}) {
		if strings.Contains(p.Request.URL, "utm_") || strings.Contains(p.Request.URL, "api_key") ||
			strings.Contains(p.Key, "utm_") || strings.Contains(p.Key, "api_key") {
			t.Errorf("stored pair %s %q keeps an ignored parameter", p.Request.URL, p.Key)
		}
	}
	// Invalidation sees the same URLs.
	if n, err := f.tr.Invalidate(context.Background(), o.URL+"/a?id=1&utm_campaign=z"); n != 1 || err != nil {
		t.Errorf("Invalidate(/a?id=1&utm_campaign=z) = %d, %v; want 1, nil", n, err)
	}
}

// Matched headers join the key: each value is stored and answered apart,
// and invalidation reaches every value.
func TestTransportMatchHeaders(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprint(w, "tenant ", r.Header.Get("X-Tenant"))
	})
	for _, store := range []string{"memory", "bolt"} {
		t.Run(store, func(t *testing.T) {
			f := newFixture(t, statemachine.Options{}, &hishel.Options{MatchHeaders: []string{"x-tenant"}})
			if store == "bolt" {
				f = boltFixture(t, &hishel.Options{MatchHeaders: []string{"x-tenant"}})
			}
			steps := []struct {
				tenant, body, status string
			}{
				{"alpha", "tenant alpha", "fwd=uri-miss"},
				{"beta", "tenant beta", "fwd=uri-miss"},
				{"", "tenant ", "fwd=uri-miss"},
				{"alpha", "tenant alpha", "hit"},
				{"beta", "tenant beta", "hit"},
				{"", "tenant ", "hit"},
			}
			for _, st := range steps {
				var hdr []string
				if st.tenant != "" {
					hdr = []string{"X-Tenant", st.tenant}
				}
				_, body, cs := f.get(t, o.URL+"/p", hdr...)
				if body != st.body || !strings.Contains(cs, st.status) {
					t.Errorf("GET /p as %q = %q, %q; want %q, %s", st.tenant, body, cs, st.body, st.status)
				}
			}
			if store == "memory" {
				for _, p := range f.find(t, model.Filter{}) {
					if !strings.Contains(p.Key, " headers-sha256:") || strings.Contains(p.Key, "alpha") {
						t.Errorf("stored key %q; want a hash of the header values, not the values", p.Key)
					}
				}
			}
			// An unsafe request invalidates every tenant's pair (RFC 9111 §4.4).
			req, _ := http.NewRequest("PUT", o.URL+"/p", strings.NewReader("x"))
			req.Header.Set("X-Tenant", "alpha")
			f.send(t, req)
			for _, tenant := range []string{"alpha", "beta"} {
				if _, _, cs := f.get(t, o.URL+"/p", "X-Tenant", tenant); !strings.Contains(cs, "fwd=uri-miss") {
					t.Errorf("GET /p as %s after a PUT: Cache-Status %q; want a miss", tenant, cs)
				}
			}
			// Invalidate reaches them all too.
			if n, err := f.tr.Invalidate(context.Background(), o.URL+"/p"); n != 2 || err != nil {
				t.Errorf("Invalidate(/p) = %d, %v; want 2, nil", n, err)
			}
		})
	}
}

// boltFixture is newFixture on a Bolt store in a temporary directory, with
// the real clock.
func boltFixture(t *testing.T, opts *hishel.Options) *fixture {
	t.Helper()
	s, err := cache.OpenBolt(context.Background(), &cache.BoltOptions{Path: t.TempDir() + "/cache.db", NoSync: true, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	o := *opts
	o.Storage = s
	tr, err := hishel.NewTransport(&o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return &fixture{tr: tr, cl: &http.Client{Transport: tr}}
}

// URL rules set the storage TTL of matching requests' pairs, or keep them
// out of the cache; a request's own TTL comes first.
func TestTransportURLRules(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/plain" {
			w.Header().Set("Cache-Control", "max-age=3600")
		}
		fmt.Fprint(w, r.URL.Path)
	})
	host := strings.TrimPrefix(o.URL, "http://")
	rules := []hishel.URLRule{
		{Pattern: host + "/live", NoCache: true},
		{Pattern: host + "/short", TTL: time.Minute},
		{Pattern: host + "/*.json", TTL: 2 * time.Minute},
		{Pattern: host, TTL: model.NoExpiry},
	}
	f := newFixture(t, statemachine.Options{}, &hishel.Options{URLRules: rules})
	for range 2 {
		if _, _, cs := f.get(t, o.URL+"/live/feed"); cs != "hishel; fwd=bypass; fwd-status=200; detail=url-rule" {
			t.Errorf("GET /live/feed: Cache-Status %q; want fwd=bypass", cs)
		}
	}
	if n := len(f.find(t, model.Filter{URLPrefix: o.URL + "/live"})); n != 0 {
		t.Errorf("%d pairs stored for /live; want none", n)
	}
	ctx := hishel.WithRequestOptions(context.Background(), model.RequestOptions{TTL: 5 * time.Minute})
	req, _ := http.NewRequestWithContext(ctx, "GET", o.URL+"/short/own", nil)
	f.send(t, req)
	for path, want := range map[string]time.Duration{
		"/short/x": time.Minute, "/d/x.json": 2 * time.Minute, "/other": 0, "/short/own": 5 * time.Minute,
	} {
		if path != "/short/own" {
			f.get(t, o.URL+path)
		}
		ps := f.find(t, model.Filter{URL: o.URL + path})
		if len(ps) != 1 || ps[0].Meta.TTL != want {
			t.Errorf("pairs of %s = %+v; want one with TTL %v", path, ps, want)
		}
	}
	f.clock.Advance(90 * time.Second)
	if _, _, cs := f.get(t, o.URL+"/short/x"); !strings.Contains(cs, "fwd=uri-miss") {
		t.Errorf("GET /short/x past its rule's TTL: Cache-Status %q; want a miss", cs)
	}
	if _, _, cs := f.get(t, o.URL+"/d/x.json"); !strings.HasPrefix(cs, "hishel; hit") {
		t.Errorf("GET /d/x.json within its rule's TTL: Cache-Status %q; want a hit", cs)
	}

	// With ForceCache, a rule's TTL is how long a response is reused,
	// whatever its headers say (requests-cache's urls_expire_after).
	ff := newFixture(t, statemachine.Options{ForceCache: true}, &hishel.Options{URLRules: []hishel.URLRule{{Pattern: host + "/plain", TTL: time.Minute}}})
	ff.get(t, o.URL+"/plain")
	if _, _, cs := ff.get(t, o.URL+"/plain"); !strings.HasPrefix(cs, "hishel; hit") {
		t.Errorf("forced GET /plain: Cache-Status %q; want a hit", cs)
	}
	ff.clock.Advance(61 * time.Second)
	if _, _, cs := ff.get(t, o.URL+"/plain"); !strings.Contains(cs, "fwd=uri-miss") {
		t.Errorf("forced GET /plain past the rule's TTL: Cache-Status %q; want a miss", cs)
	}
}

// StoreFilter vetoes storing; the caller gets the response all the same.
func TestTransportStoreFilter(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		if r.URL.Path == "/private" {
			w.Header().Set("X-Personal", "1")
		}
		fmt.Fprint(w, r.URL.Path)
	})
	var asked []string
	var mu sync.Mutex
	filter := func(req *http.Request, resp *http.Response) bool {
		mu.Lock()
		asked = append(asked, req.Method+" "+req.URL.Path)
		mu.Unlock()
		return resp.Header.Get("X-Personal") == "" && req.URL.Query().Get("nostore") == ""
	}
	f := newFixture(t, statemachine.Options{}, &hishel.Options{StoreFilter: filter})
	steps := []struct {
		path, status string
	}{
		{"/private", "fwd=uri-miss; fwd-status=200; detail=filtered"},
		{"/private", "fwd=uri-miss; fwd-status=200; detail=filtered"},
		{"/public?nostore=1", "detail=filtered"},
		{"/public", "stored"},
		{"/public", "hit"},
	}
	for _, st := range steps {
		_, body, cs := f.get(t, o.URL+st.path)
		if want := strings.Split(st.path, "?")[0]; body != want || !strings.Contains(cs, st.status) {
			t.Errorf("GET %s = %q, %q; want %q, %s", st.path, body, cs, want, st.status)
		}
	}
	if want := "[GET /private GET /private GET /public GET /public]"; fmt.Sprint(asked) != want {
		t.Errorf("StoreFilter asked about %v; want %s (not about hits)", asked, want)
	}
}

// WithRefresh goes to the origin whatever is stored, stores the answer and
// removes what it replaces, and only that variant.
func TestTransportRefresh(t *testing.T) {
	var mu sync.Mutex
	version := 1
	var conditional int
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.Header.Get("If-None-Match") != "" {
			conditional++
		}
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Vary", "Accept-Language")
		w.Header().Set("ETag", fmt.Sprintf(`"v%d"`, version))
		fmt.Fprintf(w, "v%d %s", version, r.Header.Get("Accept-Language"))
	})
	f := newFixture(t, statemachine.Options{}, nil)
	f.get(t, o.URL, "Accept-Language", "en")
	f.get(t, o.URL, "Accept-Language", "fr")
	mu.Lock()
	version = 2
	mu.Unlock()
	if _, body, _ := f.get(t, o.URL, "Accept-Language", "en"); body != "v1 en" {
		t.Fatalf("GET = %q; want the stored v1 en", body)
	}
	req, _ := http.NewRequestWithContext(hishel.WithRefresh(context.Background()), "GET", o.URL, nil)
	req.Header.Set("Accept-Language", "en")
	_, body, cs := f.send(t, req)
	if body != "v2 en" || cs != "hishel; fwd=request; fwd-status=200; stored" {
		t.Errorf("refreshed GET = %q, %q; want v2 en, fwd=request, stored", body, cs)
	}
	for lang, want := range map[string]string{"en": "v2 en", "fr": "v1 fr"} {
		if _, body, cs := f.get(t, o.URL, "Accept-Language", lang); body != want || !strings.HasPrefix(cs, "hishel; hit") {
			t.Errorf("GET %s after the refresh = %q, %q; want a hit %q", lang, body, cs, want)
		}
	}
	if n := len(f.find(t, model.Filter{State: model.StateComplete})); n != 2 {
		t.Errorf("%d live pairs after the refresh; want 2: the refreshed en and fr", n)
	}
	if conditional != 0 {
		t.Errorf("the refresh sent %d conditional requests; want a plain one", conditional)
	}
	// A method the cache does not store is written through as usual.
	post, _ := http.NewRequestWithContext(hishel.WithRefresh(context.Background()), "POST", o.URL, strings.NewReader("x"))
	if _, _, cs := f.send(t, post); !strings.Contains(cs, "fwd=method") {
		t.Errorf("refreshed POST: Cache-Status %q; want written through", cs)
	}
}

// WithOnlyIfCached never reaches the origin: a hit, or a 504.
func TestTransportOnlyIfCached(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprint(w, "hello")
	})
	f := newFixture(t, statemachine.Options{}, nil)
	only := func(method, url string, ctx context.Context) (int, string, string) {
		req, _ := http.NewRequestWithContext(hishel.WithOnlyIfCached(ctx), method, url, nil)
		return f.send(t, req)
	}
	bg := context.Background()
	if status, _, cs := only("GET", o.URL, bg); status != 504 || !strings.Contains(cs, "only-if-cached") {
		t.Errorf("only-if-cached GET of nothing stored = %d, %q; want 504", status, cs)
	}
	f.get(t, o.URL)
	if status, body, cs := only("GET", o.URL, bg); status != 200 || body != "hello" || !strings.HasPrefix(cs, "hishel; hit") {
		t.Errorf("only-if-cached GET of a fresh response = %d %q %q; want a hit", status, body, cs)
	}
	f.clock.Advance(2 * time.Minute)
	if status, _, _ := only("GET", o.URL, bg); status != 504 {
		t.Errorf("only-if-cached GET of a stale response = %d; want 504", status)
	}
	if status, _, _ := only("POST", o.URL, bg); status != 504 {
		t.Errorf("only-if-cached POST = %d; want 504", status)
	}
	if status, _, _ := only("GET", "ftp://example.com/", bg); status != 504 {
		t.Errorf("only-if-cached GET of a URL that cannot be keyed = %d; want 504", status)
	}
	// The mode set last wins.
	if status, _, _ := only("GET", o.URL, hishel.WithRefresh(bg)); status != 504 {
		t.Errorf("WithOnlyIfCached(WithRefresh) GET of a stale response = %d; want 504", status)
	}
	req, _ := http.NewRequestWithContext(hishel.WithRefresh(hishel.WithOnlyIfCached(bg)), "GET", o.URL, nil)
	if status, _, cs := f.send(t, req); status != 200 || !strings.Contains(cs, "fwd=request") {
		t.Errorf("WithRefresh(WithOnlyIfCached) GET = %d, %q; want the origin's answer", status, cs)
	}
	if n := o.hits.Load(); n != 2 {
		t.Errorf("origin saw %d requests; want 2 (the first GET and the refresh)", n)
	}
}

// Invalidate removes every variant and method of a URL, found by key or,
// when keys cannot be derived from it, by URL, in Memory and Bolt stores
// and through a Storage without Delete.
func TestTransportInvalidate(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Vary", "Accept-Language")
		fmt.Fprint(w, r.Method, " ", r.URL.Path)
	})
	type setup struct {
		name string
		opts hishel.Options
		bolt bool
	}
	for _, s := range []setup{
		{name: "memory"},
		{name: "bolt", bolt: true},
		{name: "memory, POST stored", opts: hishel.Options{Cache: statemachine.Options{SupportedMethods: []string{"GET", "HEAD", "POST"}}}},
		{name: "bolt, key function", bolt: true, opts: hishel.Options{Key: func(r *http.Request) (string, error) { return "k " + r.Method + " " + r.URL.String(), nil }}},
		{name: "no Delete"},
	} {
		t.Run(s.name, func(t *testing.T) {
			var f *fixture
			switch {
			case s.bolt:
				f = boltFixture(t, &s.opts)
			case s.name == "no Delete":
				mem, err := cache.OpenMemory(context.Background(), nil)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { mem.Close() })
				opts := s.opts
				opts.Storage = minimalStorage{mem}
				tr, err := hishel.NewTransport(&opts)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { tr.Close() })
				f = &fixture{tr: tr, cl: &http.Client{Transport: tr}}
			default:
				f = newFixture(t, s.opts.Cache, &s.opts)
			}
			f.get(t, o.URL+"/a", "Accept-Language", "en")
			f.get(t, o.URL+"/a", "Accept-Language", "fr")
			f.get(t, o.URL+"/a?x=1")
			f.get(t, o.URL+"/b")
			want := 2
			if strings.Contains(s.name, "POST") {
				req, _ := http.NewRequest("POST", o.URL+"/a", strings.NewReader("q"))
				if _, _, cs := f.send(t, req); !strings.Contains(cs, "stored") {
					t.Fatalf("POST /a: Cache-Status %q; want stored", cs)
				}
				want = 3
			}
			url := strings.Replace(o.URL, "http://", "HTTP://", 1) + "/a#top"
			if n, err := f.tr.Invalidate(context.Background(), url); n != want || err != nil {
				t.Errorf("Invalidate(/a) = %d, %v; want %d, nil", n, err, want)
			}
			for _, tt := range []struct{ path, lang, status string }{
				{"/a", "en", "fwd=uri-miss"}, {"/a", "fr", "fwd=miss"}, {"/a?x=1", "", "hit"}, {"/b", "", "hit"},
			} {
				var hdr []string
				if tt.lang != "" {
					hdr = []string{"Accept-Language", tt.lang}
				}
				if _, _, cs := f.get(t, o.URL+tt.path, hdr...); !strings.Contains(cs, tt.status) {
					t.Errorf("GET %s %s after Invalidate(/a): Cache-Status %q; want %s", tt.path, tt.lang, cs, tt.status)
				}
			}
			if n, err := f.tr.Invalidate(context.Background(), o.URL+"/nothing"); n != 0 || err != nil {
				t.Errorf("Invalidate(/nothing) = %d, %v; want 0, nil", n, err)
			}
			for _, bad := range []string{"ftp://example.com/", "/relative", "http://%zz/"} {
				if _, err := f.tr.Invalidate(context.Background(), bad); !errors.Is(err, hishel.ErrUncacheable) {
					t.Errorf("Invalidate(%q) error = %v; want ErrUncacheable", bad, err)
				}
			}
		})
	}
}

// A CacheHandler invalidates as its Transport does.
func TestCacheHandlerInvalidate(t *testing.T) {
	calls := 0
	store, err := cache.OpenMemory(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	h, err := hishel.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		w.Header().Set("Cache-Control", "s-maxage=300")
		fmt.Fprint(w, "page ", calls)
	}), &hishel.Options{Storage: store})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	get := func() string {
		req, _ := http.NewRequest("GET", "http://example.com/page", nil)
		req.Host = "example.com"
		rec := &recorder{header: http.Header{}}
		h.ServeHTTP(rec, req)
		return rec.body.String()
	}
	get()
	if got := get(); got != "page 1" {
		t.Fatalf("second GET = %q; want the stored page 1", got)
	}
	if n, err := h.Invalidate(context.Background(), "http://example.com/page"); n != 1 || err != nil {
		t.Fatalf("Invalidate = %d, %v; want 1, nil", n, err)
	}
	if got := get(); got != "page 2" {
		t.Errorf("GET after Invalidate = %q; want page 2 from the handler", got)
	}
}

// recorder is a minimal http.ResponseWriter.
type recorder struct {
	header http.Header
	body   strings.Builder
	code   int
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(p []byte) (int, error) { return r.body.Write(p) }
func (r *recorder) WriteHeader(code int)        { r.code = code }
