//go:build unix

package template

import (
	"context"
	"flag"
	"testing"
	"time"

	"github.com/hishel-go/hishel/internal/proctest"
	"github.com/hishel-go/hishel/internal/testserver"
)

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
	proctest.Crash(t, runs, srv.Addr+" "+srv.Prefix, func(now func() time.Time) (proctest.Store, error) {
		return OpenRedis(context.Background(), &RedisOptions{Addr: srv.Addr, Prefix: srv.Prefix, SweepInterval: -1,
			MaxVariants: -1, Timeout: testTimeout, Now: now})
	})
}

// Two processes store and read one store at once; every pair either
// completed is served whole.
func TestRedisTwoProcesses(t *testing.T) {
	srv := testserver.Redis(t)
	proctest.Share(t, srv.Addr+" "+srv.Prefix, func() (proctest.Store, error) {
		return OpenRedis(context.Background(), &RedisOptions{Addr: srv.Addr, Prefix: srv.Prefix, SweepInterval: -1,
			MaxVariants: -1, Timeout: testTimeout})
	})
}
