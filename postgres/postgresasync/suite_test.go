package postgresasync_test

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"

	"github.com/hishel-go/hishel/cacheasync"
	"github.com/hishel-go/hishel/internal/testserver"
	"github.com/hishel-go/hishel/postgres/postgresasync"
	"github.com/hishel-go/hishel/storagetest"
)

func TestMain(m *testing.M) { os.Exit(testserver.Main(m)) }

// TestStorage runs the behavioural suite through the async API, on the
// PostgreSQL server testserver starts (tables of their own per store).
func TestStorage(t *testing.T) {
	db := testserver.Postgres(t)
	var n atomic.Int64
	storagetest.RunAsync(t, func(tb testing.TB, o storagetest.Options) cacheasync.Store {
		opts := &postgresasync.PostgresOptions{ConnString: db.DSN(), Table: fmt.Sprint("s", n.Add(1)), NoSync: o.NoSync}
		opts.SetSettings(o.Settings())
		return storagetest.Opened[cacheasync.Store](tb)(postgresasync.OpenPostgres(context.Background(), opts, nil))
	})
}
