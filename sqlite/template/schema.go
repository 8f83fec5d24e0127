package template

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/hishel-go/hishel/backend"
	"github.com/hishel-go/hishel/model"
)

// formatVersion is the version of the schema below, kept in hishel_meta.
const formatVersion = 1

// schema is Hishel's SQLite schema (entries and streams, with its two
// indexes and chunk number -1 as the completion marker), and what
// hishel-go needs beyond it:
//
//   - entries.data is a pair record (package bolt's encoding, decoded
//     defensively), with its CRC-32C in data_crc;
//   - entries.state (1 incomplete, 2 complete, 3 deleted), nonce (the
//     pair's incarnation: a reader notices a pair replaced under the same
//     ID), size (the bytes the pair counts against MaxBytes), and the
//     times that the sweep and the eviction order read, in Unix
//     nanoseconds: completed_at, expires_at, accessed_at;
//   - partial indexes by expiry, last access and creation of incomplete
//     pairs, so that a sweep costs what it removes;
//   - streams.crc, the CRC-32C of every chunk (and of the marker, whose
//     data is the body's size and chunk count);
//   - hishel_meta (the format version) and hishel_stats (the counters,
//     kept in the same transactions as the changes they count).
//
// created_at and deleted_at are REAL seconds, as in Hishel.
var schema = []string{
	`CREATE TABLE IF NOT EXISTS hishel_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)`,
	`CREATE TABLE IF NOT EXISTS hishel_stats (
		id INTEGER PRIMARY KEY CHECK (id = 0),
		pairs INTEGER NOT NULL, incomplete INTEGER NOT NULL, deleted INTEGER NOT NULL, bytes INTEGER NOT NULL)`,
	`INSERT OR IGNORE INTO hishel_stats (id, pairs, incomplete, deleted, bytes) VALUES (0, 0, 0, 0, 0)`,
	`CREATE TABLE IF NOT EXISTS entries (
		id BLOB PRIMARY KEY,
		cache_key BLOB,
		data BLOB NOT NULL,
		created_at REAL NOT NULL,
		deleted_at REAL,
		data_crc INTEGER NOT NULL,
		state INTEGER NOT NULL,
		nonce INTEGER NOT NULL,
		size INTEGER NOT NULL DEFAULT 0,
		completed_at INTEGER,
		expires_at INTEGER,
		accessed_at INTEGER)`,
	`CREATE INDEX IF NOT EXISTS idx_entries_cache_key ON entries (cache_key)`,
	`CREATE INDEX IF NOT EXISTS idx_entries_deleted_at ON entries (deleted_at)`,
	`CREATE INDEX IF NOT EXISTS idx_entries_expires_at ON entries (expires_at) WHERE state = 2 AND expires_at IS NOT NULL`,
	`CREATE INDEX IF NOT EXISTS idx_entries_accessed_at ON entries (accessed_at) WHERE state = 2`,
	`CREATE INDEX IF NOT EXISTS idx_entries_incomplete ON entries (created_at) WHERE state = 1`,
	`CREATE TABLE IF NOT EXISTS streams (
		entry_id BLOB NOT NULL,
		kind INTEGER NOT NULL,
		chunk_number INTEGER NOT NULL,
		chunk_data BLOB NOT NULL,
		crc INTEGER NOT NULL,
		PRIMARY KEY (entry_id, kind, chunk_number)) WITHOUT ROWID`,
}

// Entry states, in entries.state.
const (
	stateIncomplete = 1
	stateComplete   = 2
	stateDeleted    = 3
)

// markerChunk is the chunk_number of a stream's completion marker.
const markerChunk = backend.MarkerChunk

// initSchema lays out a new database or checks an existing one: a SQLite
// file with tables but without hishel_meta is not a hishel cache
// (model.ErrCorrupt), and one of a newer format is model.ErrFormatVersion.
func initSchema(ctx context.Context, d *db) error {
	return d.inTx(ctx, true, func(tx *wtx) error {
		var tables, ours int
		err := tx.queryRow(ctx, `SELECT count(*), count(CASE WHEN name = 'hishel_meta' THEN 1 END)
			FROM sqlite_schema WHERE type = 'table'`).Scan(&tables, &ours)
		if err != nil {
			return err
		}
		if tables > 0 && ours == 0 {
			return fmt.Errorf("a SQLite database without hishel's tables: %w", model.ErrCorrupt)
		}
		if ours == 1 {
			var v int
			err := tx.queryRow(ctx, `SELECT value FROM hishel_meta WHERE key = 'format'`).Scan(&v)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				return fmt.Errorf("hishel_meta without a format version: %w", model.ErrCorrupt)
			case err != nil:
				return err
			case v != formatVersion:
				return fmt.Errorf("format version %d, this build reads %d: %w", v, formatVersion, model.ErrFormatVersion)
			}
		}
		for _, stmt := range schema {
			if _, err := tx.exec(ctx, stmt); err != nil {
				return err
			}
		}
		_, err = tx.exec(ctx, `INSERT OR IGNORE INTO hishel_meta (key, value) VALUES ('format', ?)`, formatVersion)
		return err
	})
}
