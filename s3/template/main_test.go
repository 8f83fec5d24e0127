package template

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"sync/atomic"
	"testing"

	"github.com/hishel-go/hishel/internal/testserver"
	"github.com/hishel-go/hishel/storagetest"
)

func TestMain(m *testing.M) {
	storagetest.HelperMain(openAt)
	os.Exit(testserver.Main(m))
}

// storeURL is the store URL of prefix in srv's bucket, credentials in it:
// what the process tests hand their helper processes.
func storeURL(srv testserver.S3Server, prefix string) string {
	q := url.Values{"endpoint": {srv.Endpoint}, "region": {srv.Region}}
	u := url.URL{Scheme: "s3", User: url.UserPassword(srv.AccessKey, srv.SecretKey), Host: srv.Bucket, Path: "/" + prefix, RawQuery: q.Encode()}
	return u.String()
}

// openAt opens the store that the store URL path names, with o's
// settings, in this process and in the process tests' helpers.
func openAt(path string, o storagetest.Options) (storagetest.Store, error) {
	u, err := url.Parse(path)
	if err != nil {
		return nil, err
	}
	opts, err := urlOptions(u)
	if err != nil {
		return nil, err
	}
	opts.SetSettings(o.Settings())
	return OpenS3(context.Background(), &opts)
}

var prefixes atomic.Int64

// open opens a store of its own (a fresh prefix) in srv's bucket.
func open(tb testing.TB, srv testserver.S3Server, o storagetest.Options) *S3 {
	tb.Helper()
	opts := &S3Options{Bucket: srv.Bucket, Prefix: fmt.Sprintf("t%d", prefixes.Add(1)), Endpoint: srv.Endpoint, Region: srv.Region,
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey}
	opts.SetSettings(o.Settings())
	return storagetest.Opened[*S3](tb)(OpenS3(context.Background(), opts))
}
