package main

import (
	"encoding/json"
	"fmt"
	"go/scanner"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	// README's metrics section names otel.Meter: this import keeps its
	// module in go.mod (go mod tidy), so that the block can compile.
	_ "go.opentelemetry.io/otel"
)

// The README's Go code is compiled here, in the module of the command,
// which requires every module of the repository (the library, the metrics
// module, the backends' modules), so that a block may use any of them.
//
// Each ```go block of README.md becomes a package of its own, given to go
// build through an overlay (nothing is written into the source tree):
//
//   - a block that starts with "package" is a file as it is;
//   - a block with declarations at the top level (a line starting with
//     "func ", "type ", "var " or "const ") is a file of those;
//   - any other block is the body of a function returning error.
//
// The packages a block names (cache., hishel., http., ...) are imported
// for it, and these names are declared for every block, as prose uses
// them: ctx (a context.Context), w (an io.Writer), resp (an
// *http.Response), req (a model.Request), key (a cache key), chunksIn (a
// chan model.Chunk), handler (an http.Handler) and store (a cache.Store). A block must use what
// it declares, as any Go code must.

// readmeImports maps the package names README's blocks use to their import
// paths.
var readmeImports = map[string]string{
	"context":      "context",
	"errors":       "errors",
	"fmt":          "fmt",
	"io":           "io",
	"log":          "log",
	"slog":         "log/slog",
	"http":         "net/http",
	"httptest":     "net/http/httptest",
	"url":          "net/url",
	"os":           "os",
	"strings":      "strings",
	"testing":      "testing",
	"time":         "time",
	"hishel":       "github.com/hishel-go/hishel",
	"cache":        "github.com/hishel-go/hishel/cache",
	"cacheasync":   "github.com/hishel-go/hishel/cacheasync",
	"model":        "github.com/hishel-go/hishel/model",
	"statemachine": "github.com/hishel-go/hishel/statemachine",
	"storagetest":  "github.com/hishel-go/hishel/storagetest",
	"backend":      "github.com/hishel-go/hishel/backend",
	"template":     "github.com/hishel-go/hishel/template",
	"testserver":   "github.com/hishel-go/hishel/internal/testserver",
	"metrics":      "github.com/hishel-go/hishel/metrics",
	"redis":        "github.com/hishel-go/hishel/redis",
	"prometheus":   "github.com/prometheus/client_golang/prometheus",
	"promhttp":     "github.com/prometheus/client_golang/prometheus/promhttp",
	"otel":         "go.opentelemetry.io/otel",
}

// readmeBlocks returns the ```go blocks of README.md with the line each
// starts on.
func readmeBlocks(t *testing.T) (blocks []string, lines []int) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var cur []string
	in := false
	for i, line := range strings.Split(string(b), "\n") {
		switch {
		case !in && strings.TrimSpace(line) == "```go":
			in, cur = true, nil
			lines = append(lines, i+2)
		case in && strings.TrimSpace(line) == "```":
			in = false
			blocks = append(blocks, strings.Join(cur, "\n"))
		case in:
			cur = append(cur, line)
		}
	}
	if in {
		t.Fatalf("README.md: the ```go block at line %d never ends", lines[len(lines)-1])
	}
	return blocks, lines
}

var topLevel = regexp.MustCompile(`(?m)^(func|type|var|const) `)

// qualifiers returns the identifiers that block uses as qualifiers (x in
// x.Y, not after a dot), skipping comments and literals.
func qualifiers(block string) map[string]bool {
	fset := token.NewFileSet()
	var sc scanner.Scanner
	sc.Init(fset.AddFile("block.go", -1, len(block)), []byte(block), nil, 0)
	out := map[string]bool{}
	prev := token.ILLEGAL
	var prevLit string
	for {
		_, tok, lit := sc.Scan()
		if tok == token.EOF {
			return out
		}
		if tok == token.PERIOD && prev == token.IDENT && prevLit != "" {
			out[prevLit] = true
		}
		if tok == token.IDENT && prev == token.PERIOD {
			prevLit = "" // a selector's field: not a qualifier
		} else {
			prevLit = lit
		}
		prev = tok
	}
}

// readmeSource returns block as the file of package name.
func readmeSource(block, name string) string {
	if strings.HasPrefix(strings.TrimSpace(block), "package ") {
		return block
	}
	used := map[string]bool{"context": true, "io": true, "http": true, "model": true, "cache": true}
	for q := range qualifiers(block) {
		if _, ok := readmeImports[q]; ok {
			used[q] = true
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "package %s\n\nimport (\n", name)
	for n := range used {
		fmt.Fprintf(&b, "\t%s %q\n", n, readmeImports[n])
	}
	b.WriteString(")\n\n")
	b.WriteString("var (\n\tctx               = context.Background()\n\tw        io.Writer = io.Discard\n" +
		"\tresp     *http.Response\n\treq      model.Request\n\tkey      string\n\tchunksIn chan model.Chunk\n" +
		"\thandler  http.Handler\n\tstore    cache.Store\n)\n\n")
	// The preamble's names count as used whatever the block does.
	b.WriteString("var _, _, _, _, _, _, _, _ = ctx, w, resp, req, key, chunksIn, handler, store\n\n")
	if topLevel.MatchString(block) {
		b.WriteString(block + "\n")
	} else {
		b.WriteString("func _() error {\n" + block + "\nreturn nil\n}\n")
	}
	return b.String()
}

// TestReadmeCompiles builds every ```go block of README.md.
func TestReadmeCompiles(t *testing.T) {
	blocks, lines := readmeBlocks(t)
	if len(blocks) < 5 {
		t.Fatalf("README.md has %d ```go blocks; want the Transport, the storage APIs, tiers, metrics ...", len(blocks))
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	replace := map[string]string{}
	var pkgs []string
	for i, block := range blocks {
		name := fmt.Sprintf("readme%d", i)
		src := filepath.Join(tmp, name+".go")
		if err := os.WriteFile(src, []byte(readmeSource(block, name)), 0o644); err != nil {
			t.Fatal(err)
		}
		replace[filepath.Join(wd, "zz_readme", name, "block.go")] = src
		pkgs = append(pkgs, "./zz_readme/"+name)
	}
	overlay, _ := json.Marshal(map[string]any{"Replace": replace})
	ovPath := filepath.Join(tmp, "overlay.json")
	if err := os.WriteFile(ovPath, overlay, 0o644); err != nil {
		t.Fatal(err)
	}
	for i, pkg := range pkgs {
		cmd := exec.Command("go", "build", "-overlay", ovPath, pkg)
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly")
		if out, err := cmd.CombinedOutput(); err != nil {
			src, _ := os.ReadFile(replace[filepath.Join(wd, "zz_readme", fmt.Sprintf("readme%d", i), "block.go")])
			t.Errorf("README.md: the ```go block at line %d does not compile:\n%s\nas compiled:\n%s", lines[i], out, src)
		}
	}
}
