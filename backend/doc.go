// Package backend is the kit for writing a hishel-go storage backend: what
// a template package needs to behave like the backends of package
// template, which use it too.
//
// A backend is a template (an ordinary Go package whose backend types carry
// the //hishel:backend directive) that the generator in ../gen renders into
// a blocking and an async API; see README's "Writing a backend" and
// package storagetest, the suite every backend passes through both APIs.
// This package holds the parts every backend shares, so that a backend
// only writes what is its own (its schema, its reads and writes):
//
//   - [Settings] and [Policy]: the options every backend offers under the
//     same names (DefaultTTL, RefreshTTLOnAccess, SweepInterval,
//     DeletedRetention, IncompleteAge, MaxBytes, MaxPairs, ChunkSize, Now),
//     their defaults and checks, and how a request's TTL resolves.
//   - [Stream] and [Sink]: storing a body as its reader reads it, in
//     chunks ([FillChunk]), handed to the backend's Sink; a body that fails
//     or is abandoned is aborted and reclaimed.
//   - [Maintain]: the background loop (periodic sweep and flushes) that a
//     backend runs in a goroutine it owns from open to Close.
//   - [CallUpdate]: UpdatePairFunc's function called so that its panic is
//     an error.
//   - The record steps of the pair operations, the same in every backend:
//     [Policy.NewRecord] (CreatePair), [Respond] and [Responded]
//     (AddResponse), [BodyStored] and [Settle] (a body's end),
//     [Current] and [Updated] (UpdatePairFunc), [Heads].
//   - [Finder] and [Delete]: Pairs (a listing filtered by a model.Filter)
//     built from a backend's listing of every pair and the indexes it has,
//     and Delete built from Pairs and Remove.
//   - [Checksum]: CRC-32C for stored chunks and records.
//   - [ChunkTable]: bodies read back from numbered chunk rows (SQLite,
//     PostgreSQL) with their completion marker and checksums checked,
//     from the backend's queries.
//   - [Query] and [FilePath]: a store URL (cache.Open) read into options.
//
// # The contract
//
// Every backend keeps the pair rules of package template's documentation
// and the storage contract that package storagetest checks: bodies stored
// in chunks with a completion marker, a pair visible only once both bodies
// are stored, aborted bodies reclaimed at once, several variants per key,
// TTL (default, per request, refreshed on access, surviving a reopen), soft
// delete, sweeps whose cost follows what they remove, MaxBytes counting
// every stored byte, MaxPairs, checksums, Pairs and Delete by
// model.Filter, and the sentinel errors of package model, wrapped with %w.
//
// # Finding and deleting pairs
//
// Pairs(ctx, model.Filter) iter.Seq2[model.PairInfo, error] lists the pairs
// a filter matches, in ID order, with heads only; Delete(ctx, model.Filter)
// (int, error) soft-deletes them. A backend gets both from a listing of
// every pair, its indexes if it has some, and its Remove:
//
//	func (s *Mine) Pairs(ctx context.Context, f model.Filter) iter.Seq2[model.PairInfo, error] {
//		return backend.Finder{
//			All: s.listAll,   // every pair, in ID order (backend.Paged builds it from a query of pages)
//			Key: s.byKey,     // optional: the pairs of one key, from a key index
//		}.Pairs(ctx, f, s.pol.Now)
//	}
//
//	func (s *Mine) Delete(ctx context.Context, f model.Filter) (int, error) {
//		return backend.Delete(ctx, f, s.Pairs, s.Remove)
//	}
//
// Bolt and Memory, which hold their indexes in the same transaction or
// lock as their records, find and match with [model.Filter.Matcher]
// themselves.
package backend
