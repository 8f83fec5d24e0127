package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/hishel-go/hishel/cache"
)

// TestProxyHitFileBody serves hits of bodies that Bolt keeps in files
// (FileBodyMin) to a client over TCP: every hit, the first (whose chunks
// are read and checked) and those after (whose checked chunks go from the
// file with sendfile, unless VerifyEveryRead), gives the stored bytes; a
// byte changed in a body's file before its first hit gives the client an
// aborted response holding only bytes before the change.
func TestProxyHitFileBody(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	bodies := map[string][]byte{"/1MiB": random(1 << 20), "/several": random(3<<20 + 7), "/damaged": random(2 << 20)}
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, ok := bodies[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=600")
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.Write(b)
	}))
	t.Cleanup(origin.Close)
	for _, every := range []bool{false, true} {
		t.Run(fmt.Sprintf("VerifyEveryRead=%v", every), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "cache.db")
			store, err := cache.OpenBolt(context.Background(), &cache.BoltOptions{Path: path, VerifyEveryRead: every})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { store.Close() })
			cfg := testConfig(t, origin.URL)
			cfg.shared = true
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr, _ := serveOn(t, cfg, store, ln)
			client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
			t.Cleanup(client.CloseIdleConnections)
			get := func(p string) ([]byte, string, error) {
				t.Helper()
				resp, err := client.Get("http://" + addr + p)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				return b, resp.Header.Get("Cache-Status"), err
			}
			for _, p := range []string{"/1MiB", "/several"} {
				for i := range 4 { // the miss, then hits
					got, status, err := get(p)
					if err != nil || !bytes.Equal(got, bodies[p]) {
						t.Fatalf("GET %s #%d = %d bytes (equal: %v), %v; want the %d stored", p, i, len(got), bytes.Equal(got, bodies[p]), err, len(bodies[p]))
					}
					if hit := strings.Contains(status, "hit"); hit != (i > 0) {
						t.Fatalf("GET %s #%d: Cache-Status %q; want a hit: %v", p, i, status, i > 0)
					}
				}
			}

			// The damaged body: stored by its miss, changed in its file.
			before, err := os.ReadDir(path + ".bodies")
			if err != nil {
				t.Fatal(err)
			}
			if got, _, err := get("/damaged"); err != nil || !bytes.Equal(got, bodies["/damaged"]) {
				t.Fatalf("GET /damaged (the miss) = %d bytes, %v", len(got), err)
			}
			after, err := os.ReadDir(path + ".bodies")
			if err != nil {
				t.Fatal(err)
			}
			if len(after) != len(before)+1 {
				t.Fatalf("%d body files after the miss, %d before; want one more", len(after), len(before))
			}
			var file string
			for _, e := range after {
				if !strings.Contains(fmt.Sprint(before), e.Name()) {
					file = filepath.Join(path+".bodies", e.Name())
				}
			}
			const at = 1<<20 + 100
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			b[at] ^= 1
			if err := os.WriteFile(file, b, 0o600); err != nil {
				t.Fatal(err)
			}
			got, status, err := get("/damaged")
			if err == nil || !bytes.HasPrefix(bodies["/damaged"], got) || len(got) > at {
				t.Errorf("hit of the damaged body (%q) = %d bytes (a prefix of the stored: %v), %v; want an aborted response of at most the %d bytes before the change",
					status, len(got), bytes.HasPrefix(bodies["/damaged"], got), err, at)
			}
		})
	}
}
