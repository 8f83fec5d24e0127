package template

import (
	"errors"

	"modernc.org/sqlite"
)

// driverName is the database/sql name of the driver: modernc.org/sqlite,
// SQLite translated to Go (see README for the choice).
const driverName = "sqlite"

// resultCode returns the SQLite result code err carries.
func resultCode(err error) (int, bool) {
	var e *sqlite.Error
	if errors.As(err, &e) {
		return e.Code(), true
	}
	return 0, false
}
