package template

import (
	"bytes"
	"sync"

	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/model"
)

// headCache keeps the decoded records of pairs GetPairs read recently, so
// that a hit on a pair it read before does not decode (and checksum) the
// pair's record again: about a quarter of a 1 KiB hit's CPU through the
// proxy.
//
// An entry holds a copy of the record's stored bytes, and is used only
// while the bytes stored now are the same: a record rewritten (updated,
// completed, deleted, its access time written, another incarnation of the
// ID) or damaged since is decoded again, and its entry replaced. So the
// cache needs no invalidation from the writer, cannot
// serve what the file no longer holds, and a damaged record still fails
// its checksum. Comparing the bytes costs a fraction of decoding them.
//
// Records in the cache are shared and never changed: a pair made from one
// gets header maps of its own (pairFromRecord).
//
// A record is kept the second time it is decoded, not the first (but at
// once when it replaces an entry of the same pair): a pair
// read once (a scan of a large file's pairs, hits spread over more pairs
// than the cache holds) costs no copy of its bytes and no copy of its heads
// for the caller; the IDs of pairs decoded once are remembered (seen) until
// they are twice as many as the entries the cache holds at most.
//
// The cache holds at most max bytes, as counted by entryCost; beyond it,
// entries are dropped in the map's (random) order. A nil *headCache, or one
// with max <= 0, keeps nothing. Safe for concurrent use.
type headCache struct {
	max int

	mu      sync.RWMutex
	entries map[model.PairID]headEntry
	size    int
	seen    map[model.PairID]struct{}
}

type headEntry struct {
	raw []byte       // the record as stored when it was decoded
	rec *bolt.Record // raw, decoded; shared, never changed
}

func newHeadCache(max int) *headCache {
	if max <= 0 {
		return nil
	}
	return &headCache{max: max, entries: make(map[model.PairID]headEntry), seen: make(map[model.PairID]struct{})}
}

// entryCost is what an entry of a record of n bytes is counted as: the
// copy of its bytes, the decoded strings (one string of the record's
// bytes), and the record and its two header maps.
func entryCost(n int) int { return 2*n + 1024 }

// get returns the decoded record of pair id if its stored bytes are still
// raw, or nil.
func (c *headCache) get(id model.PairID, raw []byte) *bolt.Record {
	if c == nil {
		return nil
	}
	c.mu.RLock()
	e, ok := c.entries[id]
	c.mu.RUnlock()
	if !ok || !bytes.Equal(e.raw, raw) {
		return nil
	}
	return e.rec
}

// put keeps rec, decoded from raw (which put copies), as pair id's record
// if it was decoded before, and reports whether it did: the caller must
// not change rec from then on.
func (c *headCache) put(id model.PairID, raw []byte, rec *bolt.Record) bool {
	if c == nil {
		return false
	}
	cost := entryCost(len(raw))
	if cost > c.max/8 {
		return false // an unusual record: not worth crowding out others
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	_, replaces := c.entries[id]
	if _, ok := c.seen[id]; !ok && !replaces {
		if len(c.seen) >= 2*c.max/entryCost(0) {
			clear(c.seen)
		}
		c.seen[id] = struct{}{}
		return false
	}
	delete(c.seen, id)
	e := headEntry{raw: bytes.Clone(raw), rec: rec}
	if old, ok := c.entries[id]; ok {
		c.size -= entryCost(len(old.raw))
	}
	for k, old := range c.entries {
		if c.size+cost <= c.max {
			break
		}
		if k != id {
			delete(c.entries, k)
			c.size -= entryCost(len(old.raw))
		}
	}
	c.entries[id] = e
	c.size += cost
	return true
}

// clear drops every entry.
func (c *headCache) clear() {
	if c == nil {
		return
	}
	c.mu.Lock()
	clear(c.entries)
	clear(c.seen)
	c.size = 0
	c.mu.Unlock()
}
