package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/cache"
	"github.com/hishel-go/hishel/model"
)

// fixture writes a cache file with one live pair, one incomplete pair and
// one expired pair, and returns its path and their IDs.
func fixture(t *testing.T) (path string, live, incomplete, expired model.PairID) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "fixture.db")
	ctx := t.Context()
	s, err := cache.OpenBolt(ctx, &cache.BoltOptions{Path: path, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	add := func(url string, ttl time.Duration, body string, cacheControl string) model.PairID {
		inc, err := s.CreatePair(ctx, model.Request{Method: "GET", URL: url,
			Header: http.Header{"Accept": {"text/plain"}}, Options: model.RequestOptions{TTL: ttl}})
		if err != nil {
			t.Fatal(err)
		}
		cp, err := s.AddResponse(ctx, inc.ID, model.Response{Status: 200,
			Header: http.Header{"Content-Type": {"text/plain"}, "Cache-Control": {cacheControl}}, Body: model.StringBody(body)}, "GET "+url)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, cp.Response.Body); err != nil {
			t.Fatal(err)
		}
		return inc.ID
	}
	live = add("http://example.test/live", time.Hour, "live body", "max-age=3600")
	expired = add("http://example.test/expired", time.Millisecond, "expired body", "max-age=0")
	inc, err := s.CreatePair(ctx, model.Request{Method: "POST", URL: "http://example.test/incomplete"})
	if err != nil {
		t.Fatal(err)
	}
	incomplete = inc.ID
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond) // the expired pair's TTL runs out
	return path, live, incomplete, expired
}

func TestInspect(t *testing.T) {
	db, live, incomplete, expired := fixture(t)

	ls := runHishel(t, "ls", "-db", db)
	if ls.code != 0 {
		t.Fatalf("hishel ls = %v; want exit 0", ls)
	}
	if n := strings.Count(ls.stdout, "\n"); n != 4 {
		t.Errorf("hishel ls printed %d lines; want a header and 3 pairs:\n%s", n, ls.stdout)
	}
	for _, tt := range []struct {
		id        model.PairID
		fields    []string
		freshness string
	}{
		{live, []string{"complete", "200", "GET", "http://example.test/live", "9", "B"}, "fresh-until="},
		{expired, []string{"complete", "200", "GET", "http://example.test/expired", "12", "B"}, "stale-since="},
		{incomplete, []string{"incomplete", "-", "POST", "http://example.test/incomplete", "0", "B"}, "-"},
	} {
		line := lineWith(ls.stdout, tt.id.String())
		got := strings.Fields(line)
		if len(got) < 9 || fmt.Sprint(got[1:7]) != fmt.Sprint(tt.fields) || !strings.HasPrefix(got[7], tt.freshness) {
			t.Errorf("hishel ls line of %s = %q; want fields %v, freshness %s… and an expiry", tt.id, line, tt.fields, tt.freshness)
		}
	}
	if line := lineWith(ls.stdout, incomplete.String()); !strings.HasSuffix(line, " never") {
		t.Errorf("hishel ls line of the incomplete pair = %q; want its expiry as never", line)
	}
	// The live pair is fresh for an hour from its storing, the HTTP way;
	// its storage expiry is its TTL's.
	if f := strings.Fields(lineWith(ls.stdout, live.String())); len(f) == 10 {
		until, err := time.Parse(time.RFC3339, strings.TrimPrefix(f[7], "fresh-until="))
		if err != nil || until.Sub(time.Now()) < 50*time.Minute || f[8] != "in" || !strings.HasPrefix(f[9], "59m") && f[9] != "1h" {
			t.Errorf("hishel ls: live pair fresh until %s, expires %s %s (%v); want both about an hour from now", f[7], f[8], f[9], err)
		}
	}
	if line := lineWith(ls.stdout, expired.String()); !strings.HasSuffix(line, " ago") {
		t.Errorf("hishel ls line of the expired pair = %q; want its expiry as a time ago", line)
	}

	show := runHishel(t, "show", "-db", db, live.String())
	for _, want := range []string{"key:           GET http://example.test/live", "> Accept: text/plain",
		"< 200 OK", "< Content-Type: text/plain", "ttl:           1h (refresh", "response size: 9 B\n", "\nlive body"} {
		if !strings.Contains(show.stdout, want) {
			t.Errorf("hishel show = %v\nwant %q in stdout", show, want)
		}
	}
	show = runHishel(t, "show", "-n", "0", "-db", db, strings.ReplaceAll(live.String(), "-", ""))
	if show.code != 0 || strings.Contains(show.stdout, "live body") {
		t.Errorf("hishel show -n 0 (ID without dashes) = %v; want the heads and no body", show)
	}
	show = runHishel(t, "show", "-db", db, expired.String())
	if show.code != 0 || !strings.Contains(show.stdout, "(no response body available: the pair is expired)") {
		t.Errorf("hishel show of an expired pair = %v; want its heads and no body", show)
	}
	show = runHishel(t, "show", "-db", db, incomplete.String())
	if show.code != 0 || !strings.Contains(show.stdout, "> POST http://example.test/incomplete") ||
		!strings.Contains(show.stdout, "the pair is incomplete") {
		t.Errorf("hishel show of an incomplete pair = %v; want its request head and no body", show)
	}
	unknown := model.NewPairID().String()
	if r := runHishel(t, "show", "-db", db, unknown); r.code != exitError || !strings.Contains(r.stderr, "no pair "+unknown) {
		t.Errorf("hishel show of an unknown ID = %v; want exit 1, %q", r, "no pair "+unknown)
	}
	if r := runHishel(t, "rm", "-db", db, unknown); r.code != exitError || !strings.Contains(r.stderr, "'hishel ls -db") {
		t.Errorf("hishel rm of an unknown ID = %v; want exit 1 and a hint", r)
	}

	gc := runHishel(t, "gc", "-db", db, "-incomplete-age", "1ns")
	if gc.code != 0 || !strings.Contains(gc.stdout, "expired: 1\n") || !strings.Contains(gc.stdout, "abandoned: 1\n") {
		t.Errorf("hishel gc -incomplete-age 1ns = %v; want expired: 1, abandoned: 1", gc)
	}
	stats := runHishel(t, "stats", "-db", db)
	want := "pairs: 1\nincomplete: 0\ndeleted: 1\nstored bytes: "
	if stats.code != 0 || !strings.HasPrefix(stats.stdout, want) {
		t.Errorf("hishel stats = %v; want stdout starting %q", stats, want)
	}
}

