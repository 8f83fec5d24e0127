// Package template holds hishel-go's SQLite backend, written once as
// ordinary, tested Go (on the kit of package backend): gen renders it into
// package sqlite (blocking calls) and package sqliteasync (futures). Most
// programs use those packages; this one is where the storage logic and its
// process-level tests (crash, two processes sharing a file, benchmarks
// against Bolt) live.
package template
