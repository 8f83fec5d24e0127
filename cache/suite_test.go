package cache_test

import (
	"context"
	"testing"

	"github.com/hishel-go/hishel/cache"
	"github.com/hishel-go/hishel/storagetest"
)

// backends are the stores of package cache that the behavioural suite runs
// against. Testing a new backend is adding its line here.
var backends = []struct {
	name string
	open storagetest.Opener
}{
	{"Bolt", func(tb testing.TB, o storagetest.Options) storagetest.Store {
		return storagetest.Opened[storagetest.Store](tb)(cache.OpenBolt(context.Background(), o.BoltOptions(tb)))
	}},
	{"BoltNoSync", func(tb testing.TB, o storagetest.Options) storagetest.Store {
		o.NoSync = true
		return storagetest.Opened[storagetest.Store](tb)(cache.OpenBolt(context.Background(), o.BoltOptions(tb)))
	}},
	{"Memory", func(tb testing.TB, o storagetest.Options) storagetest.Store {
		return storagetest.Opened[storagetest.Store](tb)(cache.OpenMemory(context.Background(), o.MemoryOptions()))
	}},
	{"Dir", func(tb testing.TB, o storagetest.Options) storagetest.Store {
		return storagetest.Opened[storagetest.Store](tb)(cache.OpenDir(context.Background(), o.DirOptions(tb)))
	}},
}

func TestStorage(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { storagetest.Run(t, b.open) })
	}
}
