package cacheasync_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hishel-go/hishel/cacheasync"
	"github.com/hishel-go/hishel/model"
)

// Open opens the backend a URL names through the async API, with its
// calls bounded as the options say.
func TestOpen(t *testing.T) {
	ctx := context.Background()
	if got := cacheasync.Schemes(); !slices.Contains(got, "bolt") || !slices.Contains(got, "memory") {
		t.Errorf("Schemes() = %q; want bolt and memory among them", got)
	}
	for _, tt := range []struct{ url, want string }{
		{"bolt://" + filepath.ToSlash(filepath.Join(t.TempDir(), "c.db")) + "?nosync=true", "*cacheasync.Bolt"},
		{"memory://?max-pairs=2", "*cacheasync.Memory"},
	} {
		s, err := cacheasync.Open(ctx, tt.url, &cacheasync.Options{MaxInFlight: 2})
		if err != nil {
			t.Fatalf("Open(%q) error = %v", tt.url, err)
		}
		if got := fmt.Sprintf("%T", s); got != tt.want {
			t.Errorf("Open(%q) = %s; want %s", tt.url, got, tt.want)
		}
		cp := storePair(t, s, "k", []byte("body"))
		if p, err := s.GetPair(ctx, cp.ID).Await(ctx); err != nil {
			t.Errorf("GetPair() error = %v", err)
		} else {
			p.Close()
		}
		if err := s.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
	}
	_, err := cacheasync.Open(ctx, "nosuch:///x", nil)
	if !errors.Is(err, model.ErrInvalid) || !strings.Contains(err.Error(), "bolt://") {
		t.Errorf("Open(nosuch:) error = %v; want ErrInvalid listing the schemes", err)
	}
}
