package redis_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"time"

	"github.com/hishel-go/hishel"
	"github.com/hishel-go/hishel/cache"
	"github.com/hishel-go/hishel/redis"
)

// A Transport whose cache lives in Redis: every process that opens the
// same server and prefix shares it. (Compiled, not run: it needs a Redis.)
func ExampleOpenRedis() {
	ctx := context.Background()
	store, err := redis.OpenRedis(ctx, &redis.RedisOptions{Addr: "127.0.0.1:6379", Prefix: "myapp:", DefaultTTL: time.Hour})
	if err != nil {
		log.Fatal(err) // wraps cache.ErrUnavailable when Redis does not answer
	}
	defer store.Close()
	tr, _ := hishel.NewTransport(&hishel.Options{Storage: store})
	defer tr.Close()
	resp, err := (&http.Client{Transport: tr}).Get("https://example.com/")
	if err == nil {
		fmt.Println(resp.Header.Get("Cache-Status")) // detail=storage-unavailable while Redis is down
		resp.Body.Close()
	}
}

// The same store by URL, as hishel proxy -store takes it: importing this
// package registers the redis scheme with cache.Open.
func Example_open() {
	store, err := cache.Open(context.Background(), "redis://127.0.0.1:6379/0?prefix=myapp:&ttl=1h&max-bytes=512MiB")
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
}
