package template

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hishel-go/hishel/model"
)

// A second OpenBolt of a file this process holds fails at once, by any
// path to it, with model.ErrLocked and a message that names this process;
// once the first store is closed the file opens again.
func TestOpenBoltHeldByThisProcess(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.db")
	first, err := OpenBolt(context.Background(), &BoltOptions{Path: path, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.db")
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(wd, path)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, link, rel, filepath.Join(dir, ".", "c.db")} {
		// An hour of lock timeout: only the check of this process's files
		// can make the open return before the watchdog.
		done := make(chan error, 1)
		go func() {
			s, err := OpenBolt(context.Background(), &BoltOptions{Path: p, OpenTimeout: time.Hour, SweepInterval: -1})
			if err == nil {
				_ = s.Close()
			}
			done <- err
		}()
		select {
		case err := <-done:
			if !errors.Is(err, model.ErrLocked) || !strings.Contains(err.Error(), "already open in this process") {
				t.Errorf("second OpenBolt(%q) = %v; want ErrLocked saying the file is open in this process", p, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("second OpenBolt(%q) waited for the process's own lock", p)
		}
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := OpenBolt(context.Background(), &BoltOptions{Path: link, SweepInterval: -1})
	if err != nil {
		t.Fatalf("OpenBolt after Close = %v; want the file free again", err)
	}
	if err := again.Close(); err != nil {
		t.Fatal(err)
	}
	// A failed open releases its claim too.
	bad := filepath.Join(dir, "not-a-db")
	if err := os.WriteFile(bad, []byte("not a bbolt file, long enough to be read as one...."), 0o600); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := OpenBolt(context.Background(), &BoltOptions{Path: bad, SweepInterval: -1}); !errors.Is(err, model.ErrCorrupt) {
			t.Errorf("OpenBolt(not a database) = %v; want ErrCorrupt both times", err)
		}
	}
}
