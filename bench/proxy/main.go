// Command proxy measures `hishel proxy -shared` against the caching proxies
// people would otherwise run, nginx proxy_cache (on disk) and Varnish
// (malloc storage), and against a minimal Go net/http server that serves
// the same bytes from memory (the Go ceiling), all in front of one Go
// origin on this machine, with wrk.
//
// Run it with `make bench`, or from bench/: `go run ./proxy`. It installs
// nginx, varnish and wrk from Debian's packages (apt-get) when they are
// missing, builds the hishel command from this repository, and starts and
// stops every server itself, each on a free 127.0.0.1 port.
//
// Each round starts every server with an empty cache, and runs each
// workload against each server in turn (the order rotates from round to
// round), so that the machine's noise hits them alike; ratios are taken
// within a round, and the table prints their median over the rounds, with
// their range. The workloads:
//
//	hit 1k, hit 16k, hit 1m   one URL, stored before the run, read by wrk
//	miss 1k, miss 1m          a new URL for every request: fetched, stored
//	big                       (-big) one 1 GiB response fetched and stored
//	                          (miss), then read again twice (hit, the
//	                          first read of the stored body, and hit
//	                          again), timed by a Go client; with each
//	                          server's peak anonymous memory during the
//	                          miss and during the hits (RssAnon, sampled)
//	hitscale                  (alone, hishel servers only) random URLs of
//	                          a store of 1000 1 KiB responses and of one of
//	                          1M (-scale-pairs), built once and kept in
//	                          -scale-dir; the ratios of the large store's
//	                          rate, p50, p99 and CPU per request to the
//	                          small one's (see scale.go)
//
// A hit run whose requests reached the origin is flagged in the table: the
// origin counts what it serves.
//
// Flags: -rounds (3), -duration per wrk run (5s), -conns (64), -threads
// (wrk threads, 2), -workloads (comma-separated names above, default all
// but big), -big (adds big), -servers (comma-separated: hishel, nginx,
// varnish, go), -hishel 'LABEL=PATH [FLAG...]' (measure a prebuilt hishel
// binary too, such as the main branch's, under LABEL, with proxy flags
// after PATH; . is this checkout's; {dir} in a flag is the server's
// directory, new each round, and a -store flag replaces -db
// {dir}/cache.db: 'nosync=. -store bolt://{dir}/cache.db?nosync=true';
// repeatable), -keep (keep the temporary directory with the servers' files
// and logs); for hitscale, -scale-origin, -scale-dir, -scale-pairs and
// -scale-warmup.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 2 && os.Args[1] == "-serve" {
		// A child of this command: the origin, or the Go ceiling.
		serve(os.Args[2])
		return
	}
	var (
		rounds    = flag.Int("rounds", 3, "rounds; every server starts with an empty cache in each")
		duration  = flag.Duration("duration", 5*time.Second, "length of each wrk run")
		conns     = flag.Int("conns", 64, "wrk connections")
		threads   = flag.Int("threads", 2, "wrk threads")
		workloads = flag.String("workloads", "hit1k,hit16k,hit1m,miss1k,miss1m", "comma-separated workloads: hit1k, hit16k, hit1m, miss1k, miss1m, big; or hitscale alone (hishel servers only)")
		big       = flag.Bool("big", false, "add the 1 GiB miss and hit (big) to -workloads")
		servers   = flag.String("servers", "hishel,nginx,varnish,go", "comma-separated servers to measure: hishel, nginx, varnish, go (and the -hishel labels)")
		keep      = flag.Bool("keep", false, "keep the temporary directory (servers' files and logs)")
		scaleOrig = flag.String("scale-origin", "127.0.0.1:18631", "hitscale: the origin's `ADDR` (fixed: the stored URLs name it)")
		scaleDir  = flag.String("scale-dir", filepath.Join(os.TempDir(), "hishel-bench-hitscale"), "hitscale: the `DIR` that keeps the stores built, for later runs")
		scaleN    = flag.String("scale-pairs", "1000,1000000", "hitscale: the stores' sizes, comma-separated, smallest first (ratios are over it)")
		scaleWarm = flag.Duration("scale-warmup", 0, "hitscale: run wrk on each server for `D` before the first round, unmeasured")
		extra     multiFlag
	)
	flag.Var(&extra, "hishel", "`LABEL=PATH [FLAG...]`: measure the hishel binary at PATH (. for this checkout's) too, as LABEL, with the proxy flags given after PATH (repeatable); {dir} in a flag is the server's directory, new each round, and a -store flag names the cache instead of -db {dir}/cache.db, such as -store bolt://{dir}/cache.db?nosync=true")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("bench/proxy: ")

	wls, err := parseWorkloads(*workloads, *big)
	if err != nil {
		log.Fatal(err)
	}
	scale := slices.ContainsFunc(wls, func(w workload) bool { return w.scale })
	var scaleOpts scaleOptions
	if scale {
		if len(wls) > 1 {
			log.Fatal("hitscale runs alone: -workloads hitscale")
		}
		scaleOpts = scaleOptions{origin: *scaleOrig, dir: *scaleDir, warmup: *scaleWarm}
		for _, f := range strings.Split(*scaleN, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n <= 0 || len(scaleOpts.pairs) > 0 && n <= scaleOpts.pairs[len(scaleOpts.pairs)-1] {
				log.Fatalf("bad -scale-pairs %q: want increasing sizes", *scaleN)
			}
			scaleOpts.pairs = append(scaleOpts.pairs, n)
		}
		if len(scaleOpts.pairs) < 2 {
			log.Fatalf("bad -scale-pairs %q: want two sizes or more", *scaleN)
		}
	}
	if err := ensureTools(neededTools(*servers, scale)); err != nil {
		log.Fatal(err)
	}
	work, err := os.MkdirTemp("", "hishel-bench-proxy-")
	if err != nil {
		log.Fatal(err)
	}
	// Varnish's worker drops root for its own user, which must reach its
	// working directory.
	_ = os.Chmod(work, 0o755)
	if !*keep {
		defer os.RemoveAll(work)
	} else {
		log.Printf("keeping %s", work)
	}
	binary, err := buildHishel(work)
	if err != nil {
		log.Fatal(err)
	}
	kinds, err := pickServers(*servers, binary, extra)
	if err != nil {
		log.Fatal(err)
	}
	b := &bench{work: work, conns: *conns, threads: *threads, duration: *duration}
	if scale {
		if slices.ContainsFunc(kinds, func(k kind) bool { return k.name == "nginx" || k.name == "varnish" || k.name == "go" }) {
			log.Fatal("hitscale measures hishel servers only: -servers hishel and -hishel LABEL=PATH")
		}
		if err := b.runScale(kinds, *rounds, scaleOpts); err != nil {
			log.Fatal(err)
		}
		fmt.Printf("\nhishel proxy on stores of %v pairs of 1 KiB, random URLs, wrk -t%d -c%d -d%s, %d rounds, %d cores, %s\n",
			scaleOpts.pairs, *threads, *conns, *duration, *rounds, cpus(), time.Now().UTC().Format(time.DateOnly))
		b.printScale(os.Stdout, kinds, scaleOpts.pairs)
		return
	}
	if err := b.run(kinds, wls, *rounds); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("\nhishel proxy against nginx %s, Varnish %s, wrk -t%d -c%d -d%s, %d rounds, %d cores, %s\n",
		toolVersion("nginx", "-v"), toolVersion("varnishd", "-V"), *threads, *conns, *duration, *rounds, cpus(), time.Now().UTC().Format(time.DateOnly))
	b.print(os.Stdout, kinds, wls)
}

