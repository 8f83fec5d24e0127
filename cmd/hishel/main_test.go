package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hishel-go/hishel/internal/testserver"
)

// hishelBin is the hishel binary built by TestMain; tests run it as a
// subprocess.
var hishelBin string

// raceEnabled is set by race_test.go when the tests run with -race; the
// binary is then built with -race too.
var raceEnabled bool

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "hishel-cmd-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	hishelBin = filepath.Join(dir, "hishel")
	if runtime.GOOS == "windows" {
		hishelBin += ".exe"
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	args := []string{"build", "-o", hishelBin}
	if raceEnabled {
		args = append(args, "-race")
	}
	out, err := exec.Command(goTool, append(args, ".")...).CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building hishel: %v\n%s", err, out)
		return 1
	}
	return testserver.Main(m) // the servers of the fleet and S3 tests
}

// childEnv is the environment of the hishel processes: a race-enabled
// binary would otherwise sleep 1s at exit (GORACE atexit_sleep_ms).
func childEnv() []string {
	env := os.Environ()
	if raceEnabled {
		env = append(env, "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	}
	return env
}

// result is the outcome of one run of the binary.
type result struct {
	code           int
	stdout, stderr string
	took           time.Duration
}

func (r result) String() string {
	return fmt.Sprintf("exit %d after %v\nstdout:\n%s\nstderr:\n%s", r.code, r.took, r.stdout, r.stderr)
}

// runHishel runs the binary with args to its end (at most a minute).
func runHishel(t testing.TB, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, hishelBin, args...)
	cmd.Env = childEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String(), took: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("hishel %s: %v", strings.Join(args, " "), err)
	}
	checkNoRace(t, r.stderr)
	return r
}

func checkNoRace(t testing.TB, stderr string) {
	t.Helper()
	if strings.Contains(stderr, "WARNING: DATA RACE") {
		t.Errorf("the race detector reported a race in the hishel binary:\n%s", stderr)
	}
}

// proc is a hishel process running in the background.
type proc struct {
	cmd    *exec.Cmd
	addr   string // the proxy's listening address, once known
	mu     sync.Mutex
	stderr bytes.Buffer
	done   chan struct{} // closed once the process has exited
	err    error         // from Wait, once done
}

func (p *proc) Stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// startProxy starts "hishel proxy -listen 127.0.0.1:0 args..." and waits
// until it listens. The process is killed at the end of the test if it is
// still running.
func startProxy(t *testing.T, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(hishelBin, append([]string{"proxy", "-listen", "127.0.0.1:0"}, args...)...)
	cmd.Env = childEnv()
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	listening := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.stderr.WriteString(line + "\n")
			p.mu.Unlock()
			if rest, ok := strings.CutPrefix(line, "hishel proxy: listening on http://"); ok {
				addr, _, _ := strings.Cut(rest, ",")
				select {
				case listening <- addr:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, pipe)
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
		checkNoRace(t, p.Stderr())
	})
	select {
	case p.addr = <-listening:
		return p
	case <-p.done:
		t.Fatalf("hishel proxy exited before listening: %v\n%s", p.err, p.Stderr())
	case <-time.After(30 * time.Second):
		t.Fatalf("hishel proxy did not listen within 30s:\n%s", p.Stderr())
	}
	return nil
}

// stop sends SIGTERM to p and returns its exit status.
func (p *proc) stop(t *testing.T) int {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	return p.wait(t)
}

// wait waits (at most 20s) for p to exit and returns its exit status.
func (p *proc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("hishel did not exit within 20s:\n%s", p.Stderr())
	}
	var ee *exec.ExitError
	switch {
	case p.err == nil:
		return 0
	case errors.As(p.err, &ee):
		return ee.ExitCode()
	}
	t.Fatalf("hishel: %v", p.err)
	return -1
}

func skipWithoutSignals(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the test stops the proxy with SIGTERM")
	}
}

