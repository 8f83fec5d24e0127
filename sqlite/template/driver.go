package template

import (
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/hishel-go/hishel/model"
)

// Primary SQLite result codes that mapErr translates.
const (
	sqliteBusy    = 5
	sqliteLocked  = 6
	sqliteCorrupt = 11
	sqliteNotADB  = 26
)

// dsn returns the data source name of the database at path: WAL mode,
// the busy timeout, synchronous FULL (NORMAL with noSync), and for the
// write connection (write) transactions that take the write lock when they
// begin (BEGIN IMMEDIATE), so that a transaction never has to upgrade a
// read lock, which a busy timeout cannot wait for.
func dsn(path string, busy time.Duration, noSync, write bool) string {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout("+strconv.FormatInt(busy.Milliseconds(), 10)+")")
	q.Add("_pragma", "journal_mode(wal)")
	if noSync {
		q.Add("_pragma", "synchronous(normal)")
	} else {
		q.Add("_pragma", "synchronous(full)")
	}
	if write {
		q.Set("_txlock", "immediate")
	}
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
}

// mapErr maps the driver's errors to the sentinels of package model: a
// database still locked after the busy timeout is model.ErrLocked; a file
// that is not a database, or a damaged one, model.ErrCorrupt.
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	code, ok := resultCode(err)
	if !ok {
		return err
	}
	switch code & 0xff {
	case sqliteBusy, sqliteLocked:
		return fmt.Errorf("%w (%w)", model.ErrLocked, err)
	case sqliteCorrupt, sqliteNotADB:
		return fmt.Errorf("%w (%w)", model.ErrCorrupt, err)
	}
	return err
}
