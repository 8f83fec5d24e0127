package main

import (
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hishel-go/hishel/internal/testserver"
)

// TestStoreURL runs the proxy on a store named by URL, and the inspection
// commands on it by URL too; -store and -db name the same bbolt file
// alike.
func TestStoreURL(t *testing.T) {
	skipWithoutSignals(t)
	o := newOrigin(t)
	db := filepath.Join(t.TempDir(), "url.db")
	store := "bolt://" + filepath.ToSlash(db) + "?ttl=1h&max-pairs=100"
	p := startProxy(t, "-upstream", o.URL, "-store", store)
	defer func() {
		if t.Failed() {
			t.Log(p.Stderr())
		}
	}()
	c := &http.Client{Transport: &http.Transport{}}
	for range 2 {
		if resp, body := do(t, c, "GET", "http://"+p.addr+"/cached", "", nil); resp.StatusCode != 200 || body != "cached body" {
			t.Fatalf("GET /cached = %d %q; want 200 %q", resp.StatusCode, body, "cached body")
		}
	}
	if n := o.count("/cached"); n != 1 {
		t.Errorf("origin requests for /cached = %d; want 1 (the second from the cache)", n)
	}
	c.CloseIdleConnections()
	if r := runHishel(t, "ls", "-store", store); r.code != exitInUse {
		t.Errorf("hishel ls -store while the proxy runs = %v; want exit %d (in use)", r, exitInUse)
	}
	if code := p.stop(t); code != 0 {
		t.Fatalf("proxy exit = %d; want 0\n%s", code, p.Stderr())
	}
	// -json: the tables say "in 59m59s", which moves between two runs.
	byURL, byPath := runHishel(t, "ls", "-json", "-store", store), runHishel(t, "ls", "-json", "-db", db)
	if byURL.code != 0 || byURL.stdout != byPath.stdout || !strings.Contains(byURL.stdout, "/cached") {
		t.Errorf("hishel ls -store = %v\nhishel ls -db = %v\nwant the same listing of the cached pair", byURL, byPath)
	}
	if stats := runHishel(t, "stats", "-store", store); stats.code != 0 || !strings.Contains(stats.stdout, "pairs: 1\n") ||
		!strings.Contains(stats.stdout, "file bytes: ") {
		t.Errorf("hishel stats -store = %v; want 1 pair and the file's size", stats)
	}
	if gc := runHishel(t, "gc", "-store", store, "-max-bytes", "1"); gc.code != 0 || !strings.Contains(gc.stdout, "evicted: 1\n") {
		t.Errorf("hishel gc -store -max-bytes 1 = %v; want the pair evicted", gc)
	}
}

// TestStoreSQLite runs the proxy on a SQLite file, which the inspection
// commands read while the proxy runs: unlike a bbolt file, it is shared.
func TestStoreSQLite(t *testing.T) {
	proxySharedStore(t, "sqlite://"+filepath.ToSlash(filepath.Join(t.TempDir(), "shared.db")))
}

// TestStoreS3 runs the proxy on an S3 store (versitygw, started by the
// test), the credentials in the store URL; the inspection commands read
// it while the proxy runs, as any process sharing the bucket would.
func TestStoreS3(t *testing.T) {
	srv := testserver.S3(t)
	u := url.URL{Scheme: "s3", User: url.UserPassword(srv.AccessKey, srv.SecretKey), Host: srv.Bucket, Path: "/proxy",
		RawQuery: url.Values{"endpoint": {srv.Endpoint}, "region": {srv.Region}}.Encode()}
	proxySharedStore(t, u.String())
}

// proxySharedStore runs the proxy on a store other processes may open
// while it runs: a second GET is a hit, and hishel ls and stats, run
// meanwhile, see the cached pair.
func proxySharedStore(t *testing.T, store string) {
	skipWithoutSignals(t)
	o := newOrigin(t)
	p := startProxy(t, "-upstream", o.URL, "-store", store)
	c := &http.Client{Transport: &http.Transport{}}
	for range 2 {
		if resp, body := do(t, c, "GET", "http://"+p.addr+"/cached", "", nil); resp.StatusCode != 200 || body != "cached body" {
			t.Fatalf("GET /cached = %d %q; want 200 %q", resp.StatusCode, body, "cached body")
		}
	}
	if n := o.count("/cached"); n != 1 {
		t.Errorf("origin requests for /cached = %d; want 1 (the second from the cache)", n)
	}
	c.CloseIdleConnections()
	if ls := runHishel(t, "ls", "-store", store); ls.code != 0 || !strings.Contains(ls.stdout, "/cached") {
		t.Errorf("hishel ls -store while the proxy runs = %v; want the cached pair listed", ls)
	}
	if stats := runHishel(t, "stats", "-store", store); stats.code != 0 || !strings.Contains(stats.stdout, "pairs: 1\n") {
		t.Errorf("hishel stats -store = %v; want 1 pair", stats)
	}
	if code := p.stop(t); code != 0 {
		t.Fatalf("proxy exit = %d; want 0\n%s", code, p.Stderr())
	}
}
