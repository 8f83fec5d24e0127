package template

import (
	"bytes"
	"context"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.etcd.io/bbolt"

	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/model"
)

// readBody reads the body of the only pair under key.
func readBody(tb testing.TB, s *Bolt, key string) (string, error) {
	tb.Helper()
	ps, err := s.GetPairs(context.Background(), key)
	if err != nil {
		return "", err // GetPairs reads a body's first chunks ahead
	}
	if len(ps) != 1 {
		tb.Fatalf("GetPairs(%q) = %d pairs; want one", key, len(ps))
	}
	defer ps[0].Close()
	got, err := model.ReadAll(ps[0].Response.Body)
	return string(got), err
}

// checkedReads reads the body under key twice and fails unless the reads
// returned it and checked first and second chunks against their checksums.
func checkedReads(t *testing.T, s *Bolt, key, body string, first, second int64) {
	t.Helper()
	for i, want := range []int64{first, second} {
		before := s.verified.checks.Load()
		if got, err := readBody(t, s, key); err != nil || got != body {
			t.Fatalf("read %d: %d bytes, %v; want the body", i+1, len(got), err)
		}
		if n := s.verified.checks.Load() - before; n != want {
			t.Errorf("read %d checked %d chunks; want %d", i+1, n, want)
		}
	}
}

// A chunk is checked against its checksum the first time it is read, and
// again on later reads only with VerifyEveryRead; a chunk changed through
// bbolt lies elsewhere in the file and is checked again whatever the
// option, and so is a small chunk.
func TestBoltVerifyOnce(t *testing.T) {
	// 3 chunks of 64 KiB and one of 1 KiB (under minVerifyOnce).
	body := strings.Repeat("0123456789abcdef", (3*(64<<10)+1024)/16)
	for _, every := range []bool{false, true} {
		t.Run(map[bool]string{false: "once", true: "every"}[every], func(t *testing.T) {
			s := openBolt(t, &BoltOptions{VerifyEveryRead: every})
			store(t, s, getReq("u1"), okResp(body), "k")
			want := int64(2) // the last chunk and the marker, under minVerifyOnce
			if every {
				want = 5
			}
			checkedReads(t, s, "k", body, 5, want) // 4 chunks and the marker at first

			// A byte changed through bbolt, as any write would, with the
			// chunk's key (and so its checksum) kept.
			ps, err := s.GetPairs(context.Background(), "k")
			if err != nil || len(ps) != 1 {
				t.Fatalf("GetPairs = %d pairs, %v; want one", len(ps), err)
			}
			ps[0].Close()
			var rec *bolt.Record
			if err := s.view(func(rt *readTx) (err error) { rec, err = bolt.DecodeRecord(rt.pair(ps[0].ID)); return err }); err != nil {
				t.Fatal(err)
			}
			if err := s.db.Update(func(tx *bbolt.Tx) error {
				b := tx.Bucket(bolt.BucketChunks)
				k := chunkOf(t, tx, rec.Nonce, bolt.KindResponse)
				v := bytes.Clone(b.Get(k))
				v[100] ^= 1
				return b.Put(k, v)
			}); err != nil {
				t.Fatal(err)
			}
			// A commit through the store, so that its reads see the change.
			store(t, s, getReq("u2"), okResp("other"), "k2")
			if got, err := readBody(t, s, "k"); !errors.Is(err, model.ErrCorrupt) {
				t.Errorf("read after the chunk changed through bbolt: %d bytes, %v; want ErrCorrupt", len(got), err)
			}
		})
	}
}

// With VerifyEveryRead, bytes changed in the file behind bbolt's back
// while it is open are caught on the next read.
func TestBoltVerifyEveryReadFileChanged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.db")
	body := strings.Repeat("abcdefghijklmnop", (64<<10)/16)
	s := openBolt(t, &BoltOptions{Path: path, VerifyEveryRead: true})
	store(t, s, getReq("u1"), okResp(body), "k")
	if got, err := readBody(t, s, "k"); err != nil || got != body {
		t.Fatalf("read: %d bytes, %v; want the body", len(got), err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(raw, []byte(body))
	if i < 0 || bytes.Count(raw, []byte(body)) != 1 {
		t.Fatalf("the body is in the file %d times; want once", bytes.Count(raw, []byte(body)))
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{'X'}, int64(i+1000)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got, err := readBody(t, s, "k"); !errors.Is(err, model.ErrCorrupt) {
		t.Errorf("read after the file changed: %d bytes, %v; want ErrCorrupt", len(got), err)
	}
}

func TestOpenBoltURLVerifyEveryRead(t *testing.T) {
	for _, q := range []string{"", "?verify-every-read=false", "?verify-every-read=true"} {
		u, err := url.Parse("bolt://" + filepath.ToSlash(filepath.Join(t.TempDir(), "c.db")) + q)
		if err != nil {
			t.Fatal(err)
		}
		s, err := OpenBoltURL(context.Background(), u)
		if err != nil {
			t.Fatalf("OpenBoltURL(%s): %v", u, err)
		}
		if want := strings.HasSuffix(q, "true"); s.opts.VerifyEveryRead != want {
			t.Errorf("OpenBoltURL(%s): VerifyEveryRead = %v; want %v", u, s.opts.VerifyEveryRead, want)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// A chunk of a body kept in a file is checked the first time it is read,
// and on every read with VerifyEveryRead, which also catches the file
// changed while the store is open.
func TestBoltVerifyOnceFileBody(t *testing.T) {
	body := strings.Repeat("0123456789abcdef", (4*(64<<10))/16) // 4 chunks, over FileBodyMin
	for _, every := range []bool{false, true} {
		t.Run(map[bool]string{false: "once", true: "every"}[every], func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.db")
			s := openBolt(t, &BoltOptions{Path: path, VerifyEveryRead: every, FileBodyMin: 64 << 10})
			cp := store(t, s, getReq("u1"), okResp(body), "k")
			want := int64(1) // the marker
			if every {
				want = 5
			}
			checkedReads(t, s, "k", body, 5, want) // 4 chunks and the marker at first
			if !every {
				return
			}
			file := filepath.Join(path+".bodies", bolt.BodyFileName(nonceOf(t, s, cp.ID), bolt.KindResponse))
			f, err := os.OpenFile(file, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt([]byte{'X'}, 70_000); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			if got, err := readBody(t, s, "k"); !errors.Is(err, model.ErrCorrupt) {
				t.Errorf("read after the body file changed: %d bytes, %v; want ErrCorrupt", len(got), err)
			}
		})
	}
}
