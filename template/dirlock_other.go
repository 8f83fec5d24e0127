//go:build !unix && !windows

package template

import (
	"context"
	"os"
	"sync"
)

// dirLock is a Dir's lock where the platform has no file locks: an
// in-process mutex only, so one process at a time may use a directory.
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
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l *dirLock) unlock() { <-l.sem }

func (l *dirLock) close() error {
	var err error
	l.closeOnce.Do(func() {
		l.sem <- struct{}{}
		err = l.f.Close()
	})
	return err
}
