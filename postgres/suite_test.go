package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hishel-go/hishel/cache"
	"github.com/hishel-go/hishel/cacheasync"
	"github.com/hishel-go/hishel/internal/testserver"
	"github.com/hishel-go/hishel/model"
	"github.com/hishel-go/hishel/postgres"
	_ "github.com/hishel-go/hishel/postgres/postgresasync" // registers postgres:// with cacheasync.Open
	"github.com/hishel-go/hishel/storagetest"
)

func TestMain(m *testing.M) { os.Exit(testserver.Main(m)) }

// TestStorage runs the behavioural suite through the blocking API, on the
// PostgreSQL server testserver starts: one database for the test, and
// tables of their own (a prefix) for every store the suite opens.
func TestStorage(t *testing.T) {
	db := testserver.Postgres(t)
	var n atomic.Int64
	storagetest.Run(t, func(tb testing.TB, o storagetest.Options) storagetest.Store {
		opts := &postgres.PostgresOptions{ConnString: db.DSN(), Table: fmt.Sprint("s", n.Add(1)), NoSync: o.NoSync}
		opts.SetSettings(o.Settings())
		return storagetest.Opened[storagetest.Store](tb)(postgres.OpenPostgres(context.Background(), opts))
	})
}

// Importing the package registers postgres:// with cache.Open and
// cacheasync.Open; the URL's parameters are hishel's and pgx's.
func TestOpenURL(t *testing.T) {
	ctx := context.Background()
	db := testserver.Postgres(t)
	u := db.DSN() + "&table=byurl&ttl=1h&application_name=hishel-test"
	s, err := cache.Open(ctx, u)
	if err != nil {
		t.Fatalf("cache.Open(table byurl) error = %v", err)
	}
	defer s.Close()
	inc, err := s.CreatePair(ctx, model.Request{Method: "GET", URL: "u"})
	if err != nil {
		t.Fatal(err)
	}
	cp, err := s.AddResponse(ctx, inc.ID, model.Response{Status: 200, Body: model.StringBody("body")}, "k")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, cp.Response.Body); err != nil {
		t.Fatal(err)
	}
	as, err := cacheasync.Open(ctx, u, nil)
	if err != nil {
		t.Fatalf("cacheasync.Open(table byurl) error = %v", err)
	}
	defer as.Close()
	ps, err := as.GetPairs(ctx, "k").Await(ctx)
	if err != nil || len(ps) != 1 || ps[0].Meta.TTL != time.Hour {
		t.Fatalf("GetPairs through the async store = %v, %v; want the pair, TTL 1h", ps, err)
	}
	if b, err := model.ReadAll(ps[0].Response.Body); err != nil || string(b) != "body" {
		t.Errorf("body = %q, %v; want \"body\"", b, err)
	}
	ps[0].Close()
	for _, bad := range []string{
		db.DSN() + "&ttl=soon",
		db.DSN() + "&table=Bad-Name",
		db.DSN() + "&no_such_setting=1",
		"postgres:opaque",
	} {
		if s, err := cache.Open(ctx, bad); !errors.Is(err, model.ErrInvalid) {
			if s != nil {
				s.Close()
			}
			t.Errorf("cache.Open(%s) error = %v; want ErrInvalid", bad, err)
		}
	}
}
