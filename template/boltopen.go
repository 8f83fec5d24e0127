package template

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime/debug"
	"time"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/model"
)

// A damaged file must never crash the process. bbolt trusts the file it
// maps: a damaged page makes it panic, or fault on an address past the
// file, or (a page pointing back up its tree) loop for ever. So:
//   - before bbolt sees a file, bolt.CheckFile reads its structure with
//     plain reads: meta pages, free list, every branch page (which rules
//     out loops), the bucket headers; and every page when bbolt would walk
//     the whole tree to rebuild its free list, in a goroutine of its own
//     where a panic cannot be recovered;
//   - the free list is written to the file by Close (bbolt's
//     NoFreelistSync is off for its last commit), so that bbolt reads it at
//     the next open instead of walking the tree. While the file is open,
//     commits do not write it (a commit would write 8 bytes per free page,
//     and sort them: milliseconds in a file with many); after a crash the
//     next open checks every page before bbolt walks the tree;
//   - a write transaction that fails is rolled back only after the file
//     is checked (writer.rollbackCheck): a rollback, too, rebuilds the free
//     list by that walk. A damaged file stops the writer instead;
//   - every read and write of the file runs under guard: faults become
//     panics, and panics become errors wrapping model.ErrCorrupt;
//   - records and chunks carry checksums (package bolt), so damaged bytes
//     are an error, never data.

// guard runs fn with memory faults turned into panics (the file is
// memory-mapped: a damaged page can point past its end), and turns a panic
// into an error wrapping model.ErrCorrupt.
func guard(what string, fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("hishel: %s: %v: %w", what, r, model.ErrCorrupt)
		}
	}()
	return fn()
}

// formatError is a database of another format version.
type formatError struct {
	path       string
	have, want byte
}

func (e *formatError) Error() string {
	return fmt.Sprintf("hishel: open %s: format version %d, this build reads %d", e.path, e.have, e.want)
}

func (e *formatError) Unwrap() error { return model.ErrFormatVersion }

// rebuildable reports whether Rebuild may move aside the file whose
// opening failed with err: it is damaged, or of an older format.
func rebuildable(err error) bool {
	var fe *formatError
	if errors.As(err, &fe) {
		return fe.have < fe.want
	}
	return errors.Is(err, model.ErrCorrupt)
}

// openDB opens the database file at path: it opens and locks the file,
// checks its structure (see above), and hands it to bbolt, then checks or
// lays out hishel's buckets. It returns the highest pair nonce handed out
// so far, and the open file (bbolt's); the access log (see
// Bolt.logAccess) goes into access. On failure, release (if not nil)
// closes what is open: the file is still locked until then, so that the
// caller can move it aside first.
func openDB(path string, mode fs.FileMode, timeout time.Duration, bo *bbolt.Options, access map[model.PairID]int64) (db *bbolt.DB, f *os.File, nonce uint64, release func(), err error) {
	db, nonce, release, err = openChecked(path, mode, timeout, bo, &f, access)
	return db, f, nonce, release, err
}

func openChecked(path string, mode fs.FileMode, timeout time.Duration, bo *bbolt.Options, file **os.File, access map[model.PairID]int64) (db *bbolt.DB, nonce uint64, release func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, mode)
	if err != nil {
		return nil, 0, nil, fmt.Errorf("hishel: open database: %w", err)
	}
	*file = f
	closeFile := func() { _ = f.Close() }
	if err := lockFile(f, timeout); err != nil {
		closeFile()
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, 0, nil, fmt.Errorf("hishel: open %s: lock not acquired within %v: %w", path, timeout, model.ErrLocked)
		}
		return nil, 0, nil, fmt.Errorf("hishel: open %s: lock: %w", path, err)
	}
	if err := checkFile(f); err != nil {
		var fe *formatError
		if errors.As(err, &fe) {
			fe.path = path
			return nil, 0, closeFile, err
		}
		return nil, 0, closeFile, fmt.Errorf("hishel: open %s: %w", path, err)
	}
	// bbolt opens the file through this: it locks it again, which the lock
	// held already satisfies, and closes it with the database.
	o := *bo
	o.OpenFile = func(string, int, fs.FileMode) (*os.File, error) { return f, nil }
	opened := false
	err = guard("open "+path, func() error {
		db, err = bbolt.Open(path, mode, &o)
		opened = true
		return err
	})
	switch {
	case err == nil:
	case !opened: // bbolt panicked: it may have kept the file
		return nil, 0, closeFile, err
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrVersionMismatch), errors.Is(err, berrors.ErrChecksum):
		return nil, 0, nil, fmt.Errorf("hishel: open %s: not a bbolt database (%v): %w", path, err, model.ErrCorrupt)
	default:
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return nil, 0, nil, fmt.Errorf("hishel: open database: %w", err)
		}
		// bbolt reports other structural problems (a file too small, a bad
		// page) with unexported errors.
		return nil, 0, nil, fmt.Errorf("hishel: open %s: %v: %w", path, err, model.ErrCorrupt)
	}
	bdb := db
	release = func() { _ = bdb.Close() }
	if err := guard("open "+path, func() error { nonce, err = initDB(db, access); return err }); err != nil {
		var fe *formatError
		if errors.As(err, &fe) {
			fe.path = path
			return nil, 0, release, err
		}
		return nil, 0, release, fmt.Errorf("hishel: open %s: %w", path, err)
	}
	return db, nonce, nil, nil
}

