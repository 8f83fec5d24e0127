package template

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/hishel-go/hishel/internal/testserver"
	"github.com/hishel-go/hishel/model"
	"github.com/hishel-go/hishel/storagetest"
)

func TestMain(m *testing.M) {
	if os.Getenv(crashEnv) != "" {
		crashChild() // never returns
	}
	storagetest.HelperMain(openAt)
	os.Exit(testserver.Main(m))
}

// testTimeout bounds Redis commands in tests that do not test timeouts:
// long enough for a loaded machine.
const testTimeout = 10 * time.Second

// open opens a store on this test's share of the test Redis, with opts
// (Addr and Prefix set here), closed when the test ends.
func open(tb testing.TB, srv testserver.RedisServer, opts RedisOptions) *Redis {
	tb.Helper()
	opts.Addr, opts.Username, opts.Password, opts.DB, opts.Prefix = srv.Addr, srv.Username, srv.Password, srv.DB, srv.Prefix
	if opts.SweepInterval == 0 {
		opts.SweepInterval = -1
	}
	if opts.Timeout == 0 {
		opts.Timeout = testTimeout
	}
	s, err := OpenRedis(context.Background(), &opts)
	if err != nil {
		tb.Fatalf("OpenRedis: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// client is a plain connection to the test server, to look at and damage
// what the storage wrote.
func client(tb testing.TB, srv testserver.RedisServer) *goredis.Client {
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr, Username: srv.Username, Password: srv.Password, DB: srv.DB})
	tb.Cleanup(func() { c.Close() })
	return c
}

// store stores a pair and reads both bodies to the end.
func store(tb testing.TB, s *Redis, req model.Request, resp model.Response, key string) model.CompletePair {
	tb.Helper()
	ctx := context.Background()
	inc, err := s.CreatePair(ctx, req)
	if err != nil {
		tb.Fatalf("CreatePair: %v", err)
	}
	if _, err := io.Copy(io.Discard, inc.Request.Body); err != nil {
		tb.Fatalf("storing the request body: %v", err)
	}
	cp, err := s.AddResponse(ctx, inc.ID, resp, key)
	if err != nil {
		tb.Fatalf("AddResponse: %v", err)
	}
	if _, err := io.Copy(io.Discard, cp.Response.Body); err != nil {
		tb.Fatalf("storing the response body: %v", err)
	}
	return cp
}

func getReq(u string) model.Request {
	return model.Request{Method: "GET", URL: u, Header: http.Header{"Accept": {"*/*"}}}
}

func okResp(body []byte) model.Response {
	return model.Response{Status: 200, Header: http.Header{"Content-Type": {"text/plain"}}, Body: model.BytesBody(body)}
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7+i>>10) ^ seed
	}
	return b
}

// ownKeys lists the keys under the test's prefix with their TTLs.
func ownKeys(tb testing.TB, c *goredis.Client, prefix string) map[string]time.Duration {
	tb.Helper()
	ctx := context.Background()
	out := map[string]time.Duration{}
	iter := c.Scan(ctx, 0, globEscape(prefix)+"*", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		ttl, err := c.PTTL(ctx, k).Result()
		if err != nil {
			tb.Fatal(err)
		}
		if ttl != -2*time.Nanosecond && ttl != -2*time.Millisecond { // not gone meanwhile
			out[strings.TrimPrefix(k, prefix)] = ttl
		}
	}
	if err := iter.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}

// persistent reports whether a TTL from PTTL means "none".
func persistent(ttl time.Duration) bool { return ttl < 0 }

// indexKey reports whether k (without the prefix) is one of the storage's
// own keys, which carry no TTL: they hold entries of every pair.
func indexKey(k string) bool { return len(k) == 1 }

