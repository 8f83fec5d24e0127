package template

import (
	"context"
	"flag"
	"strings"
	"testing"

	"github.com/hishel-go/hishel/internal/testserver"
	"github.com/hishel-go/hishel/storagetest"
)

// openAt opens the store at cfg, "addr prefix" (the test server's address
// and this test's key prefix), with o's settings, in the test process and
// in the process tests' helpers.
func openAt(cfg string, o storagetest.Options) (storagetest.Store, error) {
	addr, prefix, _ := strings.Cut(cfg, " ")
	opts := &RedisOptions{Addr: addr, Prefix: prefix, Timeout: testTimeout}
	opts.SetSettings(o.Settings())
	opts.SweepInterval = -1
	return OpenRedis(context.Background(), opts)
}

var crashRuns = flag.Int("crash.runs", 8, "kill-and-check rounds of TestRedisCrash (3 with -short)")

// A client process killed at random moments (SIGKILL, mid-script or
// mid-body) leaves nothing partial visible: a pair completes in one
// script, and what the process had not completed is an incomplete pair
// no reader sees until a sweep removes it (or Redis, its TTL).
func TestRedisCrash(t *testing.T) {
	runs := *crashRuns
	if testing.Short() {
		runs = min(runs, 3)
	}
	srv := testserver.Redis(t)
	storagetest.RunCrash(t, srv.Addr+" "+srv.Prefix, runs)
}

// Two processes store and read one store at once; every pair either
// completed is served whole.
func TestRedisTwoProcesses(t *testing.T) {
	srv := testserver.Redis(t)
	storagetest.RunShared(t, srv.Addr+" "+srv.Prefix)
}

// Two processes' UpdatePairFunc calls on one pair all count: each is one
// script that compares the pair's revision and sets it.
func TestRedisUpdatesAcrossProcesses(t *testing.T) {
	srv := testserver.Redis(t)
	storagetest.RunUpdates(t, srv.Addr+" "+srv.Prefix)
}