// multiFlag is a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }

// workload is one row of the table.
type workload struct {
	name string
	size int
	miss bool // a new URL for every request
	big  bool // one request, timed (the 1 GiB miss and hit)
	// scale: random URLs of stores of 1k and 1M pairs, the ratios of
	// the two (scale.go)
	scale bool
}

var allWorkloads = []workload{
	{name: "hit1k", size: 1 << 10},
	{name: "hit16k", size: 16 << 10},
	{name: "hit1m", size: 1 << 20},
	{name: "miss1k", size: 1 << 10, miss: true},
	{name: "miss1m", size: 1 << 20, miss: true},
	{name: "big", size: 1 << 30, miss: true, big: true},
	{name: "hitscale", size: scaleSize, scale: true},
}

func parseWorkloads(list string, big bool) ([]workload, error) {
	names := strings.Split(list, ",")
	if big && !slices.Contains(names, "big") {
		names = append(names, "big")
	}
	var out []workload
	for _, n := range names {
		n = strings.TrimSpace(n)
		i := slices.IndexFunc(allWorkloads, func(w workload) bool { return w.name == n })
		if i < 0 {
			return nil, fmt.Errorf("unknown workload %q; want hit1k, hit16k, hit1m, miss1k, miss1m, big or hitscale", n)
		}
		out = append(out, allWorkloads[i])
	}
	return out, nil
}

