package s3_test

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"

	"github.com/hishel-go/hishel/internal/testserver"
	"github.com/hishel-go/hishel/s3"
	"github.com/hishel-go/hishel/storagetest"
)

func TestMain(m *testing.M) { os.Exit(testserver.Main(m)) }

// TestStorage runs the behavioural suite through the blocking API, on the
// S3 server testserver starts (versitygw): one bucket for the test, and a
// prefix of their own for every store the suite opens.
func TestStorage(t *testing.T) {
	b := testserver.S3(t)
	var n atomic.Int64
	storagetest.Run(t, func(tb testing.TB, o storagetest.Options) storagetest.Store {
		opts := &s3.S3Options{Bucket: b.Bucket, Prefix: fmt.Sprint("s", n.Add(1)), Endpoint: b.Endpoint, Region: b.Region,
			AccessKey: b.AccessKey, SecretKey: b.SecretKey}
		opts.SetSettings(o.Settings())
		return storagetest.Opened[storagetest.Store](tb)(s3.OpenS3(context.Background(), opts))
	})
}
