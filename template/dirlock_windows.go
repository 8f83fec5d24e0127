//go:build windows

package template

import (
	"context"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/windows"
)

// dirLock is a Dir's lock: an in-process mutex, then LockFileEx on the
// lock file, so that goroutines and processes take turns. A wait honours
// the caller's context.
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
		ol := new(windows.Overlapped)
		err := windows.LockFileEx(windows.Handle(l.f.Fd()), windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, ol)
		if err == nil {
			return nil
		}
		if err != windows.ERROR_LOCK_VIOLATION {
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
	_ = windows.UnlockFileEx(windows.Handle(l.f.Fd()), 0, 1, 0, new(windows.Overlapped))
	<-l.sem
}

func (l *dirLock) close() error {
	var err error
	l.closeOnce.Do(func() {
		l.sem <- struct{}{}
		err = l.f.Close()
	})
	return err
}
