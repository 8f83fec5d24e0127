package main

import (
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

// TestProxyMetrics checks that hishel proxy -metrics serves Prometheus
// metrics that count what the proxy did.
func TestProxyMetrics(t *testing.T) {
	o := newOrigin(t)
	p := startProxy(t, "-upstream", o.URL, "-db", filepath.Join(t.TempDir(), "m.db"), "-metrics", "127.0.0.1:0")
	addr := metricsURL(t, p)
	c := &http.Client{}
	for range 3 {
		if resp, _ := do(t, c, "GET", "http://"+p.addr+"/cached", "", nil); resp.StatusCode != 200 {
			t.Fatalf("GET /cached = %d", resp.StatusCode)
		}
	}
	resp, body := do(t, c, "GET", addr, "", nil)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET %s = %d %s", addr, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{
		`hishel_responses_total{outcome="hit"} 2`,
		`hishel_responses_total{outcome="miss"} 1`,
		"hishel_stores_total 1",
		"hishel_stored_bytes_total 11",
		"hishel_storage_pairs 1",
		"hishel_storage_evictions_total 0",
		"hishel_lookup_duration_seconds_count 3",
		"hishel_store_duration_seconds_bucket{le=\"+Inf\"} 1",
		"go_goroutines ",
	} {
		if !strings.Contains(body, want+"\n") && !strings.Contains(body, want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}
	if resp, err := c.Post(addr, "text/plain", nil); err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("POST %s = %d; want 405", addr, resp.StatusCode)
		}
	}
	if code := p.stop(t); code != 0 {
		t.Errorf("hishel proxy exited %d; want 0\n%s", code, p.Stderr())
	}
}

// metricsURL returns the address of the metrics that proxy p says it
// serves.
func metricsURL(t *testing.T, p *proc) string {
	t.Helper()
	for _, line := range strings.Split(p.Stderr(), "\n") {
		if rest, ok := strings.CutPrefix(line, "hishel proxy: metrics at "); ok {
			return rest
		}
	}
	t.Fatalf("the proxy did not say where its metrics are:\n%s", p.Stderr())
	return ""
}

// TestProxyMetricsEvictions checks that hishel proxy -metrics counts the
// store's evictions: with a store that keeps one pair, each new response
// stored evicts the one before it.
func TestProxyMetricsEvictions(t *testing.T) {
	o := newOrigin(t)
	p := startProxy(t, "-upstream", o.URL, "-store", "memory://?max-pairs=1", "-metrics", "127.0.0.1:0")
	addr := metricsURL(t, p)
	c := &http.Client{}
	for _, q := range []string{"a", "b", "c"} {
		if resp, _ := do(t, c, "GET", "http://"+p.addr+"/cached?"+q, "", nil); resp.StatusCode != 200 {
			t.Fatalf("GET /cached?%s = %d", q, resp.StatusCode)
		}
	}
	_, body := do(t, c, "GET", addr, "", nil)
	for _, want := range []string{"hishel_stores_total 3\n", "hishel_storage_pairs 1\n", "hishel_storage_evictions_total 2\n"} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}
	if code := p.stop(t); code != 0 {
		t.Errorf("hishel proxy exited %d; want 0\n%s", code, p.Stderr())
	}
}
