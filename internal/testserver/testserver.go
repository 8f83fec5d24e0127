package testserver

import (
	"bytes"
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Main runs the tests of a package that uses this package's servers and then
// stops every server they started, removing the servers' data. Call it from
// TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(testserver.Main(m)) }
//
// The server functions fail a test whose package does not do this.
func Main(m *testing.M) int {
	state.mu.Lock()
	state.main = true
	state.mu.Unlock()
	code := m.Run()
	if err := stopAll(); err != nil {
		fmt.Fprintln(os.Stderr, "testserver:", err)
	}
	return code
}

// state is the test binary's set of started servers.
var state struct {
	mu      sync.Mutex
	main    bool    // Main is running the tests
	stopped bool    // Main has stopped the servers: no new ones
	root    string  // data directory of every server, removed at the end
	procs   []*proc // started servers, stopped by Main in reverse order
}

// kind is one kind of server: how to reach a running one named by an
// environment variable, how to start one, and the test binary's shared one.
type kind[T any] struct {
	env  string // HISHEL_TEST_REDIS
	form string // the variable's documented form, for messages
	// fromEnv parses the variable and checks that the server answers.
	fromEnv func(ctx context.Context, v string) (T, error)
	// prepare finds the binaries, makes the server's directory, and says
	// how to launch it and what a client needs once it listens on addr.
	prepare func() (launch, func(addr string) T, error)

	mu     sync.Mutex // held while the shared server starts
	done   bool
	shared T
	err    error // remembered: later tests fail fast
}

func (k *kind[T]) howTo() string {
	return fmt.Sprintf("\tInstall and build the test servers with `make test-servers` (scripts/test-servers; `make test` runs it),\n"+
		"\tor point the tests at a running server: %s=%s", k.env, k.form)
}

// get returns the test binary's server, starting it first if no other
// test has. It fails tb with the error and how to get the server when there
// is none.
func (k *kind[T]) get(tb testing.TB) T {
	tb.Helper()
	checkMain(tb)
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.done {
		k.shared, k.err = k.start(tb)
		k.done = true
	}
	if k.err != nil {
		tb.Fatalf("testserver: %v\n%s", k.err, k.howTo())
	}
	return k.shared
}

// start returns the server the environment variable names, or else starts
// one.
func (k *kind[T]) start(tb testing.TB) (T, error) {
	tb.Helper()
	if v := os.Getenv(k.env); v != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv, err := k.fromEnv(ctx, v)
		if err != nil {
			return srv, fmt.Errorf("%s=%q: %w", k.env, v, err)
		}
		return srv, nil
	}
	srv, _, err := k.startProcess(tb)
	return srv, err
}

// own starts a server for tb alone, whatever the environment variable says,
// and stops it and removes its data when tb ends.
func (k *kind[T]) own(tb testing.TB) (T, *Process) {
	tb.Helper()
	checkMain(tb)
	srv, p, err := k.startProcess(tb)
	if err != nil {
		tb.Fatalf("testserver: %v\n\tInstall and build the test servers with `make test-servers` (scripts/test-servers; `make test` runs it)", err)
	}
	tb.Cleanup(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.p.cmd.Process.Signal(syscall.SIGCONT) // a paused server would not stop
		if err := p.p.stop(); err != nil {
			tb.Logf("testserver: %v", err)
		}
		os.RemoveAll(p.l.dir)
	})
	return srv, p
}

func (k *kind[T]) startProcess(tb testing.TB) (T, *Process, error) {
	tb.Helper()
	var zero T
	began := time.Now()
	l, client, err := k.prepare()
	if err != nil {
		return zero, nil, err
	}
	p, addr, err := start(l)
	if err != nil {
		return zero, nil, err
	}
	tb.Logf("testserver: started %s on %s in %v", l.what, addr, time.Since(began).Round(time.Millisecond))
	return client(addr), &Process{l: l, addr: addr, p: p}, nil
}

func checkMain(tb testing.TB) {
	tb.Helper()
	state.mu.Lock()
	inMain, stopped := state.main, state.stopped
	state.mu.Unlock()
	if !inMain {
		tb.Fatalf("testserver: the package's TestMain must run the tests through testserver.Main, so that the servers stop when they end:\n\tfunc TestMain(m *testing.M) { os.Exit(testserver.Main(m)) }")
	}
	if stopped {
		tb.Fatalf("testserver: the servers were stopped when the tests ended")
	}
}

// Process is a server started for one test alone (OwnRedis and the other
// Own functions), for tests of what a backend does when its server goes
// away, hangs or comes back. Its methods are safe for concurrent use.
type Process struct {
	l    launch
	addr string
	mu   sync.Mutex
	p    *proc
}

// Addr returns the 127.0.0.1 address the server listens on, the same after
// a restart.
func (p *Process) Addr() string { return p.addr }

// Stop shuts the server down (as at the end of the test) and waits until it
// has exited: clients then get connection refused.
func (p *Process) Stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.p.stopped {
		return nil
	}
	return p.p.stop()
}

