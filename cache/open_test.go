package cache_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hishel-go/hishel/cache"
	"github.com/hishel-go/hishel/model"
)

func TestSchemes(t *testing.T) {
	got := cache.Schemes()
	for _, want := range []string{"bolt", "file", "memory"} {
		if !slices.Contains(got, want) {
			t.Errorf("Schemes() = %q; want it to hold %q", got, want)
		}
	}
}

// Open opens the backend a URL names, with its parameters as options.
func TestOpen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	tests := []struct {
		name string
		url  string
		want string // the store's type
		ttl  time.Duration
	}{
		{"bolt, absolute path", "bolt://" + filepath.ToSlash(filepath.Join(dir, "a.db")), "*cache.Bolt", 0},
		{"bolt with parameters", "bolt://" + filepath.ToSlash(filepath.Join(dir, "b.db")) + "?ttl=1h&nosync&max-bytes=64MiB&max-pairs=10&refresh=false&sweep=-1s&verify-every-read=true", "*cache.Bolt", time.Hour},
		{"scheme in capitals", "BOLT://" + filepath.ToSlash(filepath.Join(dir, "c.db")), "*cache.Bolt", 0},
		{"memory", "memory://", "*cache.Memory", 0},
		{"memory with parameters", "memory://?max-pairs=128&ttl=10m", "*cache.Memory", 10 * time.Minute},
		{"memory without slashes", "memory:", "*cache.Memory", 0},
		{"directory", "file://" + filepath.ToSlash(filepath.Join(dir, "files")) + "?ttl=1m&nosync", "*cache.Dir", time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := cache.Open(ctx, tt.url)
			if err != nil {
				t.Fatalf("Open(%q) error = %v", tt.url, err)
			}
			defer s.Close()
			if got := typeName(s); got != tt.want {
				t.Errorf("Open(%q) = %s; want %s", tt.url, got, tt.want)
			}
			inc, err := s.CreatePair(ctx, model.Request{Method: "GET", URL: "u"})
			if err != nil {
				t.Fatal(err)
			}
			if inc.Meta.Created.IsZero() {
				t.Errorf("CreatePair() Meta.Created is zero")
			}
			cp, err := s.AddResponse(ctx, inc.ID, model.Response{Status: 200, Body: model.StringBody("x")}, "k")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := model.ReadAll(cp.Response.Body); err != nil {
				t.Fatal(err)
			}
			ps, err := s.GetPairs(ctx, "k")
			if err != nil || len(ps) != 1 {
				t.Fatalf("GetPairs() = %d pairs, %v; want 1", len(ps), err)
			}
			ps[0].Close()
			if ps[0].Meta.TTL != tt.ttl {
				t.Errorf("stored pair's TTL = %v; want %v (from the URL)", ps[0].Meta.TTL, tt.ttl)
			}
		})
	}
}

// A bad URL, an unknown scheme or parameter, or a bad value is an
// ErrInvalid that says what is wrong; an unknown scheme lists those
// registered.
func TestOpenBadURL(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name, url string
		want      []string // in the error text
	}{
		{"unknown scheme", "nosuch://x", []string{`unknown scheme "nosuch"`, "bolt://", "file://", "memory://"}},
		{"no scheme", "/var/cache/c.db", []string{"no scheme", "bolt:///path/cache.db"}},
		{"does not parse", "bolt://%zz", []string{"does not parse"}},
		{"unknown parameter", "memory://?ttl=1h&colour=red", []string{"unknown parameter colour", "ttl", "max-pairs"}},
		{"bad duration", "memory://?ttl=soon", []string{`ttl="soon"`, "duration"}},
		{"negative ttl", "memory://?ttl=-5s", []string{"negative DefaultTTL"}},
		{"bad size", "memory://?max-bytes=lots", []string{`max-bytes="lots"`}},
		{"negative max-pairs", "memory://?max-pairs=-1", []string{"negative MaxPairs"}},
		{"parameter twice", "memory://?ttl=1h&ttl=2h", []string{"more than once"}},
		{"bad bool", "bolt:///tmp/x.db?nosync=maybe", []string{`nosync="maybe"`}},
		{"bolt with a host", "bolt://cache.db", []string{"not a host", "bolt:///absolute/path"}},
		{"memory with a path", "memory:///x", []string{"no host or path"}},
		{"directory with a host", "file://host/dir", []string{"not a host"}},
		{"password redacted", "nosuch://user:secret@host/", []string{"xxxxx"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := cache.Open(ctx, tt.url)
			if err == nil {
				s.Close()
				t.Fatalf("Open(%q) error = nil; want ErrInvalid", tt.url)
			}
			if !errors.Is(err, cache.ErrInvalid) {
				t.Errorf("Open(%q) error = %v; want ErrInvalid", tt.url, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Open(%q) error = %q; want it to say %q", tt.url, err, w)
				}
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("Open(%q) error = %q shows the password", tt.url, err)
			}
		})
	}
	//nolint:staticcheck // a nil context is what is tested
	if _, err := cache.Open(nil, "memory://"); !errors.Is(err, cache.ErrInvalid) {
		t.Errorf("Open(nil context) error = %v; want ErrInvalid", err)
	}
}

func TestRegisterPanics(t *testing.T) {
	for _, tt := range []struct{ name, scheme string }{
		{"registered already", "memory"},
		{"not a scheme", "my scheme"},
		{"upper case", "Mine"},
		{"empty", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("Register(%q) did not panic", tt.scheme)
				}
			}()
			cache.Register(tt.scheme, func(context.Context, *url.URL) (cache.Store, error) { return nil, nil })
		})
	}
}

func typeName(v any) string { return fmt.Sprintf("%T", v) }
