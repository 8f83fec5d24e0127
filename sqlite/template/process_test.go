package template

import (
	"context"
	"flag"
	"path/filepath"
	"testing"

	"github.com/hishel-go/hishel/storagetest"
)

// openAt opens a SQLite at path for the process tests, in this process
// and in their helper processes.
func openAt(path string, o storagetest.Options) (storagetest.Store, error) {
	opts := &SQLiteOptions{Path: path, NoSync: o.NoSync}
	opts.SetSettings(o.Settings())
	return OpenSQLite(context.Background(), opts)
}

func TestMain(m *testing.M) { storagetest.ProcessMain(m, openAt) }

var crashRuns = flag.Int("crash.runs", 20, "kill-and-check rounds of TestSQLiteCrash")

// A process killed at random points while it writes leaves no visible
// incomplete pair, loses no completed one, and leaves a file that opens.
func TestSQLiteCrash(t *testing.T) {
	storagetest.RunCrash(t, filepath.Join(t.TempDir(), "crash.db"), *crashRuns)
}

// Two processes store and read one file at once: nothing lost, nothing
// partial visible.
func TestSQLiteTwoProcesses(t *testing.T) {
	storagetest.RunShared(t, filepath.Join(t.TempDir(), "shared.db"))
}

// Two processes' UpdatePairFunc calls on one pair all count: each runs in
// one write transaction.
func TestSQLiteUpdatesAcrossProcesses(t *testing.T) {
	storagetest.RunUpdates(t, filepath.Join(t.TempDir(), "updates.db"))
}