// Start starts the stopped server again on the same address with the same
// data directory (what the server had persisted is there again: PostgreSQL,
// versitygw, FerretDB and dynalite keep their data, Redis, which runs
// without persistence, starts empty) and waits until it answers.
func (p *Process) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.p.done:
	default:
		return fmt.Errorf("%s is running", p.l.name)
	}
	np, err := spawn(p.l, p.addr)
	if err != nil {
		return err
	}
	if err := waitReady(np, p.l, p.addr); err != nil {
		np.kill()
		return err
	}
	p.p = np
	return nil
}

// Pause stops the server's processes with SIGSTOP: connections and new
// connections hang without an error, as with a server that stopped
// answering, until Resume. (PostgreSQL's backends for connections made
// before Pause keep running; new connections hang.)
func (p *Process) Pause() error {
	if err := p.signal(syscall.SIGSTOP); err != nil {
		return err
	}
	// The signal is delivered asynchronously: wait until every thread has
	// stopped, so that nothing sent after Pause is answered.
	pid := p.p.cmd.Process.Pid
	deadline := time.Now().Add(5 * time.Second)
	for !allStopped(pid) {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s (pid %d) did not stop within 5s of SIGSTOP", p.l.name, pid)
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

// allStopped reports whether every thread of process pid is stopped (state
// T in /proc/pid/task/*/stat).
func allStopped(pid int) bool {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if err != nil || len(tasks) == 0 {
		return false
	}
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			return false
		}
		// pid (comm) state ...: comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 || i+2 >= len(b) || b[i+2] != 'T' && b[i+2] != 't' {
			return false
		}
	}
	return true
}

// Resume continues a paused server (SIGCONT).
func (p *Process) Resume() error { return p.signal(syscall.SIGCONT) }

func (p *Process) signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.p.cmd.Process.Signal(sig)
}

// proc is a server process started by this package.
type proc struct {
	name    string
	cmd     *exec.Cmd
	log     string    // path of the file that holds its stdout and stderr
	stopSig os.Signal // asks it to shut down (it is killed if it does not)
	done    chan struct{}
	waitErr error // set before done is closed
	stopped bool  // stop was called (guarded by the owner's lock, or Main's end)
}

// launch says how to start one server process.
type launch struct {
	name  string                                       // for messages: "redis-server"
	what  string                                       // for the log: "redis-server 7.0.15"
	path  string                                       // the executable
	args  func(addr string) []string                   // its arguments, to listen on addr
	dir   string                                       // its working and data directory
	cred  *syscall.Credential                          // run as this user (nil: as we are)
	env   []string                                     // nil: ours
	ready func(ctx context.Context, addr string) error // protocol-level check
	// stopSig asks the server to shut down; SIGTERM when nil.
	stopSig os.Signal
}

const (
	startTimeout = 2 * time.Minute // from exec to a server that answers
	stopTimeout  = 15 * time.Second
	startTries   = 3 // fresh ports tried when a server exits before it answers
)

// start starts a server on a free 127.0.0.1 port and returns it once ready
// answers. A server that exits before then (another process took its port
// between our probe and its bind) is tried again on another port.
func start(l launch) (*proc, string, error) {
	var lastErr error
	for range startTries {
		addr, err := freeAddr()
		if err != nil {
			return nil, "", err
		}
		p, err := spawn(l, addr)
		if err != nil {
			return nil, "", err
		}
		err = waitReady(p, l, addr)
		if err == nil {
			return p, addr, nil
		}
		lastErr = err
		p.kill()
		if !errors.Is(err, errExited) {
			break
		}
	}
	return nil, "", lastErr
}

var errExited = errors.New("exited before it answered")

func waitReady(p *proc, l launch, addr string) error {
	deadline := time.Now().Add(startTimeout)
	var err error
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = l.ready(ctx, addr)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s %w (%v); last check: %v\n%s", l.name, errExited, p.waitErr, err, p.logTail())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer on %s within %v: %v\n%s", l.name, addr, startTimeout, err, p.logTail())
		}
	}
}

