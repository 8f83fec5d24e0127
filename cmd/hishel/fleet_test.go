package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hishel-go/hishel/cache"
	"github.com/hishel-go/hishel/internal/testserver"
	"github.com/hishel-go/hishel/model"
)

// TestFleetOnRedis runs two hishel proxy processes on one Redis, as a
// fleet does: what one stores is a hit through the other, an invalidation
// through one is seen by the other, and concurrent misses through both
// leave one stored pair per variant.
func TestFleetOnRedis(t *testing.T) {
	skipWithoutSignals(t)
	srv := testserver.Redis(t)
	store := srv.URL() + "?prefix=" + url.QueryEscape(srv.Prefix)
	var slowHits atomic.Int64
	o := newOrigin(t)
	mux := http.NewServeMux()
	mux.Handle("/", o.Config.Handler)
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		slowHits.Add(1)
		time.Sleep(300 * time.Millisecond) // so that the misses overlap
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Vary", "Accept-Language")
		fmt.Fprint(w, "slow body in ", r.Header.Get("Accept-Language"))
	})
	o.Config.Handler = mux
	a := startProxy(t, "-upstream", o.URL, "-store", store, "-shared")
	b := startProxy(t, "-upstream", o.URL, "-store", store, "-shared")
	tr := &http.Transport{MaxIdleConnsPerHost: 32}
	t.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr}

	t.Run("stored through one, a hit through the other", func(t *testing.T) {
		resp1, body1 := do(t, c, "GET", "http://"+a.addr+"/cached", "", nil)
		resp2, body2 := do(t, c, "GET", "http://"+b.addr+"/cached", "", nil)
		if body1 != "cached body" || body2 != "cached body" {
			t.Errorf("bodies = %q, %q; want %q twice", body1, body2, "cached body")
		}
		if cs := resp1.Header.Get("Cache-Status"); !strings.Contains(cs, "stored") {
			t.Errorf("GET through the first proxy: Cache-Status %q; want stored", cs)
		}
		if cs := resp2.Header.Get("Cache-Status"); !strings.HasPrefix(cs, "hishel; hit") {
			t.Errorf("GET through the second proxy: Cache-Status %q; want a hit", cs)
		}
		if n := o.count("/cached"); n != 1 {
			t.Errorf("origin requests for /cached = %d; want 1", n)
		}
	})

	t.Run("invalidated through one, seen by the other", func(t *testing.T) {
		do(t, c, "POST", "http://"+b.addr+"/cached", "change", nil)
		before := o.count("/cached")
		resp, body := do(t, c, "GET", "http://"+a.addr+"/cached", "", nil)
		if cs := resp.Header.Get("Cache-Status"); strings.HasPrefix(cs, "hishel; hit") || body != "cached body" {
			t.Errorf("GET through the first proxy after a POST through the second = %q, Cache-Status %q; want a miss", body, cs)
		}
		if n := o.count("/cached") - before; n != 1 {
			t.Errorf("origin GETs after the invalidation = %d; want 1", n)
		}
	})

	t.Run("concurrent misses through both, one pair per variant", func(t *testing.T) {
		var wg sync.WaitGroup
		for i := range 16 {
			p, lang := []*proc{a, b}[i%2], []string{"en", "fr"}[i/2%2]
			wg.Go(func() {
				resp, body := do(t, c, "GET", "http://"+p.addr+"/slow", "", http.Header{"Accept-Language": {lang}})
				if resp.StatusCode != 200 || body != "slow body in "+lang {
					t.Errorf("GET /slow in %s = %d %q", lang, resp.StatusCode, body)
				}
			})
		}
		wg.Wait()
		// The stores end as the proxies read the bodies' ends, just after
		// the clients have them: wait until they are done.
		s, err := cache.Open(context.Background(), store+"&sweep=-1s")
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		var perLang map[string]int
		deadline := time.Now().Add(10 * time.Second)
		for {
			perLang = map[string]int{}
			incomplete := 0
			for p, err := range s.Pairs(context.Background(), model.Filter{}) {
				if err != nil {
					t.Fatal(err)
				}
				switch {
				case p.State == model.StateIncomplete:
					incomplete++
				case p.State == model.StateComplete && strings.HasSuffix(p.Request.URL, "/slow"):
					perLang[p.Request.Header.Get("Accept-Language")]++
				}
			}
			if incomplete == 0 && perLang["en"] == 1 && perLang["fr"] == 1 || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if perLang["en"] != 1 || perLang["fr"] != 1 || len(perLang) != 2 {
			t.Errorf("stored pairs of /slow by Accept-Language = %v; want one per variant", perLang)
		}
		t.Logf("16 concurrent misses through 2 proxies reached the origin %d times", slowHits.Load())
		for _, lang := range []string{"en", "fr"} {
			for _, p := range []*proc{a, b} {
				resp, body := do(t, c, "GET", "http://"+p.addr+"/slow", "", http.Header{"Accept-Language": {lang}})
				if cs := resp.Header.Get("Cache-Status"); !strings.HasPrefix(cs, "hishel; hit") || body != "slow body in "+lang {
					t.Errorf("GET /slow in %s after the misses = %q, Cache-Status %q; want a hit", lang, body, cs)
				}
			}
		}
	})
}
