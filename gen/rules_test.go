package main

import (
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

var (
	exportsOnce sync.Once
	testExports exports
	exportsErr  error
)

// checkSource type-checks src as the single file of package tmpl
// (example.com/tmpl), which may import context and package model.
func checkSource(t *testing.T, src string) *source {
	t.Helper()
	exportsOnce.Do(func() { testExports, exportsErr = listExports("..", "context", "iter", "net/url", modelPath) })
	if exportsErr != nil {
		t.Fatal(exportsErr)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tmpl.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	s, err := check(fset, testExports.importer(fset), "example.com/tmpl", dir, []string{"tmpl.go"})
	if err != nil {
		t.Fatalf("fixture source does not compile: %v\n%s", err, src)
	}
	return s
}

const prelude = `package tmpl

import (
	"context"
	"iter"
	"net/url"

	"github.com/hishel-go/hishel/model"
)

var (
	_ context.Context
	_ iter.Seq[int]
	_ model.PairID
	_ *url.URL
)

`

// store is a valid backend, to which each case adds declarations.
const store = prelude + `// Store is a backend.
//
//hishel:backend
type Store struct{}

// Open opens a Store.
func Open(ctx context.Context) (*Store, error) { return &Store{}, nil }

// Close closes s.
func (s *Store) Close() error { return nil }
`

// TestRules checks that every broken template rule fails gen with an error
// that names the declaration and the rule.
func TestRules(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"no backend", prelude + "type Store struct{}\n",
			`gen: example.com/tmpl: no backend types: mark an exported struct type with a "//hishel:backend" line in its doc comment`},
		{"marker not on a line of its own", prelude + "// Store is a backend. //hishel:backend\ntype Store struct{}\n",
			`gen: example.com/tmpl: no backend types: mark an exported struct type with a "//hishel:backend" line in its doc comment`},
		{"unexported backend", prelude + "//hishel:backend\ntype store struct{}\n",
			"gen: tmpl.store: backend type must be exported"},
		{"non-struct backend", prelude + "//hishel:backend\ntype Store int\n",
			"gen: tmpl.Store: backend must be a struct type"},
		{"alias backend", prelude + "type store struct{}\n\n//hishel:backend\ntype Store = store\n",
			"gen: tmpl.Store: backend must be a defined struct type, not an alias"},
		{"generic backend", prelude + "//hishel:backend\ntype Store[T any] struct{}\n",
			"gen: tmpl.Store: backend type must not be generic"},
		{"no constructor", prelude + "//hishel:backend\ntype Store struct{}\n\nfunc (s *Store) Close() error { return nil }\n",
			"gen: tmpl.Store: no constructor: want an exported func returning (*Store, error)"},
		{"variadic constructor", store + "func OpenMany(ctx context.Context, names ...string) (*Store, error) { return nil, nil }\n",
			"gen: tmpl.OpenMany: constructor must not be variadic"},
		{"generic constructor", store + "func OpenT[T any](ctx context.Context, v T) (*Store, error) { return nil, nil }\n",
			"gen: tmpl.OpenT: constructor must not be generic"},
		{"missing Close", prelude + "//hishel:backend\ntype Store struct{}\n\nfunc Open() (*Store, error) { return nil, nil }\n",
			"gen: tmpl.Store: missing method Close() error"},
		{"Close with context", prelude + "//hishel:backend\ntype Store struct{}\n\nfunc Open() (*Store, error) { return nil, nil }\n\nfunc (s *Store) Close(ctx context.Context) error { return nil }\n",
			"gen: tmpl.Store.Close: Close must be Close() error"},
		{"Close without error", prelude + "//hishel:backend\ntype Store struct{}\n\nfunc Open() (*Store, error) { return nil, nil }\n\nfunc (s *Store) Close() {}\n",
			"gen: tmpl.Store.Close: Close must be Close() error"},
		{"no parameters", store + "func (s *Store) Foo() error { return nil }\n",
			"gen: tmpl.Store.Foo: first parameter must be context.Context"},
		{"context not first", store + "func (s *Store) Foo(key string, ctx context.Context) error { return nil }\n",
			"gen: tmpl.Store.Foo: first parameter must be context.Context"},
		{"pointer to context", store + "func (s *Store) Foo(ctx *context.Context) error { return nil }\n",
			"gen: tmpl.Store.Foo: first parameter must be context.Context"},
		{"no results", store + "func (s *Store) Foo(ctx context.Context) {}\n",
			"gen: tmpl.Store.Foo: results must be (error), (T, error) or iter.Seq2[T, error]"},
		{"no error result", store + "func (s *Store) Foo(ctx context.Context) int { return 0 }\n",
			"gen: tmpl.Store.Foo: results must be (error), (T, error) or iter.Seq2[T, error]"},
		{"error not last", store + "func (s *Store) Foo(ctx context.Context) (error, int) { return nil, 0 }\n",
			"gen: tmpl.Store.Foo: results must be (error), (T, error) or iter.Seq2[T, error]"},
		{"two values", store + "func (s *Store) Foo(ctx context.Context) (int, int, error) { return 0, 0, nil }\n",
			"gen: tmpl.Store.Foo: results must be (error), (T, error) or iter.Seq2[T, error]"},
		{"iter.Seq", store + "func (s *Store) Foo(ctx context.Context) iter.Seq[int] { return nil }\n",
			"gen: tmpl.Store.Foo: results must be (error), (T, error) or iter.Seq2[T, error]"},
		{"iter.Seq2 without error", store + "func (s *Store) Foo(ctx context.Context) iter.Seq2[int, int] { return nil }\n",
			"gen: tmpl.Store.Foo: results must be (error), (T, error) or iter.Seq2[T, error]"},
		{"iter.Seq2 of errors", store + "func (s *Store) Foo(ctx context.Context) iter.Seq2[error, error] { return nil }\n",
			"gen: tmpl.Store.Foo: results must be (error), (T, error) or iter.Seq2[T, error]"},
		{"unexported type in an iteration", store + "type row struct{}\n\nfunc (s *Store) Rows(ctx context.Context) iter.Seq2[row, error] { return nil }\n",
			"gen: tmpl.Store.Rows: uses unexported type tmpl.row, which the generated packages cannot name"},
		{"value receiver counts too", store + "func (s Store) Foo(key string) error { return nil }\n",
			"gen: tmpl.Store.Foo: first parameter must be context.Context"},
		{"method named Template", store + "func (s *Store) Template(ctx context.Context) error { return nil }\n",
			"gen: tmpl.Store.Template: name is reserved for the generated accessor of the template store"},
		{"unexported type in an operation", store + "type key string\n\nfunc (s *Store) Get(ctx context.Context, k key) error { return nil }\n",
			"gen: tmpl.Store.Get: uses unexported type tmpl.key, which the generated packages cannot name"},
		{"unexported type in a result", store + "type entry struct{}\n\nfunc (s *Store) Get(ctx context.Context) ([]entry, error) { return nil, nil }\n",
			"gen: tmpl.Store.Get: uses unexported type tmpl.entry, which the generated packages cannot name"},
		{"unexported type in a constructor", store + "type config struct{}\n\nfunc OpenWith(c *config) (*Store, error) { return nil, nil }\n",
			"gen: tmpl.OpenWith: uses unexported type tmpl.config, which the generated packages cannot name"},
		{"generic template type", store + "// Box boxes.\ntype Box[T any] struct{ V T }\n\nfunc (s *Store) Get(ctx context.Context) (Box[int], error) { return Box[int]{}, nil }\n",
			"gen: tmpl.Store.Get: uses generic type tmpl.Box, which gen cannot re-export"},
		{"type named like the runtime", store + "// Options configure.\ntype Options struct{}\n\nfunc OpenWith(o *Options) (*Store, error) { return nil, nil }\n",
			"gen: tmpl.Options: name collides with the async runtime's Options in the generated packages"},
		{"bad scheme", prelude + "//hishel:backend\n//hishel:scheme My_DB\ntype Store struct{}\n\nfunc Open() (*Store, error) { return nil, nil }\n\nfunc (s *Store) Close() error { return nil }\n",
			`gen: tmpl.Store: //hishel:scheme "My_DB": want a URL scheme in lower case, such as //hishel:scheme sqlite`},
		{"scheme without URL constructor", prelude + "//hishel:backend\n//hishel:scheme mine\ntype Store struct{}\n\nfunc Open(ctx context.Context, path string) (*Store, error) { return nil, nil }\n\nfunc (s *Store) Close() error { return nil }\n",
			"gen: tmpl.Store: //hishel:scheme mine: no constructor taking (context.Context, *url.URL) to open its URLs"},
		{"two URL constructors", prelude + "//hishel:backend\n//hishel:scheme mine\ntype Store struct{}\n\nfunc OpenURL(ctx context.Context, u *url.URL) (*Store, error) { return nil, nil }\n\nfunc OpenURL2(ctx context.Context, u *url.URL) (*Store, error) { return nil, nil }\n\nfunc (s *Store) Close() error { return nil }\n",
			"gen: tmpl.Store: tmpl.OpenURL and tmpl.OpenURL2 both take (context.Context, *url.URL); //hishel:scheme needs one"},
		{"scheme taken twice", prelude + "//hishel:backend\n//hishel:scheme mine\ntype A struct{}\n\nfunc OpenA(ctx context.Context, u *url.URL) (*A, error) { return nil, nil }\n\nfunc (a *A) Close() error { return nil }\n\n//hishel:backend\n//hishel:scheme mine\ntype B struct{}\n\nfunc OpenB(ctx context.Context, u *url.URL) (*B, error) { return nil, nil }\n\nfunc (b *B) Close() error { return nil }\n",
			`gen: tmpl.B: scheme "mine" is already tmpl.A's`},
		{"backend named like the runtime", prelude + "//hishel:backend\ntype Future struct{}\n\nfunc Open() (*Future, error) { return nil, nil }\n\nfunc (f *Future) Close() error { return nil }\n",
			"gen: tmpl.Future: name collides with the async runtime's Future in the generated packages"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := checkSource(t, tt.src)
			_, err := analyze(src, nil)
			if err == nil || err.Error() != tt.want {
				t.Errorf("analyze(%s) error = %v; want %s", tt.name, err, tt.want)
			}
		})
	}
}

