package template

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/hishel-go/hishel/model"
)

// held lists the database files this process has open through OpenBolt.
// bbolt locks a file with flock, which belongs to one open file description:
// a second OpenBolt of a file this process already holds would wait for the
// process's own lock until OpenTimeout, and then blame another process.
// OpenBolt checks this list first and fails at once instead.
var held struct {
	mu    sync.Mutex
	files []*heldFile
}

// heldFile is one entry of held: the file's absolute path, and its identity
// once it is open (another path may name the same file).
type heldFile struct {
	path string
	info os.FileInfo // nil until the file is open
}

// holdFile records that path is being opened, or fails with an error
// wrapping model.ErrLocked when this process holds it already. The caller
// must call release when the open fails or the store is closed.
func holdFile(path string) (*heldFile, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = filepath.Clean(path)
	}
	info, statErr := os.Stat(path)
	held.mu.Lock()
	defer held.mu.Unlock()
	for _, h := range held.files {
		if h.path == abs || statErr == nil && h.info != nil && os.SameFile(h.info, info) {
			return nil, fmt.Errorf("hishel: open %s: already open in this process; close the other Bolt first, "+
				"or share it (cache.WrapBolt and cacheasync.WrapBolt wrap one open store): %w", path, model.ErrLocked)
		}
	}
	h := &heldFile{path: abs}
	held.files = append(held.files, h)
	return h, nil
}

// opened records the identity of the file now open at h.path.
func (h *heldFile) opened() {
	info, err := os.Stat(h.path)
	if err != nil {
		return
	}
	held.mu.Lock()
	h.info = info
	held.mu.Unlock()
}

// release removes h from the list. It may be called more than once.
func (h *heldFile) release() {
	if h == nil {
		return
	}
	held.mu.Lock()
	defer held.mu.Unlock()
	for i, x := range held.files {
		if x == h {
			held.files = append(held.files[:i], held.files[i+1:]...)
			return
		}
	}
}
