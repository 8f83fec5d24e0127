// Package sqliteasync is hishel-go's SQLite storage with futures: every
// operation returns at once with a Future, as in package cacheasync, and
// bodies stream as channels of chunks. Package sqlite is the same store
// with blocking calls; see it for the schema, sharing a file between
// processes, and the options.
//
// Importing this package registers the sqlite scheme with
// cacheasync.Open:
//
//	import _ "github.com/hishel-go/hishel/sqlite/sqliteasync"
//	s, err := cacheasync.Open(ctx, "sqlite:///var/cache/app/hishel.db", nil)
package sqliteasync
