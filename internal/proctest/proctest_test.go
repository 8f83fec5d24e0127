//go:build unix

package proctest

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hishel-go/hishel/cache"
	"github.com/hishel-go/hishel/model"
)

// The harness's own tests run its helpers on a Dir store, which
// processes share.
func TestMain(m *testing.M) {
	if IsHelper() {
		Helper(func(ctx context.Context, path string) (Store, error) {
			s, err := openDir(path, nil)
			if err != nil {
				return nil, err
			}
			return hangAfterRemove{s}, nil
		})
	}
	os.Exit(m.Run())
}

func openDir(path string, now func() time.Time) (Store, error) {
	return cache.OpenDir(context.Background(), &cache.DirOptions{Path: path, NoSync: true, MaxVariants: -1, ChunkSize: 16 << 10, Now: now})
}

// hangAfterRemove is a store whose Remove takes effect and then does not
// return: the kill always lands after the removal and before the helper
// reports it, as it may with any store (with Redis, a Remove the helper
// sent just before the kill may even be applied after it).
type hangAfterRemove struct{ Store }

func (h hangAfterRemove) Remove(ctx context.Context, id model.PairID) error {
	if err := h.Store.Remove(ctx, id); err != nil {
		return err
	}
	time.Sleep(time.Hour) // the kill comes first
	return nil
}

// A pair the helper completed and then removed, killed before it could
// say REMOVED, is not served, and Crash takes that as right: it owes no
// pair whose Remove was under way. (Crash once failed TestRedisCrash under
// load so: "completed before the kill: GetPair error = pair not found".)
func TestCrashRemoveCutByKill(t *testing.T) {
	path := filepath.Join(t.TempDir(), "crash")
	open := func(now func() time.Time) (Store, error) { return openDir(path, now) }
	// A run's kill may come before any writer reaches a Remove: run until
	// one did (most runs do), at most maxRuns times.
	const maxRuns = 10
	for range maxRuns {
		if cut := crash(t, 1, path, open); cut > 0 || t.Failed() {
			return
		}
	}
	t.Errorf("no kill caught a Remove in %d runs: the test checked nothing", maxRuns)
}
