package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hishel-go/hishel"
	"github.com/hishel-go/hishel/cache"
	"github.com/hishel-go/hishel/statemachine"
)

// The hitscale workload measures what the number of pairs in a store
// costs a hit through `hishel proxy -shared`: each hishel server runs on
// a store of 1000 pairs and on one of -scale-pairs (1M by default), 1 KiB
// responses at distinct URLs (/scale/1024/I), and wrk asks for random
// URLs among all of a store's pairs (scaleScript). The ratios are the
// large store's over the small one's, within a round.
//
// The stores are filled through a hishel Transport in this process, with
// the proxy's options (shared, the headers it forwards), against the
// origin at -scale-origin (a fixed address: the URLs, and so the keys,
// name it), which is much faster than a million misses through a proxy;
// they are kept in -scale-dir and reused by later runs. Each server gets
// copies, and runs on them for all rounds, as a proxy that stays up does:
// its map of the file warms as the rounds go on (-scale-warmup runs wrk
// before the first round, unmeasured).

// scaleSize is the size of every hitscale response.
const scaleSize = 1 << 10

// scaleURL is the path of hitscale response i.
func scaleURL(i int) string { return "/scale/" + strconv.Itoa(scaleSize) + "/" + strconv.Itoa(i) }

// scaleScript makes wrk ask for a random one of the first n hitscale
// URLs: args are the path's prefix and n.
const scaleScript = `
local threads = 0
function setup(thread)
	threads = threads + 1
	thread:set("id", threads)
end
function init(args)
	prefix = args[1]
	n = tonumber(args[2])
	math.randomseed(os.time() * 16 + id)
end
function request()
	return wrk.format("GET", prefix .. math.random(0, n - 1))
end
`

// scaleOptions are the hitscale workload's settings.
type scaleOptions struct {
	origin string // the origin's fixed address
	dir    string // where the built stores are kept
	pairs  []int  // the stores' sizes, smallest first: the ratios are over the first
	warmup time.Duration
}

// scaleStore builds, or finds built, the store of n hitscale responses
// from the origin at upstream, and returns its path. A store is built
// under a temporary name and renamed when complete, so that an
// interrupted build is never reused.
func scaleStore(ctx context.Context, dir, upstream string, n int) (string, error) {
	name := strings.NewReplacer(":", "_", "/", "_").Replace(strings.TrimPrefix(upstream, "http://"))
	path := filepath.Join(dir, fmt.Sprintf("scale-%s-%d.db", name, n))
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp := path + ".building"
	_ = os.Remove(tmp)
	_ = os.RemoveAll(tmp + ".bodies")
	start := time.Now()
	log.Printf("hitscale: storing %d responses in %s (kept for later runs)", n, path)
	if err := fillScale(ctx, tmp, upstream, n); err != nil {
		_ = os.Remove(tmp)
		return "", err
	}
	// Bodies of 1 KiB stay in the database: the directory Bolt made
	// beside it for bodies kept in files is empty.
	_ = os.Remove(tmp + ".bodies")
	if err := os.Rename(tmp, path); err != nil {
		return "", err
	}
	log.Printf("hitscale: %d responses stored in %v", n, time.Since(start).Round(time.Second))
	return path, nil
}

// fillScale stores the first n hitscale responses of the origin at
// upstream in a new Bolt file at path, through a Transport with the
// options `hishel proxy -shared` gives its own, and with the request
// header the proxy forwards (X-Forwarded-For and -Proto, no User-Agent
// of its own), so that the file holds the pairs the proxy would have
// stored. It commits without syncing (NoSync) while it fills.
func fillScale(ctx context.Context, path, upstream string, n int) error {
	s, err := cache.OpenBolt(ctx, &cache.BoltOptions{Path: path, NoSync: true, SweepInterval: -1})
	if err != nil {
		return err
	}
	origin := &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}
	defer origin.CloseIdleConnections()
	tr, err := hishel.NewTransport(&hishel.Options{Storage: s, Transport: origin,
		Cache: statemachine.Options{Shared: true, AllowStale: true}})
	if err != nil {
		return errors.Join(err, s.Close())
	}
	var (
		next  = make(chan int)
		errs  = make(chan error, 1)
		wg    sync.WaitGroup
		fctx  context.Context
		abort context.CancelFunc
	)
	fctx, abort = context.WithCancel(ctx)
	defer abort()
	for range 16 {
		wg.Go(func() {
			for i := range next {
				if err := storeScale(fctx, tr, upstream+scaleURL(i)); err != nil {
					select {
					case errs <- err:
					default:
					}
					abort()
				}
			}
		})
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-fctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	select {
	case err = <-errs:
	default:
		err = ctx.Err()
	}
	return errors.Join(err, tr.Close(), s.Close())
}

