package hishel_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/hishel-go/hishel"
	"github.com/hishel-go/hishel/cache"
	"github.com/hishel-go/hishel/model"
)

// downStore fails GetPairs with err while err is set, and counts the
// pairs it is asked to create meanwhile.
type downStore struct {
	hishel.Storage
	mu      sync.Mutex
	err     error
	created atomic.Int64
}

func (f *downStore) fail(err error) {
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
}

func (f *downStore) GetPairs(ctx context.Context, key string) ([]model.CompletePair, error) {
	f.mu.Lock()
	err := f.err
	f.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("lookup: %w", err)
	}
	return f.Storage.GetPairs(ctx, key)
}

func (f *downStore) CreatePair(ctx context.Context, req model.Request, opts ...model.CreateOption) (model.IncompletePair, error) {
	f.created.Add(1)
	return f.Storage.CreatePair(ctx, req, opts...)
}

// A storage that fails the lookup never fails the request: the Transport
// answers from the origin, does not try to store, says why in
// Cache-Status and logs the error; once the storage answers again, it
// caches as before.
func TestTransportStorageDown(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprint(w, "body")
	})
	mem, err := cache.OpenMemory(context.Background(), &cache.MemoryOptions{SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mem.Close() })
	store := &downStore{Storage: mem}
	var logs bytes.Buffer
	var logMu sync.Mutex
	tr, err := hishel.NewTransport(&hishel.Options{Storage: store,
		Logger: slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &logMu}, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	cl := &http.Client{Transport: tr}
	get := func() (string, string) {
		t.Helper()
		resp, err := cl.Get(o.URL + "/a")
		if err != nil {
			t.Fatalf("GET with the storage failing: error = %v; want the origin's response", err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return b.String(), resp.Header.Get("Cache-Status")
	}
	tests := []struct {
		name       string
		err        error
		wantStatus string
	}{
		{"unavailable", model.ErrUnavailable, "hishel; fwd=uri-miss; fwd-status=200; detail=storage-unavailable"},
		{"other error", errors.New("boom"), "hishel; fwd=uri-miss; fwd-status=200; detail=storage-error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store.fail(tt.err)
			before, created := o.hits.Load(), store.created.Load()
			for range 3 {
				body, status := get()
				if body != "body" || status != tt.wantStatus {
					t.Errorf("GET = %q, Cache-Status %q; want %q, %q", body, status, "body", tt.wantStatus)
				}
			}
			if n := o.hits.Load() - before; n != 3 {
				t.Errorf("origin saw %d requests; want 3 (no cache while the storage fails)", n)
			}
			if n := store.created.Load() - created; n != 0 {
				t.Errorf("CreatePair called %d times while the lookup failed; want 0", n)
			}
			logMu.Lock()
			logged := logs.String()
			logMu.Unlock()
			if !strings.Contains(logged, "hishel: storage failed") || !strings.Contains(logged, tt.err.Error()) {
				t.Errorf("log = %q; want the storage error", logged)
			}
		})
	}
	store.fail(nil)
	if _, status := get(); !strings.Contains(status, "stored") {
		t.Errorf("first GET once the storage works = Cache-Status %q; want it stored", status)
	}
	if _, status := get(); !strings.HasPrefix(status, "hishel; hit") {
		t.Errorf("second GET once the storage works = Cache-Status %q; want a hit", status)
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
