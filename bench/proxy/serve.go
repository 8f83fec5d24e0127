package main

import (
	"bytes"
	"log"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// piece is the largest body kept in memory: larger ones are written as
// repeats of it.
const piece = 1 << 20

// serve runs the minimal Go server on addr: the origin, and the Go ceiling
// (the same program, measured directly). It serves /hit/N and
// /miss/N/ANYTHING with N bytes from memory, cacheable by shared caches
// for an hour, /scale/N/ANYTHING the same for a year (the stores hitscale
// builds are kept between runs), and /_count with how many of those it
// served. It is what
// a Go program does at least to answer: the ceiling a Go proxy's hits can
// reach.
func serve(addr string) {
	body := bytes.Repeat([]byte("0123456789abcdef"), piece/16)
	var served atomic.Int64
	var (
		cc   = []string{"public, max-age=3600"}
		year = []string{"public, max-age=31536000"}
		ct   = []string{"application/octet-stream"}
		lm   = []string{"Mon, 02 Jan 2006 15:04:05 GMT"}
		etag = []string{`"bench"`}
	)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/_count" {
			w.Write(strconv.AppendInt(nil, served.Load(), 10))
			return
		}
		rest, ok := strings.CutPrefix(r.URL.Path, "/hit/")
		maxAge := cc
		if !ok {
			if rest, ok = strings.CutPrefix(r.URL.Path, "/miss/"); !ok {
				rest, ok = strings.CutPrefix(r.URL.Path, "/scale/")
				maxAge = year
			}
			rest, _, _ = strings.Cut(rest, "/")
		}
		n, err := strconv.Atoi(rest)
		if !ok || err != nil || n < 0 {
			http.NotFound(w, r)
			return
		}
		served.Add(1)
		hd := w.Header()
		hd["Cache-Control"], hd["Content-Type"], hd["Last-Modified"], hd["Etag"] = maxAge, ct, lm, etag
		hd["Content-Length"] = []string{strconv.Itoa(n)}
		if r.Method == http.MethodHead {
			return
		}
		for left := n; left > 0; left -= piece {
			if _, err := w.Write(body[:min(left, piece)]); err != nil {
				return
			}
		}
	})
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.ListenAndServe())
}
