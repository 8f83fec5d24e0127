package template

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/hishel-go/hishel/backend"
	"github.com/hishel-go/hishel/model"
)

// formatVersion is the version of the schema below, kept in the meta
// table.
const formatVersion = 1

// statShards is the number of rows the counters are spread over: each
// change adds to the row of its pair's shard, so that writers in many
// connections and processes rarely wait for one another's row lock; Stats
// sums them.
const statShards = 16

// Entry states, in the entries table's state column.
const (
	stateIncomplete = 1
	stateComplete   = 2
	stateDeleted    = 3
)

// markerChunk is the chunk_number of a body's completion marker, as in
// Hishel: it sorts before the chunks, so a reader meets it first.
const markerChunk = backend.MarkerChunk

// schema returns the statements that lay out the tables of prefix p, in
// the spirit of Hishel's SQL storage (entries and streams, chunk number -1
// as the completion marker), with what PostgreSQL and a shared cache need
// beyond it:
//
//   - p_entries.data is the pair's record (package bolt's encoding, decoded
//     defensively), with its CRC-32C in data_crc. The columns beside it are
//     what queries select and order by, and they are the truth about a
//     pair's life: state (1 incomplete, 2 complete, 3 deleted), flags (its
//     bodies' progress), nonce (its incarnation: a reader notices a pair
//     purged and replaced under the same ID), rev (bumped by every change of
//     its heads: UpdatePairFunc writes only over the revision it read),
//     size, and its times in Unix nanoseconds (exact, whatever clock the
//     store is given), completed_at, expires_at, accessed_at, deleted_at.
//     Access times are written in batches by one UPDATE ... FROM unnest,
//     without rewriting records.
//   - The cache key is a bytea of any length; it is looked up by key_hash
//     (its SHA-256), since a B-tree entry must stay under a third of a page.
//   - Partial indexes by expiry, deletion and creation (per state) and by
//     last access, so that a sweep and an eviction read only the rows they
//     remove; the sweep takes them FOR UPDATE SKIP LOCKED, so the sweeps
//     of several processes never wait for one another.
//   - p_streams.crc is every chunk's CRC-32C; chunk_data is stored
//     out of line and uncompressed (STORAGE EXTERNAL): bodies are often
//     compressed already. A chunk references its entry ON DELETE CASCADE:
//     deleting an entry removes its chunks in the same transaction, and a
//     chunk written for an entry another transaction deletes either fails
//     (the entry is gone) or is deleted with it (the delete waits for the
//     writer's lock on the entry, and cascades after it).
//   - p_meta holds the format version; p_stats the counters, kept in the
//     transactions that change what they count.
func schema(p string) []string {
	return []string{
		`CREATE TABLE IF NOT EXISTS ` + p + `_meta (key text PRIMARY KEY, value bigint NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS ` + p + `_stats (
			shard smallint PRIMARY KEY,
			pairs bigint NOT NULL DEFAULT 0, incomplete bigint NOT NULL DEFAULT 0,
			deleted bigint NOT NULL DEFAULT 0, bytes bigint NOT NULL DEFAULT 0)`,
		fmt.Sprintf(`INSERT INTO %s_stats (shard) SELECT generate_series(0, %d) ON CONFLICT DO NOTHING`, p, statShards-1),
		`CREATE TABLE IF NOT EXISTS ` + p + `_entries (
			id bytea PRIMARY KEY CHECK (length(id) = 16),
			cache_key bytea,
			key_hash bytea,
			data bytea NOT NULL,
			data_crc integer NOT NULL,
			state smallint NOT NULL,
			flags smallint NOT NULL,
			nonce bigint NOT NULL,
			rev bigint NOT NULL DEFAULT 1,
			size bigint NOT NULL,
			req_size bigint NOT NULL DEFAULT 0,
			resp_size bigint NOT NULL DEFAULT 0,
			ttl bigint NOT NULL,
			refresh boolean NOT NULL,
			created_at bigint NOT NULL,
			completed_at bigint,
			expires_at bigint,
			accessed_at bigint NOT NULL,
			deleted_at bigint)`,
		`CREATE INDEX IF NOT EXISTS ` + p + `_entries_key ON ` + p + `_entries (key_hash) WHERE state = 2`,
		`CREATE INDEX IF NOT EXISTS ` + p + `_entries_expires ON ` + p + `_entries (expires_at) WHERE state = 2 AND expires_at IS NOT NULL`,
		`CREATE INDEX IF NOT EXISTS ` + p + `_entries_access ON ` + p + `_entries (accessed_at, completed_at, id) WHERE state = 2`,
		`CREATE INDEX IF NOT EXISTS ` + p + `_entries_deleted ON ` + p + `_entries (deleted_at) WHERE state = 3`,
		`CREATE INDEX IF NOT EXISTS ` + p + `_entries_incomplete ON ` + p + `_entries (created_at) WHERE state = 1`,
		`CREATE TABLE IF NOT EXISTS ` + p + `_streams (
			entry_id bytea NOT NULL REFERENCES ` + p + `_entries (id) ON DELETE CASCADE,
			kind smallint NOT NULL,
			chunk_number integer NOT NULL,
			chunk_data bytea NOT NULL,
			crc integer NOT NULL,
			PRIMARY KEY (entry_id, kind, chunk_number))`,
		`ALTER TABLE ` + p + `_streams ALTER COLUMN chunk_data SET STORAGE EXTERNAL`,
	}
}

// validTable is what a table prefix may be: a plain lower-case SQL
// identifier short enough for the longest name made from it.
var validTable = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,39}$`)

// initSchema lays out the tables of prefix p, or checks existing ones:
// tables without p's meta table are not a hishel store (model.ErrCorrupt),
// and a store of another format is model.ErrFormatVersion. Processes that
// open one database at once take turns on an advisory lock, so that two
// never create the same tables together.
func initSchema(ctx context.Context, tx pgx.Tx, p string) error {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, "hishel-schema:"+p); err != nil {
		return err
	}
	var meta, entries *string
	if err := tx.QueryRow(ctx, `SELECT to_regclass($1)::text, to_regclass($2)::text`, p+"_meta", p+"_entries").Scan(&meta, &entries); err != nil {
		return err
	}
	if meta == nil && entries != nil {
		return fmt.Errorf("table %s_entries exists without %s_meta: not a hishel store: %w", p, p, model.ErrCorrupt)
	}
	if meta != nil {
		var v int64
		err := tx.QueryRow(ctx, `SELECT value FROM `+p+`_meta WHERE key = 'format'`).Scan(&v)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return fmt.Errorf("%s_meta without a format version: %w", p, model.ErrCorrupt)
		case err != nil:
			return err
		case v != formatVersion:
			return fmt.Errorf("format version %d, this build reads %d: %w", v, formatVersion, model.ErrFormatVersion)
		}
		return nil
	}
	// One round trip: without arguments, Exec sends the statements as
	// one simple query.
	stmts := append(schema(p), fmt.Sprintf(`INSERT INTO %s_meta (key, value) VALUES ('format', %d)`, p, formatVersion))
	_, err := tx.Exec(ctx, strings.Join(stmts, ";\n"))
	return err
}
