package storagetest

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/hishel-go/hishel/cache"
	"github.com/hishel-go/hishel/model"
)

// The harness's own tests run its helpers on a Dir store, which processes
// share, whose Remove never returns (hangAfterRemove).
func TestMain(m *testing.M) {
	ProcessMain(m, func(path string, o Options) (Store, error) {
		opts := &cache.DirOptions{Path: path, NoSync: true}
		opts.SetSettings(o.Settings())
		s, err := cache.OpenDir(context.Background(), opts)
		if err != nil {
			return nil, err
		}
		return hangAfterRemove{s}, nil
	})
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
// say REMOVED, is not served, and RunCrash takes that as right: it owes no
// pair whose Remove was under way. (The crash test once failed on Redis
// under load so: "completed before the kill: GetPair error = pair not
// found".)
func TestCrashRemoveCutByKill(t *testing.T) {
	path := filepath.Join(t.TempDir(), "crash")
	// Late kills, so that most runs' writers reach a Remove; run until one
	// did, at most maxRuns times.
	defer func(d func(*rand.Rand) time.Duration) { killDelay = d }(killDelay)
	killDelay = func(r *rand.Rand) time.Duration { return time.Duration(1000+r.IntN(500)) * time.Millisecond }
	const maxRuns = 10
	for range maxRuns {
		if cut := runCrash(t, path, 1); cut > 0 || t.Failed() {
			return
		}
	}
	t.Errorf("no kill caught a Remove in %d runs: the test checked nothing", maxRuns)
}

// The harness's other tests, on the same store: two processes sharing it,
// and their UpdatePairFunc calls on one pair.
func TestRunSharedDir(t *testing.T) {
	RunShared(t, filepath.Join(t.TempDir(), "shared"))
}

func TestRunUpdatesDir(t *testing.T) {
	RunUpdates(t, filepath.Join(t.TempDir(), "updates"))
}
