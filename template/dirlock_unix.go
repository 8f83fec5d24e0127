//go:build unix

package template

import (
	"context"
	"errors"
	"os"
	"sync"
	"syscall"
	"time"
)

// dirLock is a Dir's lock: an in-process mutex, then flock on the lock
// file, so that goroutines and processes take turns. A wait honours the
// caller's context.
type dirLock struct {
	sem chan struct{}
	f   *os.File

	closeOnce sync.Once
}

func openDirLock(path string) (*dirLock, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	return &dirLock{sem: make(chan struct{}, 1), f: f}, nil
}

func (l *dirLock) lock(ctx context.Context) error {
	select {
	case l.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	for wait := 100 * time.Microsecond; ; wait = min(2*wait, 10*time.Millisecond) {
		err := syscall.Flock(int(l.f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			<-l.sem
			return err
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			<-l.sem
			return ctx.Err()
		}
	}
}

func (l *dirLock) unlock() {
	_ = syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	<-l.sem
}

// close waits for the holder, if any, and closes the lock file.
func (l *dirLock) close() error {
	var err error
	l.closeOnce.Do(func() {
		l.sem <- struct{}{}
		err = l.f.Close()
	})
	return err
}
