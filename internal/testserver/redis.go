package testserver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// RedisServer is one test's share of a Redis server.
type RedisServer struct {
	Addr     string // host:port
	Username string // ACL user; empty for the default user
	Password string // empty when the server needs none
	DB       int    // logical database to SELECT
	// Prefix is fresh for each call (hishel-test:<12 hex digits>:): keys
	// under it are this test's alone, and they are deleted when it ends.
	Prefix string
}

// URL returns the server as redis://[user:password@]host:port/db, the form
// go-redis's ParseURL reads; it leaves out the prefix.
func (r RedisServer) URL() string {
	u := url.URL{Scheme: "redis", Host: r.Addr, Path: "/" + strconv.Itoa(r.DB)}
	if r.Username != "" || r.Password != "" {
		u.User = url.UserPassword(r.Username, r.Password)
	}
	return u.String()
}

// Redis returns this test's share of the test binary's Redis server: the
// server HISHEL_TEST_REDIS names, or else a redis-server (Debian's package)
// started on first use on a free 127.0.0.1 port, without persistence, with
// DEBUG enabled for loopback clients (DEBUG SLEEP makes a slow server).
//
// HISHEL_TEST_REDIS is host:port or redis://[[user]:password@]host:port[/db].
//
// The test fails when there is no server, saying how to get one.
func Redis(tb testing.TB) RedisServer {
	tb.Helper()
	srv := redisKind.get(tb)
	srv.Prefix = uniqueName("hishel-test:") + ":"
	tb.Cleanup(func() {
		if err := redisDeletePrefix(srv); err != nil {
			tb.Logf("testserver: deleting this test's Redis keys: %v", err)
		}
	})
	return srv
}

// OwnRedis starts a redis-server for this test alone, as Redis would (and
// whatever HISHEL_TEST_REDIS says), and stops it when the test ends; the
// Process stops, restarts or pauses it, for tests of an outage.
func OwnRedis(tb testing.TB) (RedisServer, *Process) {
	tb.Helper()
	srv, p := redisKind.own(tb)
	srv.Prefix = uniqueName("hishel-test:") + ":"
	return srv, p
}

var redisKind = &kind[RedisServer]{
	env:  "HISHEL_TEST_REDIS",
	form: "host:port (or redis://[[user]:password@]host:port[/db])",
	fromEnv: func(ctx context.Context, v string) (RedisServer, error) {
		srv, err := parseRedisEnv(v)
		if err != nil {
			return srv, err
		}
		if err := redisPing(ctx, srv); err != nil {
			return srv, fmt.Errorf("does not answer: %w", err)
		}
		return srv, nil
	},
	prepare: prepareRedis,
}

func prepareRedis() (launch, func(string) RedisServer, error) {
	bin, err := lookBin("redis-server", "/usr/bin", "/usr/local/bin")
	if err != nil {
		return launch{}, nil, err
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return launch{}, nil, fmt.Errorf("%s --version: %w", bin, err)
	}
	ver, err := checkMajor(string(out), `v=((\d+)\.\d+\.\d+)`, version("REDIS_MAJOR"))
	if err != nil {
		return launch{}, nil, fmt.Errorf("%s: %w", bin, err)
	}
	dir, err := serverDir("redis")
	if err != nil {
		return launch{}, nil, err
	}
	l := launch{
		name: "redis-server",
		what: "redis-server " + ver,
		path: bin,
		dir:  dir,
		args: func(addr string) []string {
			host, port, _ := net.SplitHostPort(addr)
			return []string{
				"--bind", host, "--port", port,
				"--dir", dir,
				"--save", "", "--appendonly", "no", // data lives as long as the tests
				"--daemonize", "no", "--logfile", "",
				"--enable-debug-command", "local",
			}
		},
		ready: func(ctx context.Context, addr string) error {
			return redisPing(ctx, RedisServer{Addr: addr})
		},
	}
	return l, func(addr string) RedisServer { return RedisServer{Addr: addr} }, nil
}

func parseRedisEnv(s string) (RedisServer, error) {
	if !strings.Contains(s, "://") {
		if _, _, err := net.SplitHostPort(s); err != nil {
			return RedisServer{}, err
		}
		return RedisServer{Addr: s}, nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return RedisServer{}, err
	}
	if u.Scheme != "redis" {
		return RedisServer{}, fmt.Errorf("scheme %q, want redis (this harness speaks no TLS)", u.Scheme)
	}
	if _, _, err := net.SplitHostPort(u.Host); err != nil {
		return RedisServer{}, err
	}
	srv := RedisServer{Addr: u.Host}
	if u.User != nil {
		srv.Username = u.User.Username()
		srv.Password, _ = u.User.Password()
	}
	if p := strings.Trim(u.Path, "/"); p != "" {
		if srv.DB, err = strconv.Atoi(p); err != nil || srv.DB < 0 {
			return RedisServer{}, fmt.Errorf("database %q is not a number", p)
		}
	}
	return srv, nil
}

func redisPing(ctx context.Context, srv RedisServer) error {
	c, err := dialRedis(ctx, srv)
	if err != nil {
		return err
	}
	defer c.Close()
	v, err := c.Do("PING")
	if err != nil {
		return err
	}
	if v != "PONG" {
		return fmt.Errorf("PING = %q; want PONG", v)
	}
	return nil
}