// tool is a command the bench runs, and the Debian package that has it.
type tool struct{ cmd, pkg string }

// neededTools are the tools a run of servers (the -servers list) needs:
// wrk, and nginx and varnish when they are measured (hitscale measures
// hishel alone).
func neededTools(servers string, scale bool) []tool {
	need := []tool{{"wrk", "wrk"}}
	for _, s := range strings.Split(servers, ",") {
		switch strings.TrimSpace(s) {
		case "nginx":
			need = append(need, tool{"nginx", "nginx"})
		case "varnish":
			need = append(need, tool{"varnishd", "varnish"})
		}
	}
	if scale {
		need = need[:1]
	}
	return need
}

// ensureTools installs the tools from Debian's packages when one of their
// commands is missing.
func ensureTools(tools []tool) error {
	var missing []string
	for _, t := range tools {
		if _, err := lookPath(t.cmd); err != nil {
			missing = append(missing, t.pkg)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	log.Printf("installing %s (apt-get)", strings.Join(missing, " "))
	for _, args := range [][]string{{"update", "-qq"}, append([]string{"install", "-y", "-qq", "--no-install-recommends"}, missing...)} {
		cmd := exec.Command("apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("apt-get %s: %w (install %s by hand)", args[0], err, strings.Join(missing, " "))
		}
	}
	// The packages start their services; the bench runs its own.
	for _, s := range []string{"nginx", "varnish"} {
		_ = exec.Command("service", s, "stop").Run()
	}
	return nil
}

// lookPath finds a command in PATH or in the sbin directories, which a
// user's PATH may lack.
func lookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", name)
}

func toolVersion(name, flag string) string {
	p, err := lookPath(name)
	if err != nil {
		return "?"
	}
	out, _ := exec.Command(p, flag).CombinedOutput()
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	for _, f := range strings.Fields(line) {
		// "nginx version: nginx/1.22.1", "varnishd (varnish-7.1.1 revision ...)"
		if _, v, ok := strings.Cut(f, "/"); ok && strings.HasPrefix(f, "nginx") {
			return v
		}
		if v, ok := strings.CutPrefix(strings.Trim(f, "()"), "varnish-"); ok {
			return v
		}
	}
	return line
}

func cpus() int {
	n := 0
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		n = bytes.Count(b, []byte("\nprocessor"))
		if bytes.HasPrefix(b, []byte("processor")) {
			n++
		}
	}
	return n
}

// repoRoot is the repository this command runs in: the nearest directory
// upwards that holds cmd/hishel.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "cmd", "hishel", "go.mod")); err == nil {
			return dir, nil
		}
		up := filepath.Dir(dir)
		if up == dir {
			return "", errors.New("run from the hishel-go repository (no cmd/hishel above the working directory)")
		}
		dir = up
	}
}

// buildHishel builds the hishel command of this repository into dir.
func buildHishel(dir string) (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "hishel")
	cmd := exec.Command("go", "build", "-o", out, ".")
	cmd.Dir = filepath.Join(root, "cmd", "hishel")
	cmd.Env = append(os.Environ(), "GOWORK=off")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building cmd/hishel: %w", err)
	}
	return out, nil
}

// kind is a server under test.
type kind struct {
	name string
	// start runs a fresh server (empty cache) in dir, listening on addr,
	// in front of the origin at upstream.
	start func(dir, addr, upstream string, big bool) (*exec.Cmd, error)
	cache bool // a cache (not the Go ceiling, which is measured on hits only)
}

