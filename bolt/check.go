package bolt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"slices"

	"github.com/hishel-go/hishel/model"
)

// The on-disk format of bbolt (its file format version 2), as far as
// CheckFile reads it. Integers are in the machine's byte order.
const (
	pageHeaderLen  = 16 // id u64, flags u16, count u16, overflow u32
	elemLen        = 16 // branch: pos u32, ksize u32, pgid u64; leaf: flags u32, pos u32, ksize u32, vsize u32
	metaLen        = 64 // magic, version, page size, flags u32; root, sequence, freelist, pgid, txid, checksum u64
	bucketHeadLen  = 16 // root u64, sequence u64
	boltMagic      = 0xED0CDAED
	boltVersion    = 2
	noFreelist     = ^uint64(0)
	flagBranch     = 0x01
	flagLeaf       = 0x02
	flagFreelist   = 0x10
	leafBucketFlag = 0x01
	maxDepth       = 64 // deeper than any tree a file bbolt can map holds
)

var native = binary.NativeEndian

// FileInfo is what CheckFile learned about a database file.
type FileInfo struct {
	// PageSize is the file's page size; Pages its high water mark: the
	// pages in use or free.
	PageSize int
	Pages    uint64
	// FreelistSynced reports that the meta page points to a list of free
	// pages: bbolt reads it at open, where otherwise it scans the whole
	// file to rebuild it.
	FreelistSynced bool
	// Format is the format version in the meta bucket (see FormatVersion),
	// or 0 if the file has no meta bucket or no version in it.
	Format byte
}

// CheckFile checks the structure of the bbolt database in r, a file of
// size bytes, so that bbolt can open it and read it without crashing the
// process. bbolt trusts its file: a damaged page makes it index out of its
// memory map, or follow a page pointer back up the tree for ever, and when
// it rebuilds its free list at open it walks the tree in a goroutine of
// its own, where a panic cannot be recovered.
//
// CheckFile reads the file with ReadAt, never with a memory map, and
// checks:
//   - the meta pages, chosen as bbolt chooses them, and that the file holds
//     every page they count;
//   - the free list the meta page points to: its page, its length, and
//     that every free page is a page of the file, listed once, and not a
//     page of the tree;
//   - every branch page of every bucket: its id, type and bounds, that its
//     keys are in order and within its parent's range, and that its
//     children are pages of the file, each reached once (so that no walk
//     down the tree can loop), all leaves at one depth;
//   - the leaves of the root bucket (the bucket headers), and inline
//     buckets.
//
// With deep set (a file whose free list bbolt must rebuild by walking the
// whole tree) it also checks every leaf page as bbolt's walk reads it:
// id, type, element bounds, key order, and every nested bucket. A damaged
// leaf that CheckFile does not read (deep unset) is caught as it is read,
// by the checksums of hishel's records and chunks.
//
// An empty file passes (bbolt lays it out). A damaged file gives an error
// wrapping model.ErrCorrupt; a failed read, the read's error.
func CheckFile(r io.ReaderAt, size int64, deep bool) (FileInfo, error) {
	var info FileInfo
	if size == 0 {
		return info, nil
	}
	c := &checker{r: r, size: size, deep: deep}
	m, err := c.meta()
	if err != nil {
		return info, err
	}
	info.PageSize, info.Pages = c.ps, c.hwm
	info.FreelistSynced = m.freelist != noFreelist
	c.seen = make([]uint64, (c.hwm+63)/64)
	c.mark(0)
	c.mark(1)
	var free []uint64
	if info.FreelistSynced {
		if free, err = c.freelist(m.freelist); err != nil {
			return info, err
		}
	}
	c.root = true
	if err := c.bucket(m.root, nil); err != nil {
		return info, err
	}
	for _, id := range free {
		if c.marked(id) {
			return info, c.fail(id, "listed as free and used")
		}
	}
	if c.metaBucket != nil {
		v, ok, err := c.lookup(*c.metaBucket, MetaFormat)
		if err != nil {
			return info, err
		}
		if ok && len(v) == 1 {
			info.Format = v[0]
		}
	}
	return info, nil
}

// checker is one CheckFile run.
type checker struct {
	r        io.ReaderAt
	size     int64
	deep     bool
	ps       int
	hwm      uint64
	seen     []uint64 // a bit per page: referenced once already
	root     bool     // checking the root bucket's tree
	rootLeaf bool     // ... and a leaf of it

	metaBucket *bucketRef // the meta bucket, once found
	spare      [][]byte   // page buffers to reuse (see readPage)
}

