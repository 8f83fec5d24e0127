package template

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hishel-go/hishel/internal/testserver"
	"github.com/hishel-go/hishel/model"
	"github.com/hishel-go/hishel/storagetest"
)

// The conditional writes the store is built on, against the test server
// (versitygw v1.8.0): If-None-Match: * refuses to overwrite an object,
// If-Match refuses a write over an ETag that is no longer the object's,
// and both answer 412, which the store reads as errPrecondition.
func TestConditionalPut(t *testing.T) {
	ctx := context.Background()
	s := open(t, testserver.S3(t), storagetest.Options{})
	key := s.n.p + "probe"
	tag1, err := s.putBytes(ctx, key, []byte("one"), "", true)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if _, err := s.putBytes(ctx, key, []byte("two"), "", true); !errors.Is(err, errPrecondition) {
		t.Fatalf("create over an existing object: %v; want errPrecondition", err)
	}
	tag2, err := s.putBytes(ctx, key, []byte("two"), tag1, false)
	if err != nil {
		t.Fatalf("write over the current ETag: %v", err)
	}
	if tag2 == tag1 {
		t.Fatalf("ETag %s unchanged by a write of other bytes", tag2)
	}
	if _, err := s.putBytes(ctx, key, []byte("three"), tag1, false); !errors.Is(err, errPrecondition) {
		t.Fatalf("write over a stale ETag: %v; want errPrecondition", err)
	}
	if b, tag, err := s.get(ctx, key); err != nil || string(b) != "two" || tag != tag2 {
		t.Fatalf("get = %q %s %v; want %q %s", b, tag, err, "two", tag2)
	}
	if _, err := s.putBytes(ctx, s.n.p+"absent", []byte("x"), tag2, false); !errors.Is(err, errPrecondition) && !errors.Is(err, errNoObject) {
		t.Fatalf("If-Match on a missing object: %v; want errPrecondition or errNoObject", err)
	}
}

// UpdatePairFunc from 16 goroutines of two stores (as two processes would
// open them) on one pair: each write is over the ETag its fn saw, so no
// increment is lost.
func TestUpdatePairFuncRaces(t *testing.T) {
	ctx := context.Background()
	srv := testserver.S3(t)
	a := open(t, srv, storagetest.Options{})
	opts := a.opts
	b, err := OpenS3(ctx, &opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	inc, err := a.CreatePair(ctx, model.Request{Method: "GET", URL: "https://example.com/n"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.AddResponse(ctx, inc.ID, model.Response{Status: 200}, "n"); err != nil {
		t.Fatal(err)
	}
	const writers, bumps = 16, 5
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		s := a
		if w%2 == 1 {
			s = b
		}
		wg.Go(func() {
			for range bumps {
				_, err := s.UpdatePairFunc(ctx, inc.ID, func(cp model.CompletePair) (model.CompletePair, error) {
					n, _ := strconv.Atoi(cp.Response.Header.Get("X-Count"))
					cp.Response.Header = cp.Response.Header.Clone()
					if cp.Response.Header == nil {
						cp.Response.Header = make(map[string][]string)
					}
					cp.Response.Header.Set("X-Count", strconv.Itoa(n+1))
					return cp, nil
				})
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	p, err := b.GetPair(ctx, inc.ID)
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	if got := p.Response.Header.Get("X-Count"); got != strconv.Itoa(writers*bumps) {
		t.Fatalf("X-Count = %s after %d increments", got, writers*bumps)
	}
}

// Store URLs: the options they set, and bad ones fail with ErrInvalid
// before any request.
func TestOpenURL(t *testing.T) {
	for _, tt := range []struct {
		url  string
		want func(o S3Options) bool
	}{
		{"s3://b/p/q?region=eu-west-1&ttl=1h", func(o S3Options) bool {
			return o.Bucket == "b" && o.Prefix == "p/q" && o.Region == "eu-west-1" && o.DefaultTTL == time.Hour
		}},
		{"s3://K:S@b?endpoint=http://127.0.0.1:7070&access-flush=2s&parallel=3&max-variants=4", func(o S3Options) bool {
			return o.AccessKey == "K" && o.SecretKey == "S" && o.Endpoint == "http://127.0.0.1:7070" &&
				o.AccessFlushInterval == 2*time.Second && o.Parallel == 3 && o.MaxVariants == 4
		}},
		{"s3://b?path-style=true&virtual-host=false", func(o S3Options) bool { return o.PathStyle && !o.VirtualHost }},
	} {
		u, _ := url.Parse(tt.url)
		o, err := urlOptions(u)
		if err != nil || !tt.want(o) {
			t.Errorf("urlOptions(%s) = %+v, %v", tt.url, o, err)
		}
	}
	for _, bad := range []string{
		"s3:opaque", "s3:///prefix-without-bucket", "s3://b?endpoint=ftp://x", "s3://b?endpoint=http://",
		"s3://b?colour=red", "s3://b?ttl=-5s", "s3://b?parallel=many", "s3://b?path-style=maybe",
	} {
		u, err := url.Parse(bad)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := OpenS3URL(context.Background(), u); !errors.Is(err, model.ErrInvalid) {
			t.Errorf("OpenS3URL(%s) = %v; want ErrInvalid", bad, err)
		}
	}
	if _, err := OpenS3(context.Background(), &S3Options{}); !errors.Is(err, model.ErrInvalid) {
		t.Errorf("OpenS3 without a bucket: %v; want ErrInvalid", err)
	}
}

// Completing a pair ranks its key's variants by their last access,
// counting the reads this process gathered and has not written yet. Those
// reads being written meanwhile (AccessFlushInterval) must not save the
// least recently used variant from MaxVariants: the cap holds after every
// completion. The flush runs every millisecond here, so it lands between
// the ranking and the eviction in most rounds.
func TestVariantCapWhileAccessFlushes(t *testing.T) {
	ctx := context.Background()
	srv := testserver.S3(t)
	clock := storagetest.NewClock()
	const maxVariants, rounds = 2, 24
	s := open(t, srv, storagetest.Options{Now: clock.Now, MaxVariants: maxVariants})
	opts := s.opts
	opts.AccessFlushInterval = time.Millisecond
	opts.Prefix += "-flushing"
	s, err := OpenS3(ctx, &opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for i := range rounds {
		clock.Advance(time.Second)
		req := model.Request{Method: "GET", URL: "https://example.com/v", Header: http.Header{"Accept-Language": {strconv.Itoa(i)}}}
		inc, err := s.CreatePair(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.AddResponse(ctx, inc.ID, model.Response{Status: 200}, "k"); err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, err := range s.Pairs(ctx, model.Filter{Keys: []string{"k"}}) {
			if err != nil {
				t.Fatal(err)
			}
			n++
		}
		if want := min(i+1, maxVariants); n != want {
			t.Fatalf("after variant %d: %d variants kept; want %d", i, n, want)
		}
		clock.Advance(time.Second)
		ps, err := s.GetPairs(ctx, "k") // reads gathered, flushed soon
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ps {
			p.Close()
		}
	}
}