func TestUsage(t *testing.T) {
	db := filepath.Join(t.TempDir(), "none.db")
	tests := []struct {
		args     []string
		code     int
		stdout   string // a substring of stdout
		stderr   string // a substring of stderr
		noStdout bool
	}{
		{args: nil, code: exitUsage, stderr: "no command given"},
		{args: []string{"frobnicate"}, code: exitUsage, stderr: `unknown command "frobnicate"; the commands are demo, proxy, ls`},
		{args: []string{"-db", db, "ls"}, code: exitUsage, stderr: "flags follow the command"},
		{args: []string{"ls"}, code: exitUsage, stderr: "-store URL or -db PATH is required"},
		{args: []string{"ls", "-db", db, "-store", "memory://"}, code: exitUsage, stderr: "-db and -store both name a store"},
		{args: []string{"ls", "-store", "nosuch:///x"}, code: exitError, stderr: `unknown scheme "nosuch"; registered: bolt://`}, // then the rest, in order
		{args: []string{"ls", "-store", "/no/scheme"}, code: exitUsage, stderr: "bad -store URL"},
		{args: []string{"ls", "-store", "memory://?colour=red"}, code: exitError, stderr: "unknown parameter colour"},
		{args: []string{"stats"}, code: exitUsage, stderr: "Run 'hishel stats -h' for usage."},
		{args: []string{"gc"}, code: exitUsage, stderr: "-store URL or -db PATH is required"},
		{args: []string{"ls", "-db", db, "-bogus"}, code: exitUsage, stderr: "flag provided but not defined: -bogus"},
		{args: []string{"ls", "-db", db, "extra"}, code: exitUsage, stderr: `unexpected argument "extra"`},
		{args: []string{"show", "-db", db}, code: exitUsage, stderr: "missing pair ID"},
		{args: []string{"show", "-db", db, "not-an-id"}, code: exitUsage, stderr: `bad pair ID "not-an-id"`},
		{args: []string{"rm", "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz", "-db", db}, code: exitUsage, stderr: "bad pair ID"},
		{args: []string{"rm", "-db", db, "0123abcd-4567-4def-89ab-cdef01234567", "again"}, code: exitUsage, stderr: `unexpected argument "again"`},
		{args: []string{"show", "0123abcd-4567-4def-89ab-cdef01234567"}, code: exitUsage, stderr: "-store URL or -db PATH is required"},
		{args: []string{"gc", "-db", db, "-retention", "-1s"}, code: exitUsage, stderr: "-retention must not be negative"},
		{args: []string{"proxy"}, code: exitUsage, stderr: "-upstream URL is required"},
		{args: []string{"proxy", "-upstream", "ftp://example.com"}, code: exitUsage, stderr: `bad -upstream "ftp://example.com"`},
		{args: []string{"proxy", "-upstream", "127.0.0.1:9000"}, code: exitUsage, stderr: "want an absolute http:// or https:// URL"},
		{args: []string{"proxy", "-upstream", "http://%zz"}, code: exitUsage, stderr: "bad -upstream"},
		{args: []string{"proxy", "-upstream", "http://127.0.0.1:9000", "-max-body", "-1"}, code: exitUsage, stderr: "-max-body must not be negative"},
		{args: []string{"proxy", "-upstream", "http://127.0.0.1:9000", "-origin-timeout", "-1s"}, code: exitUsage, stderr: "-origin-timeout must not be negative"},
		{args: []string{"proxy", "-upstream", "http://127.0.0.1:9000", "-shared", "-targeted-fields", "A, B:C"}, code: exitUsage, stderr: `"B:C" is not a field name`},
		{args: []string{"proxy", "-upstream", "http://127.0.0.1:9000", "-targeted-fields", "Hishel-Cache-Control"}, code: exitUsage, stderr: "-targeted-fields needs -shared"},
		{args: []string{"proxy", "-h"}, code: exitOK, stdout: "-stale-if-disconnected"},
		{args: []string{"proxy", "-upstream", "http://127.0.0.1:9000", "-max-bytes", "-1"}, code: exitUsage, stderr: "-max-bytes must not be negative"},
		{args: []string{"proxy", "-upstream", "http://127.0.0.1:9000", "-ttl", "-1s"}, code: exitUsage, stderr: "-ttl must not be negative"},
		{args: []string{"proxy", "-h"}, code: exitOK, stdout: "-max-bytes N"},
		{args: []string{"ls", "-h"}, code: exitOK, stdout: "-shared"},
		{args: []string{"demo", "now"}, code: exitUsage, stderr: `unexpected argument "now"`},
		{args: []string{"help", "nope"}, code: exitUsage, stderr: `unknown command "nope"`},
		{args: []string{"ls", "-db", db}, code: exitError, stderr: "no cache file at " + db},
		{args: []string{"ls", "-db", t.TempDir()}, code: exitError, stderr: "is a directory"},
		{args: []string{"-h"}, code: exitOK, stdout: "Exit status: 0 ok, 1 runtime error, 2 usage error, 3"},
		{args: []string{"--help"}, code: exitOK, stdout: "hishel proxy -upstream URL"},
		{args: []string{"help"}, code: exitOK, stdout: "hishel ls -store URL | -db PATH"},
		{args: []string{"help", "proxy"}, code: exitOK, stdout: "-upstream URL"},
		{args: []string{"proxy", "-h"}, code: exitOK, stdout: `-listen ADDR`},
		{args: []string{"demo", "-h"}, code: exitOK, stdout: "Usage: hishel demo"},
		{args: []string{"ls", "-h"}, code: exitOK, stdout: "-db PATH"},
		{args: []string{"show", "-help"}, code: exitOK, stdout: "-n N"},
		{args: []string{"rm", "-h"}, code: exitOK, stdout: "Usage: hishel rm -store URL | -db PATH (ID"},
		{args: []string{"ls", "-h"}, code: exitOK, stdout: "-store URL"},
		{args: []string{"gc", "-h"}, code: exitOK, stdout: "-retention D"},
		{args: []string{"stats", "-h"}, code: exitOK, stdout: "Usage: hishel stats"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Parallel()
			r := runHishel(t, tt.args...)
			if r.code != tt.code || !strings.Contains(r.stdout, tt.stdout) || !strings.Contains(r.stderr, tt.stderr) {
				t.Errorf("hishel %q = %v\nwant exit %d, stdout containing %q, stderr containing %q",
					tt.args, r, tt.code, tt.stdout, tt.stderr)
			}
		})
	}
}

