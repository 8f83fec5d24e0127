package sqliteasync_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/hishel-go/hishel/cacheasync"
	"github.com/hishel-go/hishel/model"
	_ "github.com/hishel-go/hishel/sqlite/sqliteasync" // registers sqlite:// with cacheasync.Open
)

func TestOpenURL(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "url.db")
	s, err := cacheasync.Open(ctx, "sqlite://"+filepath.ToSlash(path)+"?nosync", &cacheasync.Options{MaxInFlight: 4})
	if err != nil {
		t.Fatalf("cacheasync.Open(sqlite://...) error = %v", err)
	}
	defer s.Close()
	inc, err := s.CreatePair(ctx, model.Request{Method: "GET", URL: "u"}).Await(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := s.AddResponse(ctx, inc.ID, model.Response{Status: 200, Body: model.StringBody("hello")}, "k").Await(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := model.ReadAll(cp.Response.Body); err != nil || string(b) != "hello" {
		t.Fatalf("storing the body: %q, %v", b, err)
	}
	ps, err := s.GetPairs(ctx, "k").Await(ctx)
	if err != nil || len(ps) != 1 {
		t.Fatalf("GetPairs = %d pairs, %v; want 1", len(ps), err)
	}
	if b, err := model.ReadAll(ps[0].Response.Body); err != nil || string(b) != "hello" {
		t.Errorf("body read back = %q, %v; want hello", b, err)
	}
	ps[0].Request.Body.Close()
}
