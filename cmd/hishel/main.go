// Command hishel shows, runs and inspects a hishel-go HTTP cache.
//
// Usage:
//
//	hishel demo                                   an offline tour: a local origin, a bbolt cache in a temp dir
//	hishel proxy -upstream URL [-listen ADDR] [-store URL | -db PATH] [-shared] [-max-body N]
//	             [-max-bytes N] [-ttl D] [-rebuild=false] [-metrics ADDR] [-v]
//	                                              a caching reverse proxy
//	hishel ls -store URL | -db PATH [FILTER] [-shared] [-json]
//	                                              list the pairs of a cache
//	hishel show -store URL | -db PATH [-n N] [-raw] [-json] ID
//	                                              print a pair: heads, metadata, response body
//	hishel rm -store URL | -db PATH ID | FILTER   soft-delete a pair, or the pairs FILTER selects
//	hishel gc -store URL | -db PATH [-retention D] sweep now (expired, deleted, abandoned, over budget, damaged)
//	hishel stats -store URL | -db PATH [-json]    counters of a cache
//	hishel help [COMMAND]                         usage of hishel or of a command
//
// FILTER is any of -url URL, -url-prefix URL, -key KEY, -key-prefix PREFIX,
// -expired and -older-than D; together they select the pairs that meet
// them all (hishel rm -db cache.db -url https://example.com/a, rm -expired,
// rm -older-than 24h). rm -dry-run lists what it would remove.
//
// # Stores
//
// -store URL opens any backend hishel ships, by URL as cache.Open does:
// bolt:///path/cache.db, memory://, file:///path/dir, sqlite:///path/cache.db, and those
// that later backends add (README's backend table lists them and their
// parameters). -db PATH is the shorthand for a bbolt file,
// bolt:///PATH.
//
// ls, show and stats print tables for people (sizes such as 1.5 KiB, times
// such as "in 59m", control characters escaped; show writes a body that is
// not text to a terminal as a hex dump unless -raw) and, with -json, one
// JSON object per line for scripts (sizes in bytes, times in RFC 3339).
//
// Flags may come before or after a command's arguments. "hishel -h",
// "hishel help" and "hishel COMMAND -h" print usage on standard output.
//
// # Cache files
//
// A cache file is a bbolt database, which one process at a time may open.
// The inspection commands (ls, show, rm, gc, stats) wait at most 200ms for
// the file: a file held by a running proxy is reported as in use (exit
// status 3) rather than waited for. Stop the proxy, or copy the file and
// inspect the copy.
//
// # Exit status
//
//	0  success (also for -h and help)
//	1  runtime error: the origin, the file system or the database failed, or
//	   the cache file is damaged
//	2  usage error: unknown command, a missing or bad flag or argument
//	3  the cache file is in use by another process (a running proxy?)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// Exit statuses; see the package documentation.
const (
	exitOK      = 0
	exitError   = 1
	exitUsage   = 2
	exitInUse   = 3
	programName = "hishel"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// After the first signal, a second one kills the process as usual.
	context.AfterFunc(ctx, stop)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// command is one subcommand of hishel.
type command struct {
	name     string
	synopsis string // arguments, after "hishel name"
	summary  string // one line, for the command list
	run      func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// commands lists the subcommands in the order "hishel help" shows them.
var commands []command

func init() {
	commands = []command{
		{"demo", "[-keep]", "an offline tour: miss, hit, 304 revalidation, Vary, async storage", cmdDemo},
		{"proxy", "-upstream URL [-listen ADDR] [-store URL | -db PATH] [-shared] [-max-body N] [-max-bytes N] [-ttl D] [-rebuild=false] [-metrics ADDR] [-v]", "a caching reverse proxy", cmdProxy},
		{"ls", "-store URL | -db PATH [-url URL] [-url-prefix URL] [-key KEY] [-key-prefix PREFIX] [-expired] [-older-than D] [-shared] [-json]", "list the pairs of a cache, one line each", cmdLs},
		{"show", "-store URL | -db PATH [-n N] [-raw] [-json] ID", "print a pair: request and response heads, metadata, response body", cmdShow},
		{"rm", "-store URL | -db PATH (ID | [-url URL] [-url-prefix URL] [-key KEY] [-key-prefix PREFIX] [-expired] [-older-than D] [-dry-run])", "soft-delete a pair, or the pairs the filter flags select (gc reclaims them after the retention period)", cmdRm},
		{"gc", "-store URL | -db PATH [-retention D] [-incomplete-age D] [-max-bytes N]", "sweep a cache now and print what was removed", cmdGc},
		{"stats", "-store URL | -db PATH [-json]", "print the counters of a cache", cmdStats},
		{"help", "[COMMAND]", "print usage", cmdHelp},
	}
}

func lookup(name string) (command, bool) {
	for _, c := range commands {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// run runs hishel with args (without the program name) and returns the exit
// status. It reports errors on stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	err := dispatch(ctx, args, stdout, stderr)
	if err != nil && !errors.Is(err, errHelp) {
		fmt.Fprintln(stderr, errorText(err))
		var ue *usageError
		if errors.As(err, &ue) {
			if ue.cmd != "" {
				fmt.Fprintf(stderr, "Run '%s %s -h' for usage.\n", programName, ue.cmd)
			} else {
				fmt.Fprintf(stderr, "Run '%s help' for usage.\n", programName)
			}
		}
	}
	return exitCode(err)
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		writeUsage(stderr)
		return &usageError{msg: "no command given"}
	}
	switch args[0] {
	case "-h", "-help", "--help":
		writeUsage(stdout)
		return errHelp
	}
	c, ok := lookup(args[0])
	if !ok {
		if strings.HasPrefix(args[0], "-") {
			return &usageError{msg: fmt.Sprintf("flag %s given before a command; flags follow the command, as in 'hishel ls -db PATH'", args[0])}
		}
		return &usageError{msg: fmt.Sprintf("unknown command %q; the commands are %s", args[0], commandNames())}
	}
	return c.run(ctx, args[1:], stdout, stderr)
}

func commandNames() string {
	names := make([]string, len(commands))
	for i, c := range commands {
		names[i] = c.name
	}
	return strings.Join(names, ", ")
}

// errorText is the message printed for err, prefixed with the program name.
func errorText(err error) string {
	msg := err.Error()
	if !strings.HasPrefix(msg, programName+":") && !strings.HasPrefix(msg, programName+" ") {
		msg = programName + ": " + msg
	}
	return msg
}

// errHelp is returned when usage was asked for and printed; the exit status
// is 0.
var errHelp = errors.New("hishel: help requested")

// usageError is a bad command line: exit status 2.
type usageError struct {
	cmd string // the subcommand, or "" for hishel itself
	msg string
}

func (e *usageError) Error() string {
	if e.cmd == "" {
		return programName + ": " + e.msg
	}
	return programName + " " + e.cmd + ": " + e.msg
}

// inUseError is a cache file held by another process: exit status 3.
type inUseError struct {
	path string
	err  error // wraps model.ErrLocked
}

func (e *inUseError) Error() string {
	return fmt.Sprintf("%s: %s is in use by another process (a running proxy?); stop it or copy the file", programName, e.path)
}

func (e *inUseError) Unwrap() error { return e.err }

// exitCode maps an error returned by a command to the exit status.
func exitCode(err error) int {
	var ue *usageError
	var ie *inUseError
	switch {
	case err == nil, errors.Is(err, errHelp):
		return exitOK
	case errors.As(err, &ue):
		return exitUsage
	case errors.As(err, &ie):
		return exitInUse
	}
	return exitError
}

// writeUsage prints the usage of hishel.
func writeUsage(w io.Writer) {
	fmt.Fprintf(w, "%s is an HTTP cache (RFC 9111) stored in bbolt.\n\nUsage:\n\n", programName)
	for _, c := range commands {
		fmt.Fprintf(w, "  %s %s %s\n", programName, c.name, c.synopsis)
		fmt.Fprintf(w, "        %s\n", c.summary)
	}
	fmt.Fprintf(w, `
Run '%[1]s COMMAND -h' for a command's flags. Start with '%[1]s demo'.

Exit status: 0 ok, 1 runtime error, 2 usage error, 3 the cache file is in
use by another process (stop the proxy holding it, or copy the file).
`, programName)
}

func cmdHelp(_ context.Context, args []string, stdout, _ io.Writer) error {
	switch len(args) {
	case 0:
		writeUsage(stdout)
		return errHelp
	case 1:
		switch args[0] {
		case "-h", "-help", "--help": // "hishel help -h": the usage of help is hishel's
			writeUsage(stdout)
			return errHelp
		}
		c, ok := lookup(args[0])
		if !ok {
			return &usageError{cmd: "help", msg: fmt.Sprintf("unknown command %q; the commands are %s", args[0], commandNames())}
		}
		if c.name == "help" {
			writeUsage(stdout)
			return errHelp
		}
		// Every command prints its usage for -h.
		return c.run(context.Background(), []string{"-h"}, stdout, io.Discard)
	}
	return &usageError{cmd: "help", msg: "want at most one command name"}
}

// newFlagSet returns the flag set of command name. Its errors are returned,
// not printed: parseFlags turns them into usage errors.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(programName+" "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parseFlags parses args with fs, allowing flags before and after the
// positional arguments, which it returns. With -h it prints the command's
// usage on stdout and returns errHelp. It accepts at most maxArgs
// positional arguments.
func parseFlags(fs *flag.FlagSet, name string, args []string, maxArgs int, stdout io.Writer) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				writeCommandUsage(stdout, name, fs)
				return nil, errHelp
			}
			return nil, &usageError{cmd: name, msg: err.Error()}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			pos = append(pos, rest...) // everything after "--" is positional
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	if len(pos) > maxArgs {
		return nil, &usageError{cmd: name, msg: fmt.Sprintf("unexpected argument %q", pos[maxArgs])}
	}
	return pos, nil
}

