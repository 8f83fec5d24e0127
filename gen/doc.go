// Command gen renders hishel-go's storage backends, written once in a
// template package, into two APIs: a blocking one (package cache) and one
// whose operations return futures (package cacheasync).
//
// Run it from the module root, usually through go generate:
//
//	go generate ./...        # in the module root: go run ./gen
//	go run ./gen -check      # exit 1, with a diff, if a generated file is stale
//
// # Flags
//
//	-template pkg   template package: a directory or an import path (default ./template)
//	-cache dir      output directory of the blocking API (default ./cache)
//	-async dir      output directory of the async API (default ./cacheasync)
//	-cache-pkg name package name of the blocking API (default: base name of -cache)
//	-async-pkg name package name of the async API (default: base name of -async)
//	-check          render in memory and compare with the files on disk, byte for
//	                byte; report each difference and stale file, and exit 1
//
// A template directory is loaded from inside itself, so the template may
// live in another module that requires github.com/hishel-go/hishel: users
// generate their own backends with the go command's tool directive (Go
// 1.24), which records gen and its dependencies in their go.mod and go.sum:
//
//	go get -tool github.com/hishel-go/hishel/gen
//	go tool gen -template ./mystore -cache ./mycache -async ./myasync
//
// (go run github.com/hishel-go/hishel/gen, without the tool line, fails in a
// module whose go.sum lacks jennifer). The repository's own backends with a
// driver (sqlite/, ...) are generated this way, one nested module each.
//
// # The template contract
//
// A template package is ordinary Go that compiles and is tested on its own.
// A backend is an exported, non-generic struct type X whose doc comment
// contains the line
//
//	//hishel:backend
//
// on its own (a directive: no space after the slashes). A backend whose
// operations never wait for I/O (an in-memory one) may also carry the line
//
//	//hishel:nonblocking
//
// and its async API then runs a call in the caller's goroutine when a slot
// is free, returning a future that already holds the result (as
// cacheasync.GoNow does; the generated code writes it out with
// Runner.TryNow, Ready and Runner.EndNow so that no closure is made).
// A backend opened by URL carries the line
//
//	//hishel:scheme NAME
//
// (NAME a lower-case URL scheme, unique in the template) and has exactly
// one constructor taking (context.Context, *url.URL); its operations must
// be those of cache.Store. Both generated packages then register it from
// init: cache.Register(NAME, ...) and cacheasync.Register(NAME, ...), so
// that importing the package makes cache.Open and cacheasync.Open open its
// URLs. A template rendered into cache and cacheasync themselves must not
// name a backend, constructor or re-exported type like what their open.go
// declares (Open, Opener, Register, Schemes, Store).
//
// For each backend:
//
//   - Its constructors are the exported package-level funcs returning exactly
//     (*X, error). There must be at least one; they must be neither variadic
//     nor generic.
//   - Its operations are the exported methods declared on X or *X (not those
//     promoted from embedded fields). Each takes a context.Context first and
//     returns (error), (T, error) or iter.Seq2[T, error] (an iteration, such
//     as Pairs: creating the iterator does no work, ranging over it does,
//     and an error ends it as its last item); the last parameter may be
//     variadic.
//   - It has a method Close() error, the one exception to the rule above,
//     rendered as a blocking Close in both APIs. No method may be named
//     Template, the name of the generated accessor.
//   - A template type named in these signatures must be exported and not
//     generic; it is re-exported by a type alias (type BoltOptions =
//     template.BoltOptions) in the generated file of the first backend that
//     names it, whose doc comment is the type's with, for a struct, its
//     exported fields and their comments (go doc shows an alias's comment,
//     not the fields of the type it names). The backend types themselves
//     stay qualified.
//   - Names the generated packages define must not collide: backends,
//     constructors and re-exported types must not be named like the async
//     runtime's exported names (Future, Result, Stream, Options, Runner, Go,
//     GoErr, GoSeq, NewRunner, DefaultMaxInFlight, ...) or like an Err*
//     variable of package model.
//
// Any other shape fails gen with an error that names the declaration and the
// rule it breaks, such as
//
//	gen: template.Bolt.Foo: first parameter must be context.Context
//
// # What gen renders
//
// For each backend X, in source order, gen writes x_gen.go (the name in
// lower case) into both output directories:
//
//   - in the blocking package, type X wrapping *template.X, its constructors,
//     and every operation with the template's signature, delegating;
//   - in the async package, type X with the same constructors taking one more
//     parameter, async *Options, and every operation returning at once with a
//     Future[T] (Future[struct{}] for error-only operations) that a goroutine
//     fills through the runtime of package cacheasync (cacheasync.Go); an
//     iteration returns a Stream[T] instead, a channel of Result[T] that a
//     goroutine fills one value ahead of the consumer (cacheasync.GoSeq);
//   - in both, Template() *template.X and Close() error, and, for a backend
//     with a scheme, the init func that registers it.
//
// Doc comments are carried over from the template, and the async API adds a
// paragraph saying how each call runs. Both packages also get errors_gen.go,
// which re-exports every exported Err* variable of package model with its doc
// comment, so callers write errors.Is(err, cache.ErrNotFound). An async
// package other than cacheasync itself also gets runtime_gen.go, with aliases
// of the runtime's Future, Result, Stream and Options.
//
// Every file starts with the line
//
//	// Code generated by "go run ./gen"; DO NOT EDIT.
//
// and a Source line naming the file it comes from. Output is gofmt-clean and
// deterministic. A *_gen.go file in an output directory that starts with that
// line but is no longer rendered (its backend was removed or renamed) is
// stale: gen removes it, and -check reports it.
//
// # Structure
//
// gen loads the template with the go command (go list, for files and export
// data) and go/types, checks it against the contract (analyze), plans the
// table of files to render (plan), and renders each with a pure function of
// its inputs, built with github.com/dave/jennifer. A test renders the
// repository's template again in memory and fails on any byte of drift.
package main