// bucketRef is a bucket header: a root page, or an inline page.
type bucketRef struct {
	root   uint64
	inline []byte
}

func (c *checker) fail(id uint64, format string, args ...any) error {
	return fmt.Errorf("bbolt page %d: %s: %w", id, fmt.Sprintf(format, args...), model.ErrCorrupt)
}

func (c *checker) mark(id uint64)        { c.seen[id/64] |= 1 << (id % 64) }
func (c *checker) marked(id uint64) bool { return c.seen[id/64]&(1<<(id%64)) != 0 }

// read reads n bytes at off.
func (c *checker) read(off int64, n int) ([]byte, error) {
	return c.readInto(nil, off, n)
}

// readInto is read into b, if it has room.
func (c *checker) readInto(b []byte, off int64, n int) ([]byte, error) {
	if off < 0 || n < 0 || off+int64(n) > c.size {
		return nil, fmt.Errorf("bbolt file: read of %d bytes at %d beyond its %d bytes: %w", n, off, c.size, model.ErrCorrupt)
	}
	if cap(b) < n {
		b = make([]byte, n)
	}
	b = b[:n]
	if _, err := c.r.ReadAt(b, off); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("bbolt file: short read at %d: %w", off, model.ErrCorrupt)
		}
		return nil, fmt.Errorf("bbolt file: %w", err)
	}
	return b, nil
}

// meta is a meta page's content.
type meta struct {
	pageSize                       uint32
	root, freelist, pgid, txid     uint64
	magic, version, checksum, fsum uint64
}

func parseMeta(b []byte) meta {
	var m meta
	m.magic = uint64(native.Uint32(b))
	m.version = uint64(native.Uint32(b[4:]))
	m.pageSize = native.Uint32(b[8:])
	m.root = native.Uint64(b[16:])
	m.freelist = native.Uint64(b[32:])
	m.pgid = native.Uint64(b[40:])
	m.txid = native.Uint64(b[48:])
	m.checksum = native.Uint64(b[56:])
	h := fnv.New64a()
	h.Write(b[:56])
	m.fsum = h.Sum64()
	return m
}

func (m meta) valid() bool {
	return m.magic == boltMagic && m.version == boltVersion && m.checksum == m.fsum
}

// meta finds the page size as bbolt does (from the first meta page, else
// from the second at each possible offset), then picks the meta page
// bbolt uses: the valid one with the highest transaction id.
func (c *checker) meta() (meta, error) {
	var none meta
	corrupt := func(what string) (meta, error) {
		return none, fmt.Errorf("bbolt file: %s: %w", what, model.ErrCorrupt)
	}
	at := func(off int64) (meta, bool) {
		if off+pageHeaderLen+metaLen > c.size {
			return none, false
		}
		b, err := c.read(off+pageHeaderLen, metaLen)
		if err != nil {
			return none, false
		}
		m := parseMeta(b)
		return m, m.valid()
	}
	m0, ok0 := at(0)
	ps := int64(m0.pageSize)
	if !ok0 {
		ps = 0
		for i := range 15 {
			off := int64(1024) << i
			if off >= c.size-1024 {
				break
			}
			if m, ok := at(off); ok {
				ps = int64(m.pageSize)
				break
			}
		}
	}
	if ps < 1024 || ps > 1<<24 || ps&(ps-1) != 0 {
		return corrupt("no valid meta page (not a bbolt database)")
	}
	c.ps = int(ps)
	if c.size < 2*ps {
		return corrupt(fmt.Sprintf("%d bytes, less than two pages", c.size))
	}
	m0, ok0 = at(0)
	m1, ok1 := at(ps)
	m := m0
	switch {
	case ok0 && ok1 && m1.txid > m0.txid, !ok0 && ok1:
		m = m1
	case !ok0 && !ok1:
		return corrupt("no valid meta page")
	}
	if int64(m.pageSize) != ps {
		return corrupt(fmt.Sprintf("meta page of page size %d in a file of page size %d", m.pageSize, ps))
	}
	if m.pgid < 4 || m.pgid > uint64(c.size/ps) {
		return corrupt(fmt.Sprintf("%d pages in use, the file holds %d", m.pgid, c.size/ps))
	}
	c.hwm = m.pgid
	if m.root < 2 || m.root >= c.hwm {
		return corrupt(fmt.Sprintf("root page %d out of range", m.root))
	}
	if m.freelist != noFreelist && (m.freelist < 2 || m.freelist >= c.hwm) {
		return corrupt(fmt.Sprintf("free list page %d out of range", m.freelist))
	}
	return m, nil
}