func pickServers(list, binary string, extra []string) ([]kind, error) {
	hishel := func(bin string, flags ...string) func(dir, addr, upstream string, big bool) (*exec.Cmd, error) {
		return func(dir, addr, upstream string, _ bool) (*exec.Cmd, error) {
			// No budget (-max-bytes 0), as nginx's cache has no max_size
			// here: the miss runs store more than the default 1 GiB.
			args := []string{"proxy", "-shared", "-listen", addr, "-upstream", upstream, "-max-bytes", "0"}
			if !slices.ContainsFunc(flags, func(f string) bool { return f == "-store" || strings.HasPrefix(f, "-store=") }) {
				// A store URL among the flags names the cache instead.
				args = append(args, "-db", filepath.Join(dir, "cache.db"))
			}
			for _, f := range flags {
				args = append(args, strings.ReplaceAll(f, "{dir}", dir))
			}
			return command(dir, bin, args...), nil
		}
	}
	all := []kind{
		{name: "hishel", start: hishel(binary), cache: true},
		{name: "nginx", start: startNginx, cache: true},
		{name: "varnish", start: startVarnish, cache: true},
		{name: "go", start: func(dir, addr, _ string, _ bool) (*exec.Cmd, error) {
			self, err := os.Executable()
			if err != nil {
				return nil, err
			}
			return command(dir, self, "-serve", addr), nil
		}},
	}
	var out []kind
	for _, n := range strings.Split(list, ",") {
		i := slices.IndexFunc(all, func(k kind) bool { return k.name == strings.TrimSpace(n) })
		if i < 0 {
			return nil, fmt.Errorf("unknown server %q; want hishel, nginx, varnish or go", n)
		}
		out = append(out, all[i])
	}
	for _, e := range extra {
		label, rest, ok := strings.Cut(e, "=")
		f := strings.Fields(rest)
		if !ok || label == "" || len(f) == 0 {
			return nil, fmt.Errorf("bad -hishel %q: want LABEL=PATH [FLAG...]", e)
		}
		path := f[0]
		if path == "." {
			path = binary
		}
		out = append(out, kind{name: label, start: hishel(path, f[1:]...), cache: true})
	}
	return out, nil
}

// command returns cmd to run name in dir, its output going to dir/log.
func command(dir, name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	if f, err := os.Create(filepath.Join(dir, "log")); err == nil {
		cmd.Stdout, cmd.Stderr = f, f
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd
}

const nginxConf = `daemon off;
master_process on;
worker_processes auto;
%[1]s
pid %[2]s/nginx.pid;
error_log %[2]s/error.log warn;
events { worker_connections 4096; }
http {
	access_log off;
	proxy_cache_path %[2]s/cache levels=1:2 keys_zone=bench:64m inactive=1d use_temp_path=off;
	proxy_temp_path %[2]s/proxy-tmp;
	client_body_temp_path %[2]s/body-tmp;
	upstream origin {
		server %[4]s;
		keepalive 64;
	}
	server {
		listen %[3]s;
		location / {
			proxy_pass http://origin;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_cache bench;
		}
	}
}
`

func startNginx(dir, addr, upstream string, _ bool) (*exec.Cmd, error) {
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;" // its workers write the cache in dir
	}
	conf := filepath.Join(dir, "nginx.conf")
	host := strings.TrimPrefix(upstream, "http://")
	if err := os.WriteFile(conf, fmt.Appendf(nil, nginxConf, user, dir, addr, host), 0o644); err != nil {
		return nil, err
	}
	bin, err := lookPath("nginx")
	if err != nil {
		return nil, err
	}
	return command(dir, bin, "-p", dir, "-c", conf, "-e", filepath.Join(dir, "error.log")), nil
}

func startVarnish(dir, addr, upstream string, big bool) (*exec.Cmd, error) {
	bin, err := lookPath("varnishd")
	if err != nil {
		return nil, err
	}
	size := "1G"
	if big {
		// The 1 GiB object and the rest: Varnish fails a fetch it cannot
		// make room for by evicting at most nuke_limit (50) objects.
		size = "4G"
	}
	return command(dir, bin, "-F", "-n", filepath.Join(dir, "varnish"), "-a", addr,
		"-b", strings.TrimPrefix(upstream, "http://"), "-s", "malloc,"+size), nil
}

// freeAddr returns a free 127.0.0.1 address.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// server is a running server.
type server struct {
	kind kind
	addr string
	cmd  *exec.Cmd
	dir  string
}

