// Package template holds hishel-go's storage backends, each written once as
// ordinary, tested Go. The generator in ./gen renders every backend into two
// APIs with the same behaviour: package cache (blocking calls) and package
// cacheasync (futures and channels). Most programs use those packages; this
// one is where storage logic lives and is tested on its own.
//
// # Backends
//
// A backend is an exported struct type whose doc comment contains the line
// //hishel:backend. Its exported methods are the storage operations; each
// takes a context.Context first and returns an error last (Close excepted).
// Its exported constructors are the package-level functions returning the
// backend and an error.
//
// # Pair semantics
//
// Every backend follows the same rules:
//
//   - CreatePair stores a request at once. Its body is saved, in order, as the
//     caller reads the returned pair's Request.Body to the end.
//   - AddResponse attaches a response under a cache key. Its body is saved as
//     the caller reads the returned pair's Response.Body to the end. A pair is
//     served by GetPairs only once both bodies are completely stored; a body
//     that fails, is closed early or whose context ends leaves nothing
//     visible, and its chunks are reclaimed at once.
//   - GetPairs returns every live, complete, unexpired pair under a key,
//     newest first, with bodies streamed from storage. A body read back is
//     exactly the bytes stored: if the pair's data is removed while it is
//     read, Read fails with model.ErrRemoved rather than end early.
//     Eviction for a bound does not cut a read short in Bolt (it passes
//     over pairs whose bodies its process is reading, from GetPairs until
//     each body is read to its end, closed, or left unread for a minute;
//     GetPairs leaves out a pair an uncommitted eviction is removing) nor
//     in Memory (readers keep an evicted pair's chunks). The
//     pairs' header maps are the caller's own: changing them changes
//     nothing stored (hishel.Transport serves hits from them).
//   - GetPairs decodes heads only: no body of a variant is read until it
//     is (Bolt reads ahead up to 64 KiB of a key's only pair). MaxVariants
//     caps the pairs kept per key; completing one more evicts the least
//     recently used others.
//   - UpdatePair and UpdatePairFunc replace a pair's heads, key and TTL in one
//     atomic step; bodies never change. UpdatePairFunc's function runs
//     holding nothing (it may call the store) and runs again if the pair
//     changed meanwhile (backend.UpdatePairFunc).
//   - Remove soft-deletes: the pair is hidden at once and reclaimed by a sweep
//     after the retention period.
//   - Pairs lists the pairs a model.Filter matches (every pair, in every
//     state, for the zero Filter), in ID order, with heads and metadata only;
//     the consumer may call the store between pairs. Delete soft-deletes the
//     pairs a filter matches and says how many: by key (every variant), key
//     prefix, URL (every method and variant), URL prefix, state, expiry and
//     age.
//   - A sweep soft-deletes expired pairs, removes soft-deleted pairs past
//     their retention and incomplete pairs older than the incomplete age,
//     evicts least recently used pairs beyond the size budget (MaxBytes
//     counts every stored byte: key, URL, heads and bodies), and removes
//     pairs that reads found damaged. It runs in the background and on
//     demand (Cleanup). A request's MaxTTL caps its pair's life.
//   - Stats.Evicted counts the live pairs a store evicted since it was
//     opened, for MaxBytes, MaxPairs and MaxVariants, and nothing else (not
//     the sweep's expired, purged, abandoned or damaged pairs, nor
//     soft-deleted pairs reclaimed early for MaxBytes): the evictions
//     counter of package metrics.
//   - A persistent backend checksums every record and chunk: a mismatch, or
//     a missing chunk, is model.ErrCorrupt, never altered bytes. A damaged
//     file is an error, never a crash (Bolt: see OpenBolt and package
//     bolt's CheckFile).
//
// # Contexts
//
// The context given to CreatePair or AddResponse governs the body stream the
// call returns: cancelling it aborts the stream, and the pair is not stored.
package template