// checkFile checks the structure of the locked database file f (see
// bolt.CheckFile): its branch pages, or all of it when bbolt would rebuild
// its free list by walking it (at open, or when a write transaction rolls
// back). A file of another format version is not walked: it is a
// formatError.
func checkFile(f *os.File) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	// The branch pages, a few thousand scattered pages in a large file,
	// are read with pread; every page, through a read-only map (a copy per
	// page instead of a system call).
	info, err := bolt.CheckFile(f, st.Size(), false)
	if err != nil {
		return err
	}
	if info.Format != 0 && info.Format != bolt.FormatVersion {
		return &formatError{have: info.Format, want: bolt.FormatVersion}
	}
	if st.Size() == 0 || info.FreelistSynced {
		return nil
	}
	r, release := fileReader(f, st.Size())
	defer release()
	// A fault reading the map (an I/O error under it) is an error too.
	return guard("check the file", func() error {
		_, err := bolt.CheckFile(r, st.Size(), true)
		return err
	})
}

// syncFreelist writes the free list to the file with one last commit, so
// that the next open reads it instead of walking the tree. The caller has
// stopped the writer. An empty commit reads no page of the tree: it cannot
// meet a damaged one.
func syncFreelist(db *bbolt.DB) error {
	db.NoFreelistSync = false
	return guard("write the free list", func() error {
		return db.Update(func(*bbolt.Tx) error { return nil })
	})
}

// initDB checks the format of an existing database or lays out a new one,
// and returns the highest pair nonce handed out so far. If access is not
// nil, it takes the access log out of the file into access (see
// Bolt.logAccess): losing it in a crash before it is written into the
// records loses only access times, as a crash does anyway.
func initDB(db *bbolt.DB, access map[model.PairID]int64) (nonce uint64, err error) {
	// A file of this format with every bucket and no access log needs no
	// write: no commit (two fdatasyncs) at open.
	ready := false
	err = db.View(func(tx *bbolt.Tx) error {
		meta := tx.Bucket(bolt.BucketMeta)
		if meta == nil {
			return nil
		}
		for _, name := range bolt.Buckets {
			if tx.Bucket(name) == nil {
				return nil
			}
		}
		if v := meta.Get(bolt.MetaFormat); len(v) != 1 || v[0] != bolt.FormatVersion {
			return nil // the update below says what is wrong
		}
		if k, _ := meta.Cursor().Seek(bolt.MetaAccessLog); access != nil && bytes.HasPrefix(k, bolt.MetaAccessLog) {
			return nil
		}
		if nonce, err = bolt.DecodeNonce(meta.Get(bolt.MetaNonce)); err != nil {
			return err
		}
		if _, err := bolt.DecodeStats(meta.Get(bolt.MetaStats)); err != nil {
			return err
		}
		ready = true
		return nil
	})
	if err != nil || ready {
		return nonce, err
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		if meta := tx.Bucket(bolt.BucketMeta); meta != nil {
			v := meta.Get(bolt.MetaFormat)
			if len(v) != 1 {
				return fmt.Errorf("meta bucket without a format version: %w", model.ErrCorrupt)
			}
			if v[0] != bolt.FormatVersion {
				return &formatError{have: v[0], want: bolt.FormatVersion}
			}
		} else {
			empty := true
			_ = tx.ForEach(func([]byte, *bbolt.Bucket) error { empty = false; return nil })
			if !empty {
				return fmt.Errorf("bbolt file without hishel's buckets: %w", model.ErrCorrupt)
			}
		}
		for _, name := range bolt.Buckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bolt.BucketMeta)
		if meta.Get(bolt.MetaFormat) == nil {
			return meta.Put(bolt.MetaFormat, []byte{bolt.FormatVersion})
		}
		nonce, err = bolt.DecodeNonce(meta.Get(bolt.MetaNonce))
		if err != nil {
			return err
		}
		// The counters are checked now, not at the first write.
		if _, err = bolt.DecodeStats(meta.Get(bolt.MetaStats)); err != nil {
			return err
		}
		if access == nil {
			return nil
		}
		var logged [][]byte
		c := meta.Cursor()
		for k, v := c.Seek(bolt.MetaAccessLog); k != nil && bytes.HasPrefix(k, bolt.MetaAccessLog); k, v = c.Next() {
			err := bolt.DecodeAccessLog(v, func(id model.PairID, at int64) { access[id] = max(access[id], at) })
			if err != nil {
				return err
			}
			logged = append(logged, bytes.Clone(k))
		}
		for _, k := range logged {
			if err := meta.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	return nonce, err
}
