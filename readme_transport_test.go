package hishel_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestREADMETransport runs the README's Transport block as it is written,
// twice in one process, against a local origin: it must compile, close
// what it opens (a second OpenBolt of a file still open fails), and the
// second call must be a hit from the file the first one stored into.
func TestREADMETransport(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "## The Transport in five lines\n\n```go\n")
	block, _, ok2 := strings.Cut(rest, "```\n")
	if !ok || !ok2 {
		t.Fatal("README.md has no go block under \"## The Transport in five lines\"")
	}
	if !strings.Contains(block, `"https://example.com/"`) {
		t.Fatalf("the README block fetches no https://example.com/ to replace:\n%s", block)
	}
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		fmt.Fprint(w, "hello from the origin")
	}))
	defer origin.Close()
	src := `package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"

	"github.com/hishel-go/hishel"
	"github.com/hishel-go/hishel/cache"
)

var _, _, _ = io.EOF, hishel.ErrClosed, cache.OpenBolt

func fetch(ctx context.Context) error {
` + strings.ReplaceAll(block, `"https://example.com/"`, "os.Args[1]") + `	return nil
}

func main() {
	for range 2 {
		if err := fetch(context.Background()); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
	}
}
`
	// A directory of the module, so that its imports resolve; the dot
	// keeps it out of ./... patterns.
	dir, err := os.MkdirTemp(".", ".readme-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "run", "./"+filepath.Base(dir), origin.URL)
	// The default cache file goes under the user cache directory: a
	// temporary one, which must not move Go's own caches.
	goenv, err := exec.Command("go", "env", "GOCACHE", "GOMODCACHE").Output()
	if err != nil {
		t.Fatal(err)
	}
	caches := strings.Fields(string(goenv))
	if len(caches) != 2 {
		t.Fatalf("go env GOCACHE GOMODCACHE = %q", goenv)
	}
	cmd.Env = append(os.Environ(), "XDG_CACHE_HOME="+t.TempDir(), "GOCACHE="+caches[0], "GOMODCACHE="+caches[1])
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("the README block, run twice: %v\n%s\n%s", err, out.String(), src)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	n := len("hello from the origin")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "hishel; fwd=uri-miss") || !strings.HasSuffix(lines[0], fmt.Sprintf(" %d <nil>", n)) ||
		!strings.HasPrefix(lines[1], "hishel; hit") || !strings.HasSuffix(lines[1], fmt.Sprintf(" %d <nil>", n)) {
		t.Errorf("the README block printed\n%s\nwant a stored miss, then a hit, each with the %d bytes", out.String(), n)
	}
}
