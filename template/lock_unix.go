//go:build unix

package template

import (
	"bytes"
	"errors"
	"io"
	"os"
	"syscall"
	"time"

	berrors "go.etcd.io/bbolt/errors"
)

// lockFile takes the exclusive lock bbolt takes on its file (flock), waiting
// up to timeout (then berrors.ErrTimeout), so that the file is checked
// before bbolt opens it only once no other process holds it. bbolt's own
// lock on the same open file then succeeds at once.
func lockFile(f *os.File, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		switch {
		case err == nil:
			return nil
		case !errors.Is(err, syscall.EWOULDBLOCK):
			return err
		case time.Now().After(deadline):
			return berrors.ErrTimeout
		}
		time.Sleep(min(50*time.Millisecond, time.Until(deadline)+time.Millisecond))
	}
}

// unlockFile releases the lock lockFile took. Closing the file alone does
// not while bbolt's memory map holds it open.
func unlockFile(f *os.File) error { return syscall.Flock(int(f.Fd()), syscall.LOCK_UN) }

// fileReader returns a reader of f's first size bytes for bolt.CheckFile,
// and the function that releases it: f mapped read-only, so that checking
// a page costs a copy and no system call, or f itself if it cannot be
// mapped. The caller holds f's lock: the file does not shrink meanwhile.
func fileReader(f *os.File, size int64) (io.ReaderAt, func()) {
	if size <= 0 || int64(int(size)) != size {
		return f, func() {}
	}
	data, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return f, func() {}
	}
	return bytes.NewReader(data), func() { _ = syscall.Munmap(data) }
}
