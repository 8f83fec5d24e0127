package template

import (
	"fmt"
	"strings"

	"github.com/hishel-go/hishel/bolt"
)

// queries are the statements of a store, for its table prefix.
type queries struct {
	load, loadLocked, insert, update, addStats, stats, zeroStats, truncate string
	byKey, page, variants, access, purge, expired                          string
	expire, purgeDeleted, abandon, evictDeleted, evictLRU                  string
	chunks, marker, readChunks, nonceOf, nonceOfLive, abortPurge           string
}

// cols are the entries columns a row (see row.dest) reads.
const cols = `id, data, data_crc, flags, nonce, rev, req_size, resp_size, completed_at, expires_at, accessed_at, deleted_at`

func newQueries(p string) queries {
	r := strings.NewReplacer("{E}", p+"_entries", "{S}", p+"_streams", "{T}", p+"_stats")
	q := func(s string) string { return r.Replace(s) }
	deleted := fmt.Sprint(bolt.FlagDeleted)
	return queries{
		load:       q(`SELECT ` + cols + ` FROM {E} WHERE id = $1`),
		loadLocked: q(`SELECT ` + cols + ` FROM {E} WHERE id = $1 FOR NO KEY UPDATE`),
		insert: q(`INSERT INTO {E} (id, cache_key, key_hash, data, data_crc, state, flags, nonce, size, req_size, resp_size,
			ttl, refresh, created_at, completed_at, expires_at, accessed_at, deleted_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
			ON CONFLICT (id) DO NOTHING`),
		update: q(`UPDATE {E} SET cache_key = $2, key_hash = $3, data = $4, data_crc = $5, state = $6, flags = $7,
			size = $8, req_size = $9, resp_size = $10, ttl = $11, refresh = $12, created_at = $13,
			completed_at = $14, expires_at = $15, accessed_at = $16, deleted_at = $17, rev = rev + $18
			WHERE id = $1`),
		addStats: q(`UPDATE {T} SET pairs = pairs + $1, incomplete = incomplete + $2, deleted = deleted + $3,
			bytes = bytes + $4 WHERE shard = $5`),
		stats: q(`SELECT coalesce(sum(pairs), 0)::bigint, coalesce(sum(incomplete), 0)::bigint,
			coalesce(sum(deleted), 0)::bigint, coalesce(sum(bytes), 0)::bigint FROM {T}`),
		zeroStats: q(`UPDATE {T} SET pairs = 0, incomplete = 0, deleted = 0, bytes = 0`),
		truncate:  q(`TRUNCATE {S}, {E}`),
		byKey:     q(`SELECT ` + cols + ` FROM {E} WHERE key_hash = $1 AND cache_key = $2 AND state = 2`),
		page:      q(`SELECT ` + cols + ` FROM {E} WHERE id > $1 ORDER BY id LIMIT $2`),
		expired:   q(`SELECT ` + cols + ` FROM {E} WHERE state = 2 AND expires_at <= $1`),
		// The variants under a key beyond the cap, least recently used
		// (of those read together, the oldest) last kept.
		variants: q(`SELECT id FROM {E} WHERE key_hash = $1 AND cache_key = $2 AND state = 2
			ORDER BY accessed_at DESC, completed_at DESC, id DESC OFFSET $3 FOR UPDATE SKIP LOCKED`),
		// A refresh moves no expiry past the pair's MaxTTL limit (lim,
		// 0 for none).
		access: q(`UPDATE {E} e SET accessed_at = v.at,
			expires_at = CASE WHEN e.refresh AND e.ttl > 0 AND e.expires_at IS NOT NULL
				THEN CASE WHEN v.lim > 0 THEN least(greatest(e.expires_at, v.at + e.ttl), v.lim)
					ELSE greatest(e.expires_at, v.at + e.ttl) END
				ELSE e.expires_at END
			FROM unnest($1::bytea[], $2::bigint[], $3::bigint[]) AS v(id, at, lim)
			WHERE e.id = v.id AND e.state = 2 AND v.at > e.accessed_at`),
		purge: q(`DELETE FROM {E} WHERE id = ANY($1::bytea[]) RETURNING id, state, size`),
		expire: q(`UPDATE {E} e SET state = 3, flags = e.flags | ` + deleted + `, deleted_at = $3
			FROM (SELECT id FROM {E} WHERE state = 2 AND expires_at <= $1 ORDER BY expires_at LIMIT $2
				FOR UPDATE SKIP LOCKED) due
			WHERE e.id = due.id RETURNING e.id, e.size`),
		purgeDeleted: q(`DELETE FROM {E} WHERE id IN (SELECT id FROM {E} WHERE state = 3 AND deleted_at <= $1
			ORDER BY deleted_at LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING id, state, size`),
		abandon: q(`DELETE FROM {E} WHERE id IN (SELECT id FROM {E} WHERE state = 1 AND created_at <= $1
			ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING id, state, size`),
		evictDeleted: q(`SELECT id, size FROM {E} WHERE state = 3 ORDER BY deleted_at, id LIMIT $1 FOR UPDATE SKIP LOCKED`),
		evictLRU:     q(`SELECT id, size FROM {E} WHERE state = 2 ORDER BY accessed_at, completed_at, id LIMIT $1 FOR UPDATE SKIP LOCKED`),
		// A body's chunks, checked against the pair's incarnation: the
		// FOR KEY SHARE lock keeps the pair from being deleted until the
		// chunks commit (then the delete cascades to them).
		chunks: q(`INSERT INTO {S} (entry_id, kind, chunk_number, chunk_data, crc)
			SELECT $1, $2, n, d, c FROM unnest($3::integer[], $4::bytea[], $5::integer[]) AS t(n, d, c)`),
		marker:      q(`INSERT INTO {S} (entry_id, kind, chunk_number, chunk_data, crc) VALUES ($1, $2, $3, $4, $5)`),
		nonceOf:     q(`SELECT nonce, state FROM {E} WHERE id = $1 FOR KEY SHARE`),
		nonceOfLive: q(`SELECT nonce FROM {E} WHERE id = $1 AND state <> 1`),
		readChunks: q(`SELECT s.chunk_number, s.chunk_data, s.crc FROM {S} s JOIN {E} e ON e.id = s.entry_id
			WHERE s.entry_id = $1 AND s.kind = $2 AND s.chunk_number >= $3 AND e.nonce = $4 AND e.state <> 1
			ORDER BY s.chunk_number LIMIT $5`),
		abortPurge: q(`DELETE FROM {E} WHERE id = $1 AND nonce = $2 RETURNING id, state, size`),
	}
}
