// Package bolt is hishel-go's bbolt layer: the bucket layout, the encoding of
// pair records, chunk keys and index keys, and nothing about caching policy.
// The storage template in package template builds its operations on it.
//
// # Buckets
//
//	meta        "format" → format version (1 byte); "stats" → counters;
//	            "nonce" → the highest pair nonce handed out (8 bytes)
//	pairs       pair id (16 bytes) → record (see EncodeRecord)
//	keys        sha256(cache key) ‖ pair id → empty; complete, live pairs,
//	            and pairs deleted since whose entry is in stale
//	chunks      big-endian pair nonce ‖ kind ‖ big-endian seq → body bytes;
//	            seq MarkerSeq is the completion marker and sorts last. A
//	            body that ended empty has neither chunks nor marker: its
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
// A record starts with its format version. [DecodeRecord] rejects unknown
// versions with [model.ErrFormatVersion] and malformed bytes with
// [model.ErrCorrupt]; it never panics and never allocates more than the
// input's size suggests. Values read from bbolt are only valid inside their
// transaction: every decoder here copies what it keeps.
package bolt
