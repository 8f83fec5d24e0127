package template

import (
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/hishel-go/hishel/bolt"
)

// verifiedChunks remembers the chunks a Bolt has checked against their
// checksums, by the chunk's key (which holds its checksum), length and the
// address of its bytes in the mapped file, so that reading a chunk again
// does not check it again (see BoltOptions.VerifyEveryRead).
//
// Why that is safe: the file is held by this process alone (bbolt's lock),
// and bbolt never changes a value where it lies: a write through bbolt goes
// to a page no transaction can see (copy on write), so changed bytes lie at
// another address and are checked when read. What
// the set cannot see is the file changed behind bbolt's back while this
// process has it open (a write to the file ignoring its lock, or damage on
// the disk surfacing after the kernel dropped a page from its cache): those
// bytes are checked the next time the file is opened, or on every read with
// VerifyEveryRead.
//
// The set is bounded: when it holds maxVerified chunks it starts again
// empty. Chunks under minVerifyOnce bytes are checked on every read, which
// costs about what a lookup does.
type verifiedChunks struct {
	seen   sync.Map // verifiedChunk -> struct{}
	n      atomic.Int64
	checks atomic.Int64 // chunks checked by check, for tests and benchmarks
	bytes  atomic.Int64 // and their bytes
	sent   atomic.Int64 // bytes of checked chunks storedBody.WriteTo sent from their files
}

// verifiedChunk identifies a chunk's bytes at one place in the mapping
// (addr), or in its body file (addr 0).
type verifiedChunk struct {
	addr uintptr
	n    int
	key  [bolt.ChunkKeyLen]byte
}

const (
	// maxVerified bounds verifiedChunks: about 3 MiB of entries, which
	// cover 2 GiB of bodies read more than once in 64 KiB chunks.
	maxVerified = 1 << 15
	// minVerifyOnce is the smallest chunk that verifiedChunks remembers.
	minVerifyOnce = 4 << 10
)

// check returns bolt.CheckChunk(k, v), unless every is false and the same
// bytes were checked at the same place before. v must lie in the mapped
// file (a read transaction's value).
func (c *verifiedChunks) check(k, v []byte, every bool) error {
	return c.checkAt(uintptr(unsafe.Pointer(unsafe.SliceData(v))), k, v, every)
}

// checkFile is check for a chunk read from a body file (see
// BoltOptions.FileBodyMin), remembered by its key alone: a body file is
// written once, by this process, under a nonce no other body of this
// process is given, so the chunk a key names (its nonce, kind, place and
// checksum) has the same bytes for as long as this Bolt is open, unless
// the file is changed behind its back.
func (c *verifiedChunks) checkFile(k, v []byte, every bool) error {
	return c.checkAt(0, k, v, every)
}

func (c *verifiedChunks) checkAt(addr uintptr, k, v []byte, every bool) error {
	if every || len(v) < minVerifyOnce || len(k) != bolt.ChunkKeyLen {
		c.checks.Add(1)
		c.bytes.Add(int64(len(v)))
		return bolt.CheckChunk(k, v)
	}
	id := verifiedChunk{addr: addr, n: len(v), key: [bolt.ChunkKeyLen]byte(k)}
	if _, ok := c.seen.Load(id); ok {
		return nil
	}
	c.checks.Add(1)
	c.bytes.Add(int64(len(v)))
	if err := bolt.CheckChunk(k, v); err != nil {
		return err
	}
	if c.n.Add(1) > maxVerified {
		c.seen.Clear()
		c.n.Store(1)
	}
	c.seen.Store(id, struct{}{})
	return nil
}

// sawFile reports whether checkFile checked the body file chunk with key k
// and n bytes before, so that its bytes may go to a reader without being
// read again (storedBody.WriteTo sends them from the file): never when
// every (VerifyEveryRead), nor for a chunk under minVerifyOnce bytes, which
// checkFile checks on every read.
func (c *verifiedChunks) sawFile(k []byte, n int, every bool) bool {
	if every || n < minVerifyOnce || len(k) != bolt.ChunkKeyLen {
		return false
	}
	_, ok := c.seen.Load(verifiedChunk{n: n, key: [bolt.ChunkKeyLen]byte(k)})
	return ok
}