func (b *bench) startServer(k kind, upstream string, round int, big bool) (*server, error) {
	dir := filepath.Join(b.work, fmt.Sprintf("r%d-%s", round, k.name))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	cmd, err := k.start(dir, addr, upstream, big)
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", k.name, err)
	}
	s := &server{kind: k, addr: addr, cmd: cmd, dir: dir}
	if err := waitHTTP(addr, 30*time.Second); err != nil {
		s.stop()
		logTail, _ := os.ReadFile(filepath.Join(dir, "log"))
		return nil, fmt.Errorf("%s did not start: %w\n%s", k.name, err, logTail)
	}
	return s, nil
}

// stop ends the server's process group and waits for it.
func (s *server) stop() {
	if s.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

// anonRSS is the anonymous resident memory of the server's processes
// (RssAnon, summed over its process group), in bytes: the heap and
// buffers, not the files the server maps (bbolt maps its whole file).
func (s *server) anonRSS() int64 {
	pids := []int{s.cmd.Process.Pid}
	if out, err := exec.Command("pgrep", "-g", strconv.Itoa(s.cmd.Process.Pid)).Output(); err == nil {
		pids = pids[:0]
		for _, f := range strings.Fields(string(out)) {
			if p, err := strconv.Atoi(f); err == nil {
				pids = append(pids, p)
			}
		}
	}
	var total int64
	for _, p := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "RssAnon:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				total += kb << 10
			}
		}
	}
	return total
}

// peakAnon samples the server's anonymous memory every 20ms until stop is
// closed, and returns the largest sample.
func (s *server) peakAnon(stop <-chan struct{}) <-chan int64 {
	out := make(chan int64, 1)
	go func() {
		peak := s.anonRSS()
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				out <- max(peak, s.anonRSS())
				return
			case <-t.C:
				peak = max(peak, s.anonRSS())
			}
		}
	}()
	return out
}

func waitHTTP(addr string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sample is one measurement of one server on one workload in one round.
type sample struct {
	rps      float64       // requests per second (wrk)
	p50      time.Duration // median latency (wrk); the whole request for big
	p99      time.Duration // 99th percentile latency (wrk)
	hitTime  time.Duration // big: the second request's time
	again    time.Duration // big: the third's (a hit whose body the server read before)
	rss      int64         // big: the server's peak anonymous memory during the miss
	hitRSS   int64         // big: and during the hit
	errs     string        // non-2xx responses, socket errors
	upstream int64         // hit runs: requests that reached the origin
	// hitscale: the server's CPU time (user and system) and page faults
	// per request, from /proc
	cpu    time.Duration
	faults float64
	failed string // why the run failed; the rest is zero
}

// bench is one run: its settings, and the samples by workload and server.
type bench struct {
	work           string // the temporary directory
	conns, threads int
	duration       time.Duration
	results        map[string]map[string][]sample
	originCountURL string
	client         *http.Client
	missSeq        atomic.Int64 // makes every miss URL new
}

func (b *bench) run(kinds []kind, wls []workload, rounds int) error {
	b.results = map[string]map[string][]sample{}
	b.client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4, DisableCompression: true}}
	origin, err := b.startServer(originKind(), "", 0, false)
	if err != nil {
		return fmt.Errorf("origin: %w", err)
	}
	defer origin.stop()
	upstream := "http://" + origin.addr
	b.originCountURL = upstream + "/_count"
	big := slices.ContainsFunc(wls, func(w workload) bool { return w.big })
	for r := range rounds {
		var running []*server
		stopAll := func() {
			for _, s := range running {
				s.stop()
			}
			for _, s := range running {
				_ = os.RemoveAll(filepath.Join(s.dir, "cache"))
				_ = os.Remove(filepath.Join(s.dir, "cache.db"))
			}
		}
		for _, k := range kinds {
			s, err := b.startServer(k, upstream, r+1, big)
			if err != nil {
				stopAll()
				return err
			}
			running = append(running, s)
		}
		for _, w := range wls {
			order := rotate(running, r)
			for _, s := range order {
				if !s.kind.cache && w.miss {
					continue // the Go ceiling stores nothing
				}
				smp, err := b.measure(s, w, r)
				if err != nil {
					// A server that fails a workload (Varnish out of
					// storage for the 1 GiB object, say) is reported,
					// and the others go on.
					smp = sample{failed: err.Error()}
				}
				if b.results[w.name] == nil {
					b.results[w.name] = map[string][]sample{}
				}
				b.results[w.name][s.kind.name] = append(b.results[w.name][s.kind.name], smp)
				log.Printf("round %d %-7s %-8s %s", r+1, w.name, s.kind.name, smp)
			}
		}
		stopAll()
	}
	return nil
}