// redisDeletePrefix deletes the keys under srv.Prefix (SCAN and UNLINK).
func redisDeletePrefix(srv RedisServer) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := dialRedis(ctx, srv)
	if err != nil {
		return err
	}
	defer c.Close()
	cursor := "0"
	for {
		// The prefix is ours: letters, digits and colons, nothing SCAN
		// would read as a pattern.
		v, err := c.Do("SCAN", cursor, "MATCH", srv.Prefix+"*", "COUNT", "1000")
		if err != nil {
			return err
		}
		reply, ok := v.([]any)
		if !ok || len(reply) != 2 {
			return fmt.Errorf("SCAN reply %v", v)
		}
		keys, _ := reply[1].([]any)
		if len(keys) > 0 {
			args := []string{"UNLINK"}
			for _, k := range keys {
				s, _ := k.(string)
				args = append(args, s)
			}
			if _, err := c.Do(args...); err != nil {
				return err
			}
		}
		if cursor, _ = reply[0].(string); cursor == "0" {
			return nil
		}
	}
}

// redisConn speaks just enough RESP2 for readiness, cleanup and the smoke
// test. Replies: string (simple or bulk), int64, nil, []any (an error
// inside an array is a redisError value), or a redisError as the error.
type redisConn struct {
	c net.Conn
	r *bufio.Reader
}

// redisError is an error reply (-ERR ...).
type redisError string

func (e redisError) Error() string { return "redis: " + string(e) }

func dialRedis(ctx context.Context, srv RedisServer) (*redisConn, error) {
	nc, err := dialTCP(ctx, srv.Addr)
	if err != nil {
		return nil, err
	}
	c := &redisConn{c: nc, r: bufio.NewReader(nc)}
	if srv.Password != "" {
		args := []string{"AUTH", srv.Password}
		if srv.Username != "" {
			args = []string{"AUTH", srv.Username, srv.Password}
		}
		if _, err := c.Do(args...); err != nil {
			nc.Close()
			return nil, err
		}
	}
	if srv.DB != 0 {
		if _, err := c.Do("SELECT", strconv.Itoa(srv.DB)); err != nil {
			nc.Close()
			return nil, err
		}
	}
	return c, nil
}

func (c *redisConn) Close() error { return c.c.Close() }

// Do sends one command and reads its reply.
func (c *redisConn) Do(args ...string) (any, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(c.c, b.String()); err != nil {
		return nil, err
	}
	return readRESP(c.r, 0)
}

// maxRESPDepth bounds the nesting of arrays in a reply.
const maxRESPDepth = 32

// readRESP reads one RESP2 reply.
func readRESP(r *bufio.Reader, depth int) (any, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return nil, fmt.Errorf("redis: malformed reply line %q", line)
	}
	kind, rest := line[0], line[1:len(line)-2]
	switch kind {
	case '+':
		return rest, nil
	case '-':
		return nil, redisError(rest)
	case ':':
		return strconv.ParseInt(rest, 10, 64)
	case '$':
		n, err := strconv.Atoi(rest)
		if err != nil || n < -1 || n > 512<<20 {
			return nil, fmt.Errorf("redis: bad bulk length %q", rest)
		}
		if n == -1 {
			return nil, nil
		}
		// Memory grows with the bytes that arrive, not with the length a
		// reply claims.
		var bb strings.Builder
		if _, err := io.CopyN(&bb, r, int64(n)+2); err != nil {
			return nil, err
		}
		buf := bb.String()
		if buf[n:] != "\r\n" {
			return nil, errors.New("redis: bulk string not ended by CRLF")
		}
		return buf[:n], nil
	case '*':
		n, err := strconv.Atoi(rest)
		if err != nil || n < -1 || n > 1<<20 {
			return nil, fmt.Errorf("redis: bad array length %q", rest)
		}
		if n == -1 {
			return nil, nil
		}
		if depth >= maxRESPDepth {
			return nil, errors.New("redis: arrays nested too deep")
		}
		out := make([]any, 0, min(n, 64))
		for range n {
			v, err := readRESP(r, depth+1)
			var re redisError
			if err != nil && !errors.As(err, &re) {
				return nil, err
			}
			if err != nil {
				v = re
			}
			out = append(out, v)
		}
		return out, nil
	}
	return nil, fmt.Errorf("redis: unknown reply type %q", kind)
}

// lookBin finds an executable on $PATH or in one of dirs.
func lookBin(name string, dirs ...string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range dirs {
		p := d + "/" + name
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found on $PATH nor in %s", name, strings.Join(dirs, ", "))
}

// checkMajor finds a version in out with re (its first group the version,
// its second the major) and checks the major against want. It returns the
// version found.
func checkMajor(out, re, want string) (string, error) {
	m := regexp.MustCompile(re).FindStringSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("no version in %q", strings.TrimSpace(out))
	}
	if m[2] != want {
		return "", fmt.Errorf("version %s; the tests pin major version %s (internal/testserver/versions.env)", m[1], want)
	}
	return m[1], nil
}
