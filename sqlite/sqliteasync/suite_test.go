package sqliteasync_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/hishel-go/hishel/cacheasync"
	"github.com/hishel-go/hishel/sqlite/sqliteasync"
	"github.com/hishel-go/hishel/storagetest"
)

// TestStorage runs the behavioural suite through the async API.
func TestStorage(t *testing.T) {
	storagetest.RunAsync(t, func(tb testing.TB, o storagetest.Options) cacheasync.Store {
		opts := &sqliteasync.SQLiteOptions{Path: filepath.Join(tb.TempDir(), "cache.db"), NoSync: o.NoSync}
		opts.SetSettings(o.Settings())
		return storagetest.Opened[cacheasync.Store](tb)(sqliteasync.OpenSQLite(context.Background(), opts, nil))
	})
}