// storeScale asks tr for url as the proxy forwards a request for it, and
// checks that the response was stored.
func storeScale(ctx context.Context, tr http.RoundTripper, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header = http.Header{"X-Forwarded-For": {"127.0.0.1"}, "X-Forwarded-Proto": {"http"}, "User-Agent": {""}}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return err
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch {
	case err != nil:
		return fmt.Errorf("GET %s: %w", url, err)
	case resp.StatusCode != http.StatusOK || n != scaleSize:
		return fmt.Errorf("GET %s: %s, %d bytes", url, resp.Status, n)
	case !strings.Contains(resp.Header.Get("Cache-Status"), "stored"):
		return fmt.Errorf("GET %s: not stored (Cache-Status: %s)", url, resp.Header.Get("Cache-Status"))
	}
	return nil
}

// copyFile copies the file at from to to.
func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// scaleServer is a hishel server on a copy of one hitscale store.
type scaleServer struct {
	*server
	pairs int
}

// runScale runs the hitscale workload: every hishel server of kinds on a
// copy of each store, all started before the first round and stopped
// after the last.
func (b *bench) runScale(kinds []kind, rounds int, o scaleOptions) error {
	ctx := context.Background()
	b.results = map[string]map[string][]sample{}
	b.client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4, DisableCompression: true}}
	dir := filepath.Join(b.work, "origin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	origin := &server{kind: originKind(), addr: o.origin, dir: dir}
	cmd, err := origin.kind.start(dir, o.origin, "", false)
	if err != nil {
		return err
	}
	origin.cmd = cmd
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("origin: %w", err)
	}
	defer origin.stop()
	if err := waitHTTP(o.origin, 30*time.Second); err != nil {
		return fmt.Errorf("origin at %s (-scale-origin): %w", o.origin, err)
	}
	upstream := "http://" + o.origin
	b.originCountURL = upstream + "/_count"
	if _, err := b.originCount(); err != nil {
		return fmt.Errorf("origin at %s is not this bench's (pick another -scale-origin): %w", o.origin, err)
	}
	stores := map[int]string{}
	for _, n := range o.pairs {
		if stores[n], err = scaleStore(ctx, o.dir, upstream, n); err != nil {
			return fmt.Errorf("hitscale store of %d: %w", n, err)
		}
	}
	var running []*scaleServer
	defer func() {
		for _, s := range running {
			s.stop()
		}
	}()
	for _, k := range kinds {
		for _, n := range o.pairs {
			dir := filepath.Join(b.work, fmt.Sprintf("scale-%s-%d", k.name, n))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			if err := copyFile(stores[n], filepath.Join(dir, "cache.db")); err != nil {
				return err
			}
			addr, err := freeAddr()
			if err != nil {
				return err
			}
			cmd, err := k.start(dir, addr, upstream, false)
			if err != nil {
				return err
			}
			if err := cmd.Start(); err != nil {
				return fmt.Errorf("%s: %w", k.name, err)
			}
			s := &scaleServer{server: &server{kind: k, addr: addr, cmd: cmd, dir: dir}, pairs: n}
			running = append(running, s)
			if err := waitHTTP(addr, 30*time.Second); err != nil {
				logTail, _ := os.ReadFile(filepath.Join(dir, "log"))
				return fmt.Errorf("%s did not start: %w\n%s", k.name, err, logTail)
			}
			if err := b.checkScaleHits(s); err != nil {
				return err
			}
		}
	}
	if o.warmup > 0 {
		for _, s := range running {
			d := b.duration
			b.duration = o.warmup
			smp, err := b.wrk("http://"+s.addr+"/", scaleScript, "/scale/1024/", strconv.Itoa(s.pairs))
			b.duration = d
			if err != nil {
				return fmt.Errorf("warm-up of %s on %d pairs: %w", s.kind.name, s.pairs, err)
			}
			log.Printf("warm-up %-8s %8d pairs %s", s.kind.name, s.pairs, smp)
		}
	}
	for r := range rounds {
		// Each round rotates the order of the servers, and within a
		// server's turn the order of its stores, so that the machine's
		// noise hits them alike.
		for _, ks := range rotateScale(running, len(o.pairs), r) {
			for _, s := range ks {
				smp, err := b.measureScale(s)
				if err != nil {
					smp = sample{failed: err.Error()}
				}
				name := scaleName(s.pairs)
				if b.results[name] == nil {
					b.results[name] = map[string][]sample{}
				}
				b.results[name][s.kind.name] = append(b.results[name][s.kind.name], smp)
				log.Printf("round %d %-8s %8d pairs %s, p99 %v, cpu/req %v, faults/req %.2f", r+1, s.kind.name, s.pairs, smp, smp.p99, smp.cpu, smp.faults)
			}
		}
	}
	return nil
}

// rotateScale groups servers (perKind stores of each kind, in order) by
// kind, rotates the kinds by round, and each kind's stores by round.
func rotateScale(servers []*scaleServer, perKind, round int) [][]*scaleServer {
	var groups [][]*scaleServer
	for i := 0; i < len(servers); i += perKind {
		g := slices.Clone(servers[i : i+perKind])
		n := round % len(g)
		groups = append(groups, append(g[n:], g[:n]...))
	}
	n := round % len(groups)
	return append(groups[n:], groups[:n]...)
}

func scaleName(pairs int) string { return "hitscale-" + strconv.Itoa(pairs) }

