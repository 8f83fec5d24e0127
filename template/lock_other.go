//go:build !unix

package template

import (
	"io"
	"os"
	"time"
)

// lockFile does nothing here: bbolt's own lock, taken when it opens the
// file, keeps a second process out, but only after the file's structure
// has been checked.
func lockFile(*os.File, time.Duration) error { return nil }

// unlockFile does nothing here, as lockFile.
func unlockFile(*os.File) error { return nil }

// fileReader returns f itself for bolt.CheckFile.
func fileReader(f *os.File, _ int64) (io.ReaderAt, func()) { return f, func() {} }
