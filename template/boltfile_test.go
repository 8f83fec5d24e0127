package template

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/model"
)

// randomBody returns n bytes of the seed's ChaCha8 stream.
func randomBody(seed byte, n int) []byte {
	b := make([]byte, n)
	var s [32]byte
	s[0] = seed
	_, _ = rand.NewChaCha8(s).Read(b)
	return b
}

// bodyFileNames lists the files of the bodies directory of the database at path.
func bodyFileNames(tb testing.TB, path string) []string {
	tb.Helper()
	ents, err := os.ReadDir(path + ".bodies")
	if err != nil {
		tb.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// nonceOf returns the nonce of pair id's record.
func nonceOf(tb testing.TB, s *Bolt, id model.PairID) uint64 {
	tb.Helper()
	// CreatePair hands the record to the writer without waiting for its
	// commit (and under NoSync a completion does not wait either): commit
	// what was handed over before reading the record.
	if err := s.Sync(context.Background()); err != nil {
		tb.Fatal(err)
	}
	var rec *bolt.Record
	if err := s.view(func(rt *readTx) (err error) { rec, err = bolt.DecodeRecord(rt.pair(id)); return err }); err != nil {
		tb.Fatal(err)
	}
	return rec.Nonce
}

func readResponse(tb testing.TB, s *Bolt, key string) ([]byte, error) {
	tb.Helper()
	ps, err := s.GetPairs(context.Background(), key)
	if err != nil {
		return nil, err
	}
	if len(ps) != 1 {
		tb.Fatalf("GetPairs(%q) = %d pairs; want 1", key, len(ps))
	}
	defer ps[0].Response.Body.Close()
	return io.ReadAll(ps[0].Response.Body)
}

// TestBoltFileBodies stores bodies on either side of FileBodyMin, and
// larger than one hand-over to the writer, durably and not: those from
// FileBodyMin on are kept in files, read back whole, counted as the others,
// and their files go with their pairs.
func TestBoltFileBodies(t *testing.T) {
	const min = 64 << 10
	for _, noSync := range []bool{false, true} {
		for _, size := range []int{0, 1000, min - 1, min, 200_000, 3<<20 + 7} {
			t.Run(fmt.Sprintf("nosync=%v/%d", noSync, size), func(t *testing.T) {
				ctx := context.Background()
				path := filepath.Join(t.TempDir(), "c.db")
				s := openBolt(t, &BoltOptions{Path: path, ChunkSize: 16 << 10, FileBodyMin: min, NoSync: noSync,
					SweepInterval: -1, DeletedRetention: time.Nanosecond})
				reqBody, respBody := randomBody(1, size), randomBody(2, size)
				req := getReq("https://example.com/a")
				req.Body = model.BytesBody(reqBody)
				cp := store(t, s, req, okResp(string(respBody)), "k")
				var want []string
				if size >= min {
					want = []string{bolt.BodyFileName(nonceOf(t, s, cp.ID), bolt.KindRequest), bolt.BodyFileName(nonceOf(t, s, cp.ID), bolt.KindResponse)}
				}
				if got := bodyFileNames(t, path); !slices.Equal(got, want) {
					t.Errorf("body files = %q; want %q", got, want)
				}
				got, err := readResponse(t, s, "k")
				if err != nil || !bytes.Equal(got, respBody) {
					t.Fatalf("response body: %d bytes, %v; want the %d stored", len(got), err, size)
				}
				ps, err := s.GetPairs(ctx, "k")
				if err != nil {
					t.Fatal(err)
				}
				if got, err := io.ReadAll(ps[0].Request.Body); err != nil || !bytes.Equal(got, reqBody) {
					t.Fatalf("request body: %d bytes, %v; want the %d stored", len(got), err, size)
				}
				checkStats(t, s)
				if err := s.Remove(ctx, cp.ID); err != nil {
					t.Fatal(err)
				}
				if _, err := s.Cleanup(ctx); err != nil {
					t.Fatal(err)
				}
				if got := bodyFileNames(t, path); len(got) != 0 {
					t.Errorf("body files after the pair was purged: %q", got)
				}
				checkStats(t, s)
			})
		}
	}
}

// TestBoltFileBodyDamaged damages a body file behind the store's back: the
// body's read fails with model.ErrCorrupt, never other bytes, and the next
// sweep removes the pair and its files.
func TestBoltFileBodyDamaged(t *testing.T) {
	body := randomBody(3, 300_000)
	for _, tt := range []struct {
		name   string
		damage func(file string) error
	}{
		{"byte flipped", func(file string) error {
			b, err := os.ReadFile(file)
			if err != nil {
				return err
			}
			b[len(b)/2] ^= 1
			return os.WriteFile(file, b, 0o600)
		}},
		{"truncated", func(file string) error { return os.Truncate(file, int64(len(body)-1)) }},
		{"missing", os.Remove},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "c.db")
			s := openBolt(t, &BoltOptions{Path: path, SweepInterval: -1})
			cp := store(t, s, getReq("https://example.com/a"), okResp(string(body)), "k")
			file := filepath.Join(path+".bodies", bolt.BodyFileName(nonceOf(t, s, cp.ID), bolt.KindResponse))
			if err := tt.damage(file); err != nil {
				t.Fatal(err)
			}
			if got, err := readResponse(t, s, "k"); !errors.Is(err, model.ErrCorrupt) {
				t.Fatalf("reading the damaged body = %d bytes, %v; want an error wrapping model.ErrCorrupt", len(got), err)
			}
			if _, err := s.Cleanup(ctx); err != nil {
				t.Fatal(err)
			}
			if ps, err := s.GetPairs(ctx, "k"); err != nil || len(ps) != 0 {
				t.Errorf("GetPairs after the sweep = %d pairs, %v; want none", len(ps), err)
			}
			if got := bodyFileNames(t, path); len(got) != 0 {
				t.Errorf("body files after the sweep: %q", got)
			}
			checkStats(t, s)
		})
	}
}

