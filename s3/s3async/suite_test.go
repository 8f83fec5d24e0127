package s3async_test

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"

	"github.com/hishel-go/hishel/cacheasync"
	"github.com/hishel-go/hishel/internal/testserver"
	"github.com/hishel-go/hishel/s3/s3async"
	"github.com/hishel-go/hishel/storagetest"
)

func TestMain(m *testing.M) { os.Exit(testserver.Main(m)) }

// TestStorage runs the behavioural suite through the async API, on the S3
// server testserver starts (a prefix of their own per store).
func TestStorage(t *testing.T) {
	b := testserver.S3(t)
	var n atomic.Int64
	storagetest.RunAsync(t, func(tb testing.TB, o storagetest.Options) cacheasync.Store {
		opts := &s3async.S3Options{Bucket: b.Bucket, Prefix: fmt.Sprint("s", n.Add(1)), Endpoint: b.Endpoint, Region: b.Region,
			AccessKey: b.AccessKey, SecretKey: b.SecretKey}
		opts.SetSettings(o.Settings())
		return storagetest.Opened[cacheasync.Store](tb)(s3async.OpenS3(context.Background(), opts, nil))
	})
}