func TestDemo(t *testing.T) {
	r := runHishel(t, "demo")
	if r.code != 0 {
		t.Fatalf("hishel demo = %v; want exit 0", r)
	}
	for _, want := range []string{
		"miss", "fwd=uri-miss", "stored",
		"hit", "hishel; hit",
		"304", "fwd-status=304", "NeedRevalidation -> NeedToBeUpdated",
		"Vary", "2 variants stored",
		"async", "32 pairs", "32 of 32 pairs found",
		"origin requests: 1 (+0)", // the hit did not reach the origin
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("hishel demo output lacks %q:\n%s", want, r.stdout)
		}
	}
	// The temporary directory is removed.
	_, rest, ok := strings.Cut(r.stdout, "a bbolt cache at ")
	path, _, _ := strings.Cut(rest, "\n")
	if !ok || path == "" {
		t.Fatalf("hishel demo does not name its cache file:\n%s", r.stdout)
	}
	if _, err := os.Stat(filepath.Dir(path)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after hishel demo, Stat(%s) = %v; want it removed", filepath.Dir(path), err)
	}
}

func TestDemoKeep(t *testing.T) {
	r := runHishel(t, "demo", "-keep")
	if r.code != 0 {
		t.Fatalf("hishel demo -keep = %v; want exit 0", r)
	}
	_, rest, ok := strings.Cut(r.stdout, "inspect it with 'hishel ls -db ")
	path, _, _ := strings.Cut(rest, "'")
	if !ok || path == "" {
		t.Fatalf("hishel demo -keep does not name the kept file:\n%s", r.stdout)
	}
	t.Cleanup(func() { os.RemoveAll(filepath.Dir(path)) })
	ls := runHishel(t, "ls", "-db", path)
	if ls.code != 0 || !strings.Contains(ls.stdout, "/fresh") || !strings.Contains(ls.stdout, "/async/31") {
		t.Errorf("hishel ls on the kept demo cache = %v; want /fresh and /async/31 listed", ls)
	}
}
