package redis_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/hishel-go/hishel/internal/testserver"
	"github.com/hishel-go/hishel/redis"
	"github.com/hishel-go/hishel/storagetest"
)

func TestMain(m *testing.M) { os.Exit(testserver.Main(m)) }

// options returns the options of a store on this test's share of the
// test Redis (a key prefix of its own), configured by o.
func options(tb testing.TB, o storagetest.Options) *redis.RedisOptions {
	srv := testserver.Redis(tb)
	opts := &redis.RedisOptions{Addr: srv.Addr, Username: srv.Username, Password: srv.Password, DB: srv.DB, Prefix: srv.Prefix,
		Timeout: 10 * time.Second} // long enough for a loaded machine
	opts.SetSettings(o.Settings())
	return opts
}

// TestStorage runs the behavioural suite through the blocking API, on a
// real redis-server.
func TestStorage(t *testing.T) {
	storagetest.Run(t, func(tb testing.TB, o storagetest.Options) storagetest.Store {
		return storagetest.Opened[storagetest.Store](tb)(redis.OpenRedis(context.Background(), options(tb, o)))
	})
}
