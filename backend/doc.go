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
//   - [Checksum]: CRC-32C for stored chunks and records.
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
// every stored byte, MaxPairs, checksums, and the sentinel errors of
// package model, wrapped with %w.
package backend
