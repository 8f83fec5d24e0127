package mongodb_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hishel-go/hishel/cache"
	"github.com/hishel-go/hishel/cacheasync"
	"github.com/hishel-go/hishel/internal/testserver"
	"github.com/hishel-go/hishel/model"
	_ "github.com/hishel-go/hishel/mongodb/mongodbasync"
)

// A mongodb:// URL opens the store through cache.Open and cacheasync.Open:
// hishel's parameters set its options, the others go to the driver; a
// pair stored through one API is served through the other.
func TestOpenURL(t *testing.T) {
	srv := testserver.Mongo(t)
	ctx := context.Background()
	u := strings.TrimSuffix(srv.URI, "/") + "/" + srv.Database + "?gridfs=true&collection=web&ttl=1h&max-variants=4&serverSelectionTimeoutMS=5000"
	s, err := cache.Open(ctx, u)
	if err != nil {
		t.Fatalf("cache.Open(%q) error = %v", u, err)
	}
	defer s.Close()
	inc, err := s.CreatePair(ctx, model.Request{Method: "GET", URL: "http://example.com/"})
	if err != nil {
		t.Fatal(err)
	}
	cp, err := s.AddResponse(ctx, inc.ID, model.Response{Status: 200, Body: model.StringBody("hello")}, "k")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, cp.Response.Body); err != nil {
		t.Fatal(err)
	}
	if cp.Meta.TTL != 3600e9 {
		t.Errorf("stored TTL = %v; want the URL's 1h", cp.Meta.TTL)
	}
	as, err := cacheasync.Open(ctx, u, nil)
	if err != nil {
		t.Fatalf("cacheasync.Open(%q) error = %v", u, err)
	}
	defer as.Close()
	ps, err := as.GetPairs(ctx, "k").Await(ctx)
	if err != nil || len(ps) != 1 {
		t.Fatalf("async GetPairs() = %d pairs, %v; want the pair stored through the blocking API", len(ps), err)
	}
	if b, err := model.ReadAll(ps[0].Response.Body); err != nil || string(b) != "hello" || ps[0].Meta.TTL != 3600e9 {
		t.Errorf("async read back %q, %v, TTL %v; want hello, 1h", b, err, ps[0].Meta.TTL)
	}
	ps[0].Close()
}

func TestOpenURLInvalid(t *testing.T) {
	for _, u := range []string{
		"mongodb://127.0.0.1:1/db?ttl=forever",
		"mongodb://127.0.0.1:1/db?gridfs=maybe",
		"mongodb://127.0.0.1:1/db?chunk-size=64MiB",
		"mongodb://127.0.0.1:1/db?collection=a$b",
		"mongodb://127.0.0.1:1/db?maxPoolSize=many",
	} {
		s, err := cache.Open(context.Background(), u)
		if !errors.Is(err, model.ErrInvalid) {
			t.Errorf("cache.Open(%q) error = %v; want ErrInvalid", u, err)
		}
		if s != nil {
			s.Close()
		}
	}
}

// Beyond MaxVariants, storing one more pair under a key evicts the least
// recently used others (the contract's variant cap).
func TestMaxVariants(t *testing.T) {
	ctx := context.Background()
	s, err := cache.Open(ctx, variantsURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	store := func(body string) model.PairID {
		inc, err := s.CreatePair(ctx, model.Request{Method: "GET", URL: "u"})
		if err != nil {
			t.Fatal(err)
		}
		cp, err := s.AddResponse(ctx, inc.ID, model.Response{Status: 200, Body: model.StringBody(body)}, "k")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, cp.Response.Body); err != nil {
			t.Fatal(err)
		}
		return inc.ID
	}
	a := store("a")
	time.Sleep(5 * time.Millisecond)
	b := store("b")
	time.Sleep(5 * time.Millisecond)
	if p, err := s.GetPair(ctx, a); err != nil {
		t.Fatal(err)
	} else {
		p.Close()
	}
	ps, err := s.GetPairs(ctx, "k") // an access of both
	if err != nil || len(ps) != 2 {
		t.Fatalf("GetPairs() = %d pairs, %v; want 2", len(ps), err)
	}
	for _, p := range ps {
		p.Close()
	}
	time.Sleep(5 * time.Millisecond)
	c := store("c")
	ps, err = s.GetPairs(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	got := map[model.PairID]bool{}
	for _, p := range ps {
		got[p.ID] = true
		p.Close()
	}
	if len(ps) != 2 || !got[c] || got[a] == got[b] {
		t.Errorf("after a third variant with max-variants=2, GetPairs() = %v; want c and one of a, b", got)
	}
}

func variantsURL(t *testing.T) string {
	srv := testserver.Mongo(t)
	return strings.TrimSuffix(srv.URI, "/") + "/" + srv.Database + "?max-variants=2"
}
