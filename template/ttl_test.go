package template

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/hishel-go/hishel/model"
)

// A negative TTL is a mistake, not "never expires": DefaultTTL and a
// request's TTL below zero are model.ErrInvalid, except model.NoExpiry,
// the one documented sentinel. Nothing is stored for a refused request.
func TestNegativeTTL(t *testing.T) {
	ctx := context.Background()
	type opener func(t *testing.T, defaultTTL time.Duration) (creator, error)
	backends := map[string]opener{
		"bolt": func(t *testing.T, ttl time.Duration) (creator, error) {
			s, err := OpenBolt(ctx, &BoltOptions{Path: filepath.Join(t.TempDir(), "c.db"), DefaultTTL: ttl, SweepInterval: -1})
			if err == nil {
				t.Cleanup(func() { _ = s.Close() })
			}
			return s, err
		},
		"memory": func(t *testing.T, ttl time.Duration) (creator, error) {
			s, err := OpenMemory(ctx, &MemoryOptions{DefaultTTL: ttl, SweepInterval: -1})
			if err == nil {
				t.Cleanup(func() { _ = s.Close() })
			}
			return s, err
		},
	}
	ttls := []struct {
		ttl time.Duration
		ok  bool
	}{
		{0, true},
		{time.Hour, true},
		{model.NoExpiry, true},
		{-2, false},
		{-time.Second, false},
		{-time.Hour, false},
	}
	for name, open := range backends {
		for _, tt := range ttls {
			t.Run(name+"/DefaultTTL="+tt.ttl.String(), func(t *testing.T) {
				_, err := open(t, tt.ttl)
				if tt.ok && err != nil || !tt.ok && !errors.Is(err, model.ErrInvalid) {
					t.Errorf("open with DefaultTTL %v = %v; want ok %v, else ErrInvalid", tt.ttl, err, tt.ok)
				}
			})
			t.Run(name+"/request TTL="+tt.ttl.String(), func(t *testing.T) {
				s, err := open(t, 0)
				if err != nil {
					t.Fatal(err)
				}
				req := model.Request{Method: "GET", URL: "https://example.com/", Options: model.RequestOptions{TTL: tt.ttl}}
				inc, err := s.CreatePair(ctx, req)
				if tt.ok && err != nil || !tt.ok && !errors.Is(err, model.ErrInvalid) {
					t.Fatalf("CreatePair with TTL %v = %v; want ok %v, else ErrInvalid", tt.ttl, err, tt.ok)
				}
				if !tt.ok {
					if _, err := s.AddResponse(ctx, inc.ID, model.Response{Status: 200}, "k"); !errors.Is(err, model.ErrNotFound) {
						t.Errorf("AddResponse after a refused CreatePair = %v; want ErrNotFound", err)
					}
				}
			})
		}
	}
}

// creator is what TestNegativeTTL needs of a backend.
type creator interface {
	CreatePair(ctx context.Context, req model.Request, opts ...model.CreateOption) (model.IncompletePair, error)
	AddResponse(ctx context.Context, id model.PairID, resp model.Response, key string) (model.CompletePair, error)
}
