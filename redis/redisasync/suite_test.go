package redisasync_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/hishel-go/hishel/cacheasync"
	"github.com/hishel-go/hishel/internal/testserver"
	"github.com/hishel-go/hishel/redis/redisasync"
	"github.com/hishel-go/hishel/storagetest"
)

func TestMain(m *testing.M) { os.Exit(testserver.Main(m)) }

// TestStorage runs the behavioural suite through the async API, on a real
// redis-server.
func TestStorage(t *testing.T) {
	storagetest.RunAsync(t, func(tb testing.TB, o storagetest.Options) cacheasync.Store {
		srv := testserver.Redis(tb)
		opts := &redisasync.RedisOptions{Addr: srv.Addr, Username: srv.Username, Password: srv.Password, DB: srv.DB, Prefix: srv.Prefix,
			Timeout: 10 * time.Second} // long enough for a loaded machine
		opts.SetSettings(o.Settings())
		return storagetest.Opened[cacheasync.Store](tb)(redisasync.OpenRedis(context.Background(), opts, nil))
	})
}
