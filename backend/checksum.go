package backend

import "hash/crc32"

// castagnoli is the CRC-32C table (hash/crc32's Castagnoli polynomial),
// computed with CPU instructions where the platform has them.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Checksum returns the CRC-32C of p: what a persistent backend stores with
// every body chunk and every record, and checks when it reads them back
// (a mismatch is model.ErrCorrupt, never altered bytes).
func Checksum(p []byte) uint32 { return crc32.Checksum(p, castagnoli) }

// UpdateChecksum returns the CRC-32C of what crc covered followed by p.
func UpdateChecksum(crc uint32, p []byte) uint32 { return crc32.Update(crc, castagnoli, p) }
