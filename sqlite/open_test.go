package sqlite_test

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hishel-go/hishel/cache"
	"github.com/hishel-go/hishel/model"
	_ "github.com/hishel-go/hishel/sqlite" // registers sqlite:// with cache.Open
)

// Importing the package registers its scheme: cache.Open opens a SQLite
// store by URL, its parameters set as options.
func TestOpenURL(t *testing.T) {
	ctx := context.Background()
	if !slices.Contains(cache.Schemes(), "sqlite") {
		t.Fatalf("cache.Schemes() = %q; want sqlite registered", cache.Schemes())
	}
	path := filepath.Join(t.TempDir(), "url.db")
	s, err := cache.Open(ctx, "sqlite://"+filepath.ToSlash(path)+"?ttl=1h&busy-timeout=2s&max-pairs=10&nosync=true")
	if err != nil {
		t.Fatalf("cache.Open(sqlite://...) error = %v", err)
	}
	defer s.Close()
	if got := fmt.Sprintf("%T", s); got != "*sqlite.SQLite" {
		t.Errorf("cache.Open(sqlite://...) = %s; want *sqlite.SQLite", got)
	}
	inc, err := s.CreatePair(ctx, model.Request{Method: "GET", URL: "u"})
	if err != nil {
		t.Fatal(err)
	}
	if inc.Meta.TTL != time.Hour {
		t.Errorf("pair TTL = %v; want 1h from the URL", inc.Meta.TTL)
	}
	for _, bad := range []string{"sqlite://host/x.db", "sqlite:///x.db?busy-timeout=soon", "sqlite:///x.db?journal=off"} {
		if _, err := cache.Open(ctx, bad); !errors.Is(err, cache.ErrInvalid) {
			t.Errorf("cache.Open(%q) error = %v; want ErrInvalid", bad, err)
		}
	}
}

// The driver is compiled by this package's users, and only by them (the
// root module's TestNoDrivers checks the other side).
func TestDriverHere(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/hishel-go/hishel/sqlite").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	if !strings.Contains(string(out), "\nmodernc.org/sqlite\n") {
		t.Errorf("go list -deps github.com/hishel-go/hishel/sqlite does not list modernc.org/sqlite:\n%s", out)
	}
}
