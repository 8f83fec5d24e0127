package dynamodb_test

import (
	"context"
	"errors"
	"io"
	"net/url"
	"testing"
	"time"

	"github.com/hishel-go/hishel/cache"
	"github.com/hishel-go/hishel/cacheasync"
	_ "github.com/hishel-go/hishel/dynamodb/dynamodbasync"
	"github.com/hishel-go/hishel/internal/testserver"
	"github.com/hishel-go/hishel/model"
)

// A dynamodb:// URL opens the store through cache.Open and
// cacheasync.Open (creating the table); a pair stored through one API is
// served through the other.
func TestOpenURL(t *testing.T) {
	srv := testserver.DynamoDB(t)
	ctx := context.Background()
	u := "dynamodb://" + url.UserPassword(srv.AccessKey, srv.SecretKey).String() + "@" + srv.Table +
		"?endpoint=" + url.QueryEscape(srv.Endpoint) + "&region=" + srv.Region + "&ttl=1h&max-variants=4"
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
		"dynamodb://",
		"dynamodb://table/path",
		"dynamodb://table?ttl=forever",
		"dynamodb://table?endpoint=ftp://x",
		"dynamodb://table?create=maybe",
		"dynamodb://table?chunk-size=1MiB",
		"dynamodb://table?what=1",
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
	srv := testserver.DynamoDB(t)
	return "dynamodb://" + url.UserPassword(srv.AccessKey, srv.SecretKey).String() + "@" + srv.Table +
		"?endpoint=" + url.QueryEscape(srv.Endpoint) + "&region=" + srv.Region + "&max-variants=2"
}
