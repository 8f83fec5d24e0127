package main

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The proxy moves a damaged cache file aside and starts with an empty one,
// saying so; with -rebuild=false it exits with status 1 and a clear
// message instead.
func TestProxyRebuild(t *testing.T) {
	skipWithoutSignals(t)
	o := newOrigin(t)
	dir := t.TempDir()
	db := filepath.Join(dir, "cache.db")
	damaged := bytes.Repeat([]byte("this cache file was damaged\n"), 2000)
	if err := os.WriteFile(db, damaged, 0o600); err != nil {
		t.Fatal(err)
	}

	r := runHishel(t, "proxy", "-listen", "127.0.0.1:0", "-upstream", o.URL, "-db", db, "-rebuild=false")
	if r.code != exitError || !strings.Contains(r.stderr, "is damaged") || strings.Contains(r.stderr, "panic") {
		t.Errorf("hishel proxy -rebuild=false on a damaged file = %v; want exit 1 and a message that it is damaged", r)
	}
	if now, _ := os.ReadFile(db); !bytes.Equal(now, damaged) {
		t.Errorf("hishel proxy -rebuild=false changed the damaged file")
	}

	p := startProxy(t, "-upstream", o.URL, "-db", db)
	c := &http.Client{}
	for range 2 {
		if resp, body := do(t, c, "GET", "http://"+p.addr+"/cached", "", nil); resp.StatusCode != 200 || body != "cached body" {
			t.Fatalf("GET /cached through the rebuilt proxy = %d %q", resp.StatusCode, body)
		}
	}
	if n := o.count("/cached"); n != 1 {
		t.Errorf("the origin served /cached %d times; want 1: the rebuilt cache stores", n)
	}
	if code := p.stop(t); code != 0 {
		t.Errorf("hishel proxy exit = %d; want 0\n%s", code, p.Stderr())
	}
	aside, _ := filepath.Glob(db + ".damaged-*")
	if len(aside) != 1 || !strings.Contains(p.Stderr(), "moved aside") || !strings.Contains(p.Stderr(), aside[0]) {
		t.Errorf("files moved aside: %v; proxy stderr:\n%s\nwant one, and the move logged", aside, p.Stderr())
	} else if moved, _ := os.ReadFile(aside[0]); !bytes.Equal(moved, damaged) {
		t.Errorf("the file moved aside is not the damaged one")
	}
	if ls := runHishel(t, "ls", "-db", db); ls.code != 0 || !strings.Contains(ls.stdout, o.URL+"/cached") {
		t.Errorf("hishel ls on the rebuilt file = %v; want the /cached pair", ls)
	}
}
