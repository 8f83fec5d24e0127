package redis_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hishel-go/hishel"
	"github.com/hishel-go/hishel/internal/testserver"
	"github.com/hishel-go/hishel/redis"
)

// A Transport on Redis never fails a request because of Redis: while Redis
// is stopped or paused, requests go to the origin within the storage's
// timeout and Cache-Status says why; once Redis is back, responses are
// cached again.
func TestTransportRedisDown(t *testing.T) {
	const timeout = time.Second
	srv, proc := testserver.OwnRedis(t)
	var origin atomic.Int64
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin.Add(1)
		w.Header().Set("Cache-Control", "max-age=600")
		fmt.Fprint(w, "hello ", r.URL.Path)
	}))
	defer o.Close()
	store, err := redis.OpenRedis(context.Background(), &redis.RedisOptions{Addr: srv.Addr, Prefix: srv.Prefix,
		Timeout: timeout, RetryAfter: 200 * time.Millisecond, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	tr, err := hishel.NewTransport(&hishel.Options{Storage: store})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	cl := &http.Client{Transport: tr}
	get := func(path string) (string, string, time.Duration) {
		t.Helper()
		start := time.Now()
		resp, err := cl.Get(o.URL + path)
		if err != nil {
			t.Fatalf("GET %s: %v; want a response whatever Redis does", path, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("GET %s: reading the body: %v", path, err)
		}
		return string(b), resp.Header.Get("Cache-Status"), time.Since(start)
	}
	cached := func(what, path string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			get(path)
			body, status, _ := get(path)
			if strings.HasPrefix(status, "hishel; hit") {
				if body != "hello "+path {
					t.Errorf("%s: hit body = %q", what, body)
				}
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: Cache-Status %q; want hits again once Redis is back", what, status)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	cached("at first", "/a")

	for _, outage := range []struct {
		name      string
		down, up  func() error
		wantAfter int // pairs left once Redis is back
	}{
		{"paused", proc.Pause, proc.Resume, 1},
		{"stopped", proc.Stop, proc.Start, 0},
	} {
		if err := outage.down(); err != nil {
			t.Fatal(err)
		}
		before := origin.Load()
		for i := range 4 {
			body, status, took := get("/a")
			if body != "hello /a" || !strings.Contains(status, "detail=storage-unavailable") {
				t.Errorf("%s: GET %d = %q, Cache-Status %q; want the origin's answer, saying the storage is unavailable", outage.name, i, body, status)
			}
			if took > timeout+time.Second {
				t.Errorf("%s: GET %d took %v; want at most the storage's timeout and a second", outage.name, i, took)
			}
		}
		if n := origin.Load() - before; n != 4 {
			t.Errorf("%s: the origin answered %d of 4 requests; want all", outage.name, n)
		}
		if err := outage.up(); err != nil {
			t.Fatal(err)
		}
		cached("after Redis was "+outage.name, "/a")
	}
}
