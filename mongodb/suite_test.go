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
	opts := &mongodb.MongoOptions{URI: srv.URI, Database: srv.Database, GridFS: gridfs}
	opts.SetSettings(o.Settings())
	return opts
}

// TestStorage runs the behavioural suite through the blocking API, with
// bodies in chunk documents and in GridFS, the two at once.
func TestStorage(t *testing.T) {
	for _, gridfs := range []bool{false, true} {
		name := "documents"
		if gridfs {
			name = "gridfs"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel() // each layout in a database of its own; the time is the server's round trips
			storagetest.Run(t, func(tb testing.TB, o storagetest.Options) storagetest.Store {
				return storagetest.Opened[storagetest.Store](tb)(mongodb.OpenMongo(context.Background(), options(tb, o, gridfs)))
			})
		})
	}
}
