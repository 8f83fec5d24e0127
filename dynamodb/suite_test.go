package dynamodb_test

import (
	"context"
	"os"
	"testing"

	"github.com/hishel-go/hishel/dynamodb"
	"github.com/hishel-go/hishel/internal/testserver"
	"github.com/hishel-go/hishel/storagetest"
)

func TestMain(m *testing.M) { os.Exit(testserver.Main(m)) }

// TestStorage runs the behavioural suite through the blocking API, each
// store on a table of its own on the test server.
func TestStorage(t *testing.T) {
	storagetest.Run(t, func(tb testing.TB, o storagetest.Options) storagetest.Store {
		srv := testserver.DynamoDB(tb)
		opts := &dynamodb.DynamoDBOptions{Table: srv.Table, Endpoint: srv.Endpoint, Region: srv.Region,
			AccessKey: srv.AccessKey, SecretKey: srv.SecretKey}
		opts.SetSettings(o.Settings())
		return storagetest.Opened[storagetest.Store](tb)(dynamodb.OpenDynamoDB(context.Background(), opts))
	})
}
