package hishel

import (
	"net/http"
	"strconv"
	"testing"
)

func TestStatusLine(t *testing.T) {
	for _, code := range []int{200, 206, 304, 404, 504, 299} {
		want := strconv.Itoa(code) + " " + http.StatusText(code)
		if got := statusLine(code); got != want {
			t.Errorf("statusLine(%d) = %q; want %q", code, got, want)
		}
	}
}

// TestStatusCache checks the Cache-Status values HitHeader's hits share:
// each is the entry cacheStatusEntry builds, hits with the same status and
// ttl get the same slice, others (ttls that share a slot too) their own,
// and an append to a value never changes it.
func TestStatusCache(t *testing.T) {
	var c statusCache
	for _, tc := range []struct {
		status string
		ttl    int64
		want   string
	}{
		{"hit", 3599, "hishel; hit; ttl=3599"},
		{"hit", 3599 + 64, "hishel; hit; ttl=3663"}, // the same slot
		{"hit; detail=stale", 3599, "hishel; hit; detail=stale; ttl=3599"},
		{"hit", -1, "hishel; hit"},
		{"hit", 0, "hishel; hit; ttl=0"},
	} {
		v := c.value(tc.status, tc.ttl)
		if len(v) != 1 || cap(v) != 1 || v[0] != tc.want || cacheStatusEntry(tc.status, tc.ttl) != tc.want {
			t.Errorf("value(%q, %d) = %q (cap %d); want [%q]", tc.status, tc.ttl, v, cap(v), tc.want)
		}
		if again := c.value(tc.status, tc.ttl); &again[0] != &v[0] {
			t.Errorf("value(%q, %d) twice: not the same slice", tc.status, tc.ttl)
		}
		_ = append(v, "other")
		if got := c.value(tc.status, tc.ttl); len(got) != 1 || got[0] != tc.want {
			t.Errorf("after an append, value(%q, %d) = %q; want [%q]", tc.status, tc.ttl, got, tc.want)
		}
	}
}
