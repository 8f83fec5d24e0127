package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/hishel-go/hishel/sqlite"
	"github.com/hishel-go/hishel/storagetest"
)

// open is the suite's opener: a new database file in a temporary
// directory, configured by o.
func open(tb testing.TB, o storagetest.Options) storagetest.Store {
	opts := &sqlite.SQLiteOptions{Path: filepath.Join(tb.TempDir(), "cache.db"), NoSync: o.NoSync}
	opts.SetSettings(o.Settings())
	return storagetest.Opened[storagetest.Store](tb)(sqlite.OpenSQLite(context.Background(), opts))
}

// TestStorage runs the behavioural suite through the blocking API.
func TestStorage(t *testing.T) { storagetest.Run(t, open) }
