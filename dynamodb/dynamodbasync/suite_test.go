package dynamodbasync_test

import (
	"context"
	"os"
	"testing"

	"github.com/hishel-go/hishel/cacheasync"
	"github.com/hishel-go/hishel/dynamodb/dynamodbasync"
	"github.com/hishel-go/hishel/internal/testserver"
	"github.com/hishel-go/hishel/storagetest"
)

func TestMain(m *testing.M) { os.Exit(testserver.Main(m)) }

// TestStorage runs the behavioural suite through the async API.
func TestStorage(t *testing.T) {
	storagetest.RunAsync(t, func(tb testing.TB, o storagetest.Options) cacheasync.Store {
		srv := testserver.DynamoDB(tb)
		opts := &dynamodbasync.DynamoDBOptions{Table: srv.Table, Endpoint: srv.Endpoint, Region: srv.Region,
			AccessKey: srv.AccessKey, SecretKey: srv.SecretKey}
		opts.SetSettings(o.Settings())
		return storagetest.Opened[cacheasync.Store](tb)(dynamodbasync.OpenDynamoDB(context.Background(), opts, nil))
	})
}