// originKind is the origin: the same program as the Go ceiling.
func originKind() kind {
	self, _ := os.Executable()
	return kind{name: "origin", start: func(dir, addr, _ string, _ bool) (*exec.Cmd, error) {
		return command(dir, self, "-serve", addr), nil
	}}
}

func rotate(s []*server, n int) []*server {
	n %= len(s)
	return append(slices.Clone(s[n:]), s[:n]...)
}

func (s sample) String() string {
	if s.failed != "" {
		return "failed: " + s.failed
	}
	if s.hitTime > 0 {
		return fmt.Sprintf("miss %v, hit %v, again %v, peak anon %s (hits %s) %s", s.p50.Round(time.Millisecond), s.hitTime.Round(time.Millisecond),
			s.again.Round(time.Millisecond), mib(s.rss), mib(s.hitRSS), s.errs)
	}
	return fmt.Sprintf("%9.0f req/s, p50 %8v, origin %d %s", s.rps, s.p50, s.upstream, s.errs)
}

func mib(n int64) string { return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20)) }

func (b *bench) originCount() (int64, error) {
	resp, err := b.client.Get(b.originCountURL)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(body)), 10, 64)
}

// get fetches url whole, and returns how long it took.
func (b *bench) get(url string) (time.Duration, error) {
	start := time.Now()
	resp, err := b.client.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return 0, fmt.Errorf("GET %s: %d bytes of %d", url, n, resp.ContentLength)
	}
	return time.Since(start), nil
}

func (b *bench) measure(s *server, w workload, round int) (sample, error) {
	base := "http://" + s.addr
	switch {
	case w.big:
		url := fmt.Sprintf("%s/miss/%d/big-%d-%d", base, w.size, round, b.missSeq.Add(1))
		stop := make(chan struct{})
		peak := s.peakAnon(stop)
		miss, err := b.get(url)
		close(stop)
		if err != nil {
			return sample{}, err
		}
		rss := <-peak
		before, err := b.originCount()
		if err != nil {
			return sample{}, err
		}
		stop = make(chan struct{})
		peak = s.peakAnon(stop)
		hit, err := b.get(url)
		var again time.Duration
		if err == nil {
			again, err = b.get(url)
		}
		close(stop)
		hitRSS := <-peak
		if err != nil {
			return sample{}, err
		}
		after, err := b.originCount()
		if err != nil {
			return sample{}, err
		}
		return sample{p50: miss, hitTime: hit, again: again, rss: rss, hitRSS: hitRSS, upstream: after - before}, nil
	case w.miss:
		prefix := fmt.Sprintf("/miss/%d/r%d-%d-", w.size, round, b.missSeq.Add(1))
		return b.wrk(base+"/", missScript, prefix)
	default:
		url := fmt.Sprintf("%s/hit/%d", base, w.size)
		// Stored before the run: two requests, the second a hit.
		for range 2 {
			if _, err := b.get(url); err != nil {
				return sample{}, err
			}
		}
		before, err := b.originCount()
		if err != nil {
			return sample{}, err
		}
		smp, err := b.wrk(url, "")
		if err != nil {
			return smp, err
		}
		after, err := b.originCount()
		if err != nil {
			return smp, err
		}
		if s.kind.cache {
			smp.upstream = after - before
		}
		return smp, nil
	}
}

// missScript makes wrk ask for a new URL every time: prefix, then the
// thread's number and a counter.
const missScript = `
local counter = 0
local threads = 0
function setup(thread)
	threads = threads + 1
	thread:set("id", threads)
end
function init(args)
	prefix = args[1]
end
function request()
	counter = counter + 1
	return wrk.format("GET", prefix .. id .. "-" .. counter)
end
`