// page is the header of a page and the bytes of it read so far.
type page struct {
	id       uint64
	flags    uint16
	count    int
	overflow uint64
	b        []byte // the page from its start; len(b) <= its extent
	extent   int64  // bytes the page spans, overflow pages included
	off      int64  // its offset in the file (-1: an inline page, all in b)
}

// readPage reads the header of page id and the bytes holding its count
// elements of elemSize bytes, checks its id, and marks it and its overflow
// pages referenced.
func (c *checker) readPage(id uint64, elemSize int) (*page, error) {
	if id < 2 || id >= c.hwm {
		return nil, c.fail(id, "out of range (%d pages)", c.hwm)
	}
	if c.marked(id) {
		return nil, c.fail(id, "referenced twice")
	}
	off := int64(id) * int64(c.ps)
	var spare []byte
	if n := len(c.spare); n > 0 {
		spare, c.spare = c.spare[n-1], c.spare[:n-1]
	}
	b, err := c.readInto(spare, off, c.ps)
	if err != nil {
		return nil, err
	}
	p := &page{id: native.Uint64(b), flags: native.Uint16(b[8:]), count: int(native.Uint16(b[10:])),
		overflow: uint64(native.Uint32(b[12:])), b: b, off: off}
	if p.id != id {
		return nil, c.fail(id, "says it is page %d", p.id)
	}
	if id+p.overflow >= c.hwm {
		return nil, c.fail(id, "%d overflow pages run past the last page", p.overflow)
	}
	for i := uint64(0); i <= p.overflow; i++ {
		if c.marked(id + i) {
			return nil, c.fail(id+i, "referenced twice")
		}
		c.mark(id + i)
	}
	p.extent = int64(p.overflow+1) * int64(c.ps)
	if need := int64(pageHeaderLen + p.count*elemSize); need > p.extent {
		return nil, c.fail(id, "%d elements do not fit", p.count)
	} else if need > int64(len(p.b)) {
		if p.b, err = c.read(off, int(need)); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// bytesAt returns n bytes of p at offset off within it.
func (c *checker) bytesAt(p *page, off, n int64) ([]byte, error) {
	if off < 0 || n < 0 || off+n > p.extent {
		return nil, c.fail(p.id, "element of %d bytes at %d beyond the page's %d", n, off, p.extent)
	}
	if off+n <= int64(len(p.b)) {
		return p.b[off : off+n], nil
	}
	if p.off < 0 {
		return nil, c.fail(p.id, "inline element beyond its value")
	}
	return c.read(p.off+off, int(n))
}

// key returns the key of element i of branch or leaf page p, and for a
// leaf its flags and value.
func (c *checker) elem(p *page, i int) (key []byte, flags uint32, v []byte, child uint64, err error) {
	e := pageHeaderLen + i*elemLen
	h := p.b[e : e+elemLen]
	base := int64(e)
	if p.flags == flagBranch {
		pos, ksize := int64(native.Uint32(h)), int64(native.Uint32(h[4:]))
		child = native.Uint64(h[8:])
		key, err = c.bytesAt(p, base+pos, ksize)
		return key, 0, nil, child, err
	}
	flags = native.Uint32(h)
	pos, ksize, vsize := int64(native.Uint32(h[4:])), int64(native.Uint32(h[8:])), int64(native.Uint32(h[12:]))
	if key, err = c.bytesAt(p, base+pos, ksize); err != nil {
		return nil, 0, nil, 0, err
	}
	if flags&leafBucketFlag != 0 || c.deep || c.rootLeaf {
		// bbolt reads the values of bucket entries (their headers); the
		// other values only hishel reads, and checksums.
		if v, err = c.bytesAt(p, base+pos+ksize, vsize); err != nil {
			return nil, 0, nil, 0, err
		}
	} else if base+pos+ksize+vsize > p.extent {
		return nil, 0, nil, 0, c.fail(p.id, "value of %d bytes beyond the page", vsize)
	}
	return key, flags, v, 0, nil
}

// bucket checks the bucket with root page root, or inline page inline.
func (c *checker) bucket(root uint64, inline []byte) error {
	if root == 0 {
		return c.inline(inline)
	}
	// Every leaf of a tree is at one depth: find it down the first
	// children, so that leaves need not be read to be told from branches.
	depth := 0
	id := root
	for {
		if depth > maxDepth {
			return c.fail(root, "tree deeper than %d", maxDepth)
		}
		if id < 2 || id >= c.hwm {
			return c.fail(id, "out of range (%d pages)", c.hwm)
		}
		b, err := c.read(int64(id)*int64(c.ps), pageHeaderLen+elemLen)
		if err != nil {
			return err
		}
		if f := native.Uint16(b[8:]); f == flagLeaf {
			break
		} else if f != flagBranch {
			return c.fail(id, "flags %#x on the way down the tree", f)
		}
		if native.Uint16(b[10:]) == 0 {
			return c.fail(id, "branch page without elements")
		}
		id = native.Uint64(b[pageHeaderLen+8:])
		depth++
	}
	_, err := c.node(root, 0, depth, nil, nil)
	return err
}

// node checks page id at level of a tree whose leaves are at level
// leaves, with keys in [lo, hi) (nil: unbounded), and returns its last
// key. Leaves are read when deep, or in the root bucket.
func (c *checker) node(id uint64, level, leaves int, lo, hi []byte) ([]byte, error) {
	if level == leaves && !c.deep && !c.root {
		if id < 2 || id >= c.hwm {
			return nil, c.fail(id, "out of range (%d pages)", c.hwm)
		}
		if c.marked(id) {
			return nil, c.fail(id, "referenced twice")
		}
		c.mark(id)
		return nil, nil
	}
	p, err := c.readPage(id, elemLen)
	if err != nil {
		return nil, err
	}
	defer func() { c.spare = append(c.spare, p.b) }() // once done with its keys: last is a copy
	want := uint16(flagBranch)
	if level == leaves {
		want = flagLeaf
	}
	if p.flags != want {
		return nil, c.fail(id, "flags %#x at level %d of %d", p.flags, level, leaves)
	}
	if p.flags == flagBranch && p.count == 0 {
		return nil, c.fail(id, "branch page without elements")
	}
	rootLeaf := c.rootLeaf
	c.rootLeaf = c.root && p.flags == flagLeaf
	defer func() { c.rootLeaf = rootLeaf }()
	var last []byte
	min := lo
	for i := range p.count {
		key, flags, v, child, err := c.elem(p, i)
		if err != nil {
			return nil, err
		}
		if i == 0 && min != nil && bytes.Compare(min, key) > 0 || i > 0 && bytes.Compare(last, key) >= 0 {
			return nil, c.fail(id, "key %d out of order", i)
		}
		if hi != nil && bytes.Compare(key, hi) >= 0 {
			return nil, c.fail(id, "key %d beyond its parent's range", i)
		}
		if p.flags == flagBranch {
			max := hi
			if i+1 < p.count {
				next, _, _, _, err := c.elem(p, i+1)
				if err != nil {
					return nil, err
				}
				max = next
			}
			sub, err := c.node(child, level+1, leaves, key, max)
			if err != nil {
				return nil, err
			}
			if sub != nil {
				min = sub
			}
			last = key
			if sub != nil && bytes.Compare(sub, last) > 0 {
				last = sub
			}
			continue
		}
		last = key
		if err := c.leafValue(id, key, flags, v); err != nil {
			return nil, err
		}
	}
	return bytes.Clone(last), nil
}

// leafValue checks a leaf element's flags and, for a bucket, the bucket.
func (c *checker) leafValue(id uint64, key []byte, flags uint32, v []byte) error {
	switch {
	case flags == 0:
		return nil
	case flags != leafBucketFlag:
		return c.fail(id, "leaf element flags %#x", flags)
	case len(v) < bucketHeadLen:
		return c.fail(id, "bucket header of %d bytes", len(v))
	}
	ref := bucketRef{root: native.Uint64(v)}
	if ref.root == 0 {
		ref.inline = v[bucketHeadLen:]
	}
	if c.root && bytes.Equal(key, BucketMeta) {
		c.metaBucket = &ref
	}
	root := c.root
	c.root = false
	defer func() { c.root = root }()
	return c.bucket(ref.root, ref.inline)
}

// inline checks an inline bucket's page: a leaf held in its header's value.
func (c *checker) inline(b []byte) error {
	if len(b) < pageHeaderLen {
		return fmt.Errorf("bbolt inline bucket of %d bytes: %w", len(b), model.ErrCorrupt)
	}
	p := &page{flags: native.Uint16(b[8:]), count: int(native.Uint16(b[10:])), b: b, extent: int64(len(b)), off: -1}
	if p.flags != flagLeaf || pageHeaderLen+p.count*elemLen > len(b) {
		return fmt.Errorf("bbolt inline bucket: flags %#x, %d elements in %d bytes: %w", p.flags, p.count, len(b), model.ErrCorrupt)
	}
	rootLeaf := c.rootLeaf
	c.rootLeaf = true // values are in b: read them all
	defer func() { c.rootLeaf = rootLeaf }()
	var last []byte
	for i := range p.count {
		key, flags, v, _, err := c.elem(p, i)
		if err != nil {
			return err
		}
		if i > 0 && bytes.Compare(last, key) >= 0 {
			return fmt.Errorf("bbolt inline bucket: key %d out of order: %w", i, model.ErrCorrupt)
		}
		last = key
		if err := c.leafValue(0, key, flags, v); err != nil {
			return err
		}
	}
	return nil
}

// freelist checks the free list on page id and returns the free pages.
func (c *checker) freelist(id uint64) ([]uint64, error) {
	p, err := c.readPage(id, 0) // the list's length is checked below
	if err != nil {
		return nil, err
	}
	if p.flags != flagFreelist {
		return nil, c.fail(id, "free list page with flags %#x", p.flags)
	}
	idx, n := uint64(0), uint64(p.count)
	room := (uint64(p.extent) - pageHeaderLen) / 8
	if p.count == 0xFFFF {
		b, err := c.read(p.off+pageHeaderLen, 8)
		if err != nil {
			return nil, err
		}
		idx, n = 1, native.Uint64(b)
	}
	if n > room-idx || n > c.hwm {
		return nil, c.fail(id, "free list of %d pages in room for %d", n, room-idx)
	}
	b, err := c.read(p.off+pageHeaderLen+int64(idx*8), int(n*8))
	if err != nil {
		return nil, err
	}
	ids := make([]uint64, n)
	for i := range ids {
		ids[i] = native.Uint64(b[i*8:])
	}
	slices.Sort(ids)
	for i, fid := range ids {
		switch {
		case fid < 2 || fid >= c.hwm:
			return nil, c.fail(id, "free page %d out of range", fid)
		case i > 0 && ids[i-1] == fid:
			return nil, c.fail(id, "free page %d listed twice", fid)
		case c.marked(fid):
			return nil, c.fail(id, "free page %d is the free list itself", fid)
		}
	}
	return ids, nil
}

// lookup returns the value of key in bucket ref, searching down from its
// root as bbolt does. The pages were checked by the walk.
func (c *checker) lookup(ref bucketRef, key []byte) ([]byte, bool, error) {
	var p *page
	if ref.root == 0 {
		p = &page{flags: native.Uint16(ref.inline[8:]), count: int(native.Uint16(ref.inline[10:])), b: ref.inline,
			extent: int64(len(ref.inline)), off: -1}
	}
	deep := c.deep
	c.deep = true // read values
	defer func() { c.deep = deep }()
	for id, depth := ref.root, 0; ; depth++ {
		if p == nil {
			if depth > maxDepth {
				return nil, false, c.fail(id, "tree deeper than %d", maxDepth)
			}
			off := int64(id) * int64(c.ps)
			b, err := c.read(off, c.ps)
			if err != nil {
				return nil, false, err
			}
			p = &page{id: id, flags: native.Uint16(b[8:]), count: int(native.Uint16(b[10:])),
				overflow: uint64(native.Uint32(b[12:])), b: b, off: off}
			p.extent = int64(p.overflow+1) * int64(c.ps)
			if need := pageHeaderLen + p.count*elemLen; int64(need) > p.extent {
				return nil, false, c.fail(id, "%d elements do not fit", p.count)
			} else if need > len(b) {
				if p.b, err = c.read(off, need); err != nil {
					return nil, false, err
				}
			}
		}
		if p.flags == flagLeaf {
			for i := range p.count {
				k, flags, v, _, err := c.elem(p, i)
				if err != nil {
					return nil, false, err
				}
				if bytes.Equal(k, key) && flags == 0 {
					return v, true, nil
				}
			}
			return nil, false, nil
		}
		if p.flags != flagBranch || p.count == 0 {
			return nil, false, c.fail(id, "flags %#x with %d elements on the way down", p.flags, p.count)
		}
		next := uint64(0)
		for i := range p.count {
			k, _, _, child, err := c.elem(p, i)
			if err != nil {
				return nil, false, err
			}
			if i > 0 && bytes.Compare(k, key) > 0 {
				break
			}
			next = child
		}
		id, p = next, nil
	}
}