// writeCommandUsage prints the usage of command name with fs's flags.
func writeCommandUsage(w io.Writer, name string, fs *flag.FlagSet) {
	c, _ := lookup(name)
	fmt.Fprintf(w, "Usage: %s %s %s\n\n%s.\n", programName, name, c.synopsis, upperFirst(c.summary))
	if d := details[name]; d != "" {
		fmt.Fprintf(w, "\n%s", d)
	}
	var hasFlags bool
	fs.VisitAll(func(*flag.Flag) { hasFlags = true })
	if hasFlags {
		fmt.Fprintf(w, "\nFlags:\n")
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// details are the longer descriptions of the commands, shown by -h.
var details = map[string]string{
	"demo": `Starts an origin on 127.0.0.1 and a bbolt cache in a temporary directory,
then sends requests through hishel.Transport and prints, for each, the
status, the Cache-Status field, the origin's request count and the time it
took: a miss, a hit, a revalidation answered 304, two Vary variants, and
pairs written and read through the async storage API (cacheasync). Nothing
leaves the machine; the directory is removed at the end unless -keep.
`,
	"proxy": `Forwards every request (any method, any path) to -upstream through a
hishel.Transport and answers from the cache where RFC 9111 allows. 1xx
responses (such as 103 Early Hints) are passed on, hop-by-hop fields are
removed, and every response carries a Cache-Status field. SIGINT or SIGTERM
stops it gracefully: requests in flight finish (up to 10s), then the cache
file is closed. While it runs, the cache file is locked: the inspection
commands report it as in use (exit status 3). With -metrics ADDR it also
serves Prometheus metrics at http://ADDR/metrics (package
github.com/hishel-go/hishel/metrics).

The cache file is bounded: -max-bytes (1 GiB by default) counts every stored
byte (keys, URLs, heads and bodies), and the least recently used pairs go
beyond it; -ttl bounds how long a pair is kept after it was last read. A
damaged cache file is moved aside (renamed PATH.damaged-TIME) and the proxy
starts with an empty one, saying so on standard error; -rebuild=false
makes it exit with status 1 instead.
`,
	"ls": `Prints one line per pair, whatever its state: ID, state (complete,
incomplete, deleted), status, method, URL, response body size, HTTP
freshness (fresh-until=TIME, or stale-since=TIME, as RFC 9111 judges it now;
-shared judges as a shared cache) and storage expiry (when a sweep removes
the pair: in 59m, 3s ago, never). The filter flags list only the pairs that
meet them all. With -json, one JSON object per pair and line: id, state,
key, method, url, status, request_size, response_size (bytes), created,
completed, last_access, expires, deleted (RFC 3339, absent when unset),
ttl_seconds, refresh_on_access.
`,
	"show": `ID is a pair ID as printed by ls. Prints the pair's metadata, request
and response heads, then its response body (all of it, or the first -n
bytes). The body of a deleted or incomplete pair is not available. To a
terminal, a body that is not text is written as a hex dump (-raw writes
it as stored), and control characters in heads are escaped; to a pipe or
a file the body is written as stored. With -json, one JSON object: ls's
fields, request_header, response_header, body (base64) and
body_available.
`,
	"rm": `Soft-deletes the pair ID, or every pair the filter flags select (those
that meet them all): -url removes every method and variant stored for a
URL, -expired the pairs whose TTL has run out, -older-than 24h those created
more than a day ago. They are hidden at once, and their data is reclaimed
by a later gc once the retention period (7 days by default) has passed.
-dry-run lists the pairs instead and removes nothing.
`,
	"gc": `Runs a sweep now: expired pairs are soft-deleted, soft-deleted pairs past
the retention period and incomplete pairs older than -incomplete-age are
removed, the least recently used pairs beyond -max-bytes are evicted, and
pairs found damaged (corrupt) are removed. Use -retention 1ns to reclaim
every soft-deleted pair now.
`,
	"stats": `Prints the counters of the cache file: live complete pairs, incomplete
pairs, soft-deleted pairs, stored bytes (keys, URLs, heads and bodies, as
-max-bytes counts them) and the file's size. With -json, one JSON object:
pairs, incomplete, deleted, bytes and file_bytes.
`,
}
