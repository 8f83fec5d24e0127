package bolt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/hishel-go/hishel/model"
)

// buildDB writes a bbolt file with buckets of every shape CheckFile meets:
// hishel's meta bucket with a format version, trees of several levels,
// values spanning overflow pages, an inline bucket, a nested bucket, and
// deletions that leave free pages.
func buildDB(tb testing.TB, path string, noFreelistSync bool, pairs int) {
	tb.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{NoFreelistSync: noFreelistSync, NoSync: true, FreelistType: bbolt.FreelistMapType})
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	r := rand.New(rand.NewPCG(1, 2))
	err = db.Update(func(tx *bbolt.Tx) error {
		meta, err := tx.CreateBucket(BucketMeta)
		if err != nil {
			return err
		}
		if err := meta.Put(MetaFormat, []byte{FormatVersion}); err != nil {
			return err
		}
		if _, err := tx.CreateBucket([]byte("empty")); err != nil { // stays inline
			return err
		}
		pb, err := tx.CreateBucket(BucketPairs)
		if err != nil {
			return err
		}
		for i := range pairs {
			if err := pb.Put(binary.BigEndian.AppendUint64(nil, r.Uint64()), bytes.Repeat([]byte{byte(i)}, 50+r.IntN(400))); err != nil {
				return err
			}
		}
		cb, err := tx.CreateBucket(BucketChunks)
		if err != nil {
			return err
		}
		for i := range pairs / 20 {
			if err := cb.Put(binary.BigEndian.AppendUint64(nil, uint64(i)), bytes.Repeat([]byte{byte(i)}, 10000+r.IntN(20000))); err != nil {
				return err
			}
		}
		outer, err := tx.CreateBucket([]byte("outer"))
		if err != nil {
			return err
		}
		inner, err := outer.CreateBucket([]byte("inner"))
		if err != nil {
			return err
		}
		for i := range pairs / 4 {
			if err := inner.Put(fmt.Appendf(nil, "k%06d", i), []byte("v")); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error { // free some pages
		c := tx.Bucket(BucketPairs).Cursor()
		i := 0
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if i++; i%3 == 0 {
				if err := c.Delete(); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
}

func checkPath(tb testing.TB, path string, deep bool) (FileInfo, error) {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		tb.Fatal(err)
	}
	return CheckFile(f, st.Size(), deep)
}

func TestCheckFileValid(t *testing.T) {
	for _, pairs := range []int{0, 10, 3000} {
		for _, noSync := range []bool{false, true} {
			t.Run(fmt.Sprintf("pairs=%d/NoFreelistSync=%v", pairs, noSync), func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "db")
				buildDB(t, path, noSync, pairs)
				for _, deep := range []bool{false, true} {
					info, err := checkPath(t, path, deep)
					if err != nil {
						t.Fatalf("CheckFile(deep=%v) of a sound file = %v", deep, err)
					}
					if info.FreelistSynced == noSync || info.Format != FormatVersion || info.PageSize != os.Getpagesize() {
						t.Errorf("CheckFile(deep=%v) = %+v; want the free list synced %v, format %d", deep, info, !noSync, FormatVersion)
					}
				}
			})
		}
	}
	if info, err := CheckFile(bytes.NewReader(nil), 0, true); err != nil || info != (FileInfo{}) {
		t.Errorf("CheckFile(empty file) = %+v, %v; want nothing to check", info, err)
	}
}

// pageOf reads the header of page id of file b.
func pageOf(b []byte, ps int, id uint64) (flags uint16, count uint16) {
	off := int(id) * ps
	return native.Uint16(b[off+8:]), native.Uint16(b[off+10:])
}

// bucketRoot returns the root page of the top-level bucket name of file b,
// of meta m, whose root is a leaf of bucket headers: a page CheckFile
// reads with deep unset. (Picking the first branch page of the file
// instead picked, as bbolt's page allocation varied, one of the nested
// bucket's, which only the deep check reads.)
func bucketRoot(tb testing.TB, b []byte, ps int, m meta, name []byte) uint64 {
	tb.Helper()
	root := int(m.root) * ps
	flags, count := pageOf(b, ps, m.root)
	if flags != flagLeaf {
		tb.Fatalf("root page %d: flags %#x; want a leaf", m.root, flags)
	}
	for i := range int(count) {
		e := root + pageHeaderLen + i*elemLen
		pos, ksize := int(native.Uint32(b[e+4:])), int(native.Uint32(b[e+8:]))
		if k := b[e+pos : e+pos+ksize]; bytes.Equal(k, name) {
			return native.Uint64(b[e+pos+ksize:])
		}
	}
	tb.Fatalf("no bucket %q in the root page", name)
	return 0
}

func TestCheckFileDamage(t *testing.T) {
	dir := t.TempDir()
	synced := filepath.Join(dir, "synced")
	buildDB(t, synced, false, 3000)
	good, err := os.ReadFile(synced)
	if err != nil {
		t.Fatal(err)
	}
	ps := os.Getpagesize()
	m := parseMeta(good[pageHeaderLen:])
	if m1 := parseMeta(good[ps+pageHeaderLen:]); m1.txid > m.txid {
		m = m1
	}
	setMeta := func(b []byte, fn func(meta []byte)) {
		for _, off := range []int{0, ps} {
			mb := b[off+pageHeaderLen : off+pageHeaderLen+metaLen]
			fn(mb)
			h := fnvSum(mb[:56])
			native.PutUint64(mb[56:], h)
		}
	}
	branch := bucketRoot(t, good, ps, m, BucketPairs)
	if flags, count := pageOf(good, ps, branch); flags != flagBranch || count < 2 {
		t.Fatalf("the pairs bucket's root %d: flags %#x, %d elements; want a branch of 2 or more", branch, flags, count)
	}
	tests := []struct {
		name   string
		damage func(b []byte) []byte
	}{
		{"both meta pages", func(b []byte) []byte {
			b[pageHeaderLen] ^= 1
			b[ps+pageHeaderLen] ^= 1
			return b
		}},
		{"truncated", func(b []byte) []byte { return b[:int(m.pgid-3)*ps] }},
		{"root out of range", func(b []byte) []byte {
			setMeta(b, func(mb []byte) { native.PutUint64(mb[16:], m.pgid+5) })
			return b
		}},
		{"more pages than the file", func(b []byte) []byte {
			setMeta(b, func(mb []byte) { native.PutUint64(mb[40:], uint64(len(b)/ps)+1) })
			return b
		}},
		{"free list page type", func(b []byte) []byte {
			native.PutUint16(b[int(m.freelist)*ps+8:], flagLeaf)
			return b
		}},
		{"free list length", func(b []byte) []byte {
			native.PutUint16(b[int(m.freelist)*ps+10:], 0xFFFF)
			native.PutUint64(b[int(m.freelist)*ps+pageHeaderLen:], 1<<40)
			return b
		}},
		{"free page in use", func(b []byte) []byte {
			fl := int(m.freelist) * ps
			if native.Uint16(b[fl+10:]) == 0 {
				native.PutUint16(b[fl+10:], 1)
			}
			native.PutUint64(b[fl+pageHeaderLen:], m.root)
			return b
		}},
		{"branch child points to itself", func(b []byte) []byte {
			native.PutUint64(b[int(branch)*ps+pageHeaderLen+8:], branch)
			return b
		}},
		{"branch child points to the root page", func(b []byte) []byte {
			native.PutUint64(b[int(branch)*ps+pageHeaderLen+8:], m.root)
			return b
		}},
		{"branch child out of range", func(b []byte) []byte {
			native.PutUint64(b[int(branch)*ps+pageHeaderLen+8:], 1<<50)
			return b
		}},
		{"branch key past the page", func(b []byte) []byte {
			native.PutUint32(b[int(branch)*ps+pageHeaderLen:], uint32(2*ps))
			return b
		}},
		{"branch page id", func(b []byte) []byte {
			native.PutUint64(b[int(branch)*ps:], branch+1)
			return b
		}},
		{"branch keys out of order", func(b []byte) []byte {
			p := int(branch) * ps
			e0, e1 := p+pageHeaderLen, p+pageHeaderLen+elemLen
			k0 := e0 + int(native.Uint32(b[e0:]))
			k1 := e1 + int(native.Uint32(b[e1:]))
			n := int(native.Uint32(b[e0+4:]))
			tmp := bytes.Clone(b[k0 : k0+n])
			copy(b[k0:], b[k1:k1+n])
			copy(b[k1:], tmp)
			return b
		}},
		{"branch page type", func(b []byte) []byte {
			native.PutUint16(b[int(branch)*ps+8:], 0x20)
			return b
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.damage(bytes.Clone(good))
			for _, deep := range []bool{false, true} {
				if _, err := CheckFile(bytes.NewReader(b), int64(len(b)), deep); !errors.Is(err, model.ErrCorrupt) {
					t.Errorf("CheckFile(deep=%v) = %v; want ErrCorrupt", deep, err)
				}
			}
		})
	}
}

func fnvSum(b []byte) uint64 {
	m := parseMeta(append(append([]byte(nil), b...), make([]byte, metaLen-len(b))...))
	return m.fsum
}

// TestCheckFileThenBolt flips bytes in copies of a file whose free list
// bbolt must rebuild by walking the whole tree in a goroutine of its own:
// whenever CheckFile(deep) accepts a copy, bbolt opens it (that walk must
// not panic: a panic there would end this test binary) and every key and
// value reads back; reads run with faults turned into panics, recovered.
func TestCheckFileThenBolt(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	buildDB(t, src, true, 600)
	good, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	trials := 400
	if testing.Short() {
		trials = 100
	}
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3))
	accepted := 0
	for trial := range trials {
		b := bytes.Clone(good)
		for range 1 + r.IntN(8) {
			b[r.IntN(len(b))] ^= byte(1 + r.IntN(255))
		}
		if _, err := CheckFile(bytes.NewReader(b), int64(len(b)), true); err != nil {
			if !errors.Is(err, model.ErrCorrupt) {
				t.Fatalf("trial %d: CheckFile = %v; want nil or ErrCorrupt", trial, err)
			}
			continue
		}
		accepted++
		path := filepath.Join(dir, fmt.Sprint("trial", trial))
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		readBolt(t, path)
		os.Remove(path)
	}
	t.Logf("%d of %d damaged copies passed the deep check and opened", accepted, trials)
}