// Every command fails with exit status 1 and says so when the cache file
// is damaged: its structure (at open), or a record or chunk (as read).
func TestInspectDamaged(t *testing.T) {
	db, live, _, _ := fixture(t)
	damaged := func(t *testing.T, fn func(tx *bbolt.Tx) error) string {
		data, err := os.ReadFile(db)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "damaged.db")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		raw, err := bbolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		if err := raw.Update(fn); err != nil {
			t.Fatal(err)
		}
		return path
	}
	flip := func(bucket []byte, seek []byte) func(tx *bbolt.Tx) error {
		return func(tx *bbolt.Tx) error {
			b := tx.Bucket(bucket)
			k, v := b.Cursor().Seek(seek)
			v = bytes.Clone(v)
			v[len(v)/2] ^= 1
			return b.Put(bytes.Clone(k), v)
		}
	}
	record := damaged(t, flip(bolt.BucketPairs, live[:]))
	chunk := damaged(t, func(tx *bbolt.Tx) error {
		v := tx.Bucket(bolt.BucketPairs).Get(live[:])
		rec, err := bolt.DecodeRecord(v)
		if err != nil {
			return err
		}
		return flip(bolt.BucketChunks, bolt.ChunkSeek(rec.Nonce, bolt.KindResponse, 0))(tx)
	})
	stats := damaged(t, flip(bolt.BucketMeta, bolt.MetaStats))
	for _, tt := range []struct {
		name string
		args []string
	}{
		{"ls, a record", []string{"ls", "-db", record}},
		{"show, a record", []string{"show", "-db", record, live.String()}},
		{"rm, a record", []string{"rm", "-db", record, live.String()}},
		{"show, a chunk", []string{"show", "-db", chunk, live.String()}},
		{"stats, the counters", []string{"stats", "-db", stats}},
		{"gc, the counters", []string{"gc", "-db", stats}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := runHishel(t, tt.args...)
			if r.code != exitError || !(strings.Contains(r.stderr, "is damaged") || strings.Contains(r.stderr, "or is damaged")) ||
				strings.Contains(r.stderr, "panic") || strings.Contains(r.stdout, "live body") {
				t.Errorf("hishel %s on a damaged file = %v; want exit 1 and a message that it is damaged, no body", strings.Join(tt.args, " "), r)
			}
		})
	}
}