func (b *bench) wrk(url, script string, args ...string) (sample, error) {
	// wrk drops a request slower than its timeout (2s by default) from
	// the latencies; a slow miss is measured instead.
	cmdArgs := []string{"-t" + strconv.Itoa(b.threads), "-c" + strconv.Itoa(b.conns), "-d" + b.duration.String(),
		"--timeout", "60s", "--latency"}
	if script != "" {
		f := filepath.Join(b.work, "miss.lua")
		if err := os.WriteFile(f, []byte(script), 0o644); err != nil {
			return sample{}, err
		}
		cmdArgs = append(cmdArgs, "-s", f)
	}
	cmdArgs = append(cmdArgs, url)
	if len(args) > 0 {
		cmdArgs = append(append(cmdArgs, "--"), args...)
	}
	bin, err := lookPath("wrk")
	if err != nil {
		return sample{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.duration+time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, cmdArgs...).CombinedOutput()
	if err != nil {
		return sample{}, fmt.Errorf("wrk: %w\n%s", err, out)
	}
	return parseWrk(out)
}

// parseWrk reads wrk's requests per second, median latency and errors.
func parseWrk(out []byte) (sample, error) {
	var s sample
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 2 && f[0] == "Requests/sec:":
			s.rps, _ = strconv.ParseFloat(f[1], 64)
		case len(f) == 2 && (f[0] == "50%" || f[0] == "99%"):
			d, err := parseWrkDuration(f[1])
			if err != nil {
				return s, err
			}
			if f[0] == "50%" {
				s.p50 = d
			} else {
				s.p99 = d
			}
		case len(f) > 0 && (f[0] == "Non-2xx" || f[0] == "Socket"):
			s.errs = strings.TrimSpace(s.errs + " " + strings.Join(f, " "))
		}
	}
	if s.rps == 0 {
		return s, fmt.Errorf("wrk printed no rate:\n%s", out)
	}
	// p50 stays zero when every request timed out: wrk measured none.
	return s, nil
}

// parseWrkDuration parses wrk's 1.23us, 4.56ms, 1.20s, 2.00m.
func parseWrkDuration(v string) (time.Duration, error) {
	for _, u := range []struct {
		suffix string
		unit   time.Duration
	}{{"us", time.Microsecond}, {"ms", time.Millisecond}, {"s", time.Second}, {"m", time.Minute}} {
		if n, ok := strings.CutSuffix(v, u.suffix); ok {
			f, err := strconv.ParseFloat(n, 64)
			if err != nil {
				break
			}
			return time.Duration(f * float64(u.unit)), nil
		}
	}
	return 0, fmt.Errorf("bad wrk latency %q", v)
}

