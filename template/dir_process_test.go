package template_test

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/hishel-go/hishel/storagetest"
	"github.com/hishel-go/hishel/template"
)

// dirAt opens a Dir at path for the process tests, in this process and in
// their helper processes.
func dirAt(path string, o storagetest.Options) (storagetest.Store, error) {
	opts := &template.DirOptions{Path: path, NoSync: o.NoSync}
	opts.SetSettings(o.Settings())
	return template.OpenDir(context.Background(), opts)
}

// TestMain runs the child processes of the process tests: Dir's
// (storagetest.ProcessMain) and TestBoltCorruptFiles's
// (template.CorruptChild).
func TestMain(m *testing.M) {
	if code, ok := template.CorruptChild(); ok {
		os.Exit(code)
	}
	storagetest.ProcessMain(m, dirAt)
}

var dirCrashRuns = flag.Int("dircrash.runs", 20, "kill-and-check rounds of TestDirCrash")

// A process killed at random points while it writes leaves no visible
// incomplete pair, loses no completed one, and leaves a directory that
// opens.
func TestDirCrash(t *testing.T) {
	storagetest.RunCrash(t, filepath.Join(t.TempDir(), "crash"), *dirCrashRuns)
}

// Two processes store and read one directory at once: nothing lost,
// nothing partial visible.
func TestDirTwoProcesses(t *testing.T) {
	storagetest.RunShared(t, filepath.Join(t.TempDir(), "shared"))
}
