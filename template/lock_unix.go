//go:build unix

package template

import (
	"errors"
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
