package mongodbasync_test

import (
	"context"
	"os"
	"testing"

	"github.com/hishel-go/hishel/cacheasync"
	"github.com/hishel-go/hishel/internal/testserver"
	"github.com/hishel-go/hishel/mongodb/mongodbasync"
	"github.com/hishel-go/hishel/storagetest"
)

func TestMain(m *testing.M) { os.Exit(testserver.Main(m)) }

// TestStorage runs the behavioural suite through the async API, with
// bodies in GridFS (the blocking API's tests run it with chunk documents).
func TestStorage(t *testing.T) {
	storagetest.RunAsync(t, func(tb testing.TB, o storagetest.Options) cacheasync.Store {
		srv := testserver.Mongo(tb)
		opts := &mongodbasync.MongoOptions{URI: srv.PoolURI(32), Database: srv.Database, GridFS: true}
		opts.SetSettings(o.Settings())
		return storagetest.Opened[cacheasync.Store](tb)(mongodbasync.OpenMongo(context.Background(), opts, nil))
	}, storagetest.Without("FerretDB applies an update as a read and then a whole-document write, "+
		"so concurrent changes are lost; MongoDB updates a document atomically", "Concurrent"))
}
