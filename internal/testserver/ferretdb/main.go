// Command hishel-ferretdb runs FerretDB, a MongoDB wire-protocol server, on
// its SQLite handler for hishel-go's tests.
//
// It embeds github.com/FerretDB/FerretDB/ferretdb because the FerretDB v1
// command built with "go install" panics at start on its missing
// build/version/version.txt, while the embeddable package does not read it.
// It lives in a module of its own so that FerretDB's dependencies never reach
// hishel-go's go.mod; scripts/test-servers builds it once into the test
// server cache and package testserver starts it:
//
//	hishel-ferretdb -listen 127.0.0.1:PORT -dir DIR
//
// DIR must exist; each MongoDB database becomes an SQLite file in it. The
// command serves until SIGINT or SIGTERM, then closes its listener and
// databases and exits 0.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "hishel-ferretdb:", err)
		os.Exit(1)
	}
}

func run() error {
	listen := flag.String("listen", "127.0.0.1:27017", "TCP address to listen on")
	dir := flag.String("dir", "", "existing directory for the SQLite files (required)")
	logLevel := flag.String("log-level", "warn", "log level: debug, info, warn or error")
	flag.Parse()
	if *dir == "" || flag.NArg() != 0 {
		flag.Usage()
		return fmt.Errorf("-dir is required and no arguments are accepted")
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	// Immediate transactions: a write waits for another's instead of
	// failing with SQLITE_BUSY when its read transaction cannot be
	// upgraded, as concurrent clients' writes did; and it waits up to two
	// minutes (FerretDB's default busy timeout, 10 s, ran out on a loaded
	// machine while 64 clients wrote at once).
	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: *listen},
		Logger:    logger,
		Handler:   "sqlite",
		SQLiteURL: "file:" + filepath.ToSlash(abs) + "/?_txlock=immediate&_pragma=busy_timeout(120000)",
	})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return f.Run(ctx)
}