// TestBoltFileBodyAborted closes a body file's stream before its end: the
// pair is not stored and its file is gone.
func TestBoltFileBodyAborted(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "c.db")
	s := openBolt(t, &BoltOptions{Path: path, SweepInterval: -1})
	inc, err := s.CreatePair(ctx, getReq("https://example.com/a"))
	if err != nil {
		t.Fatal(err)
	}
	cp, err := s.AddResponse(ctx, inc.ID, okResp(string(randomBody(4, 3<<20))), "k")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(io.Discard, cp.Response.Body, 2<<20); err != nil {
		t.Fatal(err)
	}
	if got := bodyFileNames(t, path); len(got) != 1 {
		t.Errorf("body files while the body is stored: %q; want one", got)
	}
	if err := cp.Response.Body.Close(); err != nil {
		t.Fatal(err)
	}
	if got := bodyFileNames(t, path); len(got) != 0 {
		t.Errorf("body files after the stream was closed early: %q", got)
	}
	if ps, err := s.GetPairs(ctx, "k"); err != nil || len(ps) != 0 {
		t.Errorf("GetPairs = %d pairs, %v; want none", len(ps), err)
	}
	checkStats(t, s)
}

// TestBoltFileBodyOrphans leaves body files no pair refers to, as a crash
// would: a sweep removes those over a minute old, and no other file.
func TestBoltFileBodyOrphans(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "c.db")
	s := openBolt(t, &BoltOptions{Path: path, SweepInterval: -1})
	body := randomBody(5, 300_000)
	cp := store(t, s, getReq("https://example.com/a"), okResp(string(body)), "k")
	dir := path + ".bodies"
	old := time.Now().Add(-2 * orphanAge)
	kept := bolt.BodyFileName(nonceOf(t, s, cp.ID), bolt.KindResponse)
	if err := os.Chtimes(filepath.Join(dir, kept), old, old); err != nil {
		t.Fatal(err)
	}
	orphan, fresh := bolt.BodyFileName(1<<40, bolt.KindResponse), bolt.BodyFileName(1<<40+1, bolt.KindRequest)
	for _, name := range []string{orphan, fresh, "unrelated.txt"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{orphan, "unrelated.txt"} {
		if err := os.Chtimes(filepath.Join(dir, name), old, old); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	want := []string{kept, fresh, "unrelated.txt"}
	slices.Sort(want)
	if got := bodyFileNames(t, path); !slices.Equal(got, want) {
		t.Errorf("body files after the sweep = %q; want %q", got, want)
	}
	if got, err := readResponse(t, s, "k"); err != nil || !bytes.Equal(got, body) {
		t.Errorf("response body after the sweep: %d bytes, %v", len(got), err)
	}

	// The young orphan keeps the next sweep looking; once none is left,
	// sweeps no longer list the directory, until Clear.
	if err := os.Remove(filepath.Join(dir, fresh)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	late := bolt.BodyFileName(1<<40+2, bolt.KindResponse)
	if err := os.WriteFile(filepath.Join(dir, late), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(filepath.Join(dir, late), old, old); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	want = []string{kept, late, "unrelated.txt"}
	slices.Sort(want)
	if got := bodyFileNames(t, path); !slices.Equal(got, want) {
		t.Errorf("body files after a sweep with no orphan expected = %q; want %q (not listed)", got, want)
	}
	if err := s.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if got := bodyFileNames(t, path); !slices.Equal(got, []string{"unrelated.txt"}) {
		t.Errorf("body files after Clear and a sweep = %q; want only unrelated.txt", got)
	}
}

// TestBoltFileBodyMinNegative keeps every body in the database.
func TestBoltFileBodyMinNegative(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.db")
	s := openBolt(t, &BoltOptions{Path: path, FileBodyMin: -1, SweepInterval: -1})
	body := randomBody(6, 2<<20)
	store(t, s, getReq("https://example.com/a"), okResp(string(body)), "k")
	if _, err := os.Stat(path + ".bodies"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("bodies directory: %v; want none", err)
	}
	if got, err := readResponse(t, s, "k"); err != nil || !bytes.Equal(got, body) {
		t.Errorf("response body: %d bytes, %v", len(got), err)
	}
	checkStats(t, s)
}

// TestParseBodyFileName checks that BodyFileName's names parse back, and
// that no other name does.
func TestParseBodyFileName(t *testing.T) {
	for _, kind := range []bolt.Kind{bolt.KindRequest, bolt.KindResponse} {
		name := bolt.BodyFileName(0xfedcba9876543210, kind)
		nonce, k, ok := bolt.ParseBodyFileName(name)
		if !ok || nonce != 0xfedcba9876543210 || k != kind|bolt.KindFile {
			t.Errorf("ParseBodyFileName(%q) = %x, %d, %v", name, nonce, k, ok)
		}
	}
	for _, name := range []string{"", "x", "fedcba9876543210.1", "fedcba9876543210.4", "fedcba987654321g.2", "fedcba9876543210.22", ".fedcba987654321.2"} {
		if _, _, ok := bolt.ParseBodyFileName(name); ok {
			t.Errorf("ParseBodyFileName(%q) ok; want not", name)
		}
	}
}

// TestOpenBoltURLFileBodyMin sets FileBodyMin from a bolt URL.
func TestOpenBoltURLFileBodyMin(t *testing.T) {
	for _, tt := range []struct {
		param string
		files int
	}{{"file-body-min=1KiB", 1}, {"file-body-min=-1", 0}, {"", 0}} {
		t.Run(tt.param, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.db")
			u, err := url.Parse("bolt://" + filepath.ToSlash(path) + "?sweep=-1s&" + tt.param)
			if err != nil {
				t.Fatal(err)
			}
			s, err := OpenBoltURL(context.Background(), u)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			store(t, s, getReq("https://example.com/a"), okResp(string(randomBody(7, 2<<10))), "k")
			ents, _ := os.ReadDir(path + ".bodies")
			if len(ents) != tt.files {
				t.Errorf("%s: %d body files; want %d", u, len(ents), tt.files)
			}
		})
	}
}

// TestBoltFileBodyWrittenAsRead reads a body bound for a file a piece at a
// time: from FileBodyMin on, every full chunk is in the file by the time
// the reader has it (the stream holds no more than a chunk), and the body
// is stored whole.
func TestBoltFileBodyWrittenAsRead(t *testing.T) {
	const chunk, min = 16 << 10, 64 << 10
	for _, noSync := range []bool{false, true} {
		t.Run(fmt.Sprintf("nosync=%v", noSync), func(t *testing.T) {
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "c.db")
			s := openBolt(t, &BoltOptions{Path: path, ChunkSize: chunk, FileBodyMin: min, NoSync: noSync, SweepInterval: -1})
			body := randomBody(7, 2<<20+5)
			inc, err := s.CreatePair(ctx, getReq("https://example.com/a"))
			if err != nil {
				t.Fatal(err)
			}
			cp, err := s.AddResponse(ctx, inc.ID, okResp(string(body)), "k")
			if err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(path+".bodies", bolt.BodyFileName(nonceOf(t, s, cp.ID), bolt.KindResponse))
			var got bytes.Buffer
			for got.Len() < len(body) {
				n, err := io.CopyN(&got, cp.Response.Body, 10_000)
				if err == io.EOF {
					break
				}
				if err != nil || n != 10_000 {
					t.Fatalf("read %d bytes, %v", n, err)
				}
				if got.Len() < min {
					continue
				}
				fi, err := os.Stat(file)
				if err != nil {
					t.Fatal(err)
				}
				if want := int64(got.Len() / chunk * chunk); fi.Size() < want {
					t.Fatalf("after %d bytes read, the file holds %d; want at least %d", got.Len(), fi.Size(), want)
				}
			}
			if _, err := io.Copy(&got, cp.Response.Body); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), body) {
				t.Fatalf("read %d bytes; want the %d of the body", got.Len(), len(body))
			}
			if stored, err := readResponse(t, s, "k"); err != nil || !bytes.Equal(stored, body) {
				t.Fatalf("stored body: %d bytes, %v; want the %d", len(stored), err, len(body))
			}
			checkStats(t, s)
		})
	}
}

// TestBoltFileBodyMinLarge sets FileBodyMin above the first hand-over to
// the writer (1 MiB): a body that ends under it and within the hand-over
// stays in the database; one that runs past the hand-over goes to a file.
func TestBoltFileBodyMinLarge(t *testing.T) {
	for _, tt := range []struct {
		size int
		file bool
	}{{1<<20 - 1, false}, {3 << 20 / 2, true}, {3 << 20, true}} {
		t.Run(fmt.Sprint(tt.size), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.db")
			s := openBolt(t, &BoltOptions{Path: path, FileBodyMin: 2 << 20, SweepInterval: -1})
			body := randomBody(8, tt.size)
			store(t, s, getReq("https://example.com/a"), okResp(string(body)), "k")
			if got := len(bodyFileNames(t, path)); got != map[bool]int{false: 0, true: 1}[tt.file] {
				t.Errorf("%d body files; want a file: %v", got, tt.file)
			}
			if got, err := readResponse(t, s, "k"); err != nil || !bytes.Equal(got, body) {
				t.Errorf("response body: %d bytes, %v", len(got), err)
			}
			checkStats(t, s)
		})
	}
}