// TestModelErrorCollision checks that a template type named like one of
// model's re-exported errors is refused.
func TestModelErrorCollision(t *testing.T) {
	src := checkSource(t, store+"// ErrNotFound is a type.\ntype ErrNotFound struct{}\n\nfunc OpenWith(e ErrNotFound) (*Store, error) { return nil, nil }\n")
	mdl := checkSource(t, "package model\n\nimport \"errors\"\n\n// ErrNotFound is returned.\nvar ErrNotFound = errors.New(\"nf\")\n")
	want := "gen: tmpl.ErrNotFound: name collides with the re-exported model.ErrNotFound in the generated packages"
	if _, err := analyze(src, mdl); err == nil || err.Error() != want {
		t.Errorf("analyze(ErrNotFound type) error = %v; want %s", err, want)
	}
}

// TestAnalyze checks what gen finds in a valid template: backends,
// constructors and operations in source order, re-exported types, and
// parameters renamed away from what the generated code uses.
func TestAnalyze(t *testing.T) {
	src := checkSource(t, prelude+`// Opts configures.
type Opts struct{}

// Key is a key.
type Key string

// Other is not used in any signature.
type Other int

// B is second.
//
//hishel:backend
type B struct{}

// A is first... in its own file order, after B.
//
//hishel:backend
type A struct{}

func OpenB(o *Opts) (*B, error) { return nil, nil }
func OpenA(s string, err int, async bool) (*A, error) { return nil, nil }
func NewA() (*A, error) { return nil, nil }
func helper() (*A, error) { return nil, nil }

func (b *B) Close() error { return nil }
func (a *A) Close() error { return nil }
func (bb *B) Zed(c context.Context, k Key, b []Opts) error { return nil }
func (b *B) Alpha(context.Context, int, string) (int, error) { return 0, nil }
func (b *B) Put(_ context.Context, model string, ctx int, opts ...string) (int, error) { return 0, nil }
func (b *B) Create(ctx context.Context, opts ...model.CreateOption) (model.PairID, error) { return model.PairID{}, nil }
func (b *B) unexported(context.Context) {}
func (a *A) Get(ctx context.Context, a2 string, string_ bool, a3 int) (Key, error) { return "", nil }
`)
	got, err := analyze(src, nil)
	if err != nil {
		t.Fatal(err)
	}
	type op struct {
		name   string
		params []string
	}
	summary := func(fs []*fn) []op {
		var ops []op
		for _, f := range fs {
			var ps []string
			for _, p := range f.params {
				ps = append(ps, p.name)
			}
			ops = append(ops, op{f.name, ps})
		}
		return ops
	}
	wantBackends := []struct {
		name, recv string
		ctors, ops []op
		aliases    []string
	}{
		{"B", "x", []op{{"OpenB", []string{"o"}}},
			[]op{{"Zed", []string{"ctx", "k", "b"}}, {"Alpha", []string{"ctx", "arg1", "arg2"}}, {"Put", []string{"ctx", "model1", "ctx1", "opts"}}, {"Create", []string{"ctx", "opts"}}},
			[]string{"Opts", "Key"}},
		{"A", "a", []op{{"OpenA", []string{"s1", "err1", "async1"}}, {"NewA", nil}},
			[]op{{"Get", []string{"ctx", "a2", "string_", "a3"}}},
			nil},
	}
	if len(got.backends) != len(wantBackends) {
		t.Fatalf("analyze found %d backends; want %d", len(got.backends), len(wantBackends))
	}
	for i, want := range wantBackends {
		b := got.backends[i]
		var aliases []string
		for _, a := range b.aliases {
			aliases = append(aliases, a.obj.Name())
		}
		if b.name != want.name || b.recv != want.recv ||
			!slices.EqualFunc(summary(b.ctors), want.ctors, opEqual) ||
			!slices.EqualFunc(summary(b.ops), want.ops, opEqual) ||
			!slices.Equal(aliases, want.aliases) {
			t.Errorf("backend %d = %s recv %s ctors %v ops %v aliases %v; want %s recv %s ctors %v ops %v aliases %v",
				i, b.name, b.recv, summary(b.ctors), summary(b.ops), aliases,
				want.name, want.recv, want.ctors, want.ops, want.aliases)
		}
	}
}