// spawn starts the process and records it, so that Main stops it.
func spawn(l launch, addr string) (*proc, error) {
	root, err := rootDir()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(root, filepath.Base(l.dir)+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child holds its own copy
	cmd := exec.Command(l.path, l.args(addr)...)
	cmd.Dir = l.dir
	cmd.Env = l.env
	cmd.Stdout, cmd.Stderr = logf, logf // never our stdout: go test would wait for it
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// The kernel kills the server when its parent thread dies: when the
		// test binary panics, is killed or times out, nothing outlives it.
		Pdeathsig:  syscall.SIGKILL,
		Credential: l.cred,
	}
	stopSig := l.stopSig
	if stopSig == nil {
		stopSig = syscall.SIGTERM
	}
	p := &proc{name: l.name, cmd: cmd, log: logPath, stopSig: stopSig, done: make(chan struct{})}
	state.mu.Lock()
	defer state.mu.Unlock()
	if state.stopped {
		return nil, errors.New("the tests have ended")
	}
	if err := startLocked(cmd); err != nil {
		return nil, fmt.Errorf("start %s: %w", l.path, err)
	}
	state.procs = append(state.procs, p)
	// Lifetime: until the process exits (Main stops it, or kills it).
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// The kernel's parent-death signal follows the thread that forked the child,
// not the process, and Go may end a thread (one whose goroutine exits locked
// to it). So every server is forked from one goroutine locked to its thread
// for the life of the test binary.
var spawner struct {
	once sync.Once
	reqs chan spawnReq
}

type spawnReq struct {
	cmd *exec.Cmd
	err chan<- error
}

func startLocked(cmd *exec.Cmd) error {
	spawner.once.Do(func() {
		spawner.reqs = make(chan spawnReq)
		// Lifetime: the test binary's; it never unlocks its thread.
		go func() {
			runtime.LockOSThread()
			for r := range spawner.reqs {
				r.err <- r.cmd.Start()
			}
		}()
	})
	errc := make(chan error, 1)
	spawner.reqs <- spawnReq{cmd, errc}
	return <-errc
}

// stop asks the server to shut down and kills it if it has not within
// stopTimeout.
func (p *proc) stop() error {
	if p.stopped {
		return nil
	}
	p.stopped = true
	select {
	case <-p.done:
		return fmt.Errorf("%s had already exited: %v\n%s", p.name, p.waitErr, p.logTail())
	default:
	}
	_ = p.cmd.Process.Signal(p.stopSig)
	select {
	case <-p.done:
		return nil
	case <-time.After(stopTimeout):
		p.kill()
		return fmt.Errorf("%s did not stop within %v; killed it", p.name, stopTimeout)
	}
}

func (p *proc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

func (p *proc) logTail() string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	const max = 2000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return "--- " + p.log + " (tail) ---\n" + string(bytes.TrimSpace(b))
}

// stopAll stops every server in reverse order of start and removes their data.
func stopAll() error {
	state.mu.Lock()
	state.stopped = true
	procs, root := state.procs, state.root
	state.procs = nil
	state.mu.Unlock()
	var errs []error
	for i := len(procs) - 1; i >= 0; i-- {
		if err := procs[i].stop(); err != nil {
			errs = append(errs, err)
		}
	}
	if root != "" {
		if err := os.RemoveAll(root); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

const rootPrefix = "hishel-testserver-"

// rootDir returns the test binary's directory for server data, creating it
// on first use. Directories left by test binaries that no longer run (killed
// before Main could remove theirs) are removed then.
func rootDir() (string, error) {
	state.mu.Lock()
	defer state.mu.Unlock()
	if state.root != "" {
		return state.root, nil
	}
	reapStale()
	dir, err := os.MkdirTemp("", rootPrefix)
	if err != nil {
		return "", err
	}
	// Servers run as other users (PostgreSQL refuses root) must reach
	// their own directories inside.
	if err := os.Chmod(dir, 0o711); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return "", err
	}
	state.root = dir
	return dir, nil
}

func reapStale() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), rootPrefix+"*"))
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "pid"))
		if err != nil {
			continue // not ours, or still being made
		}
		pid, err := strconv.Atoi(string(b))
		if err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(d)
		}
	}
}

// serverDir makes a fresh directory for one server process under rootDir.
func serverDir(name string) (string, error) {
	root, err := rootDir()
	if err != nil {
		return "", err
	}
	return os.MkdirTemp(root, name+"-")
}

// freeAddr returns a 127.0.0.1 address with a port nobody listened on a
// moment ago.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// dialTCP connects to addr; the connection's deadline is ctx's.
func dialTCP(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		nc.SetDeadline(dl)
	}
	return nc, nil
}

// uniqueName returns prefix followed by 12 random lowercase hex digits: a
// name no other test, test binary or earlier run uses.
func uniqueName(prefix string) string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand.Read never fails on Linux
	}
	return prefix + hex.EncodeToString(b[:])
}

// cacheDir is where scripts/test-servers puts what it builds:
// $HISHEL_TEST_CACHE, or hishel-test in the user cache directory
// (${XDG_CACHE_HOME:-$HOME/.cache}/hishel-test).
func cacheDir() (string, error) {
	if d := os.Getenv("HISHEL_TEST_CACHE"); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory for the test servers (set HISHEL_TEST_CACHE): %w", err)
	}
	return filepath.Join(d, "hishel-test"), nil
}

//go:embed versions.env
var versionsFile string

// version returns a pinned version from versions.env, the file that
// scripts/test-servers installs from.
func version(key string) string {
	for line := range strings.Lines(versionsFile) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if ok && k == key {
			return v
		}
	}
	panic("testserver: versions.env has no " + key)
}

// cached returns the path of a file the install script put in the cache
// directory, or an error saying it is missing.
func cached(elem ...string) (string, error) {
	dir, err := cacheDir()
	if err != nil {
		return "", err
	}
	p := filepath.Join(append([]string{dir}, elem...)...)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s is not installed: %w", p, err)
	}
	return p, nil
}
