// Package bolt is hishel-go's bbolt layer: the bucket layout, the encoding of
// pair records, chunk keys and index keys, and nothing about caching policy.
// The storage template in package template builds its operations on it.
//
// # Buckets
//
//	meta        "format" → format version (1 byte); "stats" → counters ‖
//	            CRC-32C; "nonce" → the highest pair nonce handed out
//	            (8 bytes) ‖ CRC-32C
//	pairs       pair id (16 bytes) → record ‖ CRC-32C (see EncodeRecord)
//	keys        sha256(cache key) ‖ pair id → empty; complete, live pairs,
//	            and pairs deleted since whose entry is in stale
//	chunks      big-endian pair nonce ‖ kind ‖ big-endian seq ‖ CRC-32C of
//	            those and the value → body bytes (see ChunkKey); seq
//	            MarkerSeq is the completion marker and sorts last. A body
//	            that ended empty has neither chunks nor marker: its
//	            record's done flag and size 0 say all there is
//	expiry      big-endian expiry time ‖ pair id → empty (pairs with a TTL)
//	deleted     big-endian deletion time ‖ pair id → empty (soft-deleted)
//	incomplete  big-endian creation time ‖ pair id → empty (not yet complete)
//	access      big-endian last access time ‖ pair id → empty (LRU order);
//	            as keys, it may hold entries of deleted pairs listed in stale
//	stale       big-endian sequence number → index (1 keys, 2 access) ‖
//	            the key of an entry of that index whose pair was deleted
//
// Cache keys of any length and any bytes are hashed into the keys bucket, so
// bbolt's 32 KiB key limit never applies to them; the full key is kept in the
// record and compared on lookup, so a hash collision cannot serve a wrong pair.
// The index buckets are ordered by time, so a sweep visits only what is due.
// A pair's keys and access entries are not deleted with the pair: they go
// to the stale log, and a sweep removes them in large sorted batches once
// the log is long (keys are hashes: removing them one by one would rewrite
// a random leaf per pair). Readers check each entry's record, so an entry
// of a deleted pair is never served.
// Chunks are keyed by the pair's nonce (see [ChunkKey]), which storage hands
// out in increasing order, so pairs written together have neighbouring
// chunks and a commit of many pairs appends to a few leaves.
//
// # Records
//
// A record starts with its format version and ends with the CRC-32C of
// what precedes it. [DecodeRecord] rejects a record whose checksum fails,
// or that is malformed, with [model.ErrCorrupt], and one of another
// version with [model.ErrFormatVersion]; it never panics and never
// allocates more than the input's size suggests. A cache key that holds
// the URL is stored as what surrounds it, so the URL is stored once.
// Values read from bbolt are only valid inside their transaction: every
// decoder here copies what it keeps.
//
// # Checksums
//
// Every value hishel reads back carries a CRC-32C (backend.Checksum): a
// record and the stats and nonce values at their end, a chunk and a
// completion marker in their key, so that a chunk is stored as the very
// bytes its body gave. [CheckChunk] verifies a chunk.
//
// # Damaged files
//
// bbolt trusts its file. [CheckFile] reads a file with plain reads and
// checks the structure bbolt relies on (meta pages, free list, branch
// pages, bucket headers, and every page when bbolt is about to walk the
// whole tree), so that opening and reading a damaged file is an error,
// never a crash or a hang.
package bolt