// Every key carries a Redis TTL set with it, except the indexes and the
// keys of complete pairs that never expire: incomplete pairs live their
// IncompleteAge, expiring ones their expiry and retention, soft-deleted
// ones their retention, each plus the grace, and chunks at least as long
// as their record.
func TestKeysCarryTTLs(t *testing.T) {
	srv := testserver.Redis(t)
	c := client(t, srv)
	const grace = 30 * time.Minute
	s := open(t, srv, RedisOptions{ExpiryGrace: grace, ChunkSize: 1024, DeletedRetention: 2 * time.Hour})
	ctx := context.Background()
	body := pattern(5000, 1)

	expiring := getReq("u")
	expiring.Options.TTL = 10 * time.Minute
	exp := store(t, s, expiring, okResp(body), "expiring")
	keep := store(t, s, getReq("u"), okResp(body), "forever")
	removed := store(t, s, expiring, okResp(body), "removed")
	if err := s.Remove(ctx, removed.ID); err != nil {
		t.Fatal(err)
	}
	inc, err := s.CreatePair(ctx, model.Request{Method: "PUT", URL: "u", Body: model.BytesBody(pattern(3<<20, 2))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(inc.Request.Body, make([]byte, 3<<19)); err != nil { // some chunks written
		t.Fatal(err)
	}

	near := func(got, want time.Duration) bool { return got > want-time.Minute && got <= want+time.Second }
	keys := ownKeys(t, c, srv.Prefix)
	seen := map[string]int{}
	for k, ttl := range keys {
		var id model.PairID
		switch {
		case indexKey(k):
			if !persistent(ttl) {
				t.Errorf("index %s has TTL %v; want none", k, ttl)
			}
			continue
		case strings.HasPrefix(k, "k:"):
			seen["keyset"]++
			continue
		case strings.HasPrefix(k, "r:"), strings.HasPrefix(k, "c:"):
			id, err = parseID(k[2:34])
			if err != nil {
				t.Fatalf("key %s: %v", k, err)
			}
		default:
			t.Errorf("unexpected key %s", k)
			continue
		}
		chunk := k[0] == 'c'
		var want time.Duration // 0: none
		switch id {
		case exp.ID:
			want = 10*time.Minute + 2*time.Hour + grace
			if chunk { // and the chunks a TTL longer, at least the grace
				want += grace
			}
		case keep.ID:
			want = 0
		case removed.ID:
			want = 2*time.Hour + grace
		case inc.ID:
			want = time.Hour + grace
		default:
			t.Errorf("key %s of an unknown pair", k)
			continue
		}
		seen[fmt.Sprint(id, chunk)]++
		switch {
		case want == 0 && !persistent(ttl):
			t.Errorf("key %s of a pair that never expires has TTL %v; want none", k, ttl)
		case want != 0 && !near(ttl, want):
			t.Errorf("key %s has TTL %v; want about %v", k, ttl, want)
		}
	}
	for _, id := range []model.PairID{exp.ID, keep.ID, removed.ID, inc.ID} {
		if seen[fmt.Sprint(id, false)] != 1 || seen[fmt.Sprint(id, true)] == 0 {
			t.Errorf("pair %s: %d records and %d chunks; want one record and its chunks", id, seen[fmt.Sprint(id, false)], seen[fmt.Sprint(id, true)])
		}
	}
	if seen["keyset"] != 2 {
		t.Errorf("%d key sets; want 2 (the removed pair's is gone with it)", seen["keyset"])
	}
	inc.Request.Body.Close()
}

// Redis reclaims by itself what no sweep reclaimed: with no sweep running,
// an expired pair's keys are gone a grace period after its expiry and
// retention, and the next sweep drops what still counted it.
func TestNativeExpiry(t *testing.T) {
	srv := testserver.Redis(t)
	c := client(t, srv)
	s := open(t, srv, RedisOptions{DefaultTTL: 100 * time.Millisecond, DeletedRetention: time.Millisecond,
		ExpiryGrace: time.Millisecond, ChunkSize: 1024, RefreshTTLOnAccess: model.NoRefresh})
	store(t, s, getReq("u"), okResp(pattern(4000, 3)), "k")
	if st, _ := s.Stats(context.Background()); st.Pairs != 1 {
		t.Fatalf("Stats() = %+v; want one pair", st)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		left := 0
		for k := range ownKeys(t, c, srv.Prefix) {
			if !indexKey(k) {
				left++
			}
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("10 s after the pair expired, %d of its keys are left: %v", left, ownKeys(t, c, srv.Prefix))
		}
		time.Sleep(100 * time.Millisecond)
	}
	res, err := s.Cleanup(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res != (model.SweepResult{}) {
		t.Errorf("Cleanup() = %+v; want nothing counted: Redis reclaimed the pair", res)
	}
	if st, err := s.Stats(context.Background()); err != nil || st != (model.Stats{}) {
		t.Errorf("Stats() after the sweep = %+v, %v; want zero", st, err)
	}
	checkNoPairKeys(t, c, srv.Prefix)
}

// checkNoPairKeys checks that no key of a pair is left under prefix (the
// indexes may be: the byte counter stays, at zero).
func checkNoPairKeys(t *testing.T, c *goredis.Client, prefix string) {
	t.Helper()
	for k := range ownKeys(t, c, prefix) {
		if !indexKey(k) {
			t.Errorf("key %s left after the sweep", k)
		}
	}
	if n, err := c.Get(context.Background(), prefix+"n").Int64(); err != nil && err != goredis.Nil || n != 0 {
		t.Errorf("byte count after the sweep = %d, %v; want 0", n, err)
	}
}

// A pair whose chunk is lost (deleted, evicted by Redis's maxmemory) or
// damaged, or whose record is damaged, is never served short: reads fail
// with ErrCorrupt, and the next sweep removes it.
func TestDamage(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		damage func(t *testing.T, c *goredis.Client, prefix string, cp model.CompletePair, nonce string)
		// lookup: GetPairs fails (a record); otherwise the body read does.
		lookup bool
	}{
		{"chunk lost", func(t *testing.T, c *goredis.Client, p string, cp model.CompletePair, n string) {
			c.Del(ctx, p+"c:"+idHex(cp.ID)+":"+n+":s:1")
		}, false},
		{"last chunk lost", func(t *testing.T, c *goredis.Client, p string, cp model.CompletePair, n string) {
			c.Del(ctx, p+"c:"+idHex(cp.ID)+":"+n+":s:4")
		}, false},
		{"chunk damaged", func(t *testing.T, c *goredis.Client, p string, cp model.CompletePair, n string) {
			c.SetRange(ctx, p+"c:"+idHex(cp.ID)+":"+n+":s:2", 10, "X")
		}, false},
		{"chunks swapped", func(t *testing.T, c *goredis.Client, p string, cp model.CompletePair, n string) {
			a, b := p+"c:"+idHex(cp.ID)+":"+n+":s:0", p+"c:"+idHex(cp.ID)+":"+n+":s:1"
			va, vb := c.Get(ctx, a).Val(), c.Get(ctx, b).Val()
			c.Set(ctx, a, vb, 0)
			c.Set(ctx, b, va, 0)
		}, false},
		{"record damaged", func(t *testing.T, c *goredis.Client, p string, cp model.CompletePair, n string) {
			r := c.HGet(ctx, p+"r:"+idHex(cp.ID), fRecord).Val()
			c.HSet(ctx, p+"r:"+idHex(cp.ID), fRecord, r[:20]+"X"+r[21:])
		}, true},
		{"access times damaged", func(t *testing.T, c *goredis.Client, p string, cp model.CompletePair, n string) {
			c.HSet(ctx, p+"r:"+idHex(cp.ID), fAccess, "short")
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := testserver.Redis(t)
			c := client(t, srv)
			s := open(t, srv, RedisOptions{ChunkSize: 1000})
			body := pattern(4500, 4) // five chunks
			cp := store(t, s, getReq("u"), okResp(body), "k")
			st, _, err := s.read(ctx, cp.ID)
			if err != nil {
				t.Fatal(err)
			}
			tt.damage(t, c, srv.Prefix, cp, st.nonce)
			ps, err := s.GetPairs(ctx, "k")
			if tt.lookup {
				if !errors.Is(err, model.ErrCorrupt) {
					t.Fatalf("GetPairs() error = %v; want ErrCorrupt", err)
				}
			} else {
				if err != nil || len(ps) != 1 {
					t.Fatalf("GetPairs() = %d pairs, %v; want the pair", len(ps), err)
				}
				got, err := model.ReadAll(ps[0].Response.Body)
				if !errors.Is(err, model.ErrCorrupt) {
					t.Fatalf("reading the damaged body = %d bytes, %v; want ErrCorrupt", len(got), err)
				}
				if !bytes.HasPrefix(body, got) {
					t.Errorf("the bytes read before the error are not the body's")
				}
				ps[0].Request.Body.Close()
			}
			res, err := s.Cleanup(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if res.Purged != 1 {
				t.Errorf("Cleanup() = %+v; want the damaged pair removed", res)
			}
			if ps, err := s.GetPairs(ctx, "k"); err != nil || len(ps) != 0 {
				t.Errorf("GetPairs() after the sweep = %d pairs, %v; want none", len(ps), err)
			}
			if st, err := s.Stats(ctx); err != nil || st != (model.Stats{}) {
				t.Errorf("Stats() after the sweep = %+v, %v; want zero", st, err)
			}
			checkNoPairKeys(t, c, srv.Prefix)
		})
	}
}

// Under Redis's own maxmemory with volatile-lru or volatile-ttl, Redis
// evicts keys of pairs (never the indexes, which have no TTL): whatever it
// evicted, a pair is served whole or fails with ErrCorrupt, never short;
// the sweep then removes the damaged pairs, and the storage stores and
// serves pairs as before once Redis has room.
//
// Which keys Redis evicts is not the test's to say: Redis's LRU clock
// ticks once a second, so keys written within one second are equally old
// to volatile-lru, which evicts at random among them; and volatile-ttl
// takes first the chunks of the pair being stored, whose TTL is the short
// one of incomplete pairs until it completes.
func TestMaxmemoryEviction(t *testing.T) {
	for _, policy := range []string{"volatile-lru", "volatile-ttl"} {
		t.Run(policy, func(t *testing.T) {
			srv, _ := testserver.OwnRedis(t)
			c := client(t, srv)
			ctx := context.Background()
			for _, kv := range [][2]string{{"maxmemory", "8mb"}, {"maxmemory-policy", policy}} {
				if err := c.ConfigSet(ctx, kv[0], kv[1]).Err(); err != nil {
					t.Fatal(err)
				}
			}
			s := open(t, srv, RedisOptions{DefaultTTL: time.Hour, ChunkSize: 16 << 10})
			const n = 60
			bodies := map[string][]byte{}
			stored := 0
			for i := range n {
				key := fmt.Sprint("k", i)
				body := pattern(256<<10, byte(i))
				bodies[key] = body
				inc, err := s.CreatePair(ctx, getReq("u"))
				if err != nil {
					continue // out of memory: refused whole
				}
				cp, err := s.AddResponse(ctx, inc.ID, okResp(body), key)
				if err != nil {
					continue
				}
				if _, err := io.Copy(io.Discard, cp.Response.Body); err == nil {
					stored++
				}
			}
			// check reads every pair back: whole, absent, failing with
			// ErrCorrupt (a chunk gone: marked for the sweep) or, if Redis
			// evicts its record while the body is read, ErrRemoved; never
			// short.
			check := func() (whole, failed int) {
				for key, body := range bodies {
					ps, err := s.GetPairs(ctx, key)
					if err != nil {
						if !errors.Is(err, model.ErrCorrupt) {
							t.Errorf("GetPairs(%s) error = %v; want a pair, none, or ErrCorrupt", key, err)
						}
						failed++
						continue
					}
					for _, p := range ps {
						got, err := model.ReadAll(p.Response.Body)
						switch {
						case err == nil && bytes.Equal(got, body):
							whole++
						case errors.Is(err, model.ErrCorrupt), errors.Is(err, model.ErrRemoved):
							failed++
						default:
							t.Errorf("GetPairs(%s) body = %d bytes, %v; want the %d bytes stored, ErrCorrupt or ErrRemoved", key, len(got), err, len(body))
						}
						p.Request.Body.Close()
					}
				}
				return whole, failed
			}
			whole, failed := check()
			t.Logf("%d bodies of 256 KiB under maxmemory 8mb, %s: %d stored, %d read back whole, %d failed (corrupt or removed)", n, policy, stored, whole, failed)
			if whole == n {
				t.Errorf("every pair read back: Redis evicted nothing, so the test tested nothing")
			}
			for _, k := range []string{"a", "x", "b", "n"} { // i is empty, so Redis removed it
				if ok, _ := c.Exists(ctx, srv.Prefix+k).Result(); ok != 1 {
					t.Errorf("index %s was evicted; %s must keep keys without a TTL", k, policy)
				}
			}

			// Redis evicts before any command while it is over maxmemory,
			// reads included (their replies count), so it went on evicting
			// while check read. Lift the limit, read every pair again so
			// that the sweep knows every damaged one; after the sweep every
			// pair left reads back whole.
			if err := c.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
				t.Fatal(err)
			}
			check()
			if _, err := s.Cleanup(ctx); err != nil {
				t.Fatal(err)
			}
			if whole, failed := check(); failed != 0 {
				t.Errorf("after the sweep %d pairs read back whole and %d failed; want none failing", whole, failed)
			}

			// With room again, the storage stores and serves a pair whole.
			body := pattern(256<<10, 0xee)
			inc, err := s.CreatePair(ctx, getReq("u"))
			if err != nil {
				t.Fatal(err)
			}
			cp, err := s.AddResponse(ctx, inc.ID, okResp(body), "after")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, cp.Response.Body); err != nil {
				t.Fatal(err)
			}
			if ps, err := s.GetPairs(ctx, "after"); err != nil || len(ps) != 1 {
				t.Errorf("GetPairs(after) = %d pairs, %v; want the pair stored with room again", len(ps), err)
			} else if got, err := model.ReadAll(ps[0].Response.Body); err != nil || !bytes.Equal(got, body) {
				t.Errorf("the pair stored with room again reads back %d bytes, %v; want it whole", len(got), err)
			}
		})
	}
}

// Stores that share a Redis and a prefix (processes of a fleet) share the
// pairs: one stores, another serves, updates and removes them, and
// UpdatePairFunc is atomic across them.
func TestShared(t *testing.T) {
	srv := testserver.Redis(t)
	a := open(t, srv, RedisOptions{})
	b := open(t, srv, RedisOptions{})
	ctx := context.Background()
	body := pattern(200_000, 5)
	cp := store(t, a, getReq("u"), okResp(body), "k")
	ps, err := b.GetPairs(ctx, "k")
	if err != nil || len(ps) != 1 {
		t.Fatalf("GetPairs through the other store = %d pairs, %v; want the pair", len(ps), err)
	}
	if got, err := model.ReadAll(ps[0].Response.Body); err != nil || !bytes.Equal(got, body) {
		t.Fatalf("body through the other store = %d bytes, %v", len(got), err)
	}
	ps[0].Request.Body.Close()

	const workers, rounds = 8, 10
	var wg sync.WaitGroup
	errs := make(chan error, 2*workers)
	for i := range 2 * workers {
		s := []*Redis{a, b}[i%2]
		wg.Go(func() {
			for range rounds {
				p, err := s.UpdatePairFunc(ctx, cp.ID, func(p model.CompletePair) (model.CompletePair, error) {
					n := 0
					fmt.Sscan(p.Response.Header.Get("X-N"), &n)
					p.Response.Header = p.Response.Header.Clone()
					p.Response.Header.Set("X-N", fmt.Sprint(n+1))
					return p, nil
				})
				if err != nil {
					errs <- err
					return
				}
				p.Close()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("UpdatePairFunc: %v", err)
	}
	p, err := a.GetPair(ctx, cp.ID)
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	if got, want := p.Response.Header.Get("X-N"), fmt.Sprint(2*workers*rounds); got != want {
		t.Errorf("after %s increments through two stores, X-N = %s; want %s: an update was lost", want, got, want)
	}
	if err := b.Remove(ctx, cp.ID); err != nil {
		t.Fatal(err)
	}
	if ps, err := a.GetPairs(ctx, "k"); err != nil || len(ps) != 0 {
		t.Errorf("GetPairs after the other store removed the pair = %d pairs, %v; want none", len(ps), err)
	}
}

// MaxVariants caps the complete pairs of a key: the least recently used
// others go.
func TestMaxVariants(t *testing.T) {
	srv := testserver.Redis(t)
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func() { mu.Lock(); now = now.Add(time.Second); mu.Unlock() }
	s := open(t, srv, RedisOptions{MaxVariants: 3, Now: clock})
	for i := range 5 {
		store(t, s, getReq("u"), okResp([]byte(fmt.Sprint(i))), "k")
		advance()
	}
	store(t, s, getReq("u"), okResp([]byte("other")), "other")
	ps, err := s.GetPairs(context.Background(), "k")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range ps {
		b, _ := model.ReadAll(p.Response.Body)
		p.Request.Body.Close()
		got = append(got, string(b))
	}
	if strings.Join(got, ",") != "4,3,2" {
		t.Errorf("GetPairs(k) after 5 variants under a cap of 3 = %q; want the last 3: 4,3,2", got)
	}
	if st, _ := s.Stats(context.Background()); st.Pairs != 4 {
		t.Errorf("Stats().Pairs = %d; want 4", st.Pairs)
	}
}

// OpenRedisURL reads the server, the database, the prefix and the options
// from the URL; bad URLs are ErrInvalid.
func TestParseURL(t *testing.T) {
	tests := []struct {
		url     string
		want    RedisOptions
		wantErr bool
	}{
		{"redis://localhost", RedisOptions{Addr: "localhost:6379"}, false},
		{"redis://u:p%40ss@10.0.0.1:7000/3?prefix=app:cache:&timeout=250ms&retry-after=2s&grace=10m&ttl=1h&max-bytes=1GiB",
			RedisOptions{Addr: "10.0.0.1:7000", Username: "u", Password: "p@ss", DB: 3, Prefix: "app:cache:", Timeout: 250 * time.Millisecond,
				RetryAfter: 2 * time.Second, ExpiryGrace: 10 * time.Minute, DefaultTTL: time.Hour, MaxBytes: 1 << 30}, false},
		{"redis://:secret@h:1/", RedisOptions{Addr: "h:1", Password: "secret"}, false},
		{"redis:///0", RedisOptions{}, true},
		{"redis:host", RedisOptions{}, true},
		{"redis://h/x", RedisOptions{}, true},
		{"redis://h/-1", RedisOptions{}, true},
		{"redis://h?timeout=soon", RedisOptions{}, true},
		{"redis://h?nosync=1", RedisOptions{}, true},
	}
	for _, tt := range tests {
		u, err := url.Parse(tt.url)
		if err != nil {
			t.Fatal(err)
		}
		got, err := parseURL(u)
		if (err != nil) != tt.wantErr || err != nil && !errors.Is(err, model.ErrInvalid) {
			t.Errorf("parseURL(%q) error = %v; want error %v wrapping ErrInvalid", tt.url, err, tt.wantErr)
			continue
		}
		if err == nil && fmt.Sprintf("%+v", *got) != fmt.Sprintf("%+v", tt.want) {
			t.Errorf("parseURL(%q) = %+v; want %+v", tt.url, *got, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("parseURL(%q) error shows the password: %v", tt.url, err)
		}
	}
}

// With ReplaceVariants, completing a pair removes the older pairs of its
// key that are the same variant, and only those.
func TestReplaceVariants(t *testing.T) {
	srv := testserver.Redis(t)
	s := open(t, srv, RedisOptions{ReplaceVariants: true})
	variant := func(lang, vary string) (model.Request, model.Response) {
		req := getReq("u")
		req.Header.Set("Accept-Language", lang)
		resp := okResp([]byte(lang + "/" + vary))
		if vary != "" {
			resp.Header.Set("Vary", vary)
		}
		return req, resp
	}
	tests := []struct {
		name  string
		store [][2]string // language, Vary
		want  []string    // bodies served, newest first
	}{
		{"by Vary", [][2]string{{"en", "Accept-Language"}, {"fr", "accept-language"}, {"en", "Accept-Language"}},
			[]string{"en/Accept-Language", "fr/accept-language"}},
		{"no Vary", [][2]string{{"en", ""}, {"fr", ""}}, []string{"fr/"}},
		{"Vary star", [][2]string{{"en", "*"}, {"en", "*"}}, []string{"en/*", "en/*"}},
		{"other Vary", [][2]string{{"en", "Accept-Language"}, {"en", "Accept-Encoding"}},
			[]string{"en/Accept-Encoding", "en/Accept-Language"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, v := range tt.store {
				req, resp := variant(v[0], v[1])
				store(t, s, req, resp, tt.name)
			}
			ps, err := s.GetPairs(context.Background(), tt.name)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range ps {
				b, _ := model.ReadAll(p.Response.Body)
				p.Request.Body.Close()
				got = append(got, string(b))
			}
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("GetPairs() = %q; want %q", got, tt.want)
			}
		})
	}
}
