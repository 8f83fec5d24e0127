package template

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/model"
)

// capVariants evicts, beyond MaxVariants, the least recently used complete
// pairs under key hash h with rec's key (of pairs read together, the
// oldest): rec has just completed under it. Pairs whose bodies are being
// read stay (see readPin), beyond the cap if need be.
// The keys index is read from h on (one seek when the key has no other
// pair), with the entries this transaction added; entries of pairs gone
// are skipped by their record's head, as GetPairs skips them.
func (s *Bolt) capVariants(t *wtx, h [bolt.HashLen]byte, rec *bolt.Record) {
	limit := s.pol.MaxVariants
	if limit <= 0 || t.fatal != nil { // 0: no cap
		return
	}
	type variant struct {
		id            model.PairID
		at, completed int64
	}
	var others []variant
	consider := func(id model.PairID) {
		if id == rec.ID || slices.ContainsFunc(others, func(v variant) bool { return v.id == id }) {
			return
		}
		if head, ok := t.liveHead(id); ok && head.KeyIs(rec.Key) {
			others = append(others, variant{id, head.LastAccess, head.Completed})
		}
	}
	c := t.keys.Cursor()
	for k, _ := c.Seek(h[:]); k != nil && bytes.HasPrefix(k, h[:]); k, _ = c.Next() {
		consider(model.PairID(k[bolt.HashLen:]))
	}
	for _, id := range t.newByHash[h] {
		consider(id)
	}
	over := len(others) + 1 - limit
	if over <= 0 {
		return
	}
	for i := range others { // reads not yet written count
		others[i].at = max(others[i].at, s.accessTime(others[i].id))
	}
	slices.SortFunc(others, func(a, b variant) int {
		return cmp.Or(cmp.Compare(a.at, b.at), cmp.Compare(a.completed, b.completed), bytes.Compare(a.id[:], b.id[:]))
	})
	now := s.now().UnixNano()
	for _, v := range others {
		if over == 0 {
			break
		}
		if r, err := t.record(v.id); err == nil && r != nil && s.evictPair(t, r, now) {
			t.evicted++
			over--
		}
	}
}

// reclaimSuspects checks again the pairs reads found damaged and removes
// those that are: a pair whose record fails its checksum loses its record
// and its index entries as they are met (its chunks, whose nonce the record
// held, stay until Clear: no other record can be trusted to name them); a
// pair whose chunk fails its checksum or is missing is purged whole. A
// suspect found sound (a concurrent removal looks like a missing chunk to
// no one, but a suspect may have been replaced since) is kept.
func (s *Bolt) reclaimSuspects(ctx context.Context, res *model.SweepResult) error {
	s.suspectMu.Lock()
	ids := make([]model.PairID, 0, len(s.suspects))
	for id := range s.suspects {
		ids = append(ids, id)
	}
	clear(s.suspects)
	s.suspectMu.Unlock()
	for _, id := range ids {
		var damaged, recordBad bool
		var nonce uint64
		err := s.view(func(t *readTx) error {
			damaged, recordBad, nonce = false, false, 0
			v := t.pair(id)
			if v == nil {
				return nil
			}
			rec, err := decodeRecord(id, v)
			if err != nil {
				damaged, recordBad = true, true
				return nil
			}
			nonce = rec.Nonce
			for _, kind := range []bolt.Kind{bolt.KindRequest, bolt.KindResponse} {
				if err := checkBody(t, s.bodies.dir, rec, kind); err != nil {
					damaged = true
				}
			}
			return nil
		})
		if err != nil && !errors.Is(err, model.ErrCorrupt) {
			return err
		}
		if err != nil { // the read itself failed on damaged pages
			damaged, recordBad = true, true
		}
		if !damaged {
			continue
		}
		err = s.w.do(ctx, true, func(t *wtx) error {
			rec, err := t.record(id)
			switch {
			case err != nil && recordBad:
				t.delRecord(id)
			case err != nil || rec == nil || rec.Nonce != nonce:
				return nil // replaced or gone meanwhile
			default:
				purge(t, rec)
			}
			res.Corrupt++
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// checkBody reads one of rec's bodies through in t, checking every chunk
// and the marker, as a reader would; it returns the first fault.
func checkBody(t *readTx, dir string, rec *bolt.Record, kind bolt.Kind) error {
	done, size := rec.Has(bolt.FlagRequestDone), rec.ReqSize
	if kind == bolt.KindResponse {
		done, size = rec.Has(bolt.FlagResponseDone), rec.RespSize
	}
	if !done || size == 0 {
		return nil
	}
	var next uint64
	var loaded int64
	c := t.chunks.Cursor()
	k, v := c.Seek(bolt.ChunkSeek(rec.Nonce, kind, 0))
	var f *os.File // the body's file, if it has one
	if !isChunkOf(k, rec.Nonce, kind) {
		if fk, fv := c.Seek(bolt.ChunkSeek(rec.Nonce, kind|bolt.KindFile, 0)); isChunkOf(fk, rec.Nonce, kind|bolt.KindFile) {
			kind |= bolt.KindFile
			k, v = fk, fv
			var err error
			if f, err = os.Open(filepath.Join(dir, bolt.BodyFileName(rec.Nonce, kind))); err != nil {
				return fmt.Errorf("body file: %w: %w", err, model.ErrCorrupt)
			}
			defer f.Close()
		}
	}
	for ; k != nil; k, v = c.Next() {
		nonce, knd, seq, err := bolt.ParseChunkKey(k)
		if err != nil {
			return err
		}
		if nonce != rec.Nonce || knd != kind {
			break
		}
		if f != nil && seq != bolt.MarkerSeq {
			if seq != next {
				break
			}
			n, err := checkFileChunk(f, loaded, k, v)
			if err != nil {
				return err
			}
			next++
			loaded += int64(n)
			continue
		}
		if err := bolt.CheckChunk(k, v); err != nil {
			return err
		}
		if seq == bolt.MarkerSeq {
			m, err := bolt.DecodeMarker(v)
			if err == nil && (m.Chunks != next || m.Size != loaded || m.Size != size) {
				err = fmt.Errorf("marker says %d bytes in %d chunks: %w", m.Size, m.Chunks, model.ErrCorrupt)
			}
			return err
		}
		if seq != next {
			break
		}
		next++
		loaded += int64(len(v))
	}
	return fmt.Errorf("chunk %d missing: %w", next, model.ErrCorrupt)
}