// rm and ls select pairs by URL, key, expiry and age; rm -dry-run lists
// them and removes nothing.
func TestRmFilters(t *testing.T) {
	db, live, incomplete, expired := fixture(t)
	steps := []struct {
		args     []string
		code     int
		want     []string // in stdout, or in stderr for a failure
		dontWant []string
	}{
		{[]string{"ls", "-url", "HTTP://Example.test:80/live"}, 0, []string{live.String()}, []string{expired.String(), incomplete.String()}},
		{[]string{"ls", "-url-prefix", "http://example.test/", "-key-prefix", "GET "}, 0, []string{live.String(), expired.String()}, []string{incomplete.String()}},
		{[]string{"rm", "-url", "http://example.test/live", "-dry-run"}, 0, []string{live.String() + "\tcomplete\tGET http://example.test/live\n", "would remove 1 pair\n"}, nil},
		{[]string{"ls", "-key", "GET http://example.test/live"}, 0, []string{live.String() + "  complete"}, nil},
		{[]string{"rm", "-expired"}, 0, []string{"removed 1 pair (soft delete"}, nil},
		{[]string{"ls", "-expired"}, 0, nil, []string{expired.String()}},
		{[]string{"rm", "-older-than", "24h"}, 0, []string{"removed 0 pairs"}, nil},
		{[]string{"rm", "-older-than", "1ns", "-dry-run"}, 0, []string{live.String(), incomplete.String(), "would remove 2 pairs\n"}, []string{expired.String()}},
		{[]string{"rm", "-url", "http://example.test/incomplete"}, 0, []string{"removed 1 pair"}, nil},
		{[]string{"rm", "-older-than", "1ns"}, 0, []string{"removed 1 pair"}, nil},
		{[]string{"rm", live.String(), "-url", "http://example.test/live"}, exitUsage, []string{"give a pair ID or filter flags"}, nil},
		{[]string{"rm", "-dry-run"}, exitUsage, []string{"-dry-run lists what filter flags"}, nil},
		{[]string{"rm", "-older-than", "-1h"}, exitUsage, []string{"-older-than must not be negative"}, nil},
		{[]string{"rm", "-url", "example.test/live"}, exitUsage, []string{"want an absolute URL"}, nil},
	}
	for _, st := range steps {
		r := runHishel(t, append(st.args, "-db", db)...)
		out := r.stdout
		if st.code != 0 {
			out = r.stderr
		}
		if r.code != st.code {
			t.Errorf("hishel %v = %v; want exit %d", st.args, r, st.code)
			continue
		}
		for _, w := range st.want {
			if !strings.Contains(out, w) {
				t.Errorf("hishel %v = %v\nwant %q", st.args, r, w)
			}
		}
		for _, w := range st.dontWant {
			if strings.Contains(out, w) {
				t.Errorf("hishel %v = %v\nwant no %q", st.args, r, w)
			}
		}
	}
	stats := runHishel(t, "stats", "-db", db)
	if want := "pairs: 0\nincomplete: 0\ndeleted: 3\n"; !strings.HasPrefix(stats.stdout, want) {
		t.Errorf("hishel stats after the removals = %v; want %q", stats, want)
	}
}

func TestInspectForeignFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(path, []byte(strings.Repeat("not a database\n", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	r := runHishel(t, "ls", "-db", path)
	if r.code != exitError || !strings.Contains(r.stderr, "is not a hishel cache file") {
		t.Errorf("hishel ls on a text file = %v; want exit 1 and %q", r, "is not a hishel cache file")
	}
}

// TestExitCode checks the mapping of errors to exit statuses in process.
func TestExitCode(t *testing.T) {
	tests := []struct {
		err  error
		want int
	}{
		{nil, exitOK},
		{errHelp, exitOK},
		{&usageError{cmd: "ls", msg: "x"}, exitUsage},
		{fmt.Errorf("wrapped: %w", &usageError{msg: "x"}), exitUsage},
		{dbError("f.db", fmt.Errorf("open: %w", model.ErrLocked)), exitInUse},
		{dbError("f.db", model.ErrCorrupt), exitError},
		{errors.New("boom"), exitError},
	}
	for _, tt := range tests {
		if got := exitCode(tt.err); got != tt.want {
			t.Errorf("exitCode(%v) = %d; want %d", tt.err, got, tt.want)
		}
	}
	if err := dbError("f.db", model.ErrLocked); !errors.Is(err, model.ErrLocked) {
		t.Errorf("dbError(ErrLocked) = %v; want it to wrap model.ErrLocked", err)
	}
}

// TestParseFlags checks that flags may come before and after arguments.
func TestParseFlags(t *testing.T) {
	tests := []struct {
		args    []string
		db      string
		pos     []string
		wantErr bool
	}{
		{args: []string{"-db", "a", "ID"}, db: "a", pos: []string{"ID"}},
		{args: []string{"ID", "-db", "a"}, db: "a", pos: []string{"ID"}},
		{args: []string{"-db=a", "--", "-ID"}, db: "a", pos: []string{"-ID"}},
		{args: []string{"ID", "ID2"}, wantErr: true},
		{args: []string{"-x"}, wantErr: true},
	}
	for _, tt := range tests {
		fs := newFlagSet("show")
		db := fs.String("db", "", "")
		pos, err := parseFlags(fs, "show", tt.args, 1, io.Discard)
		if tt.wantErr {
			var ue *usageError
			if !errors.As(err, &ue) {
				t.Errorf("parseFlags(%q) error = %v; want a usage error", tt.args, err)
			}
			continue
		}
		if err != nil || *db != tt.db || fmt.Sprint(pos) != fmt.Sprint(tt.pos) {
			t.Errorf("parseFlags(%q) = %q, -db %q, %v; want %q, -db %q", tt.args, pos, *db, err, tt.pos, tt.db)
		}
	}
}