// print writes the table: each server's median rate and latency, and
// hishel's ratios to the others, taken within each round (median and
// range over the rounds).
func (b *bench) print(w io.Writer, kinds []kind, wls []workload) {
	var names []string
	for _, k := range kinds {
		names = append(names, k.name)
	}
	subjects := []string{}
	for _, n := range names {
		if n != "nginx" && n != "varnish" && n != "go" {
			subjects = append(subjects, n)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Each server, median of the rounds:")
	fmt.Fprintln(w)
	fmt.Fprintf(w, "| workload |")
	for _, n := range names {
		fmt.Fprintf(w, " %s |", n)
	}
	fmt.Fprintf(w, "\n|---|")
	for range names {
		fmt.Fprintf(w, "---:|")
	}
	fmt.Fprintln(w)
	for _, wl := range wls {
		fmt.Fprintf(w, "| %s |", rowName(wl))
		for _, n := range names {
			ss := b.results[wl.name][n]
			if len(ss) == 0 {
				fmt.Fprintf(w, " |")
				continue
			}
			if wl.big {
				fmt.Fprintf(w, " miss %s, hit %s, again %s, anon %s (hits %s)%s |", median(ss, func(s sample) float64 { return s.p50.Seconds() }, "s"),
					median(ss, func(s sample) float64 { return s.hitTime.Seconds() }, "s"),
					median(ss, func(s sample) float64 { return s.again.Seconds() }, "s"),
					mib(int64(medianOf(ss, func(s sample) float64 { return float64(s.rss) }))),
					mib(int64(medianOf(ss, func(s sample) float64 { return float64(s.hitRSS) }))), flags(ss))
				continue
			}
			fmt.Fprintf(w, " %.0f req/s, p50 %v%s |", medianOf(ss, func(s sample) float64 { return s.rps }),
				time.Duration(medianOf(ss, func(s sample) float64 { return float64(s.p50) })).Round(time.Microsecond), flags(ss))
		}
		fmt.Fprintln(w)
	}
	for _, subj := range subjects {
		others := slices.DeleteFunc(slices.Clone(names), func(n string) bool { return n == subj })
		fmt.Fprintln(w)
		fmt.Fprintf(w, "%s against each, ratios within a round (median [min-max]); req/s: >1 is faster; p50 and time: <1 is faster:\n\n", subj)
		fmt.Fprintf(w, "| workload |")
		for _, o := range others {
			fmt.Fprintf(w, " %s / %s |", subj, o)
		}
		fmt.Fprintf(w, "\n|---|")
		for range others {
			fmt.Fprintf(w, "---:|")
		}
		fmt.Fprintln(w)
		for _, wl := range wls {
			rows := [][2]string{}
			if wl.big {
				rows = append(rows, [2]string{"1 GiB miss (stored), time", "miss"}, [2]string{"1 GiB hit, time", "hit"},
					[2]string{"1 GiB hit again, time", "again"})
			} else {
				rows = append(rows, [2]string{rowName(wl) + ", req/s", "rps"}, [2]string{rowName(wl) + ", p50", "p50"})
			}
			for _, row := range rows {
				fmt.Fprintf(w, "| %s |", row[0])
				for _, o := range others {
					fmt.Fprintf(w, " %s |", ratio(b.results[wl.name][subj], b.results[wl.name][o], row[1]))
				}
				fmt.Fprintln(w)
			}
		}
	}
}

func rowName(wl workload) string {
	size := map[int]string{1 << 10: "1 KiB", 16 << 10: "16 KiB", 1 << 20: "1 MiB", 1 << 30: "1 GiB"}[wl.size]
	switch {
	case wl.big:
		return "1 GiB miss, then hit"
	case wl.miss:
		return "miss+store " + size
	}
	return "hit " + size
}

// flags marks samples with errors, or hit runs that reached the origin.
func flags(ss []sample) string {
	var f []string
	for _, s := range ss {
		if s.failed != "" {
			first, _, _ := strings.Cut(s.failed, "\n")
			f = append(f, "failed: "+first)
		}
		if s.errs != "" {
			f = append(f, s.errs)
		}
		if s.upstream > 0 {
			f = append(f, fmt.Sprintf("%d requests reached the origin", s.upstream))
		}
	}
	if len(f) == 0 {
		return ""
	}
	return " (" + strings.Join(f, "; ") + ")"
}

func medianOf(ss []sample, f func(sample) float64) float64 {
	var v []float64
	for _, s := range ss {
		if s.failed == "" {
			v = append(v, f(s))
		}
	}
	slices.Sort(v)
	if len(v) == 0 {
		return 0
	}
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func median(ss []sample, f func(sample) float64, unit string) string {
	return strconv.FormatFloat(medianOf(ss, f), 'f', 2, 64) + unit
}

// ratio is subj/other within each round, for metric rps, p50, p99, cpu,
// miss, hit or again (big: the three times): median [min-max].
func ratio(subj, other []sample, metric string) string {
	n := min(len(subj), len(other))
	if n == 0 {
		return ""
	}
	get := func(s sample) float64 {
		switch metric {
		case "rps":
			return s.rps
		case "p50", "miss":
			return float64(s.p50)
		case "p99":
			return float64(s.p99)
		case "cpu":
			return float64(s.cpu)
		case "again":
			return float64(s.again)
		}
		return float64(s.hitTime)
	}
	var rs []float64
	for i := range n {
		if subj[i].failed != "" || other[i].failed != "" {
			continue
		}
		if d, n := get(other[i]), get(subj[i]); d > 0 && n > 0 {
			rs = append(rs, n/d)
		}
	}
	if len(rs) == 0 {
		return ""
	}
	slices.Sort(rs)
	med := rs[len(rs)/2]
	if len(rs)%2 == 0 {
		med = (rs[len(rs)/2-1] + rs[len(rs)/2]) / 2
	}
	if len(rs) == 1 {
		return fmt.Sprintf("%.2f", med)
	}
	return fmt.Sprintf("%.2f [%.2f-%.2f]", med, rs[0], rs[len(rs)-1])
}