func opEqual[T interface {
	~struct {
		name   string
		params []string
	}
}](a, b T) bool {
	x, y := struct {
		name   string
		params []string
	}(a), struct {
		name   string
		params []string
	}(b)
	return x.name == y.name && slices.Equal(x.params, y.params)
}

// TestSeq checks how an operation returning iter.Seq2[T, error] renders:
// as itself in the blocking API, and as a Stream[T] filled by GoSeq in the
// async one, whatever the backend (never in the caller's goroutine).
func TestSeq(t *testing.T) {
	src := checkSource(t, store+`
// Row is listed.
type Row struct{ N int }

// Fast never waits for I/O.
//
//hishel:backend
//hishel:nonblocking
type Fast struct{}

func OpenFast(ctx context.Context) (*Fast, error) { return &Fast{}, nil }
func (f *Fast) Close() error                     { return nil }

// Rows lists the rows.
func (f *Fast) Rows(ctx context.Context, from int) iter.Seq2[Row, error] { return nil }
`)
	tm, err := analyze(src, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := tm.backends[1]
	if len(b.ops) != 1 || !b.ops[0].seq || b.ops[0].result.String() != "example.com/tmpl.Row" {
		t.Fatalf("analyze: Fast's ops = %v; want Rows, an iteration of Row", b.ops)
	}
	if len(b.aliases) != 1 || b.aliases[0].obj.Name() != "Row" {
		t.Errorf("analyze: Fast re-exports %v; want Row", b.aliases)
	}
	var blocking, async strings.Builder
	if err := renderBlocking(&blocking, tm, output{dir: t.TempDir(), name: "mycache", path: "example.com/mycache"}, b); err != nil {
		t.Fatal(err)
	}
	if err := renderAsync(&async, tm, output{dir: t.TempDir(), name: "cacheasync", path: runtimePath}, b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"func (f *Fast) Rows(ctx context.Context, from int) iter.Seq2[Row, error] {\n\treturn f.s.Rows(ctx, from)\n}", "// Rows lists the rows."} {
		if !strings.Contains(blocking.String(), want) {
			t.Errorf("renderBlocking: want %q in\n%s", want, blocking.String())
		}
	}
	for _, want := range []string{"func (f *Fast) Rows(ctx context.Context, from int) Stream[Row] {\n\treturn GoSeq(f.r, ctx, f.s.Rows(ctx, from))\n}",
		"// Rows lists the rows.\n//\n// Rows returns at once with a [Stream]."} {
		if !strings.Contains(async.String(), want) {
			t.Errorf("renderAsync: want %q in\n%s", want, async.String())
		}
	}
	if strings.Contains(async.String(), "TryNow") {
		t.Errorf("renderAsync: an iteration of a nonblocking backend runs in the caller's goroutine\n%s", async.String())
	}
}

// TestNonBlocking checks that //hishel:nonblocking makes a backend's async
// calls try the caller's goroutine first (TryNow, then Ready or ReadyErr),
// and only that backend's.
func TestNonBlocking(t *testing.T) {
	src := checkSource(t, store+`
// Fast never waits for I/O.
//
//hishel:backend
//hishel:nonblocking
type Fast struct{}

func OpenFast(ctx context.Context) (*Fast, error) { return &Fast{}, nil }
func (f *Fast) Close() error                     { return nil }
func (f *Fast) Get(ctx context.Context) (int, error) { return 1, nil }
func (f *Fast) Put(ctx context.Context) error        { return nil }
func (f *Fast) Each(ctx context.Context, fn func(int) error) error { return nil }
func (s *Store) Get(ctx context.Context) (int, error) { return 1, nil }
`)
	tm, err := analyze(src, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range tm.backends {
		var buf strings.Builder
		if err := renderAsync(&buf, tm, output{dir: t.TempDir(), name: "cacheasync", path: runtimePath}, b); err != nil {
			t.Fatal(err)
		}
		out := buf.String()
		gotNow := strings.Contains(out, ".TryNow(ctx)")
		if gotNow != (b.name == "Fast") {
			t.Errorf("renderAsync(%s) uses TryNow = %v; want %v\n%s", b.name, gotNow, b.name == "Fast", out)
		}
		if b.name == "Fast" && (!strings.Contains(out, "Ready(f.s.Get(ctx))") || !strings.Contains(out, "ReadyErr(f.s.Put(ctx))") ||
			strings.Contains(out, "hishel:nonblocking")) {
			t.Errorf("renderAsync(Fast): want Ready for Get, ReadyErr for Put and no directive in docs\n%s", out)
		}
		if b.name == "Fast" && strings.Count(out, ".TryNow(ctx)") != 2 {
			t.Errorf("renderAsync(Fast): want TryNow in Get and Put only, not in Each\n%s", out)
		}
		// An operation that takes a function runs outside the bound, in a
		// goroutine, whatever the backend.
		if b.name == "Fast" && !strings.Contains(out, "GoErrUnbounded(") {
			t.Errorf("renderAsync(Fast): want GoErrUnbounded for Each\n%s", out)
		}
	}
}

// The generated docs name what they wrap: a Wrap function names its own
// backend (not bbolt's lock for every backend), and an alias of a template
// struct carries the struct's exported fields, which go doc shows for an
// alias only through its comment.
func TestGeneratedDocs(t *testing.T) {
	read := func(path string) string {
		b, err := os.ReadFile(filepath.Join("..", path))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	for _, b := range []string{"bolt", "memory", "tiered"} {
		name := strings.ToUpper(b[:1]) + b[1:]
		for _, dir := range []string{"cache", "cacheasync"} {
			src := read(dir + "/" + b + "_gen.go")
			want := "// Wrap" + name + " returns this package's API to s, an open " + name + " store"
			if !strings.Contains(src, want) || strings.Contains(src, "bbolt file, which only one opener") {
				t.Errorf("%s/%s_gen.go: Wrap%s's doc does not name its backend alone; want %q", dir, b, name, want)
			}
		}
	}
	src := read("cache/bolt_gen.go")
	for _, want := range []string{"// Its fields, as [template.BoltOptions] declares them:", "//\ttype BoltOptions struct {",
		"//\t\tPath string", "//\t\tNoSync bool", "//\t\tMaxBytes int64", "//\t}\ntype BoltOptions = template.BoltOptions"} {
		if !strings.Contains(src, want) {
			t.Errorf("cache/bolt_gen.go lacks %q in BoltOptions' doc", want)
		}
	}
}