// readBolt opens path with bbolt (which walks the tree to rebuild its free
// list) and reads every bucket, turning faults and panics of the reads
// into a log line.
func readBolt(t *testing.T, path string) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{NoFreelistSync: true, FreelistType: bbolt.FreelistMapType})
	if err != nil {
		return // an error is fine; a crash is not
	}
	defer db.Close()
	func() {
		defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
		defer func() { _ = recover() }()
		_ = db.View(func(tx *bbolt.Tx) error {
			return tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
				return b.ForEach(func(k, v []byte) error { _ = bytes.Clone(v); return nil })
			})
		})
	}()
}

// FuzzCheckFile checks that CheckFile never panics and fails only with
// ErrCorrupt, whatever the file.
func FuzzCheckFile(f *testing.F) {
	path := filepath.Join(f.TempDir(), "seed")
	buildDB(f, path, false, 10)
	seed, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed, true)
	f.Add(seed[:len(seed)/2], false)
	f.Add([]byte("not a database"), true)
	f.Fuzz(func(t *testing.T, b []byte, deep bool) {
		if _, err := CheckFile(bytes.NewReader(b), int64(len(b)), deep); err != nil && !errors.Is(err, model.ErrCorrupt) {
			t.Fatalf("CheckFile = %v; want nil or ErrCorrupt", err)
		}
	})
}