// checkScaleHits asks s for a few of its store's URLs and fails unless
// each is a hit that did not reach the origin.
func (b *bench) checkScaleHits(s *scaleServer) error {
	before, err := b.originCount()
	if err != nil {
		return err
	}
	for _, i := range []int{0, s.pairs - 1, rand.IntN(s.pairs)} {
		url := "http://" + s.addr + scaleURL(i)
		resp, err := b.client.Get(url)
		if err != nil {
			return err
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if cs := resp.Header.Get("Cache-Status"); err != nil || n != scaleSize || !strings.Contains(cs, "hit") {
			return fmt.Errorf("%s on %d pairs: GET %s: %s, %d bytes, %v, Cache-Status %q: not a hit", s.kind.name, s.pairs, url, resp.Status, n, err, cs)
		}
	}
	after, err := b.originCount()
	if err != nil {
		return err
	}
	if after != before {
		return fmt.Errorf("%s on %d pairs: %d requests reached the origin", s.kind.name, s.pairs, after-before)
	}
	return nil
}

// measureScale runs wrk against s on random URLs of its store, and counts
// the requests that reached the origin.
func (b *bench) measureScale(s *scaleServer) (sample, error) {
	before, err := b.originCount()
	if err != nil {
		return sample{}, err
	}
	cpu0, flt0, err := procTimes(s.cmd.Process.Pid)
	if err != nil {
		return sample{}, err
	}
	smp, err := b.wrk("http://"+s.addr+"/", scaleScript, "/scale/1024/", strconv.Itoa(s.pairs))
	if err != nil {
		return smp, err
	}
	cpu1, flt1, err := procTimes(s.cmd.Process.Pid)
	if err != nil {
		return smp, err
	}
	after, err := b.originCount()
	if err != nil {
		return smp, err
	}
	smp.upstream = after - before
	if reqs := smp.rps * b.duration.Seconds(); reqs > 0 {
		smp.cpu = time.Duration(float64(cpu1-cpu0) / reqs)
		smp.faults = float64(flt1-flt0) / reqs
	}
	return smp, nil
}

// procTimes returns the CPU time (user and system) process pid has used,
// and the minor page faults it has taken (a page of a map touched for
// the first time: on a file in the page cache, bbolt's pages), from
// /proc/PID/stat.
func procTimes(pid int) (time.Duration, int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// The fields after the command's name, which is in parentheses:
	// state is field 3, minflt 10, utime 14, stime 15.
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if i < 0 || len(f) < 13 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: %q", pid, b)
	}
	minflt, err1 := strconv.ParseInt(f[10-3], 10, 64)
	utime, err2 := strconv.ParseInt(f[14-3], 10, 64)
	stime, err3 := strconv.ParseInt(f[15-3], 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return 0, 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	// Clock ticks: 100 per second on Linux (USER_HZ).
	return time.Duration(utime+stime) * 10 * time.Millisecond, minflt, nil
}

// printScale writes each server's median rate and latencies on each
// store, and the ratios of the larger stores' to the smallest's, taken
// within each round.
func (b *bench) printScale(w io.Writer, kinds []kind, pairs []int) {
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Each server on each store, median of the rounds:")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| server | pairs | req/s | p50 | p99 | CPU/req | faults/req |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|")
	for _, k := range kinds {
		for _, n := range pairs {
			ss := b.results[scaleName(n)][k.name]
			fmt.Fprintf(w, "| %s | %d | %.0f | %v | %v | %v | %.2f |%s\n", k.name, n,
				medianOf(ss, func(s sample) float64 { return s.rps }),
				time.Duration(medianOf(ss, func(s sample) float64 { return float64(s.p50) })).Round(time.Microsecond),
				time.Duration(medianOf(ss, func(s sample) float64 { return float64(s.p99) })).Round(time.Microsecond),
				time.Duration(medianOf(ss, func(s sample) float64 { return float64(s.cpu) })).Round(100*time.Nanosecond),
				medianOf(ss, func(s sample) float64 { return s.faults }), flags(ss))
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Each server on %d pairs over the same server on %d, ratios within a round (median [min-max]; req/s: <1 is slower; p50, p99: >1 is slower):\n\n", pairs[len(pairs)-1], pairs[0])
	fmt.Fprintln(w, "| server | pairs | req/s | p50 | p99 | CPU/req | per round (p50) |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---|")
	for _, k := range kinds {
		small := b.results[scaleName(pairs[0])][k.name]
		for _, n := range pairs[1:] {
			large := b.results[scaleName(n)][k.name]
			var per []string
			for i := range min(len(large), len(small)) {
				if large[i].failed == "" && small[i].failed == "" && small[i].p50 > 0 {
					per = append(per, fmt.Sprintf("%.2f", float64(large[i].p50)/float64(small[i].p50)))
				}
			}
			fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %s | %s |\n", k.name, n, ratio(large, small, "rps"), ratio(large, small, "p50"),
				ratio(large, small, "p99"), ratio(large, small, "cpu"), strings.Join(per, " "))
		}
	}
}
