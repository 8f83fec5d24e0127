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
	// A memory tier in front of Bolt: the Tiered takes the Bolt over and
	// closes it.
	{"TieredBoltNoSync", func(tb testing.TB, o storagetest.Options) storagetest.Store {
		o.NoSync = true // durability is BoltOptions's, tested above
		lower, err := cache.OpenBolt(context.Background(), o.BoltOptions(tb))
		if err != nil {
			tb.Fatalf("open the lower tier: %v", err)
		}
		return storagetest.Opened[storagetest.Store](tb)(cache.OpenTiered(context.Background(), lower, &cache.TieredOptions{Now: o.Now}))
	}},
}

func TestStorage(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { storagetest.Run(t, b.open) })
	}
}
