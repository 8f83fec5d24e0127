package postgres_test

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"

	"github.com/hishel-go/hishel/internal/testserver"
	"github.com/hishel-go/hishel/postgres"
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
