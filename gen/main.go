package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is gen's command line: it parses args, generates, and returns the
// exit code.
func run(args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("gen", flag.ContinueOnError)
	fl.SetOutput(stderr)
	var cfg config
	fl.StringVar(&cfg.template, "template", "./template", "template `package`: a directory or an import path")
	fl.StringVar(&cfg.cacheDir, "cache", "./cache", "output `dir`ectory of the blocking API")
	fl.StringVar(&cfg.asyncDir, "async", "./cacheasync", "output `dir`ectory of the async API")
	fl.StringVar(&cfg.cachePkg, "cache-pkg", "", "package `name` of the blocking API (default: base name of -cache)")
	fl.StringVar(&cfg.asyncPkg, "async-pkg", "", "package `name` of the async API (default: base name of -async)")
	checkOnly := fl.Bool("check", false, "render in memory, compare with the files on disk, and exit 1 on any difference")
	fl.Usage = func() {
		fmt.Fprintf(stderr, "usage: go run ./gen [flags]\n\nRenders the blocking and async storage APIs from a template package.\n\n")
		fl.PrintDefaults()
	}
	if err := fl.Parse(args); err != nil {
		return 2
	}
	if fl.NArg() > 0 {
		fmt.Fprintf(stderr, "gen: unexpected arguments: %s\n", strings.Join(fl.Args(), " "))
		fl.Usage()
		return 2
	}

	out, stale, err := generate(cfg)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if !*checkOnly {
		if err := write(out, stale); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		return 0
	}
	msgs, err := drift(out, stale)
	if err != nil {
		fmt.Fprintf(stderr, "gen: %v\n", err)
		return 1
	}
	if len(msgs) > 0 {
		for _, m := range msgs {
			fmt.Fprintf(stderr, "gen: %s\n", m)
		}
		fmt.Fprintln(stderr, "gen: generated files are out of date; run go generate ./...")
		return 1
	}
	fmt.Fprintf(stdout, "gen: %d generated files up to date\n", len(out))
	return 0
}
