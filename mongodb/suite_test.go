package mongodb_test

import (
	"context"
	"os"
	"testing"

	"github.com/hishel-go/hishel/internal/testserver"
	"github.com/hishel-go/hishel/mongodb"
	"github.com/hishel-go/hishel/storagetest"
)

func TestMain(m *testing.M) { os.Exit(testserver.Main(m)) }

// options maps the suite's options onto a fresh database of the test
// server.
func options(tb testing.TB, o storagetest.Options, gridfs bool) *mongodb.MongoOptions {
	srv := testserver.Mongo(tb)
	opts := &mongodb.MongoOptions{URI: srv.PoolURI(32), Database: srv.Database, GridFS: gridfs}
	opts.SetSettings(o.Settings())
	return opts
}

// TestStorage runs the behavioural suite through the blocking API, with
// bodies in chunk documents; the async API's tests run it with bodies in
// GridFS, so each layout and each API runs the whole suite once (every
// operation on the test server, FerretDB on SQLite, reads the whole
// collection: a run of the suite takes minutes).
func TestStorage(t *testing.T) {
	storagetest.Run(t, func(tb testing.TB, o storagetest.Options) storagetest.Store {
		return storagetest.Opened[storagetest.Store](tb)(mongodb.OpenMongo(context.Background(), options(tb, o, false)))
	}, noAtomicUpdates)
}

// noAtomicUpdates leaves out the Concurrent rule: FerretDB applies an update
// as a read and then a write of the whole document, so a concurrent change
// between the two is lost (a pair removed or evicted while another client
// records a read of it comes back, its chunks gone). MongoDB applies an
// update to a document atomically, which the backend relies on.
var noAtomicUpdates = storagetest.Without("FerretDB applies an update as a read and then a whole-document write, "+
	"so concurrent changes are lost; MongoDB updates a document atomically", "Concurrent")
